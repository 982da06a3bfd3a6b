//! A full VIP map never wedges the host. With `havip_vips` (and the VIP
//! slots) at capacity, one reload removes one VIP and adds two: the one that
//! fits is programmed (a VM's claim for it is accepted), the other is
//! reported as not programmed with the reason (log, `status`), and nothing
//! else is disturbed (the owner learned before stays); a further reload
//! that frees room programs it.
//!
//! The capacity is the agent's `--max-vips` (4,096 here, to keep the config
//! small): the next agent on the same pins with a smaller one than the host
//! holds refuses to start and changes nothing (the programs in force keep
//! enforcing); one with a larger one carries every owner over into larger
//! maps.
//!
//! Needs root and the built agent.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Result};
use havip_tests::agent::{self, Agent, AgentOptions, Status};
use havip_tests::lab::{add_port_of, DirGuard};
use havip_tests::netns::{unique_stem, Netns};
use havip_tests::{cmd, rogue, wait};

/// The VIP bound to the VM's port from the start, and the two that come in.
const KEPT: (u32, Ipv4Addr) = (1, Ipv4Addr::new(10, 0, 6, 19));
const FITS: (u32, Ipv4Addr) = (5001, Ipv4Addr::new(10, 0, 6, 21));
const WAITS: (u32, Ipv4Addr) = (5002, Ipv4Addr::new(10, 0, 6, 22));
const WAIT: Duration = Duration::from_secs(30);
/// The VIPs this host holds (`--max-vips`).
const MAX_VIPS: u32 = 4096;

/// The address of filler VIP `id` (2..=MAX_VIPS), bound to no port.
fn filler(id: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 100 + (id / 250) as u8, (id % 250) as u8 + 1)
}

/// Port 11 on `tap-a`; the VIPs bound to it (`bound`) and the fillers
/// `fillers`.
fn config(bound: &[(u32, Ipv4Addr)], fillers: impl Iterator<Item = u32>) -> String {
    let mut c = String::from(
        "[[networks]]\nid = 1\ncidrs = [\"10.0.0.0/16\"]\n\n\
         [[ports]]\nid = 11\ninterface = \"tap-a\"\nnetwork = 1\n\
         mac = \"02:00:00:00:00:11\"\nips = [\"10.0.6.9\"]\n",
    );
    for (id, addr) in bound {
        let _ = write!(
            c,
            "\n[[vips]]\nid = {id}\nnetwork = 1\naddress = \"{addr}\"\nports = [11]\n"
        );
    }
    for id in fillers {
        let addr = filler(id);
        let _ = write!(
            c,
            "\n[[vips]]\nid = {id}\nnetwork = 1\naddress = \"{addr}\"\nports = []\n"
        );
    }
    c
}

fn has_vip(status: &Status, vip_id: u32) -> bool {
    status.vips.iter().any(|v| v.vip_id == vip_id)
}

/// The reason `status` gives for `vip_id` not being programmed, if it does.
fn not_programmed(status: &Status, vip_id: u32) -> Option<String> {
    let p = &status.protection;
    p.vips_not_programmed
        .iter()
        .find(|n| n.id == vip_id)
        .map(|n| n.reason.clone())
}

#[test]
fn a_full_vip_map_fails_only_the_vips_that_do_not_fit_and_recovers() -> Result<()> {
    cmd::require_root()?;
    cmd::require_tools(&["arping"])?;
    let hv = Netns::new("hv")?;
    let vm = Netns::new("vm")?;
    let dir = std::env::temp_dir().join(unique_stem());
    let _dir = DirGuard::create(&dir)?;
    let mut addrs = vec!["10.0.6.9/16".to_string()];
    addrs.extend([KEPT, FITS, WAITS].map(|(_, addr)| format!("{addr}/16")));
    add_port_of(&hv, "tap-a", &vm, "02:00:00:00:00:11", &addrs)?;

    // The map full: VIP 1 and 4095 fillers.
    let cfg = dir.join("havip.toml");
    std::fs::write(&cfg, config(&[KEPT], 2..=MAX_VIPS))?;
    let sized = |max_vips, pin_dir: Option<&std::path::Path>| AgentOptions {
        max_vips: Some(max_vips),
        pin_dir: pin_dir.map(Into::into),
        unpin_on_exit: pin_dir.is_some(),
        ..AgentOptions::default()
    };
    let agent = Agent::start_with(&hv, &cfg, &dir, &["tap-a"], sized(MAX_VIPS, None))?;
    let status = agent.status()?;
    ensure!(
        status.vips.len() == MAX_VIPS as usize && status.protection.vips_not_programmed.is_empty(),
        "{} VIPs in the datapath, not programmed: {:?}",
        status.vips.len(),
        status.protection.vips_not_programmed
    );
    rogue::arping_announce(&vm, KEPT.1, 2, false)?;
    let kept = agent.wait_owner(KEPT.0, 11, WAIT)?;

    // One reload: filler 4096 goes, two VIPs come; one fits.
    agent.edit_config(&config(&[KEPT, FITS, WAITS], 2..MAX_VIPS))?;
    let mut last = None;
    let reported = wait::until(WAIT, "VIP 5001 programmed and 5002 reported", || {
        let s = agent.status()?;
        let done =
            has_vip(&s, FITS.0) && !has_vip(&s, MAX_VIPS) && not_programmed(&s, WAITS.0).is_some();
        last = Some(s);
        Ok(done)
    });
    let status = last.expect("read by the wait");
    reported.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}; not programmed: {:?}\n--- agent log ---\n{}",
            status.protection.vips_not_programmed,
            agent.log_tail(20)
        )
    })?;
    let reason = not_programmed(&status, WAITS.0).unwrap_or_default();
    println!("vip {} not programmed: {reason}", WAITS.0);
    ensure!(
        reason.contains("no free VIP slot") && reason.contains(&MAX_VIPS.to_string()),
        "the reason does not say the map is full: {reason}"
    );
    ensure!(
        !has_vip(&status, WAITS.0) && status.vips.len() == MAX_VIPS as usize,
        "vip {} in the datapath, or the datapath not full: {} VIPs",
        WAITS.0,
        status.vips.len()
    );
    ensure!(
        status.protection.vips_not_programmed.len() == 1,
        "only vip {} is not programmed: {:?}",
        WAITS.0,
        status.protection.vips_not_programmed
    );
    let log = agent.log_text();
    ensure!(
        log.contains(&format!(
            "vip {}: not programmed: no free VIP slot",
            WAITS.0
        )) && !log.contains("failed part way"),
        "the log does not name vip {} and its reason, or the apply failed:\n{}",
        WAITS.0,
        agent.log_tail(20)
    );
    let text = agent.status_text()?;
    ensure!(
        text.contains("vips not programmed (1):") && text.contains(&WAITS.1.to_string()),
        "status does not list vip {} as not programmed:\n{text}",
        WAITS.0
    );
    // Nothing else disturbed: the owner learned before stays, the port is
    // protected.
    let now = status.owner(KEPT.0)?;
    ensure!(
        now.is_some_and(|o| (o.port_id, o.generation, &o.mac) == (11, kept.generation, &kept.mac)),
        "vip 1's owner changed: {kept:?} -> {now:?}"
    );
    ensure!(
        status.protection.port(11)?.0 == "protected",
        "{:?}",
        status.protection
    );
    // The one that fits works: the VM's claim for it is accepted, in a slot
    // of its own (the slot it took from filler 4096 was not wiped after).
    rogue::arping_announce(&vm, FITS.1, 2, false)?;
    agent.wait_owner(FITS.0, 11, WAIT)?;

    // A further reload frees room: the waiting VIP is programmed.
    agent.edit_config(&config(&[KEPT, FITS, WAITS], 2..MAX_VIPS - 1))?;
    wait::until(WAIT, "VIP 5002 programmed once there is room", || {
        let s = agent.status()?;
        Ok(has_vip(&s, WAITS.0) && s.protection.vips_not_programmed.is_empty())
    })?;
    rogue::arping_announce(&vm, WAITS.1, 2, false)?;
    agent.wait_owner(WAITS.0, 11, WAIT)?;
    let status = agent.status()?;
    for (vip, port) in [(KEPT.0, 11), (FITS.0, 11)] {
        ensure!(
            status.owner(vip)?.is_some_and(|o| o.port_id == port),
            "vip {vip} lost its owner: {:?}",
            status.owner(vip)?
        );
    }
    ensure!(
        agent
            .log_text()
            .contains(&format!("vip {}: programmed now", WAITS.0)),
        "{}",
        agent.log_tail(10)
    );

    // A smaller capacity than the host holds: refused, nothing changed.
    let before = agent.status()?;
    let pins = agent.stop_keeping_pins()?;
    let half = (MAX_VIPS / 2).to_string();
    let refused = agent::run_refused(&hv, &cfg, &pins.dir, &["--max-vips", &half])?;
    println!("--max-vips {half}: {}", refused.trim());
    ensure!(
        refused.contains("beyond the 2048") && refused.contains("--max-vips"),
        "the refusal does not say why: {refused}"
    );
    // Still in force: the programs on the port, the owners in the maps.
    let attached = cmd::output(std::process::Command::new("ip").args([
        "-n",
        hv.name(),
        "link",
        "show",
        "tap-a",
    ]))?;
    ensure!(attached.contains("xdp"), "XDP is off tap-a: {attached}");

    // A larger one: every VIP and owner carried over.
    let grown = Agent::start_with(
        &hv,
        &cfg,
        &dir,
        &["tap-a"],
        sized(MAX_VIPS * 2, Some(&pins.dir)),
    )?;
    let after = grown.status()?;
    ensure!(
        after.vips.len() == before.vips.len() && after.protection.vips_not_programmed.is_empty(),
        "{} VIPs before, {} after growing the maps; not programmed: {:?}",
        before.vips.len(),
        after.vips.len(),
        after.protection.vips_not_programmed
    );
    for vip in [KEPT.0, FITS.0, WAITS.0] {
        let (was, now) = (before.owner(vip)?, after.owner(vip)?);
        ensure!(
            was.zip(now)
                .is_some_and(|(w, n)| (w.port_id, w.generation) == (n.port_id, n.generation)),
            "vip {vip}: owner {was:?} before, {now:?} after"
        );
    }
    // The room is there: a VIP beyond the old capacity is programmed.
    let more = MAX_VIPS + 1;
    grown.edit_config(&config(&[KEPT, FITS, WAITS], 2..=more))?;
    wait::until(WAIT, "a VIP beyond the old capacity programmed", || {
        let s = grown.status()?;
        Ok(has_vip(&s, more) && s.protection.vips_not_programmed.is_empty())
    })?;
    grown.stop()
}
