//! `cargo xtask build-ebpf`: builds the datapath (havip-ebpf, a workspace of
//! its own) for bpfel-unknown-none, into the workspace's `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Result};

use crate::setup::Toolchain;
use crate::util::{self, say};

pub const TARGET: &str = "bpfel-unknown-none";

/// Variables from our own environment (or set by the cargo that runs us)
/// that would send the eBPF build to another compiler, directory or target,
/// or add host flags to it.
const CONFUSING_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTUP_TOOLCHAIN",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
];

/// Builds the datapath and returns the absolute path of the object.
pub fn run(toolchain: &Toolchain) -> Result<PathBuf> {
    build(toolchain, &util::target_dir(), &[])
}

/// Builds the datapath with havip-common's `features` into `target_dir`.
pub fn build(toolchain: &Toolchain, target_dir: &Path, features: &[&str]) -> Result<PathBuf> {
    let crate_dir = util::workspace_root().join("havip-ebpf");
    ensure!(
        crate_dir.join("src/main.rs").is_file(),
        "{} does not exist yet",
        crate_dir.join("src/main.rs").display()
    );
    say!("building the datapath (havip-ebpf) for {TARGET}");
    let mut cmd = command(toolchain);
    cmd.current_dir(&crate_dir)
        .arg("--target-dir")
        .arg(target_dir);
    for f in features {
        cmd.arg("--features").arg(format!("havip-common/{f}"));
    }
    util::run(&mut cmd)?;

    let object = object_path(target_dir);
    ensure!(
        object.is_file(),
        "the build succeeded but {} is missing",
        object.display()
    );
    say!("eBPF object: {}", object.display());
    Ok(object)
}

/// Where the build into `target_dir` puts the object.
fn object_path(target_dir: &Path) -> PathBuf {
    target_dir.join(TARGET).join("release/havip-ebpf")
}

/// The build command, without its working directory.
fn command(toolchain: &Toolchain) -> Command {
    let mut cmd = match toolchain {
        // Debian's cargo 1.96 by absolute path (rustup's 1.95 is first on
        // PATH), with Debian's rustc, whose sysroot has a prebuilt `core`.
        // RUSTC_BOOTSTRAP only for aya_ebpf, which uses one unstable feature.
        Toolchain::Debian => {
            let mut cmd = Command::new("/usr/bin/cargo");
            cmd.env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "aya_ebpf")
                .arg("build");
            cmd
        }
        // rustup's nightly builds `core` from rust-src. (`rustup run
        // nightly cargo` is `cargo +nightly`, even if /usr/bin comes first.)
        Toolchain::Upstream => {
            let mut cmd = Command::new("rustup");
            cmd.env_remove("RUSTC").args([
                "run",
                "nightly",
                "cargo",
                "build",
                "-Z",
                "build-std=core",
            ]);
            cmd
        }
    };
    cmd.args(["--release", "--target", TARGET])
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags());
    for var in CONFUSING_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Debug info and BTF for the maps and programs; bpf_target_arch tells
/// aya-ebpf which architecture's pt_regs layout to use (the host's).
fn encoded_rustflags() -> String {
    [
        "-Cdebuginfo=2".to_string(),
        "-Clink-arg=--btf".to_string(),
        format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
    ]
    .join("\x1f")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_build_is_the_verified_recipe() {
        let cmd = command(&Toolchain::Debian);
        assert_eq!(cmd.get_program(), "/usr/bin/cargo");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            ["build", "--release", "--target", "bpfel-unknown-none"]
        );
        let env = |key: &str| {
            cmd.get_envs()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.map(|v| v.to_str().unwrap().to_string()))
        };
        assert_eq!(env("RUSTC"), Some(Some("/usr/bin/rustc".into())));
        assert_eq!(env("RUSTC_BOOTSTRAP"), Some(Some("aya_ebpf".into())));
        for var in [
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "RUSTUP_TOOLCHAIN",
            "CARGO_TARGET_DIR",
        ] {
            assert_eq!(env(var), Some(None), "{var} must be removed");
        }
    }

    #[test]
    fn upstream_build_uses_nightly_and_build_std() {
        let cmd = command(&Toolchain::Upstream);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            &args[..6],
            ["run", "nightly", "cargo", "build", "-Z", "build-std=core"]
        );
    }

    #[test]
    fn rustflags_match_the_notes_on_x86_64() {
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                encoded_rustflags(),
                "-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f--cfg=bpf_target_arch=\"x86_64\""
            );
        }
    }

    #[test]
    fn object_lands_in_the_workspace_target() {
        let object = object_path(&util::target_dir());
        assert!(object.ends_with("target/bpfel-unknown-none/release/havip-ebpf"));
        assert!(object.is_absolute());
    }
}
