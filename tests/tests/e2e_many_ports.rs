//! A hypervisor with a thousand VM ports, from a config file: the agent
//! starts and protects every one of them, a port's rogue frame is dropped
//! while its own frames still reach its neighbours, and an agent restart
//! adopts all thousand links in place and protects as before. An agent
//! killed while it moves TC egress from netlink filters to TCX links
//! leaves every port protected, and the next one finishes the move.
//!
//! `HAVIP_TEST_PORTS` sets the number of ports (default 1000): the test's
//! time grows with it (some 30 s for a thousand, on a loaded 2-CPU machine).
//!
//! Needs root and the built agent.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use havip_tests::agent::Agent;
use havip_tests::bench::frames::{self, BROADCAST};
use havip_tests::bench::wire::{PacketSocket, SocketOptions};
use havip_tests::lab::VmSpec;
use havip_tests::leftovers;
use havip_tests::ports::{self, pinned_links, ManyPorts, Reconciled};
use havip_tests::restart::RESTART_KINDS;

const ETH_P_IP: u16 = 0x0800;
const SPOOFED: usize = 5;

/// Port `k`'s VM sends `SPOOFED` broadcasts from port `k + 1`'s MAC, then
/// one of its own: the datapath drops the spoofed ones (counted as
/// `mac_spoof`), and the neighbour sees its own frame only.
fn a_rogue_frame_is_dropped(many: &ManyPorts, agent: &Agent, k: usize) -> Result<()> {
    let (me, neighbour) = (ports::port_spec(k), ports::port_spec(k + 1));
    let spoofed = frames::udp4(
        &VmSpec {
            mac: neighbour.mac,
            ..me
        },
        BROADCAST,
        neighbour.ipv4,
        b"spoofed",
    );
    let own = frames::udp4(&me, BROADCAST, neighbour.ipv4, b"own");
    let receive = SocketOptions {
        receive: Some(ETH_P_IP),
        ..SocketOptions::default()
    };
    let sender = PacketSocket::open(&many.hv, &ports::vm_side(k), SocketOptions::default())?;
    let watcher = PacketSocket::open(&many.hv, &ports::vm_side(k + 1), receive)?;
    watcher.drain()?;
    let before = agent.status()?.drop_count("mac_spoof");
    for _ in 0..SPOOFED {
        sender.send(&spoofed)?;
    }
    sender.send(&own)?;
    let (mut seen_own, mut seen_spoofed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && seen_own == 0 {
        if let Some(r) = watcher.recv(&mut buf, Duration::from_millis(50))? {
            match frames::udp4_payload(&buf[..r.len]) {
                Some(p) if p.starts_with(b"spoofed") => seen_spoofed += 1,
                Some(p) if p.starts_with(b"own") => seen_own += 1,
                _ => {}
            }
        }
    }
    let dropped = agent.status()?.drop_count("mac_spoof") - before;
    println!(
        "   {}: {SPOOFED} frames from {}'s MAC dropped ({dropped} mac_spoof), its own frame \
         reached {}: {seen_own}",
        ports::host_side(k),
        ports::host_side(k + 1),
        ports::vm_side(k + 1)
    );
    ensure!(
        seen_spoofed == 0,
        "{seen_spoofed} spoofed frames reached the neighbour"
    );
    ensure!(
        dropped == SPOOFED as u64,
        "mac_spoof counted {dropped} for {SPOOFED}"
    );
    ensure!(
        seen_own == 1,
        "the port's own frame did not reach its neighbour"
    );
    Ok(())
}

fn ensure_protected(many: &ManyPorts, agent: &Agent) -> Result<()> {
    let problems = many.problems(agent)?;
    ensure!(
        problems.is_empty(),
        "ports not protected: {}",
        problems.join("; ")
    );
    println!(
        "   all {} ports protected: XDP and TC egress from their pinned links, and status says so",
        many.count
    );
    Ok(())
}

fn report(what: &str, r: &Reconciled) {
    println!(
        "{what}: {} ports reconciled {:.1} s after the agent started (first after {:.2} s, {:.0} ms a port)",
        r.ports,
        r.all.as_secs_f64(),
        r.first.as_secs_f64(),
        r.per_port().as_secs_f64() * 1000.0
    );
}

/// New ports' TC egress is a netlink filter first, moved to a TCX link in
/// the background: an agent killed in the middle of that move (some ports
/// on TCX, some on their filter, maybe one with both) leaves every port
/// protected, and the next agent finishes the move, no filter left beside
/// a link.
fn killed_while_moving_egress_to_tcx(many: &ManyPorts, agent: &mut Agent) -> Result<()> {
    agent.signal_and_wait(libc::SIGTERM)?;
    agent.detach(false)?;
    agent.ready_when_protected = true;
    agent.start_again()?;
    let pending = agent.status()?.protection.egress_handover;
    agent.signal_and_wait(libc::SIGKILL)?;
    let links = pinned_links(&agent.pin_dir)?;
    let on_tcx = links.values().filter(|l| l.tc.is_some()).count();
    println!(
        "   a fresh start killed (SIGKILL) while moving TC egress to TCX: {pending} port(s)          were still to move; {on_tcx} of {} have a TCX link",
        many.count
    );
    ensure!(
        pending > 0 && on_tcx < many.count,
        "the agent was not caught moving TC egress ({pending} to move, {on_tcx} on TCX)"
    );
    // No agent runs: every port still has its programs.
    for (k, tap) in many.taps().iter().enumerate().step_by(many.count / 10 + 1) {
        let l = many
            .ifindex
            .get(tap)
            .and_then(|ifx| links.get(ifx))
            .copied()
            .unwrap_or_default();
        let filters = agent.tc_egress_filters(tap)?;
        ensure!(
            l.xdp.is_some() && (l.tc.is_some() || !filters.is_empty()),
            "port {k} ({tap}) without its programs while no agent runs: {l:?}, filters {filters:?}"
        );
    }
    agent.ready_when_protected = false;
    agent.start_again()?;
    println!("   the next agent finished the move");
    ensure_protected(many, agent)
}

#[test]
fn a_thousand_ports_are_protected_from_the_start_and_adopted_by_a_restart() -> Result<()> {
    let count = ports::count_from_env("HAVIP_TEST_PORTS", 1000)?;
    ensure!(count >= 2, "HAVIP_TEST_PORTS={count}: at least 2 ports");
    let started = Instant::now();
    {
        let many = ManyPorts::build(count)?;
        println!(
            "{count} ports created in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let (mut agent, fresh) = many.start_agent()?;
        report("fresh start", &fresh);
        ensure_protected(&many, &agent)?;
        a_rogue_frame_is_dropped(&many, &agent, count / 2 - 1)?;

        let links = pinned_links(&agent.pin_dir)?;
        let kind = &RESTART_KINDS[1];
        println!("the agent restarts: {}", kind.about);
        let adopted = many.restart_agent(&mut agent, kind)?;
        report("restart", &adopted);
        // The same links, each with the new agent's program.
        let now = pinned_links(&agent.pin_dir)?;
        let moved: Vec<String> = links
            .iter()
            .filter(|(ifx, l)| {
                let n = now.get(ifx).copied().unwrap_or_default();
                let same = |a: Option<(u32, u32)>, b: Option<(u32, u32)>| match (a, b) {
                    (Some((la, pa)), Some((lb, pb))) => la == lb && pa != pb,
                    (None, None) => true,
                    _ => false,
                };
                !(same(l.xdp, n.xdp) && same(l.tc, n.tc))
            })
            .map(|(ifx, l)| format!("if{ifx}: {l:?} -> {:?}", now.get(ifx)))
            .take(5)
            .collect();
        ensure!(
            moved.is_empty() && now.len() == links.len(),
            "links not adopted in place ({} before, {} after): {}",
            links.len(),
            now.len(),
            moved.join("; ")
        );
        println!("   every port kept its links; each holds the new agent's programs");
        ensure_protected(&many, &agent)?;
        a_rogue_frame_is_dropped(&many, &agent, count - 2)?;
        if ports::tcx_expected() {
            killed_while_moving_egress_to_tcx(&many, &mut agent)?;
        }
        agent.stop()?;
    }
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
