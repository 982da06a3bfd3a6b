//! Small helpers shared by the commands: paths, logging, running children.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{bail, Context, Result};

/// Prints one `xtask: ...` progress line to stderr.
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("xtask: {}", format_args!($($arg)*)) };
}
pub(crate) use say;

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

/// The workspace's normal `target/`, whatever CARGO_TARGET_DIR says: the
/// agent, the tests and CI look for the artifacts there.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
pub fn cargo_bin_dir() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("bin"),
        _ => home_dir().join(".cargo/bin"),
    }
}

/// `$HOME`, else `/root`.
pub fn home_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

/// Appends `~/.cargo/bin` to our own PATH when it is not there, so that
/// `bpf-linker` (installed there by `setup`) is found by us and our children.
pub fn put_cargo_bin_on_path() {
    let dir = cargo_bin_dir();
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == dir) {
        return;
    }
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(dir);
    if let Ok(joined) = std::env::join_paths(dirs) {
        std::env::set_var("PATH", joined);
    }
}

/// PATH with `dir` in front.
pub fn path_with_first(dir: &Path) -> OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&path));
    std::env::join_paths(dirs).expect("PATH entries contain no ':'")
}

/// The line that says how long a step took: `xtask: timing: <step> <s> s`.
/// `cargo xtask fresh-check` collects these from the commands it runs.
pub const TIMING: &str = "timing: ";

pub fn timing(step: &str, started: std::time::Instant) {
    say!("{TIMING}{step} {:.1} s", started.elapsed().as_secs_f64());
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The cargo that runs us (cargo sets CARGO for `cargo run`), else `cargo`.
pub fn host_cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The command line as a shell would show it, with the variables we set.
pub fn describe(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(key, value)| {
            let value = value?;
            if key == "PATH" {
                return path_prefix(value)
                    .map(|dirs| format!("PATH={}:$PATH", quote(dirs.as_ref())));
            }
            Some(format!("{}={}", key.to_string_lossy(), quote(value)))
        })
        .collect();
    words.push(quote(cmd.get_program()));
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

/// What a child's PATH adds in front of ours, if that is all it changes.
fn path_prefix(child_path: &OsStr) -> Option<String> {
    let ours = std::env::var("PATH").ok()?;
    let prefix = child_path
        .to_str()?
        .strip_suffix(&ours)?
        .strip_suffix(':')?;
    Some(prefix.to_string())
}

fn quote(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.into_owned()
    } else {
        format!("{text:?}")
    }
}

/// Runs `cmd` to completion and fails unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        let program = Path::new(cmd.get_program()).file_name().unwrap_or_default();
        let mut words = vec![quote(program)];
        words.extend(cmd.get_args().map(quote));
        bail!("`{}` failed ({})", words.join(" "), exit_text(status));
    }
    Ok(())
}

/// Runs `cmd` to completion, its stdout captured; fails (with its stderr)
/// unless it succeeds.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            exit_text(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` to completion and returns how it ended.
///
/// While the child runs, xtask ignores SIGINT and the child gets the default
/// action back: a Ctrl-C reaches the child (same process group) and the child
/// decides how to stop and clean up; we then report how it ended.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    say!("running: {}", describe(cmd));
    // SAFETY: signal() is async-signal-safe, so it may run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    // SAFETY: changing our own SIGINT disposition; restored below.
    let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let result = cmd.spawn().and_then(|mut child| child.wait());
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGINT, previous) };
    result.with_context(|| format!("cannot run `{}`", cmd.get_program().to_string_lossy()))
}

/// How many tests one or more `cargo test` runs passed and failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
}

impl Tally {
    /// Adds the counts of a libtest summary line
    /// (`test result: ok. 7 passed; 0 failed; 0 ignored; ...`).
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Like [`status`] for a `cargo test` run: its standard output still goes to
/// ours, line by line, and its libtest summaries are added to `tally`.
pub fn test_status(cmd: &mut Command, tally: &mut Tally) -> Result<ExitStatus> {
    use std::io::{BufRead, BufReader, Write};
    say!("running: {}", describe(cmd));
    // SAFETY: signal() is async-signal-safe, so it may run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.stdout(std::process::Stdio::piped());
    // SAFETY: changing our own SIGINT disposition; restored below.
    let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let result = cmd.spawn().and_then(|mut child| {
        let out = child.stdout.take().expect("stdout is piped");
        let mut stdout = std::io::stdout().lock();
        for line in BufReader::new(out).lines() {
            let line = line?;
            tally.add_line(&line);
            writeln!(stdout, "{line}")?;
        }
        child.wait()
    });
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGINT, previous) };
    result.with_context(|| format!("cannot run `{}`", cmd.get_program().to_string_lossy()))
}

/// The exit code a shell would report for `status` (128 + signal if killed).
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

pub fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Mounts bpffs at /sys/fs/bpf unless it is mounted (a fresh machine has
/// none, and pinning fails with ENOENT without it). Needs root.
pub fn ensure_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("cannot read /proc/mounts")?;
    if bpffs_mounted(&mounts) {
        return Ok(());
    }
    say!("mounting bpffs at /sys/fs/bpf");
    std::fs::create_dir_all("/sys/fs/bpf").context("cannot create /sys/fs/bpf")?;
    run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}

#[cfg(test)]
mod tally_tests {
    use super::Tally;

    #[test]
    fn adds_libtest_summaries_and_ignores_other_lines() {
        let mut t = Tally::default();
        for line in [
            "test result: ok. 7 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 12.31s",
            "test result: FAILED. 2 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out",
            "test policy_table ... ok",
            "2 passed; 5 failed",
        ] {
            t.add_line(line);
        }
        assert_eq!(
            t,
            Tally {
                passed: 9,
                failed: 1
            }
        );
    }
}

fn bpffs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"/sys/fs/bpf") && fields.get(2) == Some(&"bpf")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpffs_is_found_only_as_a_bpf_mount_on_sys_fs_bpf() {
        let mounted = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime 0 0\n";
        let elsewhere = "sysfs /sys sysfs rw 0 0\nbpf /run/bpf bpf rw 0 0\n";
        let other_fs = "tmpfs /sys/fs/bpf tmpfs rw 0 0\n";
        assert!(bpffs_mounted(mounted));
        assert!(!bpffs_mounted(elsewhere));
        assert!(!bpffs_mounted(other_fs));
        assert!(!bpffs_mounted(""));
    }

    #[test]
    fn describe_shows_set_variables_and_quotes_odd_words() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["build", "--target", "bpfel-unknown-none"])
            .env("RUSTC", "/usr/bin/rustc")
            .env("FLAGS", "a\x1fb")
            .env("PATH", "/somewhere")
            .env_remove("RUSTFLAGS");
        assert_eq!(
            describe(&cmd),
            r#"FLAGS="a\u{1f}b" RUSTC=/usr/bin/rustc /usr/bin/cargo build --target bpfel-unknown-none"#
        );
    }

    #[test]
    fn ctrl_c_goes_to_the_child_and_we_wait_for_it() {
        // The child interrupts us, then ends on its own: we must survive the
        // SIGINT and report the child's exit.
        let ended = status(Command::new("sh").args(["-c", "kill -INT $PPID; sleep 0.2; exit 7"]));
        assert_eq!(ended.unwrap().code(), Some(7));
        // The child itself has the default SIGINT action, not our SIG_IGN.
        let ended = status(Command::new("sh").args(["-c", "kill -INT $$; exit 0"]));
        assert_eq!(exit_code(ended.unwrap()), 130);
    }

    #[test]
    fn killed_children_exit_like_in_a_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGINT)), 130);
    }
}
