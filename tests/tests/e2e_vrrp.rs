//! keepalived as people run it, not only as the HA guide says: its default
//! multicast VRRP, `use_vmac` (the master speaks from the virtual router's
//! MAC), and VRRPv3 for an IPv6 VIP. In each the agent keeps VRRP among the
//! VIP's ports: the rogue VM, bound to no VIP, hears no advert, and its
//! replay of the master's advert at priority 255 (which would make the
//! master step down) is dropped and counted. Then the master crashes and
//! the client's traffic reaches the backup.
//!
//! Needs root, the built agent and keepalived, tcpdump. Run with
//! `--test-threads=1`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use havip_tests::bench::wire::{PacketSocket, SocketOptions};
use havip_tests::capture::Capture;
use havip_tests::failover;
use havip_tests::ha::HaPair;
use havip_tests::keepalived::{Flavour, VIRTUAL_ROUTER_ID};
use havip_tests::lab::{mac_string, Lab, ECHO_PORT, VIP4, VIP4_ID, VIP6, VIP6_ID, VM1, VM2};
use havip_tests::probe::Prober;
use havip_tests::vrrp::{self, Advert, GROUP4, GROUP6};

/// Adverts the rogue replays, 200 ms apart.
const REPLAYS: u64 = 10;

/// The story for one flavour and the VIP it holds.
fn vrrp_stays_among_the_bound_ports(flavour: Flavour, vip: IpAddr, vip_id: u32) -> Result<()> {
    let mut lab = Lab::build()?;
    lab.start_agent()?;
    // Everything VRRP that reaches the rogue, from the start.
    let heard = Capture::start(
        &lab.rogue.ns,
        "eth0",
        Some("in"),
        "ip proto 112 or ip6 proto 112",
    )?;
    let mut ha = HaPair::start_flavour(&lab, flavour)?;
    let owner = lab
        .agent()?
        .wait_owner(vip_id, VM1.port_id, Duration::from_secs(15))?;
    // With use_vmac the owner is learned with the virtual MAC, and frames
    // for the VIP are delivered to its port.
    let owner_mac = match flavour {
        Flavour::VirtualMac => mac_string(&vrrp::vmac4(VIRTUAL_ROUTER_ID)),
        _ => VM1.mac_str(),
    };
    ensure!(
        owner.mac == owner_mac,
        "owner {owner:?}, MAC {owner_mac} expected"
    );
    let prober = Prober::start(
        &lab.client,
        SocketAddr::new(vip, ECHO_PORT),
        Duration::from_millis(10),
    )?;
    prober.wait_reply_from("vm1", 0, Duration::from_secs(10))?;

    // The rogue replays the master's advert at priority 255, from its own
    // addresses (port security would drop any other).
    let rogue = &lab.rogue.spec;
    let advert = Advert {
        vrid: VIRTUAL_ROUTER_ID,
        priority: 255,
    };
    let replay = match vip {
        IpAddr::V4(v) => vrrp::advert_v2((rogue.mac, rogue.ipv4), GROUP4, advert, v, "havip"),
        IpAddr::V6(v) => vrrp::advert_v3((rogue.mac, rogue.link_local()), GROUP6, advert, v),
    };
    let dropped =
        |lab: &Lab| -> Result<u64> { Ok(lab.agent()?.status()?.drop_count("vrrp_not_bound")) };
    let before = dropped(&lab)?;
    let stepped_down = |ha: &HaPair| {
        ha.master
            .log_text()
            .matches("Entering BACKUP STATE")
            .count()
    };
    let backup_before = stepped_down(&ha);
    let socket = PacketSocket::open(&lab.rogue.ns, "eth0", SocketOptions::default())?;
    for _ in 0..REPLAYS {
        socket.send(&replay)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    // Three advert intervals more: a master that heard it would be backup.
    std::thread::sleep(Duration::from_secs(3));
    let counted = dropped(&lab)? - before;
    ensure!(
        counted >= REPLAYS,
        "{counted} of {REPLAYS} replayed adverts counted as vrrp_not_bound"
    );
    ensure!(
        lab.vm1.has_address(vip)? && !lab.vm2.has_address(vip)?,
        "the replay moved the VIP\n--- keepalived vm1 ---\n{}",
        ha.master.log_text()
    );
    ensure!(
        stepped_down(&ha) == backup_before,
        "the master stepped down\n--- keepalived vm1 ---\n{}",
        ha.master.log_text()
    );
    let owner_now = lab.agent()?.status()?.owner(vip_id)?.cloned();
    ensure!(
        owner_now
            .as_ref()
            .is_some_and(|o| o.port_id == VM1.port_id && o.generation == owner.generation),
        "the owner moved: {owner:?} -> {owner_now:?}"
    );
    println!(
        "{flavour:?}: {counted} replayed adverts at priority 255 dropped (vrrp_not_bound); \
         vm1 still master"
    );

    // The master crashes: the backup takes over, and the client follows.
    let f = failover::crash_master(&lab, &mut ha.master, prober, vip, vip_id)?;
    let after = f.owner_after.clone().context("no owner after the crash")?;
    ensure!(
        after.port_id == VM2.port_id,
        "owner after the crash: {after:?}"
    );
    let vm2_replies = f.probes.replies_from_after("vm2", f.kill_us);
    let (gap_ms, lost) = f.gap();
    println!("{flavour:?}: failover to vm2, {gap_ms:.0} ms without replies, {lost} probes lost, {vm2_replies} replies from vm2");
    ensure!(
        vm2_replies >= 20,
        "only {vm2_replies} replies from vm2 after the failover"
    );

    // Not one advert reached the rogue, before or after the failover.
    let heard = heard.stop();
    ensure!(
        heard.is_empty(),
        "the rogue heard {} VRRP frame(s), e.g. {}",
        heard.len(),
        heard[0].line
    );
    drop(ha);
    lab.tear_down()
}

#[test]
fn keepalived_default_multicast_vrrp_stays_among_the_vips_ports() -> Result<()> {
    vrrp_stays_among_the_bound_ports(Flavour::Multicast, IpAddr::V4(VIP4), VIP4_ID)
}

#[test]
fn keepalived_use_vmac_is_delivered_to_by_port() -> Result<()> {
    vrrp_stays_among_the_bound_ports(Flavour::VirtualMac, IpAddr::V4(VIP4), VIP4_ID)
}

#[test]
fn keepalived_vrrpv3_for_an_ipv6_vip_stays_among_the_vips_ports() -> Result<()> {
    vrrp_stays_among_the_bound_ports(Flavour::Ipv6, IpAddr::V6(VIP6), VIP6_ID)
}

#[test]
fn keepalived_unicast_as_the_guide_says_keeps_working() -> Result<()> {
    vrrp_stays_among_the_bound_ports(Flavour::Unicast, IpAddr::V4(VIP4), VIP4_ID)
}
