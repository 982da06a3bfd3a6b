//! `cargo xtask bench [-- args]`: build, then run the benchmarks
//! (target/release/havip-bench) as root; they write target/bench/report.md
//! and target/bench/report.png and print the figures.

use std::ffi::OsString;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{self, say};
use crate::{build, setup};

pub const NEED_ROOT: &str = "the benchmarks need root (network namespaces, XDP, loading BPF): \
     run `cargo xtask bench` as root";

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for havip-bench, e.g. `-- --rounds 21` or `-- --only cost`
    /// (`-- --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) args: Vec<OsString>,
}

pub fn run(args: &Args) -> Result<()> {
    if !util::is_root() {
        bail!("{NEED_ROOT}");
    }
    let toolchain = setup::ensure()?;
    let artifacts = build::run(&toolchain)?;
    let bench = artifacts.bench.clone().with_context(|| {
        format!(
            "the tests crate ({}) has no havip-bench binary",
            build::TESTS_PACKAGE
        )
    })?;
    // The restarts section upgrades the agent to the next-abi build and
    // rolls it back: built only when that section runs.
    let next_abi = runs_section(&args.args, "restarts")
        .then(|| build::next_abi(&toolchain, &artifacts))
        .transpose()?;
    util::ensure_bpffs()?;
    let out = util::target_dir().join("bench");
    // What the report records as the command: as typed, not as run.
    let typed: Vec<String> = std::iter::once("cargo xtask bench".to_string())
        .chain((!args.args.is_empty()).then(|| "--".to_string()))
        .chain(args.args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    // On Ctrl-C the benchmark removes its labs itself; we wait for it.
    let mut command = Command::new(&bench);
    if let Some(next) = &next_abi {
        command
            .env("HAVIP_NEXT_ABI_AGENT_BIN", &next.agent)
            .env("HAVIP_NEXT_ABI_OBJECT", &next.object);
    }
    let status = util::status(
        command
            .arg("--out")
            .arg(&out)
            .arg("--command")
            .arg(typed.join(" "))
            .args(&args.args)
            .env("HAVIP_EBPF_OBJECT", &artifacts.ebpf_object)
            .env("HAVIP_AGENT_BIN", &artifacts.agent)
            .env("HAVIP_CONTROLLER_BIN_DIR", &artifacts.controller_bin_dir),
    )?;
    if !status.success() {
        say!("havip-bench ended with {}", util::exit_text(status));
        std::process::exit(util::exit_code(status));
    }
    Ok(())
}

/// Whether havip-bench run with `args` runs the section `name`: every
/// section does without `--only`.
fn runs_section(args: &[OsString], name: &str) -> bool {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut only = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if let Some(list) = a.strip_prefix("--only=") {
            only.push(list.to_owned());
        } else if a == "--only" {
            only.extend(args.get(i + 1).cloned());
        }
    }
    only.is_empty() || only.iter().any(|l| l.split(',').any(|s| s == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_runs_unless_only_leaves_it_out() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(runs_section(&args(&[]), "restarts"));
        assert!(runs_section(&args(&["--rounds", "3"]), "restarts"));
        assert!(runs_section(
            &args(&["--only", "cost,restarts"]),
            "restarts"
        ));
        assert!(runs_section(&args(&["--only=restarts"]), "restarts"));
        assert!(!runs_section(&args(&["--only", "cost"]), "restarts"));
        assert!(!runs_section(
            &args(&["--only=cost", "--rounds", "2"]),
            "restarts"
        ));
    }
}
