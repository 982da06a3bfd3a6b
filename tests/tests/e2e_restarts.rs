//! Protection that never lapses. A client talks to the VIP through the fast
//! path, keepalived's master owns it, and a rogue VM keeps trying to take it
//! and to pass for its neighbours. The agent crashes (`kill -9`), then is
//! restarted the way `systemctl restart` does it (SIGTERM, then a new one),
//! then upgraded to a datapath whose maps have other shapes (the `next-abi`
//! build: more VIP slots, a counter more per VIP), rolled back, and killed
//! in the middle of a migration (its maps left set aside under `old/`):
//!
//! - while no agent runs, the programs stay attached on every port, on the
//!   same links: the rogue's claims and spoofed frames are still dropped and
//!   counted, the owner does not move, the client is still answered;
//! - the agent that starts again adopts them: the same links (same ids), its
//!   own programs swapped in (new program ids), the owner and the counters
//!   kept, and it protects as before; after an upgrade or a rollback, the
//!   maps have the shapes of the version that runs, what they held carried
//!   over into them.
//!
//! Needs root, the built agent, keepalived, arping, python3-scapy, bpftool.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use aya::maps::MapInfo;
use havip_common::maps::{self, ABI_VERSION, DEFAULT_MAX_VIPS};
use havip_tests::agent::{AgentOptions, LinkInfo, OwnerStatus, Status};
use havip_tests::ha::HaPair;
use havip_tests::lab::{Lab, ECHO_PORT, VIP4, VIP4_ID, VIP6, VM1};
use havip_tests::probe::Prober;
use havip_tests::restart::{RestartKind, RESTART_KINDS};
use havip_tests::wait::now_us;
use havip_tests::{cmd, leftovers, restart, rogue};

/// The rogue's attempts: GARPs and ARP replies for the VIP, frames from
/// vm1's MAC and address, and from an address that is not its own.
fn rogue_attacks(lab: &Lab) -> Result<()> {
    let mut attack = rogue::Attack::default();
    rogue::garp_requests(&lab.rogue, VIP4, 3, &mut attack)?;
    rogue::arp_replies(&lab.rogue, VIP4, 3, &mut attack)?;
    rogue::spoofed_frames(&lab.rogue, &VM1, 5, &mut attack)?;
    println!("   the rogue sent: {}", attack.sent.join("; "));
    Ok(())
}

/// Every attempt was dropped and counted, and vm1 still owns the VIP.
fn ensure_rejected(before: &Status, after: &Status, owner: &OwnerStatus) -> Result<()> {
    let now = after.owner(VIP4_ID)?;
    ensure!(
        now.map(|o| (o.port_id, o.generation)) == Some((owner.port_id, owner.generation)),
        "the owner moved: {owner:?} -> {now:?}"
    );
    let claims = (
        before.vip(VIP4_ID)?.drop_count("claim_not_bound"),
        after.vip(VIP4_ID)?.drop_count("claim_not_bound"),
    );
    ensure!(
        claims.1 > claims.0,
        "claim_not_bound {} -> {}",
        claims.0,
        claims.1
    );
    for reason in ["mac_spoof", "ip_spoof"] {
        let (b, a) = (before.drop_count(reason), after.drop_count(reason));
        ensure!(a >= b + 5, "{reason} {b} -> {a}, 5 frames sent");
    }
    println!(
        "   dropped: claim_not_bound {} -> {}, mac_spoof {} -> {}, ip_spoof {} -> {}",
        claims.0,
        claims.1,
        before.drop_count("mac_spoof"),
        after.drop_count("mac_spoof"),
        before.drop_count("ip_spoof"),
        after.drop_count("ip_spoof"),
    );
    Ok(())
}

fn ensure_attached(lab: &Lab, links: &BTreeMap<String, LinkInfo>) -> Result<()> {
    let agent = lab.agent()?;
    let now = agent.links()?;
    for vm in lab.vms() {
        // The program on the port is the one in its pinned link.
        let prog = agent.xdp_prog_id(vm.spec.tap)?;
        ensure!(
            prog.is_some_and(|id| now.values().any(|l| l.prog_id == id)),
            "XDP on {}: {prog:?}, not a pinned link's ({now:?})",
            vm.spec.tap
        );
    }
    ensure!(
        &now == links,
        "the links changed:\n before {links:?}\n after {now:?}"
    );
    Ok(())
}

/// The agent killed in the middle of a migration: the maps it set aside
/// are still under `old/` (see [`set_aside_as_a_killed_upgrade_would`]),
/// the new ones not made yet; this version comes back and resumes it.
const KILLED_MID_MIGRATION: RestartKind = RestartKind {
    name: "killed mid-migration",
    about: "the agent is killed in the middle of a migration (its maps set aside under old/) \
            and started again",
    signal: libc::SIGKILL,
    agent: Some(restart::this_agent),
    abi_after: Some((ABI_VERSION, DEFAULT_MAX_VIPS)),
};

/// What an upgrade killed after its first step leaves: the owners and the
/// VIP counters moved under `<pin_dir>/old/`, nothing in their place.
fn set_aside_as_a_killed_upgrade_would(pin_dir: &Path) -> Result<()> {
    let old = pin_dir.join("old");
    std::fs::create_dir_all(&old)?;
    for name in [maps::OWNERS, maps::VIP_STATS] {
        std::fs::rename(pin_dir.join(name), old.join(name))
            .with_context(|| format!("move {name} aside"))?;
    }
    Ok(())
}

/// The version changed as `abi` says: it says so, the maps have that
/// version's shape, nothing is left set aside.
fn ensure_migrated(
    pin_dir: &Path,
    log: &str,
    from: u32,
    (to, vip_slots): (u32, u32),
) -> Result<()> {
    let said = format!("datapath ABI {from} -> {to}");
    ensure!(log.contains(&said), "the agent did not say {said:?}");
    let owners = MapInfo::from_pin(pin_dir.join(maps::OWNERS))?;
    ensure!(
        owners.max_entries() == vip_slots,
        "havip_owners has {} entries, ABI {to} has {vip_slots}",
        owners.max_entries()
    );
    ensure!(
        !pin_dir.join("old").exists(),
        "maps left set aside under {}",
        pin_dir.join("old").display()
    );
    println!("   {said}: havip_owners now holds {vip_slots} VIP slots");
    Ok(())
}

#[test]
fn protection_never_lapses_across_agent_crashes_restarts_upgrades_and_rollbacks() -> Result<()> {
    cmd::require_tools(&["bpftool"])?;
    {
        let mut lab = Lab::build()?;
        lab.start_agent_with(AgentOptions {
            unpin_on_exit: false,
            ..AgentOptions::default()
        })?;
        let _ha = HaPair::start(&lab)?;
        let owner = lab
            .agent()?
            .wait_owner(VIP4_ID, VM1.port_id, Duration::from_secs(10))?;
        let probe = Prober::start(
            &lab.client,
            SocketAddr::new(IpAddr::V4(VIP4), ECHO_PORT),
            Duration::from_millis(10),
        )?;
        probe.wait_reply_from("vm1", 0, Duration::from_secs(5))?;
        // A hostile VM holds the VIPs too: its kernel answers for them.
        rogue::configure_vips(&lab.rogue, VIP4, VIP6)?;

        let unknown_port = |lab: &Lab| -> Result<u64> {
            Ok(lab
                .agent()?
                .status()?
                .stats
                .get("unknown_port")
                .copied()
                .unwrap_or(0))
        };
        let unknown_at_start = unknown_port(&lab)?;
        let mut links = lab.agent()?.links()?;
        // An XDP link per port, and a TC egress one (unless TC egress goes
        // through netlink: HAVIP_TC_ATTACH=netlink).
        let xdp = links.keys().filter(|k| k.contains("/xdp-")).count();
        let tc = links.keys().filter(|k| k.ends_with("/tc-egress")).count();
        ensure!(
            xdp == lab.vms().len() && (tc == xdp || tc == 0),
            "an XDP and a TC egress link per port: {links:?}"
        );
        println!(
            "{xdp} ports, each with an XDP link and TC egress {}",
            if tc == 0 {
                "through netlink"
            } else {
                "by a TCX link"
            }
        );
        // Every kind the benchmark goes through, then a migration cut short.
        let restarts = RESTART_KINDS
            .iter()
            .map(|kind| (kind, false))
            .chain([(&KILLED_MID_MIGRATION, true)]);
        let mut abi = ABI_VERSION;
        for (kind, cut_short) in restarts {
            println!("{}", kind.about);
            kind.take_down(lab.agent_mut()?)?;
            let down_at = now_us();
            // Nothing detached: the same links on every port...
            ensure_attached(&lab, &links)?;
            // ...enforcing the last state with no agent.
            let before = lab.agent()?.status()?;
            rogue_attacks(&lab)?;
            let after = lab.agent()?.status()?;
            ensure_rejected(&before, &after, &owner)?;
            let served = probe.snapshot().replies_from_after("vm1", down_at);
            println!("   {served} probes answered by vm1 while no agent ran");
            ensure!(served >= 50, "only {served} replies while no agent ran");

            if cut_short {
                set_aside_as_a_killed_upgrade_would(&lab.agent()?.pin_dir)?;
            }
            // The agent starts again and adopts what is in force.
            kind.bring_back(lab.agent_mut()?)?;
            let agent = lab.agent()?;
            if let Some(to) = kind.abi_after {
                ensure_migrated(&agent.pin_dir, &agent.log_text(), abi, to)?;
                abi = to.0;
            }
            let adopted = agent.links()?;
            for (pin, old) in &links {
                let new = adopted.get(pin);
                ensure!(
                    new.is_some_and(|n| n.id == old.id
                        && n.ifindex == old.ifindex
                        && n.prog_id != old.prog_id),
                    "{pin}: before the restart {old:?}, after {new:?} \
                     (same link and interface, a new program expected)"
                );
            }
            ensure!(
                adopted.len() == links.len(),
                "links after the restart: {adopted:?}"
            );
            let log = agent.log_text();
            let said = format!("adopted the links of {} port(s)", lab.vms().len());
            ensure!(
                log.contains(&said),
                "the agent did not say it adopted every port:\n{}",
                agent.log_tail(20)
            );
            let restarted = agent.status()?;
            let kept = restarted.owner(VIP4_ID)?;
            ensure!(
                kept.map(|o| (o.port_id, o.generation)) == Some((owner.port_id, owner.generation)),
                "the owner after the restart: {kept:?}, before: {owner:?}"
            );
            let counts = |s: &Status| -> Result<[u64; 3]> {
                Ok([
                    s.vip(VIP4_ID)?.drop_count("claim_not_bound"),
                    s.drop_count("mac_spoof"),
                    s.drop_count("ip_spoof"),
                ])
            };
            let (a, r) = (counts(&after)?, counts(&restarted)?);
            ensure!(
                a.iter().zip(&r).all(|(a, r)| r >= a),
                "counters lost in the restart: {a:?} -> {r:?}"
            );
            rogue_attacks(&lab)?;
            ensure_rejected(&restarted, &agent.status()?, &owner)?;
            println!("   adopted: same links, new programs, owner and counters kept");
            links = adopted;
        }

        // No frame met a port slot emptied by a starting agent.
        let unknown = unknown_port(&lab)?;
        ensure!(
            unknown == unknown_at_start,
            "unknown_port {unknown_at_start} -> {unknown}: a port's slot was emptied"
        );
        let log = probe.stop();
        let (gap, lost) = log.longest_gap();
        println!(
            "{}: {} probes, {} answered by vm1, longest gap {gap:.0} ms ({lost} lost)",
            log.target,
            log.sent(),
            log.answered_by("vm1")
        );
        ensure!(log.answered_by("rogue") == 0, "the rogue answered probes");
        ensure!(
            gap < 1000.0,
            "the client went {gap:.0} ms without an answer"
        );
    }
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
