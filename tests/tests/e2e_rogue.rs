//! A VM that is not bound to the VIP tries to take it: it configures the VIP
//! and sends GARP requests, ARP replies, unsolicited NAs and an NS from the
//! VIP, all from its own MAC. The claim rule rejects every one
//! (`claim_not_bound`), the owner stays vm1, the rogue never sees the
//! client's traffic, and the client keeps being served by the real master.
//!
//! Needs root, the built agent, keepalived, arping, tcpdump, python3-scapy.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Result};
use havip_tests::capture::Capture;
use havip_tests::ha::HaPair;
use havip_tests::lab::{Lab, ECHO_PORT, VIP4, VIP4_ID, VIP6, VIP6_ID, VM1};
use havip_tests::probe::{EchoServer, Prober};
use havip_tests::wait::now_us;
use havip_tests::{leftovers, rogue};

#[test]
fn rogue_vm_cannot_claim_the_vip() -> Result<()> {
    {
        let mut lab = Lab::build()?;
        lab.start_agent()?;
        let _ha = HaPair::start(&lab)?;
        let agent = lab.agent()?;
        let owner4 = agent.wait_owner(VIP4_ID, VM1.port_id, Duration::from_secs(10))?;
        let owner6 = agent.wait_owner(VIP6_ID, VM1.port_id, Duration::from_secs(10))?;

        // The client talks to both VIPs; the rogue would answer as "rogue".
        let vips = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)];
        let _rogue_echo = EchoServer::start(&lab.rogue, &vips, ECHO_PORT)?;
        let rogue_sees = Capture::start(
            &lab.rogue.ns,
            "eth0",
            None,
            &format!("udp port {ECHO_PORT}"),
        )?;
        let probe4 = Prober::start(
            &lab.client,
            SocketAddr::new(vips[0], ECHO_PORT),
            Duration::from_millis(10),
        )?;
        let probe6 = Prober::start(
            &lab.client,
            SocketAddr::new(vips[1], ECHO_PORT),
            Duration::from_millis(10),
        )?;
        probe4.wait_reply_from("vm1", 0, Duration::from_secs(5))?;
        probe6.wait_reply_from("vm1", 0, Duration::from_secs(5))?;
        // Past the client's ARP/ND locktime (1 s): a claim let through now
        // would redirect the client at once.
        std::thread::sleep(Duration::from_millis(1500));
        let before = agent.status()?;

        let attack_at = now_us();
        rogue::configure_vips(&lab.rogue, VIP4, VIP6)?;
        let attack = rogue::full_attack(&lab.rogue, VIP4, VIP6, 5)?;
        println!("the rogue sent:\n  {}", attack.sent.join("\n  "));
        std::thread::sleep(Duration::from_secs(2));

        let after = agent.status()?;
        let log4 = probe4.stop();
        let log6 = probe6.stop();
        let seen_by_rogue = rogue_sees.stop();

        // The owner did not move.
        for (vip_id, owner) in [(VIP4_ID, &owner4), (VIP6_ID, &owner6)] {
            let now = after.owner(vip_id)?.cloned();
            ensure!(
                now.as_ref().map(|o| (o.port_id, o.generation))
                    == Some((owner.port_id, owner.generation)),
                "vip {vip_id}: owner changed under attack: {owner:?} -> {now:?}"
            );
        }
        // Every claim was rejected as not bound, per VIP.
        for vip_id in [VIP4_ID, VIP6_ID] {
            let (b, a) = (
                before.vip(vip_id)?.drop_count("claim_not_bound"),
                after.vip(vip_id)?.drop_count("claim_not_bound"),
            );
            println!("vip {vip_id}: claim_not_bound {b} -> {a}");
            ensure!(
                a > b,
                "vip {vip_id}: claim_not_bound did not rise ({b} -> {a}); status: {:?}",
                after.vip(vip_id)?
            );
        }
        // The rogue never saw the client's traffic; the client never heard the rogue.
        let stolen: Vec<_> = seen_by_rogue
            .iter()
            .filter(|f| {
                f.line.contains(&format!("> {VIP4}.{ECHO_PORT}"))
                    || f.line.contains(&format!("> {VIP6}.{ECHO_PORT}"))
            })
            .collect();
        ensure!(
            stolen.is_empty(),
            "the rogue received client traffic to the VIP: {stolen:#?}"
        );
        for log in [&log4, &log6] {
            ensure!(
                log.answered_by("rogue") == 0,
                "the rogue answered probes to {}",
                log.target
            );
            let served = log.replies_from_after("vm1", attack_at);
            ensure!(
                served >= 50,
                "only {served} replies from vm1 to {} during the attack",
                log.target
            );
            println!(
                "{}: {} probes, {} answered by vm1, longest gap {:.0} ms",
                log.target,
                log.sent(),
                log.answered_by("vm1"),
                log.longest_gap().0
            );
        }
    }
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
