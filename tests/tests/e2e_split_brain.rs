//! Split brain, as it happens: vm1 and vm2, both bound to the VIP, both
//! believe they are master and announce it in turn, 100 GARPs a second
//! each, for 10 s. The datapath damps it without freezing it: the owner
//! moves at most once per hold-down (1 s, the default), to the latest
//! claim; the client's traffic reaches one VM throughout each hold-down;
//! `havip-agent status` and the agent's log report the `split_brain`
//! condition with both ports, and it clears once only one VM has claimed
//! for a hold-down. Then keepalived runs as usual, the master crashes, and
//! the backup's first claim moves the owner, as without damping.
//!
//! The pending claim survives the agent: with none running it waits in the
//! pinned owner record, and the next agent applies it as it starts.
//!
//! Needs root, the built agent, keepalived, arping, tcpdump.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use havip_tests::agent::AgentOptions;
use havip_tests::bench::frames;
use havip_tests::bench::wire::{PacketSocket, SocketOptions};
use havip_tests::failover;
use havip_tests::ha::HaPair;
use havip_tests::lab::{Lab, Vm, ECHO_PORT, VIP4, VIP4_ID, VM1, VM2};
use havip_tests::leftovers;
use havip_tests::probe::{EchoServer, ProbeLog, Prober};
use havip_tests::wait::now_us;

/// The default hold-down (havip_common::vip::DEFAULT_HOLD_DOWN_MS).
const HOLD_DOWN: Duration = Duration::from_millis(1000);
const STORM: Duration = Duration::from_secs(10);
/// Each VM's GARPs: 100 a second.
const GARP_EVERY: Duration = Duration::from_millis(10);

/// `vm` announces the VIP every [`GARP_EVERY`], starting `offset` in,
/// until `stop`; returns how many it sent.
fn announce(vm: &Vm, offset: Duration, stop: Arc<AtomicBool>) -> Result<thread::JoinHandle<u64>> {
    let socket = PacketSocket::open(&vm.ns, "eth0", SocketOptions::default())?;
    let garp = frames::garp(&vm.spec, VIP4);
    Ok(thread::spawn(move || {
        thread::sleep(offset);
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if socket.send(&garp).is_ok() {
                sent += 1;
            }
            let next = start + GARP_EVERY * (sent as u32 + 1);
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        sent
    }))
}

/// The runs of replies from one VM in a row: (who, first, last reply) in µs.
fn runs(log: &ProbeLog, since_us: i64, until_us: i64) -> Vec<(String, i64, i64)> {
    let mut replies: Vec<_> = log
        .probes
        .iter()
        .filter_map(|p| p.reply.as_ref())
        .filter(|r| r.at_us >= since_us && r.at_us <= until_us)
        .collect();
    replies.sort_by_key(|r| r.at_us);
    let mut out: Vec<(String, i64, i64)> = Vec::new();
    for r in replies {
        match out.last_mut() {
            Some((who, _, last)) if *who == r.from => *last = r.at_us,
            _ => out.push((r.from.clone(), r.at_us, r.at_us)),
        }
    }
    out
}

#[test]
fn split_brain_is_damped_and_a_failover_stays_immediate() -> Result<()> {
    {
        let mut lab = Lab::build()?;
        lab.start_agent()?;

        // Both VMs hold the VIP and serve it: each believes it is master.
        for vm in [&lab.vm1, &lab.vm2] {
            vm.ns
                .ip(&["addr", "add", &format!("{VIP4}/24"), "dev", "eth0"])?;
        }
        let echo = [
            EchoServer::start(&lab.vm1, &[IpAddr::V4(VIP4)], ECHO_PORT)?,
            EchoServer::start(&lab.vm2, &[IpAddr::V4(VIP4)], ECHO_PORT)?,
        ];
        let agent = lab.agent()?;
        let status = agent.status()?;
        ensure!(
            status.vip(VIP4_ID)?.hold_down_ms == HOLD_DOWN.as_millis() as u32,
            "the VIP's hold-down is not the default: {:?}",
            status.vip(VIP4_ID)?
        );
        let prober = Prober::start(
            &lab.client,
            SocketAddr::new(IpAddr::V4(VIP4), ECHO_PORT),
            Duration::from_millis(10),
        )?;

        // The storm: vm1 and vm2 alternate, 5 ms apart.
        let before = agent.status()?;
        let stop = Arc::new(AtomicBool::new(false));
        let storm_at = now_us();
        let senders = [
            announce(&lab.vm1, Duration::ZERO, stop.clone())?,
            announce(&lab.vm2, GARP_EVERY / 2, stop.clone())?,
        ];
        // Mid-storm, the condition names both ports.
        thread::sleep(STORM / 2);
        let mid = agent.status()?;
        let mid_text = agent.status_text()?;
        thread::sleep(STORM / 2);
        stop.store(true, Ordering::Relaxed);
        let sent: Vec<u64> = senders
            .into_iter()
            .map(|s| s.join().expect("sender thread"))
            .collect();
        let storm_end = now_us();
        let after = agent.status()?;
        let log = prober.stop();
        drop(echo);
        println!("GARPs sent: vm1 {}, vm2 {}", sent[0], sent[1]);

        let condition = mid.vip(VIP4_ID)?.split_brain.clone();
        let mut ports = condition
            .as_ref()
            .map(|c| c.ports.clone())
            .unwrap_or_default();
        ports.sort_unstable();
        ensure!(
            ports == [VM1.port_id, VM2.port_id],
            "mid-storm split_brain {condition:?}, expected ports 11 and 12"
        );
        ensure!(
            mid_text.contains("split brain:"),
            "status text does not say split brain:\n{mid_text}"
        );

        // Damped: at most one owner change per hold-down (and the first).
        let (b, a) = (
            &before.vip(VIP4_ID)?.counters,
            &after.vip(VIP4_ID)?.counters,
        );
        let changes = a.owner_changes - b.owner_changes;
        let deferred = a.claims_deferred - b.claims_deferred;
        let bound = STORM.as_millis() / HOLD_DOWN.as_millis() + 1;
        println!("storm: {changes} owner change(s), {deferred} claim(s) deferred (bound {bound})");
        ensure!(
            changes as u128 <= bound,
            "{changes} owner changes in {STORM:?}, more than {bound}"
        );
        // Never frozen: the latest claim keeps winning, a hold-down at a time.
        ensure!(
            changes as u128 >= bound / 2,
            "only {changes} owner changes in {STORM:?}: the owner froze"
        );
        // Deferred: the claims of whichever VM is not the owner, about
        // half of those sent (the owner's own are no change).
        ensure!(
            deferred >= (sent[0] + sent[1]) * 2 / 5,
            "only {deferred} deferred claims of {} sent",
            sent[0] + sent[1]
        );
        let global = after.stats.get("claims_deferred").copied().unwrap_or(0);
        ensure!(
            global >= deferred,
            "stat claims_deferred {global} < {deferred}"
        );

        // One VM serves the client throughout each hold-down.
        let served = runs(&log, storm_at, storm_end);
        println!(
            "the client was served by: {}",
            served
                .iter()
                .map(|(who, s, e)| format!("{who} {} ms", (e - s) / 1000))
                .collect::<Vec<_>>()
                .join(", ")
        );
        ensure!(
            served.len() as u128 <= bound + 1,
            "{} switches of the serving VM in {STORM:?}",
            served.len() - 1
        );
        let held = HOLD_DOWN.as_micros() as i64 * 8 / 10;
        if served.len() > 2 {
            for (who, first, last) in &served[1..served.len() - 1] {
                ensure!(
                    last - first >= held,
                    "{who} served the client for only {} ms within the storm",
                    (last - first) / 1000
                );
            }
        }
        let (gap_ms, lost) = log.longest_gap();
        println!("longest gap during the storm: {gap_ms:.0} ms, {lost} probes lost");

        // The condition clears a hold-down after the storm, and the log told
        // of it as it began and ended.
        thread::sleep(HOLD_DOWN * 2);
        let calm = agent.status()?;
        ensure!(
            calm.vip(VIP4_ID)?.split_brain.is_none(),
            "split_brain still reported after the storm: {:?}",
            calm.vip(VIP4_ID)?.split_brain
        );
        let text = agent.log_text();
        ensure!(
            text.contains("split brain: ports") && text.contains("split brain over"),
            "the agent's log does not tell of the split brain:\n{}",
            agent.log_tail(40)
        );

        // Back to one master: keepalived as in the HA guide.
        for vm in [&lab.vm1, &lab.vm2] {
            vm.ns
                .ip(&["addr", "del", &format!("{VIP4}/24"), "dev", "eth0"])?;
        }
        let mut ha = HaPair::start(&lab)?;
        agent
            .wait_owner(VIP4_ID, VM1.port_id, Duration::from_secs(10))
            .context("keepalived's master vm1 did not become the owner after the storm")?;
        // A quiet hold-down after keepalived's own announcements.
        thread::sleep(HOLD_DOWN + Duration::from_millis(500));
        let quiet = agent.status()?;
        let prober = Prober::start(
            &lab.client,
            SocketAddr::new(IpAddr::V4(VIP4), ECHO_PORT),
            Duration::from_millis(10),
        )?;
        let f = failover::crash_master(&lab, &mut ha.master, prober, IpAddr::V4(VIP4), VIP4_ID)?;
        println!("{}", f.timeline);
        let owner = f
            .owner_after
            .clone()
            .context("no owner after the failover")?;
        ensure!(
            owner.port_id == VM2.port_id,
            "owner after the crash: {owner:?}"
        );
        // The backup's first claim moved the owner: no claim of it waited.
        let first_claim = f.claims.first().context("vm2 sent no claim")?;
        let taken = owner.since_unix_ms * 1000 - first_claim.at_us;
        println!("owner moved {} µs after vm2's first claim", taken);
        ensure!(
            taken < 100_000,
            "the owner moved {} ms after vm2's first claim: it was deferred",
            taken / 1000
        );
        let end = agent.status()?;
        ensure!(
            end.vip(VIP4_ID)?.counters.claims_deferred
                == quiet.vip(VIP4_ID)?.counters.claims_deferred,
            "the failover's claims were deferred"
        );
        drop(ha);
        lab.stop_agent()?;
    }
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// The pending claim lives in the pinned owner record: with no agent
/// running it waits (only a claim would apply it), and the next agent to
/// start applies it.
#[test]
fn a_pending_claim_outlives_the_agent_and_the_next_one_applies_it() -> Result<()> {
    {
        let mut lab = Lab::build()?;
        lab.start_agent_with(AgentOptions {
            unpin_on_exit: false,
            ..AgentOptions::default()
        })?;
        let garp = |vm: &Vm| -> Result<()> {
            PacketSocket::open(&vm.ns, "eth0", SocketOptions::default())?
                .send(&frames::garp(&vm.spec, VIP4))
                .context("GARP")
        };
        // The agent goes (its programs stay); vm1 claims, then vm2 within
        // the hold-down of vm1's change.
        lab.agent_mut()?.signal_and_wait(libc::SIGTERM)?;
        garp(&lab.vm1)?;
        garp(&lab.vm2)?;
        let agent = lab.agent()?;
        let vip = agent.status()?.vip(VIP4_ID)?.clone();
        ensure!(
            vip.owner.as_ref().map(|o| o.port_id) == Some(VM1.port_id)
                && vip.split_brain.as_ref().and_then(|b| b.pending) == Some(VM2.port_id),
            "vm2's claim is not pending behind vm1: {vip:?}"
        );
        // A hold-down later, with no agent and no claim, it still waits.
        thread::sleep(HOLD_DOWN + Duration::from_millis(200));
        let waiting = agent.status()?;
        ensure!(
            waiting.owner(VIP4_ID)?.map(|o| o.port_id) == Some(VM1.port_id),
            "the owner moved with no agent and no claim: {:?}",
            waiting.vip(VIP4_ID)?
        );
        // The next agent applies it as it starts.
        let started = Instant::now();
        lab.agent_mut()?.start_again()?;
        let owner = lab
            .agent()?
            .wait_owner(VIP4_ID, VM2.port_id, Duration::from_secs(5))?;
        println!(
            "the pending claim was applied {} ms after the agent was started: {owner:?}",
            started.elapsed().as_millis()
        );
        ensure!(
            lab.agent()?.log_text().contains("applied at its end"),
            "the agent did not say it applied the pending claim:\n{}",
            lab.agent()?.log_tail(20)
        );
        lab.stop_agent()?;
    }
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
