//! The lab topology: one hypervisor and four VMs, each a network namespace.
//!
//! ```text
//!   hypervisor netns (havip-{pid}-{n}-hv)
//!   ┌──────────────────────── br0 ────────────────────────┐
//!   tap-vm1        tap-vm2        tap-client      tap-rogue     <- XDP (agent)
//!     │              │                │               │
//!   vm1 eth0       vm2 eth0       client eth0     rogue eth0
//!   port 11        port 12        port 13         port 14
//!   10.0.6.9       10.0.6.10      10.0.6.20       10.0.6.66
//!   keepalived     keepalived     prober          attacker
//!   MASTER 110     BACKUP 100
//! ```
//!
//! VIPs 10.0.6.19 (vip 1) and fd00:6::19 (vip 2) are bound to ports 11 and
//! 12 only. Every VM has a fixed MAC `02:00:00:00:00:{port}` and an EUI-64
//! link-local, matching the agent config the lab writes, so port security
//! lets the legitimate traffic through.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::agent::{Agent, AgentOptions};
use crate::cleanup::{self, Resource, Token};
use crate::netns::{self, Netns};

/// The network id of the lab's one subnet.
pub const NETWORK_ID: u32 = 1;
pub const CIDR4: &str = "10.0.6.0/24";
pub const CIDR6: &str = "fd00:6::/64";
/// The HAVIP, as in the HA guide.
pub const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 6, 19);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 6, 0, 0, 0, 0, 0, 0x19);
pub const VIP4_ID: u32 = 1;
pub const VIP6_ID: u32 = 2;
/// UDP port of the echo servers the client probes.
pub const ECHO_PORT: u16 = 7777;

/// One VM of the lab, as configured (the namespace is in [`Vm`]).
#[derive(Clone, Copy, Debug)]
pub struct VmSpec {
    /// Short role name, also the namespace suffix and the echo server's reply.
    pub role: &'static str,
    /// Hypervisor-side veth name (inside the hypervisor namespace).
    pub tap: &'static str,
    pub port_id: u32,
    pub mac: [u8; 6],
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

impl VmSpec {
    const fn new(role: &'static str, tap: &'static str, port_id: u32, last: u8) -> Self {
        Self {
            role,
            tap,
            port_id,
            mac: [0x02, 0, 0, 0, 0, decimal_digits_as_hex(port_id as u8)],
            ipv4: Ipv4Addr::new(10, 0, 6, last),
            ipv6: Ipv6Addr::new(0xfd00, 6, 0, 0, 0, 0, 0, decimal_digits_as_hex(last) as u16),
        }
    }

    pub fn mac_str(&self) -> String {
        mac_string(&self.mac)
    }

    /// The EUI-64 link-local the kernel derives from the MAC.
    pub fn link_local(&self) -> Ipv6Addr {
        eui64_link_local(&self.mac)
    }
}

/// 11 -> 0x11: port 11 gets MAC 02:00:00:00:00:11, 10.0.6.10 gets
/// fd00:6::10, so the numbers read the same everywhere.
const fn decimal_digits_as_hex(n: u8) -> u8 {
    (n / 10) * 16 + n % 10
}

/// The keepalived master of the HA guide (10.0.6.9).
pub const VM1: VmSpec = VmSpec::new("vm1", "tap-vm1", 11, 9);
/// The keepalived backup (10.0.6.10).
pub const VM2: VmSpec = VmSpec::new("vm2", "tap-vm2", 12, 10);
/// Sends traffic to the VIP.
pub const CLIENT: VmSpec = VmSpec::new("client", "tap-client", 13, 20);
/// Not bound to the VIP; tries to claim it.
pub const ROGUE: VmSpec = VmSpec::new("rogue", "tap-rogue", 14, 66);

pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// fe80::/64 + EUI-64 of `mac` (U/L bit flipped, ff:fe in the middle).
pub fn eui64_link_local(mac: &[u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// The agent config for the lab topology (ports 11-14, VIPs bound to 11
/// and 12), with `comment` in its header line.
pub fn agent_config(comment: &str) -> String {
    agent_config_binding(comment, &[VM1.port_id, VM2.port_id])
}

/// [`agent_config`] with both VIPs bound to `vip_ports`.
pub fn agent_config_binding(comment: &str, vip_ports: &[u32]) -> String {
    agent_config_of(comment, &[VM1, VM2, CLIENT, ROGUE], vip_ports)
}

/// The agent config for the lab's network with only the ports of `vms`,
/// both VIPs bound to `vip_ports`.
pub fn agent_config_of(comment: &str, vms: &[VmSpec], vip_ports: &[u32]) -> String {
    let bound = vip_ports
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut c = String::new();
    let _ = writeln!(c, "# Written by havip-tests for {comment}\n");
    let _ = writeln!(
        c,
        "[limits]\nmax_ports_per_vip = 3\nmax_vips_per_port = 5\n"
    );
    let _ = writeln!(
        c,
        "[[networks]]\nid = {NETWORK_ID}\nname = \"subnet-a\"\ncidrs = [\"{CIDR4}\", \"{CIDR6}\"]\n"
    );
    for s in vms {
        let _ = writeln!(
            c,
            "[[ports]]\nid = {}\nname = \"{}\"\ninterface = \"{}\"\nnetwork = {NETWORK_ID}\nmac = \"{}\"\nips = [\"{}\", \"{}\"]\nport_security = true\nlink_local = \"{}\"\n",
            s.port_id,
            s.role,
            s.tap,
            s.mac_str(),
            s.ipv4,
            s.ipv6,
            s.link_local()
        );
    }
    // VIP4 names keepalived's VRID: its ports may use that virtual MAC
    // only; VIP6 names none (any IPv6 virtual MAC).
    let vrid4 = format!("vrid = {}\n", crate::keepalived::VIRTUAL_ROUTER_ID);
    for (id, name, addr, vrid) in [
        (VIP4_ID, "web-v4", IpAddr::V4(VIP4), vrid4.as_str()),
        (VIP6_ID, "web-v6", IpAddr::V6(VIP6), ""),
    ] {
        let _ = writeln!(
            c,
            "[[vips]]\nid = {id}\nname = \"{name}\"\nnetwork = {NETWORK_ID}\naddress = \"{addr}\"\nports = [{bound}]\n{vrid}"
        );
    }
    c
}

/// A NIC offload the lab switches (ethtool's get/set command pairs).
#[derive(Debug, Clone, Copy)]
pub enum Offload {
    /// Generic receive offload: on a veth, also turns on the NAPI path that
    /// XDP_REDIRECT into it needs.
    Gro,
}

impl Offload {
    /// (ETHTOOL_G*, ETHTOOL_S*) from linux/ethtool.h.
    fn commands(self) -> (u32, u32) {
        match self {
            Offload::Gro => (0x2b, 0x2c),
        }
    }
}

/// Turns `offload` on or off for `dev` in `ns` (SIOCETHTOOL; no ethtool
/// binary needed), and checks it took.
pub fn set_offload(ns: &Netns, dev: &str, offload: Offload, on: bool) -> Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    fn ethtool(fd: libc::c_int, dev: &str, v: &mut EthtoolValue) -> std::io::Result<()> {
        // SAFETY: ifreq is plain data; zeroed is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, b) in ifr.ifr_name.iter_mut().zip(dev.bytes()) {
            *d = b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (v as *mut EthtoolValue).cast();
        // SAFETY: valid fd, ifreq pointing at a live ethtool_value.
        if unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut ifr) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    let (get_cmd, set_cmd) = offload.commands();
    let dev = dev.to_owned();
    let what = format!(
        "{offload:?} {} on {dev} in {}",
        if on { "on" } else { "off" },
        ns.name()
    );
    let handle = ns.spawn_thread("ethtool", move || -> std::io::Result<bool> {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0")
            .or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        ethtool(
            fd,
            &dev,
            &mut EthtoolValue {
                cmd: set_cmd,
                data: on as u32,
            },
        )?;
        let mut get = EthtoolValue {
            cmd: get_cmd,
            data: 0,
        };
        ethtool(fd, &dev, &mut get)?;
        Ok((get.data != 0) == on)
    })?;
    let took = handle
        .join()
        .map_err(|_| anyhow::anyhow!("{what}: thread panicked"))??
        .with_context(|| what.clone())?;
    anyhow::ensure!(took, "{what}: the setting did not take");
    Ok(())
}

/// The XDP mode the tests run the agent in: `HAVIP_XDP_MODE`, or
/// `generic`, what the agent's default (`auto`) picks for the lab's veths.
pub fn xdp_mode() -> String {
    std::env::var("HAVIP_XDP_MODE").unwrap_or_else(|_| "generic".into())
}

/// Creates bridge `name` in `ns` (no STP, no multicast snooping: frames
/// are forwarded at once) and sets it up.
pub fn add_bridge(ns: &Netns, name: &str) -> Result<()> {
    ns.ip(&[
        "link",
        "add",
        name,
        "type",
        "bridge",
        "stp_state",
        "0",
        "mcast_snooping",
        "0",
    ])?;
    ns.ip(&["link", "set", name, "up"])?;
    Ok(())
}

/// A VM port with no bridge: the veth `tap` in `hv` and `eth0` in `vm`,
/// with `mac` and the `addrs` (`10.0.6.9/24`) on `eth0`, both up.
pub fn add_port_of(hv: &Netns, tap: &str, vm: &Netns, mac: &str, addrs: &[String]) -> Result<()> {
    let peer = ["peer", "name", "eth0", "netns", vm.name()];
    hv.ip(&[&["link", "add", tap, "type", "veth"][..], &peer].concat())?;
    hv.ip(&["link", "set", tap, "up"])?;
    vm.ip(&["link", "set", "eth0", "address", mac])?;
    for addr in addrs {
        vm.ip(&["addr", "add", addr, "dev", "eth0"])?;
    }
    vm.ip(&["link", "set", "eth0", "up"])?;
    Ok(())
}

/// Creates the VM `spec` (its namespace, and a veth pair: `spec.tap` on the
/// hypervisor `hv`, in its bridge `br0`, and `eth0` in the VM with the
/// spec's MAC and addresses).
pub fn add_vm(hv: &Netns, stem: &str, spec: VmSpec) -> Result<Vm> {
    let ns = Netns::new(&format!("{stem}-{}", spec.role))?;
    // Addresses usable at once; EUI-64 link-local from the fixed MAC.
    for scope in ["default", "all"] {
        ns.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{scope}.addr_gen_mode"), "0")?;
    }
    hv.ip(&[
        "link",
        "add",
        spec.tap,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ])?;
    ns.ip(&["link", "set", "eth0", "address", &spec.mac_str()])?;
    ns.ip(&["addr", "add", &format!("{}/24", spec.ipv4), "dev", "eth0"])?;
    ns.ip(&[
        "addr",
        "add",
        &format!("{}/64", spec.ipv6),
        "dev",
        "eth0",
        "nodad",
    ])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    // A VM's NIC accepts frames the datapath redirects to it
    // (XDP_REDIRECT into a veth needs NAPI on the receiving end: an
    // XDP program or GRO). A tap would not need it.
    set_offload(&ns, "eth0", Offload::Gro, true)?;
    // The VM keeps its checksum and segmentation offloads in either XDP
    // mode: in native mode the datapath completes the checksums of the
    // frames it redirects (see the agent's --xdp-mode).
    hv.ip(&["link", "set", spec.tap, "master", "br0"])?;
    hv.ip(&["link", "set", spec.tap, "up"])?;
    Ok(Vm { spec, ns })
}

/// How a guest makes its IPv6 link-local, other than from its MAC.
#[derive(Clone, Copy, Debug)]
pub enum LinkLocalMode {
    /// Stable privacy (RFC 7217; `addr_gen_mode` 2 with a `stable_secret`):
    /// NetworkManager's default on RHEL and Fedora.
    StablePrivacy { secret: Ipv6Addr },
    /// A random interface id (`addr_gen_mode` 3), as Windows guests have.
    Random,
}

/// A VM: its namespace and its spec. Its NIC is `eth0`.
pub struct Vm {
    pub spec: VmSpec,
    pub ns: Netns,
}

impl Vm {
    pub fn role(&self) -> &'static str {
        self.spec.role
    }

    /// Whether `addr` is configured on one of the VM's interfaces: eth0, or
    /// the macvlan keepalived's `use_vmac` puts on it (keepalived holds the
    /// VIP).
    pub fn has_address(&self, addr: IpAddr) -> Result<bool> {
        let out = self.ns.ip(&["-br", "addr", "show"])?;
        let want = addr.to_string();
        Ok(out
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(want.as_str())))
    }

    /// Makes eth0 take a link-local as `mode` says, the way such a guest
    /// boots: the sysctls set, eth0 brought down and up (which makes the
    /// link-local afresh), its IPv6 address added again. Returns the new
    /// link-local: not the EUI-64 of the MAC that the port has in the
    /// agent's config.
    pub fn use_link_local(&self, mode: LinkLocalMode) -> Result<Ipv6Addr> {
        let conf = "net.ipv6.conf.eth0";
        let gen_mode = match mode {
            LinkLocalMode::StablePrivacy { secret } => {
                self.ns
                    .sysctl(&format!("{conf}.stable_secret"), &secret.to_string())?;
                "2"
            }
            LinkLocalMode::Random => "3",
        };
        self.ns.sysctl(&format!("{conf}.addr_gen_mode"), gen_mode)?;
        self.ns.ip(&["link", "set", "eth0", "down"])?;
        self.ns.ip(&["link", "set", "eth0", "up"])?;
        let ipv6 = format!("{}/64", self.spec.ipv6);
        self.ns
            .ip(&["addr", "replace", &ipv6, "dev", "eth0", "nodad"])?;
        let mut found = None;
        crate::wait::until(
            Duration::from_secs(5),
            &format!("{} to make a {mode:?} link-local", self.role()),
            || {
                found = self.link_locals()?.into_iter().next();
                Ok(found.is_some())
            },
        )?;
        let ll = found.expect("set when the wait succeeded");
        anyhow::ensure!(
            ll != self.spec.link_local(),
            "{}: {mode:?} made the EUI-64 link-local {ll}",
            self.role()
        );
        Ok(ll)
    }

    /// The link-locals on eth0.
    pub fn link_locals(&self) -> Result<Vec<Ipv6Addr>> {
        let out = self
            .ns
            .ip(&["-6", "-br", "addr", "show", "dev", "eth0", "scope", "link"])?;
        Ok(out
            .split_whitespace()
            .filter_map(|w| w.split('/').next()?.parse().ok())
            .collect())
    }

    /// The VM "crashes": its NIC goes down, so it neither sends nor answers.
    pub fn pull_the_plug(&self) -> Result<()> {
        self.ns.ip(&["link", "set", "eth0", "down"]).map(drop)
    }
}

/// The whole lab; removes everything on drop.
pub struct Lab {
    /// Name stem, `havip-{pid}-{n}`.
    pub stem: String,
    /// The XDP mode the agent runs in here (`generic` or `native`).
    pub xdp_mode: String,
    agent: Option<Agent>,
    // Fields drop in this order after `Drop::drop`: the VMs, then the
    // hypervisor (its namespace takes the bridge and the veths with it),
    // then the temp dir.
    pub vm1: Vm,
    pub vm2: Vm,
    pub client: Vm,
    pub rogue: Vm,
    pub hv: Netns,
    /// Temp dir for configs, pid files, logs.
    pub dir: PathBuf,
    _dir_guard: DirGuard,
}

/// What every lab starts with: a unique name stem, a temp dir (removed
/// when its guard drops) and the hypervisor's namespace with the bridge
/// `br0`, quiet on the VM network (no IPv6 on its side).
pub struct Hypervisor {
    pub stem: String,
    pub dir: PathBuf,
    pub dir_guard: DirGuard,
    pub hv: Netns,
}

impl Hypervisor {
    /// The namespace is `{stem}-{suffix}`.
    pub fn new(suffix: &str) -> Result<Self> {
        let stem = netns::unique_stem();
        let dir = std::env::temp_dir().join(&stem);
        let dir_guard = DirGuard::create(&dir)?;
        let hv = Netns::new(&format!("{stem}-{suffix}"))?;
        hv.disable_ipv6()?;
        add_bridge(&hv, "br0")?;
        Ok(Self {
            stem,
            dir,
            dir_guard,
            hv,
        })
    }
}

/// Removes a temp dir (registered for cleanup) when dropped.
pub struct DirGuard(Option<Token>);

impl DirGuard {
    /// Creates `dir` and registers it for cleanup.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(Some(cleanup::register(Resource::Dir(dir.to_owned())))))
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            cleanup::release(t);
        }
    }
}

impl Lab {
    /// Builds the topology (no agent yet: a plain bridge), for the XDP mode
    /// of [`xdp_mode`].
    pub fn build() -> Result<Self> {
        Self::build_in_mode(&xdp_mode())
    }

    /// [`Lab::build`] for the agent in the given XDP mode (`generic` or
    /// `native`), whatever `HAVIP_XDP_MODE` says.
    pub fn build_in_mode(mode: &str) -> Result<Self> {
        crate::cmd::require_lab_prerequisites()?;
        let Hypervisor {
            stem,
            dir,
            dir_guard,
            hv,
        } = Hypervisor::new("hv")?;

        let vm = |spec: VmSpec| add_vm(&hv, &stem, spec);
        let vm1 = vm(VM1)?;
        let vm2 = vm(VM2)?;
        let client = vm(CLIENT)?;
        let rogue = vm(ROGUE)?;
        let lab = Self {
            stem,
            xdp_mode: mode.to_owned(),
            agent: None,
            vm1,
            vm2,
            client,
            rogue,
            hv,
            dir,
            _dir_guard: dir_guard,
        };
        lab.wait_link_locals()?;
        Ok(lab)
    }

    pub fn vms(&self) -> [&Vm; 4] {
        [&self.vm1, &self.vm2, &self.client, &self.rogue]
    }

    /// Waits until every VM has its EUI-64 link-local (so it matches the
    /// config), failing if the kernel made a different one.
    fn wait_link_locals(&self) -> Result<()> {
        for vm in self.vms() {
            let want = vm.spec.link_local();
            crate::wait::until(
                Duration::from_secs(5),
                &format!("{} link-local {want}", vm.role()),
                || vm.has_address(IpAddr::V6(want)),
            )?;
        }
        Ok(())
    }

    /// The agent config for this topology.
    pub fn agent_config(&self) -> String {
        agent_config(&format!("lab {}", self.stem))
    }

    /// Edits the running agent's config so that both VIPs are bound to
    /// `vip_ports` only (an operator binding or unbinding ports); the agent
    /// reloads it on its own.
    pub fn bind_vips(&self, vip_ports: &[u32]) -> Result<()> {
        self.agent()?.edit_config(&agent_config_binding(
            &format!("lab {}, VIPs bound to {vip_ports:?}", self.stem),
            vip_ports,
        ))
    }

    /// Writes the config and starts the agent in the hypervisor namespace;
    /// returns once XDP is attached to every VM port.
    pub fn start_agent(&mut self) -> Result<&Agent> {
        self.start_agent_with(AgentOptions::default())
    }

    /// [`Lab::start_agent`] with options (e.g. without `--unpin-on-exit`,
    /// so that the programs stay attached when it exits).
    pub fn start_agent_with(&mut self, opts: AgentOptions) -> Result<&Agent> {
        let config = self.dir.join("havip-agent.toml");
        std::fs::write(&config, self.agent_config())?;
        let taps: Vec<&str> = self.vms().iter().map(|v| v.spec.tap).collect();
        let agent =
            Agent::start_in_mode(&self.hv, &config, &self.dir, &taps, opts, &self.xdp_mode)?;
        Ok(self.agent.insert(agent))
    }

    /// The running agent; fails if [`Lab::start_agent`] was not called.
    pub fn agent(&self) -> Result<&Agent> {
        self.agent
            .as_ref()
            .context("the agent is not running in this lab")
    }

    /// The agent, to signal and start again.
    pub fn agent_mut(&mut self) -> Result<&mut Agent> {
        self.agent
            .as_mut()
            .context("the agent is not running in this lab")
    }

    /// Stops the agent (SIGTERM) and checks it detached and unpinned (with
    /// `--unpin-on-exit`, or else by `havip-agent detach --unpin`).
    pub fn stop_agent(&mut self) -> Result<()> {
        match self.agent.take() {
            Some(a) => a.stop(),
            None => Ok(()),
        }
    }

    /// The end of a test: the agent stops cleanly (XDP detached, pins
    /// removed), the lab goes, and nothing of it is left behind.
    pub fn tear_down(mut self) -> Result<()> {
        self.stop_agent()?;
        drop(self);
        let left = crate::leftovers();
        anyhow::ensure!(left.is_empty(), "left behind: {left:?}");
        Ok(())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The agent first, while its interfaces exist: it (or `havip-agent
        // detach`) detaches XDP and removes its pins; then the fields drop
        // (namespaces, temp dir).
        if let Some(a) = self.agent.take() {
            if let Err(e) = a.stop() {
                eprintln!("havip-tests: stopping the agent: {e:#}");
            }
        }
    }
}
