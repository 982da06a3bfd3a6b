//! How fast the VIP follows a claim: the backup VM claims the VIP (a GARP
//! on its port) and a client with a stale ARP cache sends to the old
//! owner's MAC at once; the time until that frame arrives at the new owner.
//!
//! One thread holds AF_PACKET sockets opened inside vm1, vm2 and the client.
//! Each switch: note CLOCK_REALTIME (t0), send the GARP from the new owner's
//! socket, send one UDP frame to the VIP from the client's socket with the
//! old owner's MAC as destination, and wait for it on the new owner's
//! socket; the kernel's receive timestamp (SO_TIMESTAMPNS, also
//! CLOCK_REALTIME) is t1. The old owner's socket is watched too: a frame
//! that reaches it is a switch the datapath missed. Switches alternate
//! between vm1 and vm2, and between the XDP modes. Damping is on (the
//! VIP's default hold-down): before each switch the owner record is aged
//! by a hold-down, as a real failover finds it after the old master's
//! silence, so each switch is a failover and never a deferred claim.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};

use crate::bench::chart::Chart;
use crate::bench::labs::{BenchLab, Forwarding};
use crate::bench::owners::OwnerRecord;
use crate::bench::wire::{realtime_ns, PacketSocket, SocketOptions};
use crate::bench::{frames, Context, Figure, Section, Target, Unit};
use crate::lab::{Vm, VmSpec, CLIENT, VIP4, VIP4_ID};

/// p99 of the switch latency: below this many microseconds.
const P99_TARGET_US: f64 = 1000.0;
/// How long a switch may take before its frame counts as lost.
const GIVE_UP: Duration = Duration::from_millis(100);
/// Quiet time between two switches.
const PAUSE: Duration = Duration::from_millis(2);
const ETH_P_IP: u16 = 0x0800;
/// Marks the benchmark's frames (and their switch number follows).
const MAGIC: &[u8; 8] = b"havip-sw";

/// The switch latencies of one lab.
#[derive(Default)]
struct Latencies {
    /// Kernel receive timestamp - t0, µs.
    kernel_us: Vec<f64>,
    /// The receiving thread's clock after recv - t0, µs.
    user_us: Vec<f64>,
    /// Switches whose frame went to the old owner.
    to_old_owner: usize,
    /// Switches whose frame arrived nowhere within [`GIVE_UP`].
    lost: usize,
}

/// One agent lab with the sockets of a switch.
struct Switcher<'a> {
    bench_lab: &'a BenchLab,
    vm1: PacketSocket,
    vm2: PacketSocket,
    client: PacketSocket,
    /// vm1 owns the VIP now (else vm2).
    vm1_owns: bool,
    /// The VIP's owner record, aged before each switch.
    record: OwnerRecord,
    owner_changes_before: u64,
    latencies: Latencies,
}

impl<'a> Switcher<'a> {
    fn new(bench_lab: &'a BenchLab) -> Result<Self> {
        let lab = &bench_lab.lab;
        let receiver = SocketOptions {
            receive: Some(ETH_P_IP),
            timestamps: true,
            ..SocketOptions::default()
        };
        let status = lab.agent()?.status()?;
        let owner = status
            .owner(VIP4_ID)?
            .context("the VIP has no owner before the switches")?
            .port_id;
        ensure!(
            owner == lab.vm1.spec.port_id || owner == lab.vm2.spec.port_id,
            "port {owner} owns the VIP, neither vm1 nor vm2"
        );
        Ok(Self {
            bench_lab,
            vm1: PacketSocket::open(&lab.vm1.ns, "eth0", receiver)?,
            vm2: PacketSocket::open(&lab.vm2.ns, "eth0", receiver)?,
            client: PacketSocket::open(&lab.client.ns, "eth0", SocketOptions::default())?,
            vm1_owns: owner == lab.vm1.spec.port_id,
            record: OwnerRecord::open(&lab.agent()?.pin_dir, VIP4_ID)?,
            owner_changes_before: status.vip(VIP4_ID)?.counters.owner_changes,
            latencies: Latencies::default(),
        })
    }

    /// The backup claims the VIP; a stale client sends to the old owner.
    fn switch(&mut self, number: u64) -> Result<()> {
        let lab = &self.bench_lab.lab;
        let (new, old, new_vm, old_vm): (&PacketSocket, &PacketSocket, &Vm, &Vm) = if self.vm1_owns
        {
            (&self.vm2, &self.vm1, &lab.vm2, &lab.vm1)
        } else {
            (&self.vm1, &self.vm2, &lab.vm1, &lab.vm2)
        };
        new.drain()?;
        old.drain()?;
        self.record.quiet()?;
        let claim = frames::garp(&new_vm.spec, VIP4);
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&number.to_be_bytes());
        let stale = frames::udp4(&CLIENT, old_vm.spec.mac, VIP4, &payload);

        let t0 = realtime_ns();
        new.send(&claim).context("the new owner's GARP")?;
        self.client
            .send(&stale)
            .context("the client's frame to the VIP")?;
        let arrival = wait_for(new, old, number, &payload, GIVE_UP)?;
        self.vm1_owns = !self.vm1_owns;
        match arrival {
            Arrival::NewOwner { kernel_ns, user_ns } => {
                let kernel_ns = kernel_ns.with_context(|| {
                    format!("no kernel timestamp on the frame at {}", new_vm.role())
                })?;
                self.latencies
                    .kernel_us
                    .push((kernel_ns - t0) as f64 / 1000.0);
                self.latencies.user_us.push((user_ns - t0) as f64 / 1000.0);
            }
            Arrival::OldOwner => self.latencies.to_old_owner += 1,
            Arrival::Nowhere => self.latencies.lost += 1,
        }
        Ok(())
    }

    /// The agent saw every switch: the owner is the last claimant and the
    /// VIP changed owner once per switch.
    fn check(&self, switches: usize) -> Result<()> {
        let lab = &self.bench_lab.lab;
        let status = lab.agent()?.status()?;
        let want: &VmSpec = if self.vm1_owns {
            &lab.vm1.spec
        } else {
            &lab.vm2.spec
        };
        let owner = status.owner(VIP4_ID)?.map(|o| o.port_id);
        ensure!(
            owner == Some(want.port_id),
            "after the switches port {owner:?} owns the VIP, not {} (port {})",
            want.role,
            want.port_id
        );
        let changes = status.vip(VIP4_ID)?.counters.owner_changes - self.owner_changes_before;
        ensure!(
            changes == switches as u64,
            "the datapath counted {changes} owner changes for {switches} switches"
        );
        Ok(())
    }
}

/// Where the client's frame went.
enum Arrival {
    NewOwner {
        kernel_ns: Option<i64>,
        user_ns: i64,
    },
    OldOwner,
    Nowhere,
}

/// Waits for the frame carrying `payload` on `new` (or `old`).
fn wait_for(
    new: &PacketSocket,
    old: &PacketSocket,
    number: u64,
    payload: &[u8],
    give_up: Duration,
) -> Result<Arrival> {
    let deadline = std::time::Instant::now() + give_up;
    let mut buf = [0u8; 2048];
    let is_ours =
        |frame: &[u8]| frames::udp4_payload(frame).is_some_and(|p| p.starts_with(payload));
    while std::time::Instant::now() < deadline {
        if let Some(r) = new.recv(&mut buf, Duration::from_millis(1))? {
            if !r.outgoing && is_ours(&buf[..r.len]) {
                return Ok(Arrival::NewOwner {
                    kernel_ns: r.kernel_ns,
                    user_ns: r.user_ns,
                });
            }
        }
        while let Some(r) = old.recv(&mut buf, Duration::ZERO)? {
            if !r.outgoing && is_ours(&buf[..r.len]) {
                return Ok(Arrival::OldOwner);
            }
        }
    }
    eprintln!("havip-bench: switch {number}: the frame arrived nowhere in {give_up:?}");
    Ok(Arrival::Nowhere)
}

pub fn run(ctx: &mut Context) -> Result<Section> {
    let opts = ctx.options.clone();
    ctx.labs.build_all(&opts.xdp_modes, &[Forwarding::Havip])?;
    let mut switchers = Vec::new();
    for &mode in &opts.xdp_modes {
        switchers.push(Switcher::new(ctx.labs.built(mode, Forwarding::Havip)?)?);
    }
    eprintln!(
        "havip-bench: switch latency: {} switches in each of {} lab(s)",
        opts.switches,
        switchers.len()
    );
    for number in 0..opts.switches as u64 {
        for s in &mut switchers {
            s.switch(number)
                .with_context(|| format!("switch {number} in {}", s.bench_lab.describe()))?;
            std::thread::sleep(PAUSE);
        }
    }
    for s in &switchers {
        s.check(opts.switches)
            .with_context(|| s.bench_lab.describe())?;
    }
    if switchers.is_empty() {
        bail!("no XDP mode to measure the switch in");
    }

    let mut figures = Vec::new();
    let mut series = Vec::new();
    for s in &switchers {
        let m = s.bench_lab.mode.as_str();
        let l = &s.latencies;
        figures.push(Figure::percentile(
            format!("switch latency p50 ({m} XDP)"),
            Unit::Microseconds,
            &l.kernel_us,
            50.0,
        ));
        figures.push(
            Figure::percentile(
                format!("switch latency p99 ({m} XDP)"),
                Unit::Microseconds,
                &l.kernel_us,
                99.0,
            )
            .with_target(Target::Below(P99_TARGET_US)),
        );
        let missed = (l.to_old_owner + l.lost) as f64;
        figures.push(Figure {
            name: format!("switches whose frame missed the new owner ({m} XDP)"),
            value: missed,
            spread: (missed, missed),
            samples: opts.switches,
            unit: Unit::Count,
            target: Some(Target::AtMost(0.0)),
        });
        figures.push(Figure::percentile(
            format!("switch latency p99 as the receiving thread saw it ({m} XDP)"),
            Unit::Microseconds,
            &l.user_us,
            99.0,
        ));
        series.push((format!("{m} XDP"), l.kernel_us.clone()));
    }
    let missed_detail: Vec<String> = switchers
        .iter()
        .map(|s| {
            format!(
                "{}: {} to the old owner, {} lost",
                s.bench_lab.mode.as_str(),
                s.latencies.to_old_owner,
                s.latencies.lost
            )
        })
        .collect();

    Ok(Section {
        title: "Switch latency: claim to the first frame at the new owner".into(),
        method: vec![
            format!(
                "In the labs with the agent (one per XDP mode), one thread holds AF_PACKET \
                 sockets opened inside vm1, vm2 and the client. Each switch: t0 = \
                 CLOCK_REALTIME; the backup sends a GARP for {VIP4} from its eth0; the \
                 client at once sends one 64-byte UDP frame to {VIP4} with the old owner's \
                 MAC as destination (a stale ARP cache); t1 = the kernel's receive timestamp \
                 (SO_TIMESTAMPNS) of that frame on the new owner's eth0. Latency = t1 - t0. \
                 A frame that reaches the old owner, or nobody within {} ms, is a missed \
                 switch ({}).",
                GIVE_UP.as_millis(),
                missed_detail.join("; ")
            ),
            format!(
                "{} switches per mode, alternating vm1 and vm2 as the new owner, the modes \
                 interleaved, {} ms apart. Damping is on, with the VIP's default hold-down: \
                 before each switch the owner record is aged by the hold-down (as a real \
                 failover finds it, after the master's silence), so no switch is deferred. \
                 Afterwards the agent's status must show the last \
                 claimant as owner and one owner change per switch. Figures: percentiles by \
                 nearest rank over the switches that arrived; spread: fastest and slowest.",
                opts.switches,
                PAUSE.as_millis()
            ),
        ],
        figures,
        charts: vec![Chart::Distribution {
            title: "Switch latency: claim -> first frame at the new owner (cumulative)".into(),
            axis: "latency (kernel receive timestamp - just before the GARP)".into(),
            unit: Unit::Microseconds,
            series,
            limit: Some(P99_TARGET_US),
        }],
    })
}
