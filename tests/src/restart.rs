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
use havip_common::maps::{ABI_VERSION, DEFAULT_MAX_VIPS};

use crate::agent::{self, Agent};

/// An agent binary and its datapath (`None`: the one it embeds).
pub type AgentBuild = (PathBuf, Option<PathBuf>);

/// One way the agent is restarted: how it goes down, which agent comes
/// back, and what the pinned maps are then.
pub struct RestartKind {
    /// Short name, for figure names and logs.
    pub name: &'static str,
    /// What happens, for the report.
    pub about: &'static str,
    /// The signal that takes the running agent down (SIGTERM must end it
    /// with success).
    pub signal: libc::c_int,
    /// The agent that comes back (`None`: the same one).
    pub agent: Option<fn() -> Result<AgentBuild>>,
    /// (ABI version, VIP slots) of the pinned maps once it runs, when the
    /// version changes.
    pub abi_after: Option<(u32, u32)>,
}

/// Every kind of restart, in the order the benchmark goes through them.
pub const RESTART_KINDS: &[RestartKind] = &[
    RestartKind {
        name: "SIGKILL + start",
        about: "the agent crashes (kill -9) and is started again",
        signal: libc::SIGKILL,
        agent: None,
        abi_after: None,
    },
    RestartKind {
        name: "SIGTERM + start",
        about: "the agent is stopped as systemctl restart does (SIGTERM) and started again",
        signal: libc::SIGTERM,
        agent: None,
        abi_after: None,
    },
    RestartKind {
        name: "upgrade",
        about: "the agent is stopped (SIGTERM) and the next-abi build, whose maps have other shapes, starts over the pins",
        signal: libc::SIGTERM,
        agent: Some(next_abi_agent),
        abi_after: Some((ABI_VERSION + 1, DEFAULT_MAX_VIPS * 2)),
    },
    RestartKind {
        name: "rollback",
        about: "the next-abi agent is stopped (SIGTERM) and this version starts again over its pins",
        signal: libc::SIGTERM,
        agent: Some(this_agent),
        abi_after: Some((ABI_VERSION, DEFAULT_MAX_VIPS)),
    },
];

impl RestartKind {
    /// Takes the running agent down and starts it again on the same pin
    /// dir; returns once the new one has attached every port.
    pub fn restart(&self, agent: &mut Agent) -> Result<()> {
        self.take_down(agent)?;
        self.bring_back(agent)
    }

    /// Takes the running agent down; its programs stay attached.
    pub fn take_down(&self, agent: &mut Agent) -> Result<()> {
        let status = agent.signal_and_wait(self.signal)?;
        ensure!(
            self.signal != libc::SIGTERM || status.success(),
            "the agent exited with {status} after SIGTERM"
        );
        Ok(())
    }

    /// Starts the agent that comes back, on the same pin dir.
    pub fn bring_back(&self, agent: &mut Agent) -> Result<()> {
        if let Some(build) = self.agent {
            let (bin, object) = build()?;
            agent.replace_binary(bin, object.as_deref());
        }
        agent.start_again()
    }
}

/// This version's agent and its datapath (`None`: the one it embeds).
pub fn this_agent() -> Result<AgentBuild> {
    Ok((
        agent::agent_bin()?,
        std::env::var_os("HAVIP_EBPF_OBJECT").map(PathBuf::from),
    ))
}

/// The next-abi build of the agent and its datapath.
pub fn next_abi_agent() -> Result<AgentBuild> {
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
