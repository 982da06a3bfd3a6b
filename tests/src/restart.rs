//! The ways an agent goes down and comes back, as a table: what the
//! restarts benchmark goes through. Another kind is one more entry in
//! [`RESTART_KINDS`].
//!
//! The upgrade starts the next-abi build of the agent and its datapath
//! (maps of other shapes, which the agent migrates) over this version's
//! pins, the rollback this version again; `cargo xtask test` and `cargo
//! xtask bench` build the next-abi pair and name it in
//! `HAVIP_NEXT_ABI_AGENT_BIN` and `HAVIP_NEXT_ABI_OBJECT`.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};

use crate::agent::{self, Agent};

/// One way the agent is restarted.
pub struct RestartKind {
    /// Short name, for figure names and logs.
    pub name: &'static str,
    /// What happens, for the report.
    pub about: &'static str,
    /// Takes the running agent down and starts it again on the same pin
    /// dir; returns once the new one has attached every port.
    pub restart: fn(&mut Agent) -> Result<()>,
}

/// Every kind of restart, in the order the benchmark goes through them.
pub const RESTART_KINDS: &[RestartKind] = &[
    RestartKind {
        name: "SIGKILL + start",
        about: "the agent crashes (kill -9) and is started again",
        restart: kill_and_start,
    },
    RestartKind {
        name: "SIGTERM + start",
        about: "the agent is stopped as systemctl restart does (SIGTERM) and started again",
        restart: stop_and_start,
    },
    RestartKind {
        name: "upgrade",
        about: "the agent is stopped (SIGTERM) and the next-abi build, whose maps have other shapes, starts over the pins",
        restart: upgrade,
    },
    RestartKind {
        name: "rollback",
        about: "the next-abi agent is stopped (SIGTERM) and this version starts again over its pins",
        restart: roll_back,
    },
];

fn kill_and_start(agent: &mut Agent) -> Result<()> {
    agent.signal_and_wait(libc::SIGKILL)?;
    agent.start_again()
}

fn stop_and_start(agent: &mut Agent) -> Result<()> {
    stop(agent)?;
    agent.start_again()
}

fn upgrade(agent: &mut Agent) -> Result<()> {
    let (bin, object) = next_abi_agent()?;
    stop(agent)?;
    agent.replace_binary(bin, object.as_deref());
    agent.start_again()
}

fn roll_back(agent: &mut Agent) -> Result<()> {
    let (bin, object) = this_agent()?;
    stop(agent)?;
    agent.replace_binary(bin, object.as_deref());
    agent.start_again()
}

fn stop(agent: &mut Agent) -> Result<()> {
    let status = agent.signal_and_wait(libc::SIGTERM)?;
    ensure!(
        status.success(),
        "the agent exited with {status} after SIGTERM"
    );
    Ok(())
}

/// This version's agent and its datapath (`None`: the one it embeds).
pub fn this_agent() -> Result<(PathBuf, Option<PathBuf>)> {
    Ok((
        agent::agent_bin()?,
        std::env::var_os("HAVIP_EBPF_OBJECT").map(PathBuf::from),
    ))
}

/// The next-abi build of the agent and its datapath.
pub fn next_abi_agent() -> Result<(PathBuf, Option<PathBuf>)> {
    let var = |name: &str| {
        std::env::var_os(name).map(PathBuf::from).with_context(|| {
            format!(
                "{name} is not set: run this with `cargo xtask test` or `cargo xtask \
                 bench`, which build the next-abi agent and datapath"
            )
        })
    };
    Ok((
        var("HAVIP_NEXT_ABI_AGENT_BIN")?,
        Some(var("HAVIP_NEXT_ABI_OBJECT")?),
    ))
}
