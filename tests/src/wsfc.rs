//! A Windows Failover Cluster moving its cluster IP to another node, as the
//! node brings the address online: RFC 5227 address probing (ARP probes,
//! sender 0.0.0.0; any probe or reply for the address from another host in
//! the probe window is a conflict, and the address stays offline), then
//! ARP announcements; for IPv6, Duplicate Address Detection (the node's
//! kernel: an NS for the address from :: by another node fails it) and an
//! unsolicited Neighbor Advertisement once the address is valid. And a VM
//! that probes for the address the whole time, which makes every probing
//! node believe the address is in use.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cleanup::{self, Resource, Token};
use crate::cmd;
use crate::lab::Vm;
use crate::wait;

/// RFC 5227's probing, shortened (3 probes 300 ms apart, then 2
/// announcements): prints `conflict: <what>` or `online`.
const PROBE_AND_ANNOUNCE: &str = r#"
import sys, time
from scapy.all import Ether, ARP, AsyncSniffer, sendp, conf
conf.verb = 0
mac, vip = sys.argv[1], sys.argv[2]
bcast = "ff:ff:ff:ff:ff:ff"
def conflict(p):
    a = p[ARP]
    if a.hwsrc.lower() == mac.lower():
        return None
    if a.op == 2 and a.psrc == vip:
        return f"reply for {vip} from {a.hwsrc}"
    if a.op == 1 and a.pdst == vip and a.psrc in ("0.0.0.0", vip):
        return f"probe for {vip} from {a.hwsrc}"
    return None
sniffer = AsyncSniffer(iface="eth0", filter="arp", store=True)
sniffer.start()
time.sleep(0.2)
probe = Ether(src=mac, dst=bcast) / ARP(op=1, hwsrc=mac, psrc="0.0.0.0", hwdst="00:00:00:00:00:00", pdst=vip)
for _ in range(3):
    sendp(probe, iface="eth0")
    time.sleep(0.3)
time.sleep(0.3)
sniffer.stop()
found = [c for c in (conflict(p) for p in sniffer.results if ARP in p) if c]
if found:
    print("conflict: " + found[0])
    sys.exit(0)
announce = Ether(src=mac, dst=bcast) / ARP(op=1, hwsrc=mac, psrc=vip, hwdst="00:00:00:00:00:00", pdst=vip)
for _ in range(2):
    sendp(announce, iface="eth0")
    time.sleep(0.3)
print("online")
"#;

/// The rogue's probes: an ARP probe and a DAD NS for the VIPs every 50 ms.
const PROBE_FLOOD: &str = r#"
import sys, time
from socket import inet_pton, inet_ntop, AF_INET6
from scapy.all import Ether, ARP, IPv6, ICMPv6ND_NS, sendp, conf, in6_getnsma, in6_getnsmac
conf.verb = 0
mac, vip4, vip6 = sys.argv[1], sys.argv[2], sys.argv[3]
group = inet_ntop(AF_INET6, in6_getnsma(inet_pton(AF_INET6, vip6)))
arp = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc="0.0.0.0", hwdst="00:00:00:00:00:00", pdst=vip4)
dad = Ether(src=mac, dst=in6_getnsmac(inet_pton(AF_INET6, group))) / IPv6(src="::", dst=group, hlim=255) / ICMPv6ND_NS(tgt=vip6)
while True:
    sendp([arp, dad], iface="eth0")
    time.sleep(0.05)
"#;

/// What bringing the cluster IP online on a node came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Online {
    /// The IPv4 address's probing found a conflict (and it stays offline).
    pub ipv4_conflict: Option<String>,
    /// The IPv6 address failed DAD (`dadfailed`).
    pub ipv6_dad_failed: bool,
}

impl Online {
    pub fn both(&self) -> bool {
        self.ipv4_conflict.is_none() && !self.ipv6_dad_failed
    }
}

/// Brings the cluster IPs online on `vm` as Windows does: probes and
/// announces `vip4`, then adds `vip6` with DAD and an unsolicited NA once
/// it is valid (`ndisc_notify`).
pub fn bring_online(vm: &Vm, vip4: Ipv4Addr, vip6: Ipv6Addr) -> Result<Online> {
    let py = cmd::scapy_python()?;
    let out = vm.ns.exec(
        &py.to_string_lossy(),
        &[
            "-c",
            PROBE_AND_ANNOUNCE,
            &vm.spec.mac_str(),
            &vip4.to_string(),
        ],
    )?;
    let ipv4_conflict = match out.trim() {
        "online" => {
            vm.ns
                .ip(&["addr", "add", &format!("{vip4}/24"), "dev", "eth0"])?;
            None
        }
        line => Some(
            line.strip_prefix("conflict: ")
                .with_context(|| format!("the prober said {line:?}"))?
                .to_string(),
        ),
    };
    // Windows always runs DAD (the lab's VMs skip it) and announces the
    // address once it is valid.
    for setting in ["accept_dad=1", "ndisc_notify=1"] {
        vm.ns
            .exec("sysctl", &["-qw", &format!("net.ipv6.conf.eth0.{setting}")])?;
    }
    vm.ns
        .ip(&["-6", "addr", "add", &format!("{vip6}/64"), "dev", "eth0"])?;
    let mut failed = false;
    wait::until(
        Duration::from_secs(10),
        "DAD of the IPv6 cluster IP",
        || {
            let line = vm.ns.ip(&[
                "-6",
                "addr",
                "show",
                "dev",
                "eth0",
                "to",
                &format!("{vip6}/128"),
            ])?;
            failed = line.contains("dadfailed");
            Ok(failed || !line.contains("tentative"))
        },
    )?;
    Ok(Online {
        ipv4_conflict,
        ipv6_dad_failed: failed,
    })
}

/// Takes the cluster IPs offline on `vm` (Windows sends nothing then).
pub fn take_offline(vm: &Vm, vip4: Ipv4Addr, vip6: Ipv6Addr) -> Result<()> {
    for addr in [format!("{vip4}/24"), format!("{vip6}/64")] {
        // An address that failed DAD or never came online is not there.
        let _ = vm.ns.ip(&["addr", "del", &addr, "dev", "eth0"]);
    }
    Ok(())
}

/// A VM probing for the cluster IPs every 50 ms (ARP probes, DAD NSs)
/// until dropped.
pub struct ProbeFlood {
    token: Option<Token>,
}

impl ProbeFlood {
    pub fn start(rogue: &Vm, vip4: Ipv4Addr, vip6: Ipv6Addr) -> Result<Self> {
        let py = cmd::scapy_python()?;
        let mut c = rogue.ns.cmd(&py.to_string_lossy());
        c.args([
            "-c",
            PROBE_FLOOD,
            &rogue.spec.mac_str(),
            &vip4.to_string(),
            &vip6.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
        let mut child = c.spawn().context("start the probe flood")?;
        // scapy takes a moment to import; it must be probing when we return.
        std::thread::sleep(Duration::from_millis(1500));
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the probe flood exited at once: {status}");
        }
        let token = Some(cleanup::register(Resource::Process {
            name: "probe flood (rogue)".into(),
            child,
            group: true,
            grace: Duration::from_secs(2),
        }));
        Ok(Self { token })
    }
}

impl Drop for ProbeFlood {
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            cleanup::release(t);
        }
    }
}
