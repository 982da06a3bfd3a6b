//! `cargo xtask run -- <agent args>`: build, then become the agent.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{self, say};
use crate::{build, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for havip-agent, e.g. `-- run --config havip.toml`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) args: Vec<OsString>,
}

pub fn run(args: &Args) -> Result<()> {
    let toolchain = setup::ensure()?;
    let artifacts = build::run(&toolchain)?;
    if util::is_root() {
        util::ensure_bpffs()?;
    }
    let mut cmd = Command::new(&artifacts.agent);
    cmd.args(&args.args);
    say!("running: {}", util::describe(&cmd));
    // exec: the agent takes our place, so signals and the exit code are its own.
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot run {}", artifacts.agent.display()))
}
