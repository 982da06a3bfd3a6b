//! The labs the benchmarks send traffic through: the lab topology
//! ([`crate::lab`]) once per XDP mode with the agent running (the havip
//! datapath) and once with no agent (the Linux bridge alone), built when a
//! benchmark first asks for one and kept for the benchmarks after it.
//!
//! In every lab the bridge knows each VM's MAC from a static FDB entry, so
//! no benchmark frame is flooded whatever the VMs sent before; with the
//! agent, vm1 has claimed the IPv4 VIP (a GARP) and owns it.

use std::fs::File;
use std::io::{Read, Seek};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench::frames;
use crate::bench::raw_xdp::{ConstantXdp, XDP_PASS};
use crate::bench::wire::{PacketSocket, SocketOptions};
use crate::lab::{Lab, VmSpec, VIP4, VIP4_ID};
use crate::netns::Netns;

/// How long the agent may take to learn a claim.
const OWNER_WAIT: Duration = Duration::from_secs(5);

/// Where the agent runs its XDP programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XdpMode {
    /// In the stack, on socket buffers (the agent's default).
    Generic,
    /// In the veth driver.
    Native,
}

impl XdpMode {
    pub const ALL: [XdpMode; 2] = [XdpMode::Generic, XdpMode::Native];

    /// As the agent's `--xdp-mode` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Generic => "generic",
            XdpMode::Native => "native",
        }
    }
}

impl std::str::FromStr for XdpMode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "generic" => Ok(XdpMode::Generic),
            "native" => Ok(XdpMode::Native),
            _ => bail!("unknown XDP mode {s:?} (generic or native)"),
        }
    }
}

/// What forwards the VMs' frames in a lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Forwarding {
    /// The agent runs: XDP on every VM port, TC on their egress.
    Havip,
    /// No agent: the Linux bridge alone.
    BridgeAlone,
    /// No agent, but an XDP program that passes every frame on every VM
    /// port: what attaching XDP costs by itself.
    EmptyXdp,
}

impl Forwarding {
    pub fn describe(self) -> &'static str {
        match self {
            Forwarding::Havip => "havip",
            Forwarding::BridgeAlone => "bridge alone",
            Forwarding::EmptyXdp => "empty XDP program",
        }
    }
}

/// An XDP program that passes every frame, attached in `mode` to each of
/// `interfaces` in `hv`: what attaching XDP costs by itself. The
/// attachments go before the program.
pub fn empty_xdp_on(
    hv: &Netns,
    interfaces: &[&str],
    mode: XdpMode,
) -> Result<(Vec<aya::programs::Xdp>, ConstantXdp)> {
    let (name, aya_mode) = match mode {
        XdpMode::Generic => ("havip_empty_gen", aya::programs::XdpMode::Skb),
        XdpMode::Native => ("havip_empty_drv", aya::programs::XdpMode::Driver),
    };
    let program = ConstantXdp::load(name, XDP_PASS)?;
    let attached = interfaces
        .iter()
        .map(|dev| program.attach_in_mode(hv, dev, aya_mode))
        .collect::<Result<Vec<_>>>()?;
    Ok((attached, program))
}

/// One lab, as the benchmarks use it.
pub struct BenchLab {
    pub mode: XdpMode,
    pub forwarding: Forwarding,
    // The empty program's attachments go before the lab's interfaces.
    _empty: Option<(Vec<aya::programs::Xdp>, ConstantXdp)>,
    pub lab: Lab,
}

impl BenchLab {
    /// Builds the lab for `mode` and, for [`Forwarding::Havip`], starts the
    /// agent in that mode and has vm1 claim the IPv4 VIP.
    fn build(mode: XdpMode, forwarding: Forwarding) -> Result<Self> {
        let mut lab = Lab::build_in_mode(mode.as_str())?;
        for vm in lab.vms() {
            bridge_knows(&lab.hv, &vm.spec)?;
        }
        if forwarding == Forwarding::Havip {
            lab.start_agent()?;
            let vm1 = PacketSocket::open(&lab.vm1.ns, "eth0", SocketOptions::default())?;
            vm1.send(&frames::garp(&lab.vm1.spec, VIP4))
                .context("vm1's GARP for the VIP")?;
            lab.agent()?
                .wait_owner(VIP4_ID, lab.vm1.spec.port_id, OWNER_WAIT)?;
        }
        let empty = match forwarding {
            Forwarding::EmptyXdp => {
                let taps: Vec<&str> = lab.vms().iter().map(|vm| vm.spec.tap).collect();
                Some(empty_xdp_on(&lab.hv, &taps, mode)?)
            }
            _ => None,
        };
        Ok(Self {
            mode,
            forwarding,
            _empty: empty,
            lab,
        })
    }

    /// Whether XDP runs on the VM ports (the agent's, or the empty one).
    pub fn runs_xdp(&self) -> bool {
        self.forwarding != Forwarding::BridgeAlone
    }

    /// See [`lab_name`].
    pub fn describe(&self) -> String {
        lab_name(self.mode, self.forwarding)
    }
}

/// How the report names the lab of `mode` and `forwarding`: "havip, generic
/// XDP", or "bridge alone, generic lab" (no XDP there, but the lab's
/// settings for that mode).
pub fn lab_name(mode: XdpMode, forwarding: Forwarding) -> String {
    match forwarding {
        Forwarding::Havip => format!("havip, {} XDP", mode.as_str()),
        Forwarding::BridgeAlone => format!("bridge alone, {} lab", mode.as_str()),
        Forwarding::EmptyXdp => format!("empty program, {} XDP", mode.as_str()),
    }
}

/// A static FDB entry for `vm`'s MAC on its port: the bridge forwards
/// frames for it without flooding, however long ago the VM last sent.
pub fn bridge_knows(hv: &Netns, vm: &VmSpec) -> Result<()> {
    crate::cmd::run(
        "bridge",
        &[
            "-netns",
            hv.name(),
            "fdb",
            "replace",
            &vm.mac_str(),
            "dev",
            vm.tap,
            "master",
            "static",
        ],
    )
    .map(drop)
}

/// The labs built so far, at most one per mode and forwarding.
#[derive(Default)]
pub struct Labs {
    built: Vec<BenchLab>,
}

impl Labs {
    /// The lab for `mode` and `forwarding`, built on first use.
    pub fn get(&mut self, mode: XdpMode, forwarding: Forwarding) -> Result<&BenchLab> {
        let at = match self.position(mode, forwarding) {
            Some(at) => at,
            None => {
                eprintln!(
                    "havip-bench: building the lab for {} ({} XDP mode)",
                    forwarding.describe(),
                    mode.as_str()
                );
                self.built.push(BenchLab::build(mode, forwarding)?);
                self.built.len() - 1
            }
        };
        Ok(&self.built[at])
    }

    /// Builds every lab of `modes` x `forwardings` now, so that they can be
    /// borrowed together.
    pub fn build_all(&mut self, modes: &[XdpMode], forwardings: &[Forwarding]) -> Result<()> {
        for &mode in modes {
            for &forwarding in forwardings {
                self.get(mode, forwarding)?;
            }
        }
        Ok(())
    }

    /// A lab [`Labs::build_all`] built.
    pub fn built(&self, mode: XdpMode, forwarding: Forwarding) -> Result<&BenchLab> {
        self.position(mode, forwarding)
            .map(|at| &self.built[at])
            .with_context(|| format!("no {forwarding:?} lab for {mode:?} was built"))
    }

    fn position(&self, mode: XdpMode, forwarding: Forwarding) -> Option<usize> {
        self.built
            .iter()
            .position(|l| l.mode == mode && l.forwarding == forwarding)
    }
}

/// The packet counters of one interface in one namespace, read from that
/// namespace's /proc/net/dev (opened inside it, so the file keeps showing
/// that namespace whichever thread reads it).
pub struct NicCounters {
    file: File,
    dev: String,
    what: String,
}

impl NicCounters {
    pub fn open(ns: &Netns, dev: &str) -> Result<Self> {
        let file = ns
            .spawn_thread("proc-net-dev", || File::open("/proc/thread-self/net/dev"))?
            .join()
            .map_err(|_| anyhow::anyhow!("opening /proc/net/dev in {}: panicked", ns.name()))??
            .with_context(|| format!("open /proc/thread-self/net/dev in {}", ns.name()))?;
        Ok(Self {
            file,
            dev: dev.to_owned(),
            what: format!("{dev} in {}", ns.name()),
        })
    }

    /// Frames the interface received so far (rx_packets).
    pub fn rx_packets(&mut self) -> Result<u64> {
        self.read(Counter::RxPackets)
    }

    /// Frames the interface dropped on transmit so far (tx_dropped): on a
    /// tap, those that found the VM's queue full.
    pub fn tx_dropped(&mut self) -> Result<u64> {
        self.read(Counter::TxDropped)
    }

    fn read(&mut self, counter: Counter) -> Result<u64> {
        self.file.rewind()?;
        let mut text = String::new();
        self.file.read_to_string(&mut text)?;
        counter
            .of(&text, &self.dev)
            .with_context(|| format!("{counter:?} of {}", self.what))
    }
}

/// A column of /proc/net/dev.
#[derive(Clone, Copy, Debug)]
enum Counter {
    RxPackets,
    TxDropped,
}

impl Counter {
    /// The counter of `dev` in a /proc/net/dev table.
    fn of(self, table: &str, dev: &str) -> Option<u64> {
        // Receive: bytes packets errs drop fifo frame compressed multicast,
        // then Transmit: bytes packets errs drop ...
        let column = match self {
            Counter::RxPackets => 1,
            Counter::TxDropped => 11,
        };
        table.lines().find_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() != dev {
                return None;
            }
            counters.split_whitespace().nth(column)?.parse().ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_the_named_device() {
        let table = "Inter-|   Receive                            |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n  \
            eth0: 6400000  100000    0    0    0     0          0         0      512       4    0 7777    0     0       0          0\n";
        assert_eq!(Counter::RxPackets.of(table, "eth0"), Some(100_000));
        assert_eq!(Counter::RxPackets.of(table, "lo"), Some(0));
        assert_eq!(Counter::RxPackets.of(table, "eth1"), None);
        assert_eq!(Counter::TxDropped.of(table, "eth0"), Some(7777));
        assert_eq!(Counter::TxDropped.of(table, "lo"), Some(0));
    }

    #[test]
    fn modes_parse_as_the_agent_spells_them() {
        for mode in XdpMode::ALL {
            assert_eq!(mode.as_str().parse::<XdpMode>().unwrap(), mode);
        }
        assert!("driver".parse::<XdpMode>().is_err());
    }
}
