//! `cargo xtask build`: the datapath, then the agent that embeds it and the
//! controller, then the binaries of the tests crate (the lab, the
//! benchmarks); all in release, into `target/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::build_ebpf;
use crate::setup::Toolchain;
use crate::util::{self, say};

pub const TESTS_PACKAGE: &str = "havip-tests";

/// What a build leaves in `target/`, as absolute paths.
pub struct Artifacts {
    pub ebpf_object: PathBuf,
    pub agent: PathBuf,
    /// Where `havip-controller` and `havipctl` are.
    pub controller_bin_dir: PathBuf,
    /// `target/release/havip-lab`, once the tests crate has that binary.
    pub lab: Option<PathBuf>,
    /// `target/release/havip-bench`, once the tests crate has that binary.
    pub bench: Option<PathBuf>,
}

pub fn run(toolchain: &Toolchain) -> Result<Artifacts> {
    let started = std::time::Instant::now();
    let ebpf_object = build_ebpf::run(toolchain)?;

    util::run(host_cargo(&ebpf_object).args([
        "build",
        "--release",
        "-p",
        "havip-agent",
        "-p",
        "havip-controller",
    ]))?;

    let bins = tests_bins()?;
    if bins.is_empty() {
        say!("{TESTS_PACKAGE} has no binaries yet: not building them");
    } else {
        util::run(host_cargo(&ebpf_object).args([
            "build",
            "--release",
            "-p",
            TESTS_PACKAGE,
            "--bins",
        ]))?;
    }

    util::timing("build (datapath, agent, controller, lab)", started);
    let release = util::target_dir().join("release");
    let artifacts = Artifacts {
        agent: release.join("havip-agent"),
        controller_bin_dir: release.clone(),
        lab: bins
            .iter()
            .any(|b| b == "havip-lab")
            .then(|| release.join("havip-lab")),
        bench: bins
            .iter()
            .any(|b| b == "havip-bench")
            .then(|| release.join("havip-bench")),
        ebpf_object,
    };
    say!("agent: {}", artifacts.agent.display());
    say!(
        "controller: {} (and havipctl)",
        artifacts
            .controller_bin_dir
            .join("havip-controller")
            .display()
    );
    if let Some(lab) = &artifacts.lab {
        say!("lab: {}", lab.display());
    }
    if let Some(bench) = &artifacts.bench {
        say!("bench: {}", bench.display());
    }
    Ok(artifacts)
}

/// Where the `next-abi` build goes: `target/next-abi/`.
fn next_abi_dir() -> PathBuf {
    util::target_dir().join("next-abi")
}

/// An agent and a datapath built with havip-common's `next-abi` feature:
/// the maps of a next ABI version, whose shapes differ from this one's,
/// for the tests of upgrades and rollbacks.
pub struct NextAbi {
    /// `target/next-abi/havip-agent`. It embeds this version's datapath
    /// (so that the agent's build script, shared by both builds, stays as
    /// it is): run it with `--bpf-object` [`NextAbi::object`].
    pub agent: PathBuf,
    pub object: PathBuf,
}

/// Builds [`NextAbi`]: the datapath into `target/next-abi/`, the agent into
/// the workspace's `target/` (only havip-common and the agent are compiled
/// again, once), copied to `target/next-abi/havip-agent`; then this
/// version's agent is put back in its place (a build with nothing to do).
pub fn next_abi(toolchain: &Toolchain, artifacts: &Artifacts) -> Result<NextAbi> {
    let started = std::time::Instant::now();
    let dir = next_abi_dir();
    let object = build_ebpf::build(toolchain, &dir, &["next-abi"])?;
    let cargo = |features: &[&str]| -> Result<()> {
        let mut cmd = host_cargo(&artifacts.ebpf_object);
        cmd.args(["build", "--release", "-p", "havip-agent"]);
        for f in features {
            cmd.args(["--features", f]);
        }
        util::run(&mut cmd)
    };
    cargo(&["havip-common/next-abi"])?;
    let agent = dir.join("havip-agent");
    std::fs::copy(&artifacts.agent, &agent).with_context(|| {
        format!(
            "cannot copy {} to {}",
            artifacts.agent.display(),
            agent.display()
        )
    })?;
    cargo(&[])?;
    util::timing("the next-abi agent and datapath", started);
    say!(
        "next-abi agent: {} (datapath {})",
        agent.display(),
        object.display()
    );
    Ok(NextAbi { agent, object })
}

/// Host cargo in the workspace root, building into the workspace's `target/`,
/// with HAVIP_EBPF_OBJECT for the build scripts that embed the datapath.
pub fn host_cargo(ebpf_object: &std::path::Path) -> Command {
    let mut cmd = util::host_cargo();
    cmd.current_dir(util::workspace_root())
        .env("CARGO_TARGET_DIR", util::target_dir())
        .env("HAVIP_EBPF_OBJECT", ebpf_object);
    cmd
}

/// The binary targets of the tests crate, from `cargo metadata`.
fn tests_bins() -> Result<Vec<String>> {
    let output = util::host_cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(util::workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    anyhow::ensure!(output.status.success(), "cargo metadata failed");
    bins_of(&output.stdout, TESTS_PACKAGE)
}

fn bins_of(metadata: &[u8], package: &str) -> Result<Vec<String>> {
    let metadata: serde_json::Value =
        serde_json::from_slice(metadata).context("cannot parse cargo metadata")?;
    let packages = metadata["packages"].as_array().into_iter().flatten();
    Ok(packages
        .filter(|p| p["name"] == package)
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| {
            let kinds = t["kind"].as_array().into_iter().flatten();
            kinds.into_iter().any(|k| k == "bin")
        })
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bin_targets_of_the_tests_package_count() {
        let metadata = br#"{"packages": [
            {"name": "havip-agent", "targets": [{"name": "havip-agent", "kind": ["bin"]}]},
            {"name": "havip-tests", "targets": [
                {"name": "havip_tests", "kind": ["lib"]},
                {"name": "havip-lab", "kind": ["bin"]},
                {"name": "e2e", "kind": ["test"]}
            ]}
        ]}"#;
        assert_eq!(bins_of(metadata, "havip-tests").unwrap(), ["havip-lab"]);
    }

    #[test]
    fn a_tests_crate_without_binaries_has_none() {
        let metadata = br#"{"packages": [
            {"name": "havip-tests", "targets": [{"name": "havip_tests", "kind": ["lib"]}]}
        ]}"#;
        assert!(bins_of(metadata, "havip-tests").unwrap().is_empty());
    }
}
