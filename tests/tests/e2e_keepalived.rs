//! The user's story, end to end: two VMs run keepalived as in the HA guide,
//! a client keeps talking to the VIP, the master VM crashes, and the agent
//! lets the backup take the VIP over, so the client's traffic comes back,
//! now answered by the backup.
//!
//! Needs root, the built agent (`HAVIP_AGENT_BIN` or target/release), and
//! keepalived, arping, tcpdump, python3-scapy. Run with `--test-threads=1`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Result};
use havip_tests::failover::{self, Failover};
use havip_tests::ha::HaPair;
use havip_tests::lab::{Lab, ECHO_PORT, VIP4, VIP4_ID, VIP6, VIP6_ID, VM1, VM2};
use havip_tests::leftovers;
use havip_tests::probe::Prober;

/// The failover story for one VIP; returns what happened.
fn master_crashes(vip: IpAddr, vip_id: u32) -> Result<Failover> {
    let mut lab = Lab::build()?;
    lab.start_agent()?;

    // keepalived makes vm1 the master; its GARP/NA makes port 11 the owner.
    let mut ha = HaPair::start(&lab)?;
    let owner = lab
        .agent()?
        .wait_owner(vip_id, VM1.port_id, Duration::from_secs(10))?;
    ensure!(
        owner.mac == VM1.mac_str(),
        "owner MAC {} is not vm1's {}",
        owner.mac,
        VM1.mac_str()
    );

    // The client talks to the VIP; vm1 answers. Then vm1 crashes.
    let prober = Prober::start(
        &lab.client,
        SocketAddr::new(vip, ECHO_PORT),
        Duration::from_millis(10),
    )?;
    let f = failover::crash_master(&lab, &mut ha.master, prober, vip, vip_id)?;
    println!("{}", f.timeline);

    // The owner moved to vm2's port, as a new generation.
    let before = f
        .owner_before
        .clone()
        .expect("vm1 owned the VIP before the crash");
    let after = f
        .owner_after
        .clone()
        .expect("crash_master waits for the new owner");
    ensure!(
        after.port_id == VM2.port_id,
        "owner after the crash: {after:?}"
    );
    ensure!(
        after.mac == VM2.mac_str(),
        "owner MAC {} is not vm2's {}",
        after.mac,
        VM2.mac_str()
    );
    ensure!(
        after.generation > before.generation,
        "generation did not advance: {before:?} -> {after:?}"
    );
    ensure!(
        after.since_unix_ms * 1000 >= f.kill_us - 1000,
        "owner change predates the crash: {after:?}"
    );

    // The client's replies resumed, from vm2 only.
    let last_vm1 = f
        .probes
        .last_reply_from("vm1")
        .expect("vm1 answered before the crash");
    // No reply from vm1 once its NIC is down (a reply already on its way
    // may land just after).
    ensure!(
        last_vm1.at_us < f.down_us + 50_000,
        "vm1 answered after it crashed: {last_vm1:?} (its NIC went down {} ms after the kill)",
        (f.down_us - f.kill_us) / 1000
    );
    let vm2_replies = f.probes.replies_from_after("vm2", f.kill_us);
    ensure!(
        vm2_replies >= 20,
        "only {vm2_replies} replies from vm2 after the failover"
    );
    let (gap_ms, lost) = f.gap();
    println!("gap: {gap_ms:.0} ms, {lost} probes lost");
    ensure!(
        gap_ms < 10_000.0,
        "the client was without replies for {gap_ms:.0} ms"
    );

    // The agent stops cleanly: XDP detached, pins removed.
    drop(ha);
    lab.stop_agent()?;
    drop(lab);
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(f)
}

#[test]
fn ipv4_master_crash_moves_the_vip_to_the_backup() -> Result<()> {
    let f = master_crashes(IpAddr::V4(VIP4), VIP4_ID)?;
    ensure!(
        !f.claims.is_empty(),
        "no GARP from vm2 on tap-vm2 after the crash"
    );
    Ok(())
}

#[test]
fn ipv6_master_crash_moves_the_vip_to_the_backup() -> Result<()> {
    let f = master_crashes(IpAddr::V6(VIP6), VIP6_ID)?;
    ensure!(
        !f.claims.is_empty(),
        "no unsolicited NA from vm2 on tap-vm2 after the crash"
    );
    Ok(())
}
