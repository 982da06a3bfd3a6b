//! `cargo xtask lab [-- args]`: build, then run the lab and report its exit.

use std::ffi::OsString;
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{self, say};
use crate::{build, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for havip-lab.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) args: Vec<OsString>,
}

pub fn run(args: &Args) -> Result<()> {
    let toolchain = setup::ensure()?;
    let artifacts = build::run(&toolchain)?;
    let lab = artifacts.lab.with_context(|| {
        format!(
            "the tests crate ({}) has no havip-lab binary yet",
            build::TESTS_PACKAGE
        )
    })?;
    if util::is_root() {
        util::ensure_bpffs()?;
    }
    // On Ctrl-C the lab tears its namespaces down itself; we wait for it.
    let started = std::time::Instant::now();
    let status = util::status(
        Command::new(&lab)
            .args(&args.args)
            .env("HAVIP_EBPF_OBJECT", &artifacts.ebpf_object)
            .env("HAVIP_AGENT_BIN", &artifacts.agent),
    )?;
    util::timing("the lab", started);
    if !status.success() {
        say!("havip-lab ended with {}", util::exit_text(status));
    }
    std::process::exit(util::exit_code(status));
}
