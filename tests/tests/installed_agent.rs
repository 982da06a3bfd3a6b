//! The agent as its systemd unit runs it: with only the capabilities the
//! unit's `CapabilityBoundingSet=` gives (packaging/havip-agent/
//! havip-agent.service, applied with setpriv), it loads the datapath,
//! protects every port of the lab and refuses a rogue VM's claim on the VIP,
//! and a restart (`systemctl restart`: SIGTERM, then a new agent) adopts
//! the programs it left attached; with one of them less it cannot run, so
//! none is there for nothing.
//!
//! `cargo xtask package --check` runs this test with the agent installed
//! from the package into a pristine root (`HAVIP_AGENT_BIN`); `cargo xtask
//! test` with the agent it built. Needs root; run with `--test-threads=1`.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use havip_tests::agent::AgentOptions;
use havip_tests::lab::{Lab, VIP4, VIP4_ID};
use havip_tests::{leftovers, rogue, wait};

const UNIT: &str = include_str!("../../packaging/havip-agent/havip-agent.service");

/// The capabilities of the unit's bounding set, as setpriv names them
/// (`CAP_NET_ADMIN` -> `net_admin`).
fn unit_capabilities() -> Result<Vec<String>> {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .context("the agent's unit has no CapabilityBoundingSet=")?;
    let ambient = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .context("the agent's unit has no AmbientCapabilities=")?;
    ensure!(
        line.trim() == ambient.trim(),
        "the unit's bounding set ({line}) and ambient capabilities ({ambient}) differ"
    );
    Ok(line
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect())
}

fn setpriv(caps: &[String]) -> Vec<String> {
    let set: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    vec![
        "setpriv".into(),
        "--bounding-set".into(),
        format!("-all,{}", set.join(",")),
        "--".into(),
    ]
}

#[test]
fn the_agent_protects_the_lab_with_the_units_capabilities_only() -> Result<()> {
    let caps = unit_capabilities()?;
    println!("unit capabilities: {caps:?}");
    {
        let mut lab = Lab::build()?;
        lab.start_agent_with(AgentOptions {
            run_under: setpriv(&caps),
            unpin_on_exit: false,
            ..AgentOptions::default()
        })?;
        // As the unit restarts it: SIGTERM leaves the programs attached; the
        // next agent adopts them.
        let ports = lab.vms().len();
        let agent = lab.agent_mut()?;
        let exited = agent.signal_and_wait(libc::SIGTERM)?;
        ensure!(exited.success(), "the agent exited {exited} on SIGTERM");
        agent.start_again()?;
        ensure!(
            agent
                .log_text()
                .contains(&format!("adopted the links of {ports} port(s)")),
            "the restarted agent did not adopt the pinned programs:\n{}",
            agent.log_tail(20)
        );
        let agent = lab.agent()?;
        let status = agent.status()?;
        for p in &status.protection.ports {
            ensure!(p.state == "protected", "port not protected: {p:?}");
        }
        // A rogue VM announces the VIP; the datapath refuses its claim.
        rogue::arping_announce(&lab.rogue.ns, VIP4, 3, false)?;
        wait::until(
            Duration::from_secs(5),
            "the rogue claim to be refused",
            || Ok(agent.status()?.vip(VIP4_ID)?.drop_count("claim_not_bound") >= 1),
        )?;
        ensure!(
            agent.status()?.owner(VIP4_ID)?.is_none(),
            "the rogue VM became the owner"
        );
        lab.tear_down()?;
    }

    // Each capability of the set is needed: without it the agent cannot
    // start (it exits before attaching).
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let mut lab = Lab::build()?;
        let started = lab.start_agent_with(AgentOptions {
            run_under: setpriv(&fewer),
            ready_timeout: Some(Duration::from_secs(5)),
            ..AgentOptions::default()
        });
        ensure!(
            started.is_err(),
            "the agent runs without CAP_{}: the unit need not give it",
            missing.to_uppercase()
        );
        println!(
            "without {missing}: {:#}",
            started
                .err()
                .map(|e| e.to_string().lines().next().unwrap_or_default().to_owned())
                .unwrap_or_default()
        );
        lab.tear_down()?;
    }
    let left = leftovers();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}
