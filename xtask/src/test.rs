//! `cargo xtask test`: the one command that runs every test.
//!
//! 1. setup and build (as `cargo xtask build`);
//! 2. the host tests: `cargo test --workspace --exclude havip-tests`;
//! 3. the privileged tests, as root: `cargo test --release -p havip-tests --
//!    --test-threads=1`, with the paths of the datapath, the agent and the lab.
//!
//! Without root the privileged tests fail the run; they are never skipped.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::build::{self, TESTS_PACKAGE};
use crate::util::{self, say, Tally};
use crate::{build_ebpf, kernel_test, package, setup};

pub const NEED_ROOT: &str =
    "the privileged tests need root (network namespaces, loading BPF): run as root";

#[derive(clap::Args)]
pub struct Args {
    /// Only the host tests (unprivileged): no root, no release build.
    #[arg(long)]
    pub(crate) host_only: bool,
    /// Skip the tests on Debian 12's 6.1 kernel in QEMU (`cargo xtask
    /// kernel-test`), which every full run includes.
    #[arg(long)]
    pub(crate) no_kernel_test: bool,
    /// Test name filters, passed to the privileged tests (to the host tests
    /// with --host-only), e.g. `-- failover`. A filtered run skips the
    /// kernel test.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) filters: Vec<OsString>,
}

pub fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    if !args.host_only && !util::is_root() {
        bail!("{NEED_ROOT} (or `cargo xtask test --host-only` for the host tests alone)");
    }
    let toolchain = setup::ensure()?;

    let mut results = Vec::new();
    let mut total = Tally::default();
    if args.host_only {
        let object = build_ebpf::run(&toolchain)?;
        results.push((
            "host tests",
            host_tests(&object, &args.filters, &mut total)?,
        ));
    } else {
        let artifacts = build::run(&toolchain)?;
        util::ensure_bpffs()?;
        let host_started = Instant::now();
        results.push((
            "host tests",
            host_tests(&artifacts.ebpf_object, &[], &mut total)?,
        ));
        util::timing("host tests (build included)", host_started);
        let privileged_started = Instant::now();
        let mut cmd = build::host_cargo(&artifacts.ebpf_object);
        // Every test binary runs, whichever fails: one failure must not
        // hide the others' results.
        cmd.args([
            "test",
            "--no-fail-fast",
            "--release",
            "-p",
            TESTS_PACKAGE,
            "--",
        ])
        .arg("--test-threads=1")
        .args(&args.filters)
        .env("HAVIP_AGENT_BIN", &artifacts.agent)
        .env("HAVIP_CONTROLLER_BIN_DIR", &artifacts.controller_bin_dir);
        if let Some(lab) = &artifacts.lab {
            cmd.env("HAVIP_LAB_BIN", lab);
        }
        // The upgrade tests start it over this version's pins.
        let next_abi = build::next_abi(&toolchain, &artifacts)?;
        cmd.env("HAVIP_NEXT_ABI_AGENT_BIN", &next_abi.agent)
            .env("HAVIP_NEXT_ABI_OBJECT", &next_abi.object);
        let mut privileged = Tally::default();
        let status = util::test_status(&mut cmd, &mut privileged)?;
        if status.success() && privileged.passed == 0 {
            if args.filters.is_empty() {
                bail!("the privileged tests ran no test: that is a failure, not a pass");
            }
            bail!(
                "no privileged test matches {:?} (filters match test names, not file names)",
                args.filters
            );
        }
        total.passed += privileged.passed;
        total.failed += privileged.failed;
        results.push(("privileged tests", status));
        util::timing("privileged tests (build included)", privileged_started);
        if args.filters.is_empty() {
            // The packages, installed into a pristine Debian 12 root.
            let result = package::check_built(&artifacts);
            if let Err(e) = &result {
                say!("package check: {e:#}");
            }
            total.passed += u64::from(result.is_ok());
            total.failed += u64::from(result.is_err());
            results.push(("packages", exit_status(result.is_ok())));
        }
        if args.filters.is_empty() && !args.no_kernel_test {
            // The datapath's tables and a failover on the kernel
            // hypervisors run (Debian 12's 6.1: no TCX), in QEMU.
            let mut kernel = Tally::default();
            let result = kernel_test::run_counted(&kernel_test::Args::default(), &mut kernel);
            if let Err(e) = &result {
                say!("kernel test: {e:#}");
            }
            total.passed += kernel.passed;
            total.failed += kernel.failed;
            results.push(("tests on Linux 6.1", exit_status(result.is_ok())));
        }
    }

    let summary = results
        .iter()
        .map(|(name, status)| match status.success() {
            true => format!("{name} passed"),
            false => format!("{name} FAILED ({})", util::exit_text(*status)),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let elapsed = started.elapsed().as_secs();
    let time = format!("{}m{:02}s", elapsed / 60, elapsed % 60);
    let ok = results.iter().all(|(_, status)| status.success());
    if ok {
        say!("test summary: {summary}; all passed in {time}");
    } else {
        say!("test summary: {summary}; after {time}");
    }
    // The closing line CI reads: every test of every run, added up.
    println!("xtask: {} passed, {} failed", total.passed, total.failed);
    if !ok {
        bail!("tests failed: {summary}");
    }
    Ok(())
}

/// The unprivileged tests of every crate but the tests crate.
fn host_tests(ebpf_object: &Path, filters: &[OsString], tally: &mut Tally) -> Result<ExitStatus> {
    let mut cmd = build::host_cargo(ebpf_object);
    cmd.args([
        "test",
        "--no-fail-fast",
        "--workspace",
        "--exclude",
        TESTS_PACKAGE,
    ]);
    if !filters.is_empty() {
        cmd.arg("--").args(filters);
    }
    util::test_status(&mut cmd, tally)
}

/// An exit status standing for a step's result (the summary reports steps
/// by status).
fn exit_status(ok: bool) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(if ok { 0 } else { 1 << 8 })
}
