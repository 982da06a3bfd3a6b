//! The lab topology on tap ports, as a QEMU/KVM hypervisor has them: a
//! hypervisor namespace with bridge br0 and one tap per VM (`tap-vm1`,
//! `tap-vm2`, `tap-client`, `tap-rogue`, the names, MACs, addresses and
//! port ids of [`crate::lab`], so the lab's agent config applies as it
//! is). There are no VM namespaces: this process holds the taps' fds and
//! is the VMs, writing their frames and reading what reaches them.
//!
//! As in the veth labs ([`crate::bench::labs`]), the bridge knows each
//! VM's MAC from a static FDB entry, and with the agent vm1 has claimed the
//! IPv4 VIP (a GARP written into its tap) and owns it. Unlike them, the
//! bridge does not call iptables (br_netfilter's bridge-nf-call-* off in
//! the hypervisor namespace, where the kernel has br_netfilter at all): a
//! plain Linux bridge, as a hypervisor without a bridge firewall has it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::agent::{Agent, AgentOptions};
use crate::bench::frames;
use crate::bench::labs::{bridge_knows, empty_xdp_on, Forwarding, XdpMode};
use crate::bench::raw_xdp::ConstantXdp;
use crate::bench::tap::{Tap, VnetHdr};
use crate::lab::{self, DirGuard, VmSpec, CLIENT, ROGUE, VIP4, VIP4_ID, VM1, VM2};
use crate::netns::Netns;

/// How long the agent may take to learn a claim.
const OWNER_WAIT: Duration = Duration::from_secs(5);

/// A VM of the tap lab: its spec and the fd of its tap.
pub struct TapVm {
    pub spec: VmSpec,
    pub tap: Tap,
}

/// One tap lab, for one XDP mode and forwarding; removes everything on
/// drop.
pub struct TapLab {
    pub mode: XdpMode,
    pub forwarding: Forwarding,
    agent: Option<Agent>,
    // Fields drop in this order after `Drop::drop` stopped the agent: the
    // empty program's attachments, the taps (their fds close and the
    // devices go), the hypervisor namespace, the temp dir.
    _empty: Option<(Vec<aya::programs::Xdp>, ConstantXdp)>,
    pub vm1: TapVm,
    pub vm2: TapVm,
    pub client: TapVm,
    pub rogue: TapVm,
    pub hv: Netns,
    _dir_guard: DirGuard,
}

impl TapLab {
    /// Builds the topology on taps and, for [`Forwarding::Havip`], starts
    /// the agent in `mode` and has vm1 claim the IPv4 VIP; for
    /// [`Forwarding::EmptyXdp`], attaches an XDP program that passes every
    /// frame to every tap in `mode`. [`Forwarding::BridgeAlone`] runs no
    /// XDP: its lab is the same in every mode.
    pub fn build(mode: XdpMode, forwarding: Forwarding) -> Result<Self> {
        Self::build_with(mode, forwarding, false, mode.as_str())
    }

    /// The lab with the taps QEMU opens for virtio-net VMs that offload
    /// checksums and TCP segmentation ([`Tap::create_offloading`]); for
    /// [`Forwarding::Havip`] the agent runs in XDP mode `agent_mode`
    /// (`auto`, its default, is native on taps).
    pub fn offloading(forwarding: Forwarding, agent_mode: &str) -> Result<Self> {
        let mode = match agent_mode {
            "generic" => XdpMode::Generic,
            _ => XdpMode::Native,
        };
        Self::build_with(mode, forwarding, true, agent_mode)
    }

    fn build_with(
        mode: XdpMode,
        forwarding: Forwarding,
        offloading: bool,
        agent_mode: &str,
    ) -> Result<Self> {
        crate::cmd::require_lab_prerequisites()?;
        let lab::Hypervisor {
            stem,
            dir,
            dir_guard,
            hv,
        } = lab::Hypervisor::new("hv")?;
        set_bridge_netfilter(&hv, false)?;
        let vm = |spec: VmSpec| -> Result<TapVm> {
            let tap = if offloading {
                Tap::create_offloading(&hv, spec.tap)?
            } else {
                Tap::create(&hv, spec.tap)?
            };
            hv.ip(&["link", "set", spec.tap, "master", "br0"])?;
            hv.ip(&["link", "set", spec.tap, "up"])?;
            bridge_knows(&hv, &spec)?;
            Ok(TapVm { spec, tap })
        };
        let (vm1, vm2, client, rogue) = (vm(VM1)?, vm(VM2)?, vm(CLIENT)?, vm(ROGUE)?);
        let mut lab = Self {
            mode,
            forwarding,
            agent: None,
            _empty: None,
            vm1,
            vm2,
            client,
            rogue,
            hv,
            _dir_guard: dir_guard,
        };
        match forwarding {
            Forwarding::Havip => lab.start_agent(&dir, &stem, agent_mode)?,
            Forwarding::EmptyXdp => {
                let taps: Vec<&str> = lab.vms().iter().map(|vm| vm.spec.tap).collect();
                lab._empty = Some(empty_xdp_on(&lab.hv, &taps, mode)?);
            }
            Forwarding::BridgeAlone => {}
        }
        Ok(lab)
    }

    /// The running agent, in a havip lab.
    pub fn agent(&self) -> Option<&Agent> {
        self.agent.as_ref()
    }

    pub fn vms(&self) -> [&TapVm; 4] {
        [&self.vm1, &self.vm2, &self.client, &self.rogue]
    }

    /// Starts the agent on the lab's config with the taps as the ports'
    /// interfaces, and has vm1 claim the IPv4 VIP.
    fn start_agent(&mut self, dir: &std::path::Path, stem: &str, mode: &str) -> Result<()> {
        let config: PathBuf = dir.join("havip-agent.toml");
        std::fs::write(&config, lab::agent_config(&format!("tap lab {stem}")))?;
        let taps: Vec<&str> = self.vms().iter().map(|v| v.spec.tap).collect();
        let agent =
            Agent::start_in_mode(&self.hv, &config, dir, &taps, AgentOptions::default(), mode)?;
        let agent = self.agent.insert(agent);
        let garp = frames::garp(&self.vm1.spec, VIP4);
        if self.vm1.tap.is_offloading() {
            self.vm1.tap.write_offloaded(VnetHdr::default(), &garp)
        } else {
            self.vm1.tap.write(&garp)
        }
        .context("vm1's GARP for the VIP")?;
        agent.wait_owner(VIP4_ID, self.vm1.spec.port_id, OWNER_WAIT)?;
        Ok(())
    }

    /// Reads and discards whatever is queued for every VM.
    pub fn drain_all(&self) -> Result<()> {
        for vm in self.vms() {
            vm.tap
                .drain()
                .with_context(|| format!("drain {}", vm.tap.name()))?;
        }
        Ok(())
    }

    /// How the report names this lab: "havip, native XDP (tap)", or
    /// "bridge alone (tap)".
    pub fn describe(&self) -> String {
        tap_lab_name(self.mode, self.forwarding)
    }
}

/// See [`TapLab::describe`].
pub fn tap_lab_name(mode: XdpMode, forwarding: Forwarding) -> String {
    match forwarding {
        Forwarding::Havip => format!("havip (tap, {} XDP)", mode.as_str()),
        Forwarding::BridgeAlone => "bridge alone (tap)".into(),
        Forwarding::EmptyXdp => format!("empty program (tap, {} XDP)", mode.as_str()),
    }
}

/// Whether the bridges of `hv` pass frames through iptables, arptables
/// and ip6tables (br_netfilter's per-namespace bridge-nf-call-*); returns
/// false, doing nothing, where the kernel has no br_netfilter.
pub fn set_bridge_netfilter(hv: &Netns, on: bool) -> Result<bool> {
    if hv
        .exec("sysctl", &["-n", "net.bridge.bridge-nf-call-iptables"])
        .is_err()
    {
        return Ok(false);
    }
    for table in ["iptables", "ip6tables", "arptables"] {
        hv.sysctl(
            &format!("net.bridge.bridge-nf-call-{table}"),
            if on { "1" } else { "0" },
        )?;
    }
    Ok(true)
}

impl Drop for TapLab {
    fn drop(&mut self) {
        // The agent first, while its interfaces exist: it detaches XDP and
        // removes its pins; then the fields drop.
        if let Some(a) = self.agent.take() {
            if let Err(e) = a.stop() {
                eprintln!("havip-bench: stopping the agent: {e:#}");
            }
        }
    }
}
