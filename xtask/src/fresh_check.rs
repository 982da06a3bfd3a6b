//! `cargo xtask fresh-check`: the README's two commands, run exactly as
//! written, in a pristine Debian 12 root that holds what a fresh machine of
//! this kind has and nothing more.
//!
//! 1. host tools: mmdebstrap, if missing;
//! 2. root: `mmdebstrap` of the image's Debian packages
//!    (`xtask/fresh/image-packages.txt`) from this machine's apt sources;
//! 3. toolchain: the host's rustup toolchains, bound read-only (the image's
//!    one Rust toolchain, which cannot be downloaded here), with rustup's
//!    proxies in `/root/.cargo/bin` and nothing else there (no bpf-linker);
//! 4. source: `git archive HEAD` into `/root/havip`;
//! 5. each command of the README's "Try it" block, in a chroot of the root
//!    with a clean environment, as root, with its own /proc, /sys, /run, the
//!    host's /dev and cgroups, and no bpffs (a fresh machine has none).
//!
//! Everything is mounted in a mount namespace of our own, so nothing of it
//! is seen outside and nothing outlives us; the root is removed at the end
//! (`--keep` keeps it). Each step's output goes to the terminal and to
//! `target/fresh-check/logs/`; a failing step fails the check with its name
//! and its last lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::setup;
use crate::util::{self, say, Tally};

/// The image's Debian packages, one name a line (`#` starts a comment).
const IMAGE_PACKAGES: &str = include_str!("../fresh/image-packages.txt");
/// The README, whose "Try it" block names the commands to run.
const README: &str = include_str!("../../README.md");
/// Where the sources go in the root.
const SOURCE_DIR: &str = "/root/havip";
/// The PATH of a fresh machine's root shell: rustup's proxies first.
const ROOT_PATH: &str =
    "/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(clap::Args)]
pub struct Args {
    /// Keep the root afterwards (to look around in it with chroot).
    #[arg(long)]
    keep: bool,
    /// Where to build the root [default: target/fresh-check/root].
    #[arg(long)]
    root: Option<PathBuf>,
    /// Unpack the pristine root a previous run of this checkout built
    /// (target/fresh-check/pristine.tar, for the same package list) instead
    /// of building it again: for trying a change quickly. CI never passes it.
    #[arg(long)]
    reuse_pristine: bool,
}

/// How long each step took, and what it said of its own parts.
#[derive(Default)]
struct Report {
    steps: Vec<(String, Duration, bool)>,
    /// `xtask: timing: <part> <s> s` lines of the commands, in order.
    parts: Vec<(String, String)>,
}

impl Report {
    fn step<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        say!("fresh-check: step: {name}");
        let started = Instant::now();
        let result = f(self);
        let took = started.elapsed();
        say!(
            "fresh-check: step: {name}: {} in {:.1} s",
            if result.is_ok() { "done" } else { "FAILED" },
            took.as_secs_f64()
        );
        self.steps.push((name.to_string(), took, result.is_ok()));
        result.with_context(|| format!("fresh-check: step `{name}` failed"))
    }

    fn print(&self) {
        say!("fresh-check: what each step took");
        for (name, took, ok) in &self.steps {
            let status = if *ok { "ok" } else { "FAILED" };
            say!("  {:<24} {:>8.1} s  {status}", name, took.as_secs_f64());
        }
        for (command, part) in &self.parts {
            say!("    {command}: {part}");
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        util::is_root(),
        "fresh-check builds a Debian root and runs the privileged tests in it: run it as root"
    );
    let commands = readme_commands(README)?;
    let root = match &args.root {
        Some(root) => std::path::absolute(root).context("cannot resolve --root")?,
        None => util::target_dir().join("fresh-check/root"),
    };
    let logs = util::target_dir().join("fresh-check/logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    say!(
        "fresh-check: a pristine Debian 12 root at {}, then {}",
        root.display(),
        commands
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(" and ")
    );

    let mut report = Report::default();
    let started = Instant::now();
    let result = check(&root, &logs, &commands, args.reuse_pristine, &mut report);
    let removed = if args.keep {
        say!("fresh-check: the root stays at {} (--keep)", root.display());
        Ok(())
    } else {
        remove_root(&root)
    };
    report.print();
    say!(
        "fresh-check: {} in {:.1} min; logs in {}",
        if result.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64() / 60.0,
        logs.display()
    );
    let tally = result?;
    removed?;
    // The closing line CI reads: the tests run in the root.
    println!(
        "fresh-check: {} passed, {} failed",
        tally.passed, tally.failed
    );
    Ok(())
}

/// Steps 1 to 5; returns what the tests in the root counted.
fn check(
    root: &Path,
    logs: &Path,
    commands: &[String],
    reuse_pristine: bool,
    report: &mut Report,
) -> Result<Tally> {
    report.step("host tools", |_| {
        setup::ensure_packages("fresh-check", HOST_PACKAGES)
    })?;
    enter_private_mount_namespace()?;
    report.step("root (mmdebstrap)", |_| {
        build_root(root, logs, reuse_pristine)
    })?;
    report.step("toolchain", |_| install_rustup(root))?;
    report.step("source", |_| copy_source(root))?;
    mount_runtime(root)?;
    let mut tally = Tally::default();
    for (i, command) in commands.iter().enumerate() {
        let log = logs.join(format!("{}-{}.log", i + 1, command.replace(' ', "-")));
        report.step(command, |report| {
            run_in_root(root, command, &log, &mut tally, &mut report.parts)
        })?;
    }
    ensure!(
        tally.passed > 0,
        "the README's commands ran no test in the fresh root"
    );
    Ok(tally)
}

/// The commands of the README's "Try it" block (```sh after `## Try it`),
/// without their comments.
fn readme_commands(readme: &str) -> Result<Vec<String>> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Try it"))
        .context("the README has no `## Try it` section")?;
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .context("the README's `## Try it` section has no ```sh block")?;
    let commands: Vec<String> = block
        .lines()
        .map(|line| {
            line.split('#')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .filter(|line| !line.is_empty())
        .collect();
    ensure!(
        !commands.is_empty(),
        "the README's ```sh block under `## Try it` has no command"
    );
    Ok(commands)
}

/// The image's package names.
fn image_packages() -> Vec<&'static str> {
    IMAGE_PACKAGES
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .collect()
}

/// mmdebstrap, which builds the root.
pub(crate) const HOST_PACKAGES: &[(&str, &str)] = &[("mmdebstrap", "/usr/bin/mmdebstrap")];

/// Our mounts (and those of the commands we run) stay in a mount namespace
/// of our own, which ends with us.
pub(crate) fn enter_private_mount_namespace() -> Result<()> {
    // SAFETY: unshare has no memory-safety preconditions; xtask runs one
    // thread, which CLONE_NEWNS needs.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot enter a mount namespace of our own (unshare CLONE_NEWNS)");
    }
    mount(&["--make-rprivate", "/"])
}

pub(crate) fn mount(args: &[&str]) -> Result<()> {
    util::run(Command::new("mount").args(args))
}

/// This machine's apt sources that are in use (files renamed `*.disabled*`
/// are not), for mmdebstrap.
fn apt_sources() -> Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    let list = Path::new("/etc/apt/sources.list");
    if list.is_file() {
        sources.push(list.to_path_buf());
    }
    let dir = Path::new("/etc/apt/sources.list.d");
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("list" | "sources")
                )
            })
            .collect();
        found.sort();
        sources.extend(found);
    }
    ensure!(
        !sources.is_empty(),
        "this machine has no apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/)"
    );
    Ok(sources)
}

/// The apt settings of this machine's image (`/etc/apt/apt.conf.d/`), so the
/// root reaches the same mirrors the same way.
fn apt_settings() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/apt.conf.d")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The pristine root as a tarball, and the package list it was built from.
fn pristine_tar() -> (PathBuf, PathBuf) {
    let dir = util::target_dir().join("fresh-check");
    (dir.join("pristine.tar"), dir.join("pristine.packages"))
}

fn build_root(root: &Path, logs: &Path, reuse_pristine: bool) -> Result<()> {
    if root.exists() {
        say!(
            "removing the root a previous run left at {}",
            root.display()
        );
        remove_root(root)?;
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let (tar, stamp) = pristine_tar();
    let reusable = std::fs::read_to_string(&stamp).is_ok_and(|s| s == IMAGE_PACKAGES);
    if reuse_pristine && reusable && tar.is_file() {
        say!(
            "reusing the pristine root of a previous run ({}, --reuse-pristine)",
            tar.display()
        );
    } else {
        let _ = std::fs::remove_file(&stamp);
        mmdebstrap(&tar, logs)?;
        std::fs::write(&stamp, IMAGE_PACKAGES)?;
    }
    util::run(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(root))?;
    machine_settings(root)
}

/// The machine's own settings, which are not packages: its resolver and
/// hosts, and its CA trust store (this workplace's TLS proxy is in it, and
/// crates.io is reached through it).
pub(crate) fn machine_settings(root: &Path) -> Result<()> {
    for file in [
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/ssl/certs/ca-certificates.crt",
    ] {
        let to = root.join(file.trim_start_matches('/'));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(&to);
        std::fs::copy(file, &to).with_context(|| format!("cannot copy {file} into the root"))?;
    }
    Ok(())
}

/// mmdebstrap of the image's packages into the tarball `tar`.
fn mmdebstrap(tar: &Path, logs: &Path) -> Result<()> {
    let packages = image_packages();
    say!(
        "building the root with the image's {} Debian packages (a few minutes)",
        packages.len()
    );
    mmdebstrap_tar(tar, &logs.join("0-mmdebstrap.log"), "apt", &packages)
}

/// mmdebstrap of Debian 12 (`variant`, plus `packages`) from this
/// machine's apt sources and settings into the tarball `tar`, its output
/// in `log`.
pub(crate) fn mmdebstrap_tar(
    tar: &Path,
    log: &Path,
    variant: &str,
    packages: &[&str],
) -> Result<()> {
    let mut cmd = Command::new("mmdebstrap");
    cmd.args([
        "--mode=root",
        &format!("--variant={variant}"),
        "--format=tar",
    ]);
    if !packages.is_empty() {
        cmd.arg(format!("--include={}", packages.join(",")));
    }
    for setting in apt_settings() {
        cmd.arg(format!("--aptopt={}", setting.display()));
    }
    cmd.arg("bookworm").arg(tar);
    for source in apt_sources()? {
        cmd.arg(source);
    }
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null());
    say!("running: mmdebstrap ... (output in {})", log.display());
    let status = cmd.status().context("cannot run mmdebstrap")?;
    if !status.success() {
        bail!(
            "mmdebstrap failed ({}); its last lines:\n{}",
            util::exit_text(status),
            last_lines(log, 30)
        );
    }
    Ok(())
}

/// rustup's proxies (cargo, rustc, ...: rustup itself under other names) in
/// the root's `/root/.cargo/bin`, for rustup's home, which [`mount_runtime`]
/// binds read-only at `/root/.rustup`. Nothing else of the host's cargo home
/// comes along.
fn install_rustup(root: &Path) -> Result<()> {
    let rustup_home = rustup_home();
    ensure!(
        rustup_home.join("toolchains").is_dir(),
        "no rustup toolchains at {}: a fresh machine of this kind has rustup's stable",
        rustup_home.display()
    );
    let host_bin = util::cargo_bin_dir();
    let rustup = host_bin.join("rustup");
    let rustup_inode = std::fs::metadata(&rustup)
        .with_context(|| format!("no rustup at {}", rustup.display()))?
        .ino();
    let bin = root.join("root/.cargo/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(&rustup, bin.join("rustup")).context("cannot copy rustup into the root")?;
    let mut proxies = Vec::new();
    for entry in std::fs::read_dir(&host_bin)? {
        let entry = entry?;
        let name = entry.file_name();
        // A proxy is rustup under another name: a hard link, or a symlink.
        let is_proxy = std::fs::metadata(entry.path()).is_ok_and(|m| m.ino() == rustup_inode);
        if is_proxy && name != "rustup" {
            std::fs::hard_link(bin.join("rustup"), bin.join(&name))?;
            proxies.push(name.to_string_lossy().into_owned());
        }
    }
    proxies.sort();
    let env = util::home_dir().join(".cargo/env");
    if env.is_file() {
        std::fs::copy(&env, root.join("root/.cargo/env"))?;
    }
    std::fs::create_dir_all(root.join("root/.rustup"))?;
    say!(
        "rustup toolchains from {} (read-only); proxies: rustup {}",
        rustup_home.display(),
        proxies.join(" ")
    );
    Ok(())
}

fn rustup_home() -> PathBuf {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::home_dir().join(".rustup"))
}

/// A clean `git archive` of HEAD at the root's `/root/havip`.
fn copy_source(root: &Path) -> Result<()> {
    let workspace = util::workspace_root();
    let git = |args: &[&str]| -> Result<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(workspace)
            .output()
            .context("cannot run git")?;
        ensure!(
            out.status.success(),
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    if !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        say!("note: the work tree has changes that are not committed; fresh-check tests HEAD ({commit}) without them");
    }
    let dest = root.join(SOURCE_DIR.trim_start_matches('/'));
    std::fs::create_dir_all(&dest)?;
    say!("copying `git archive HEAD` ({commit}) to {SOURCE_DIR}");
    let mut archive = Command::new("git")
        .args(["archive", "--format=tar", "HEAD"])
        .current_dir(workspace)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run git archive")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&dest)
        .stdin(archive.stdout.take().expect("piped"))
        .status()
        .context("cannot run tar")?;
    let archived = archive.wait()?;
    ensure!(
        archived.success() && tar.success(),
        "git archive | tar failed"
    );
    Ok(())
}

/// What a running machine has mounted: its own /proc and /sys (and cgroups),
/// /dev, a /run tmpfs; no bpffs. And rustup's home, read-only. The root itself becomes a mount point, so
/// that one recursive unmount takes everything off.
fn mount_runtime(root: &Path) -> Result<()> {
    let r = |p: &str| root.join(p).to_string_lossy().into_owned();
    let root_s = root.to_string_lossy();
    mount(&["--bind", &root_s, &root_s])?;
    mount(&[
        "--bind",
        "-o",
        "ro",
        &rustup_home().to_string_lossy(),
        &r("root/.rustup"),
    ])?;
    mount(&["-t", "proc", "proc", &r("proc")])?;
    mount(&["-t", "sysfs", "sysfs", &r("sys")])?;
    if Path::new("/sys/fs/cgroup").is_dir() {
        mount(&["--rbind", "/sys/fs/cgroup", &r("sys/fs/cgroup")])?;
    }
    mount(&["--rbind", "/dev", &r("dev")])?;
    mount(&["-t", "tmpfs", "-o", "mode=755", "tmpfs", &r("run")])?;
    Ok(())
}

/// Runs `command` in the root as a fresh machine's root shell would, with
/// its output on our terminal and in `log`.
fn run_in_root(
    root: &Path,
    command: &str,
    log: &Path,
    tally: &mut Tally,
    parts: &mut Vec<(String, String)>,
) -> Result<()> {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .args(["/usr/bin/env", "-i"])
        .arg(format!("PATH={ROOT_PATH}"))
        .args(["HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/bash"])
        .args(["/bin/bash", "-c"])
        .arg(format!("cd {SOURCE_DIR} && exec {command} 2>&1"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    say!("running in the root: {command}");
    let mut file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = cmd.spawn().context("cannot run chroot")?;
    let out = child.stdout.take().expect("piped");
    let mut stdout = std::io::stdout().lock();
    let timing = format!("xtask: {}", util::TIMING);
    for line in BufReader::new(out).lines() {
        let line = line?;
        writeln!(stdout, "  | {line}")?;
        writeln!(file, "{line}")?;
        if let Some(part) = line.strip_prefix(&timing) {
            parts.push((command.to_string(), part.to_string()));
        }
        if let Some(counts) = line.strip_prefix("xtask: ") {
            add_closing_line(tally, counts);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`{command}` failed in the fresh root ({}); its last lines:\n{}",
            util::exit_text(status),
            last_lines(log, 40)
        );
    }
    Ok(())
}

/// Adds `N passed, M failed`, the closing line of `cargo xtask test`.
fn add_closing_line(tally: &mut Tally, line: &str) {
    let mut words = line.split([' ', ',']).filter(|w| !w.is_empty());
    if let (Some(p), Some("passed"), Some(f), Some("failed"), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) {
        if let (Ok(p), Ok(f)) = (p.parse::<u64>(), f.parse::<u64>()) {
            tally.passed += p;
            tally.failed += f;
        }
    }
}

pub(crate) fn last_lines(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Ends what still runs in the root, unmounts everything under it and
/// removes it; refuses to remove anything while a mount under it remains.
pub(crate) fn remove_root(root: &Path) -> Result<()> {
    if !root.exists() {
        return Ok(());
    }
    kill_processes_in(root);
    let root_s = root.to_string_lossy().into_owned();
    if !mounts_under(root)?.is_empty() {
        // Lazily, so a file a dying process still holds does not stop it.
        let _ = util::run(Command::new("umount").args(["-R", "-l", &root_s]));
    }
    let left = mounts_under(root)?;
    ensure!(
        left.is_empty(),
        "not removing {}: still mounted under it: {}",
        root.display(),
        left.join(", ")
    );
    say!("removing {}", root.display());
    std::fs::remove_dir_all(root).with_context(|| format!("cannot remove {}", root.display()))
}

/// Mount points at or below `root`, from our mount namespace's view.
fn mounts_under(root: &Path) -> Result<Vec<String>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(root))
        .map(String::from)
        .collect())
}

/// SIGKILLs every process whose root directory is `root` (what a test run
/// in the root left behind: etcd, keepalived, an agent).
fn kill_processes_in(root: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(entry.path().join("root")).is_ok_and(|r| r == root) {
            say!("ending process {pid}, left running in the root");
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_gives_exactly_the_two_commands() {
        assert_eq!(
            readme_commands(README).unwrap(),
            ["cargo xtask lab", "cargo xtask test"]
        );
    }

    #[test]
    fn commands_are_read_from_the_try_it_block_only() {
        let readme = "# x\n\n## Try it\n\nTwo commands:\n\n```sh\nmake a   # first\n\n# a comment\nmake b\n```\n\nMore:\n\n```sh\nnot this\n```\n\n## Other\n```sh\nnor this\n```\n";
        assert_eq!(readme_commands(readme).unwrap(), ["make a", "make b"]);
        assert!(readme_commands("# x\n## Usage\n```sh\na\n```\n").is_err());
        assert!(readme_commands("# x\n## Try it\nno block\n").is_err());
    }

    #[test]
    fn the_image_list_has_the_image_packages_and_no_comments() {
        let packages = image_packages();
        assert!(packages.len() > 600, "{}", packages.len());
        for p in [
            "bash",
            "gcc",
            "git",
            "python3",
            "iproute2",
            "ca-certificates",
        ] {
            assert!(packages.contains(&p), "{p} is on every fresh machine");
        }
        // What setup installs is not on a fresh machine: that is the point.
        for p in [
            "protobuf-compiler",
            "libprotobuf-dev",
            "bpftool",
            "keepalived",
            "etcd-server",
            "rustc-web",
        ] {
            assert!(!packages.contains(&p), "{p} is not on a fresh machine");
        }
        assert!(packages.iter().all(|p| !p.contains([' ', ':', '#'])));
    }

    #[test]
    fn the_closing_line_of_the_tests_is_counted() {
        let mut tally = Tally::default();
        add_closing_line(&mut tally, "130 passed, 0 failed");
        add_closing_line(&mut tally, "test summary: host tests passed");
        add_closing_line(&mut tally, "2 passed, 1 failed, 3 more");
        assert_eq!(
            tally,
            Tally {
                passed: 130,
                failed: 0
            }
        );
    }
}
