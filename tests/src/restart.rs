//! The ways an agent goes down and comes back, as a table: what the
//! restarts benchmark and the tests go through. Another kind (an upgrade
//! to a newer datapath object) is one more entry in [`RESTART_KINDS`].

use anyhow::{ensure, Result};

use crate::agent::Agent;

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
];

fn kill_and_start(agent: &mut Agent) -> Result<()> {
    agent.signal_and_wait(libc::SIGKILL)?;
    agent.start_again()
}

fn stop_and_start(agent: &mut Agent) -> Result<()> {
    let status = agent.signal_and_wait(libc::SIGTERM)?;
    ensure!(
        status.success(),
        "the agent exited with {status} after SIGTERM"
    );
    agent.start_again()
}
