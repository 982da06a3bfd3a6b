//! The rogue VM's attempts to take the VIP. Every frame uses the rogue's own
//! MAC as Ethernet source (and ARP sender / NA target link-layer address),
//! so port security's MAC check passes and the claim rule is what has to
//! reject it (`claim_not_bound`).

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use crate::cmd;
use crate::lab::{Vm, VmSpec};
use crate::netns::Netns;

/// What the rogue sent, for the story and the assertions.
#[derive(Clone, Debug, Default)]
pub struct Attack {
    /// One line per kind of claim: "3 x GARP request 10.0.6.19 (arping -U)".
    pub sent: Vec<String>,
}

/// Announces `vip` from the VM in `ns` with arping, `count` times: GARP
/// requests (sender IP = target IP = VIP), or unsolicited ARP replies with
/// `replies`. Any VM can do this; the datapath decides whether it counts.
pub fn arping_announce(ns: &Netns, vip: Ipv4Addr, count: u32, replies: bool) -> Result<()> {
    let vip_s = vip.to_string();
    let count_s = count.to_string();
    // -U: unsolicited (sender IP = target IP); -P: replies; -S: sender IP;
    // do not wait for replies. arping exits non-zero when nobody answers,
    // which is the point, so only a failure to start is an error.
    let mut args = vec!["-q", "-U"];
    if replies {
        args.push("-P");
    }
    args.extend([
        "-i", "eth0", "-S", &vip_s, "-c", &count_s, "-W", "0.05", &vip_s,
    ]);
    let out = ns.cmd("arping").args(&args).output()?;
    if out.status.code().is_none_or(|c| c > 1) {
        anyhow::bail!(
            "arping {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// GARP requests for `vip` (sender IP = target IP = VIP), with arping.
pub fn garp_requests(rogue: &Vm, vip: Ipv4Addr, count: u32, attack: &mut Attack) -> Result<()> {
    arping_announce(&rogue.ns, vip, count, false)?;
    attack
        .sent
        .push(format!("{count} x GARP request for {vip} (arping -U)"));
    Ok(())
}

/// Unsolicited ARP replies for `vip`, with arping.
pub fn arp_replies(rogue: &Vm, vip: Ipv4Addr, count: u32, attack: &mut Attack) -> Result<()> {
    arping_announce(&rogue.ns, vip, count, true)?;
    attack
        .sent
        .push(format!("{count} x ARP reply for {vip} (arping -U -P)"));
    Ok(())
}

/// The scapy script: every IPv4 and IPv6 claim a VM can make, from the
/// rogue's own MAC.
const SCAPY: &str = r#"
import sys
from scapy.all import Ether, ARP, IPv6, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, sendp, conf
conf.verb = 0
mac, vip4, vip6, ll, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
bcast, allnodes = "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01"
frames = {
  "GARP request (scapy)": Ether(src=mac, dst=bcast) / ARP(op=1, hwsrc=mac, psrc=vip4, hwdst="00:00:00:00:00:00", pdst=vip4),
  "GARP reply (scapy)": Ether(src=mac, dst=bcast) / ARP(op=2, hwsrc=mac, psrc=vip4, hwdst=bcast, pdst=vip4),
  "unsolicited NA from the VIP": Ether(src=mac, dst=allnodes) / IPv6(src=vip6, dst="ff02::1", hlim=255)
      / ICMPv6ND_NA(tgt=vip6, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac),
  "unsolicited NA from the link-local": Ether(src=mac, dst=allnodes) / IPv6(src=ll, dst="ff02::1", hlim=255)
      / ICMPv6ND_NA(tgt=vip6, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac),
  "NS sourced from the VIP": Ether(src=mac, dst=allnodes) / IPv6(src=vip6, dst="ff02::1", hlim=255)
      / ICMPv6ND_NS(tgt=vip6) / ICMPv6NDOptSrcLLAddr(lladdr=mac),
}
for name, f in frames.items():
    sendp(f, iface="eth0", count=count, inter=0.01)
    print(f"{count} x {name}")
"#;

/// GARPs, ARP replies, unsolicited NAs and an NS from the VIP, with scapy.
pub fn scapy_claims(
    rogue: &Vm,
    vip4: Ipv4Addr,
    vip6: Ipv6Addr,
    count: u32,
    attack: &mut Attack,
) -> Result<()> {
    let out = scapy(
        rogue,
        SCAPY,
        &[
            &rogue.spec.mac_str(),
            &vip4.to_string(),
            &vip6.to_string(),
            &rogue.spec.link_local().to_string(),
            &count.to_string(),
        ],
    )?;
    attack
        .sent
        .extend(out.lines().map(|l| format!("{l} for {vip4} / {vip6}")));
    Ok(())
}

/// Runs the scapy `script` in the rogue VM with `args` (its `sys.argv[1:]`);
/// its output.
fn scapy(rogue: &Vm, script: &str, args: &[&str]) -> Result<String> {
    let py = cmd::scapy_python()?;
    let argv: Vec<&str> = ["-c", script]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    rogue.ns.exec(&py.to_string_lossy(), &argv)
}

/// Frames that port security drops: UDP from another VM's MAC
/// (`mac_spoof`), and from the rogue's MAC but an address that is not its
/// port's (`ip_spoof`), with scapy.
pub fn spoofed_frames(rogue: &Vm, victim: &VmSpec, count: u32, attack: &mut Attack) -> Result<()> {
    const SCRIPT: &str = r#"
import sys
from scapy.all import Ether, IP, UDP, sendp, conf
conf.verb = 0
mac, victim_mac, victim_ip, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bcast = "ff:ff:ff:ff:ff:ff"
sendp(Ether(src=victim_mac, dst=bcast) / IP(src=victim_ip, dst="10.0.6.255") / UDP(dport=9), iface="eth0", count=count, inter=0.01)
sendp(Ether(src=mac, dst=bcast) / IP(src="10.0.6.77", dst="10.0.6.255") / UDP(dport=9), iface="eth0", count=count, inter=0.01)
"#;
    scapy(
        rogue,
        SCRIPT,
        &[
            &rogue.spec.mac_str(),
            &victim.mac_str(),
            &victim.ipv4.to_string(),
            &count.to_string(),
        ],
    )?;
    attack.sent.push(format!(
        "{count} x UDP from {}'s MAC and address, {count} x UDP from 10.0.6.77 (scapy)",
        victim.role
    ));
    Ok(())
}

/// ICMPv6 echo requests to all nodes from `link_local`, another port's
/// (learned) link-local, with the rogue's own MAC, with scapy: what the
/// datapath drops as `link_local_taken`.
pub fn from_link_local(
    rogue: &Vm,
    link_local: Ipv6Addr,
    count: u32,
    attack: &mut Attack,
) -> Result<()> {
    const SCRIPT: &str = r#"
import sys
from scapy.all import Ether, IPv6, ICMPv6EchoRequest, sendp, conf
conf.verb = 0
mac, src, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
f = Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=src, dst="ff02::1") / ICMPv6EchoRequest()
sendp(f, iface="eth0", count=count, inter=0.01)
"#;
    scapy(
        rogue,
        SCRIPT,
        &[
            &rogue.spec.mac_str(),
            &link_local.to_string(),
            &count.to_string(),
        ],
    )?;
    attack
        .sent
        .push(format!("{count} x ICMPv6 echo from {link_local} (scapy)"));
    Ok(())
}

/// The rogue also configures the VIPs on its NIC, as a misconfigured or
/// hostile VM would: its kernel then answers ARP/NS for them by itself.
pub fn configure_vips(rogue: &Vm, vip4: Ipv4Addr, vip6: Ipv6Addr) -> Result<()> {
    rogue
        .ns
        .ip(&["addr", "add", &format!("{vip4}/24"), "dev", "eth0"])?;
    rogue
        .ns
        .ip(&["addr", "add", &format!("{vip6}/64"), "dev", "eth0", "nodad"])?;
    Ok(())
}

/// Everything at once: arping GARPs and replies, then the scapy set.
pub fn full_attack(rogue: &Vm, vip4: Ipv4Addr, vip6: Ipv6Addr, count: u32) -> Result<Attack> {
    let mut attack = Attack::default();
    garp_requests(rogue, vip4, count, &mut attack)?;
    arp_replies(rogue, vip4, count, &mut attack)?;
    scapy_claims(rogue, vip4, vip6, count, &mut attack)?;
    Ok(attack)
}
