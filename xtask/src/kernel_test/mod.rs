//! `cargo xtask kernel-test`: the privileged tests on Debian 12's own 6.1
//! kernel, which hypervisors run, in a QEMU guest (TCG: KVM guests hang on
//! nested machines like ours).
//!
//! 1. setup and build (as `cargo xtask build`), and the test binaries of the
//!    tests crate (`cargo test --release -p havip-tests --no-run`);
//! 2. on first use: QEMU and busybox-static from Debian, and the newest
//!    `linux-image-6.1.0-*-amd64-unsigned` downloaded and unpacked into
//!    `target/kernel-6.1/` (never installed), with a `modules.dep` written
//!    from its modules;
//! 3. an initramfs with busybox, the modules the tests need and an `/init`
//!    that mounts this machine's root read only (9p), chroots into it with
//!    its own /proc, /sys, bpffs, tmpfs on /tmp and /run and a writable
//!    scratch directory, and runs each part: the BPF_PROG_TEST_RUN table
//!    tests of the hypervisor's datapath (`datapath`) and of the EIP
//!    gateway's (`gateway_datapath`), and a failover with the agent and
//!    keepalived (`e2e_keepalived`);
//! 4. QEMU, until the guest powers off or the timeout; its console is ours.
//!    Prints the guest's kernel, the time to boot and each part's counts,
//!    and fails unless every part passed.
//!
//! The run's directory (`target/kernel-test/run-<pid>/`) and QEMU go away
//! at the end, also on a timeout, Ctrl-C or SIGTERM.

mod initramfs;
mod modules;
mod results;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::build::{self, Artifacts, TESTS_PACKAGE};
use crate::util::{self, say};
use crate::{setup, test::NEED_ROOT};
use initramfs::{Cpio, Init, Part};
use results::Report;

/// Debian packages the harness needs on the host.
const HOST_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("busybox-static", "/bin/busybox"),
];

/// The kernel flavour: Debian's generic one, as a bare-metal hypervisor
/// runs it (the cloud flavour has no 9p to share the host's root with).
const KERNEL_PATTERN: &str = "^linux-image-6\\.1\\.0-[0-9]+-amd64-unsigned$";

#[derive(clap::Args)]
pub struct Args {
    /// The kernel package (default: the newest
    /// linux-image-6.1.0-N-amd64-unsigned that apt knows).
    #[arg(long)]
    kernel: Option<String>,
    /// Run only these parts (datapath, gateway, failover); default all.
    #[arg(long = "part", value_parser = ["datapath", "gateway", "failover"])]
    parts: Vec<String>,
    /// Kill the guest after this many seconds.
    #[arg(long, default_value_t = 1500)]
    timeout: u64,
    /// Guest memory, in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            kernel: None,
            parts: Vec::new(),
            timeout: 1500,
            memory: 2048,
        }
    }
}

/// `cargo xtask kernel-test`.
pub fn run(args: &Args) -> Result<()> {
    run_counted(args, &mut util::Tally::default())
}

/// The kernel test, adding what the guest's tests counted to `tally`
/// (`cargo xtask test` runs it after the privileged tests).
pub fn run_counted(args: &Args, tally: &mut util::Tally) -> Result<()> {
    let started = Instant::now();
    if !util::is_root() {
        bail!("{NEED_ROOT} (QEMU shares this machine's whole root with the guest)");
    }
    let toolchain = setup::ensure()?;
    let artifacts = build::run(&toolchain)?;
    let tests = test_binaries(&artifacts)?;
    setup::ensure_packages("the kernel test", HOST_PACKAGES)?;
    let kernel = Kernel::ensure(args.kernel.as_deref())?;
    let modules = kernel.modules()?;

    let parts = parts(args, &artifacts, &tests)?;
    let run_dir = RunDir::create()?;
    let initrd = run_dir.path.join("initramfs.cpio");
    let scratch = run_dir.path.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let scratch_str = scratch
        .to_str()
        .context("the target directory is not UTF-8")?;
    let init = Init {
        modules: &modules
            .iter()
            .map(|(path, _)| path.clone())
            .collect::<Vec<_>>(),
        scratch: scratch_str,
        parts: &parts,
    };
    write_initramfs(&initrd, &init.script(), &modules)?;

    let mut qemu = qemu_command(&kernel, &initrd, &scratch, args.memory);
    let report = run_guest(&mut qemu, Duration::from_secs(args.timeout))?;
    let exit_file = std::fs::read_to_string(scratch.join("exit-code")).ok();
    drop(run_dir);

    say!("kernel-test summary ({}):", kernel.package);
    say!(
        "  guest kernel: {}",
        report.uname.as_deref().unwrap_or("(never reported)")
    );
    if let Some(init) = report.init_at {
        say!(
            "  boot (QEMU start to the guest's /init): {:.1} s",
            init.as_secs_f64()
        );
    }
    if let Some(ready) = report.ready_at {
        say!(
            "  ready for the tests (modules loaded, 9p mounted): {:.1} s",
            ready.as_secs_f64()
        );
    }
    for error in &report.errors {
        say!("  guest setup failed: {error}");
    }
    for part in &report.parts {
        say!("  {part}");
    }
    for wanted in &parts {
        if !report.parts.iter().any(|p| p.name == wanted.name) {
            say!("  {}: NOT RUN", wanted.name);
        }
    }
    util::timing("kernel-test (build included)", started);
    let total = report
        .parts
        .iter()
        .fold(util::Tally::default(), |t, p| util::Tally {
            passed: t.passed + p.tally.passed,
            failed: t.failed + p.tally.failed,
        });
    println!(
        "xtask: kernel {}: {} passed, {} failed",
        report.uname.as_deref().unwrap_or("?"),
        total.passed,
        total.failed
    );
    tally.passed += total.passed;
    tally.failed += total.failed;
    if report.timed_out {
        bail!(
            "the guest did not finish within --timeout {} s: QEMU killed",
            args.timeout
        );
    }
    if report.uname.as_deref() != Some(kernel.release.as_str()) {
        bail!(
            "the guest did not report running {} (it said {:?})",
            kernel.release,
            report.uname
        );
    }
    if exit_file.as_deref().map(str::trim) != report.exit.map(|c| c.to_string()).as_deref() {
        say!(
            "the guest's exit-code file ({exit_file:?}) and console ({:?}) disagree",
            report.exit
        );
    }
    if !report.passed(parts.len()) {
        bail!("the tests on {} did not all pass", kernel.release);
    }
    Ok(())
}

/// The parts to run in the guest, with the environment `cargo xtask test`
/// gives the privileged tests.
fn parts(
    args: &Args,
    artifacts: &Artifacts,
    tests: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Part>> {
    let wanted: Vec<&str> = if args.parts.is_empty() {
        vec!["datapath", "gateway", "failover"]
    } else {
        args.parts.iter().map(String::as_str).collect()
    };
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut env = vec![
        (
            "HAVIP_EBPF_OBJECT".to_string(),
            path(&artifacts.ebpf_object),
        ),
        ("HAVIP_AGENT_BIN".to_string(), path(&artifacts.agent)),
        (
            "HAVIP_CONTROLLER_BIN_DIR".to_string(),
            path(&artifacts.controller_bin_dir),
        ),
        ("RUST_BACKTRACE".to_string(), "1".to_string()),
    ];
    if let Some(lab) = &artifacts.lab {
        env.push(("HAVIP_LAB_BIN".to_string(), path(lab)));
    }
    wanted
        .into_iter()
        .map(|name| {
            let target = match name {
                "datapath" => "datapath",
                "gateway" => "gateway_datapath",
                _ => "e2e_keepalived",
            };
            let binary = tests
                .get(target)
                .with_context(|| format!("{TESTS_PACKAGE} has no test target {target}"))?;
            Ok(Part {
                name: name.to_string(),
                cwd: path(&util::workspace_root().join("tests")),
                env: env.clone(),
                argv: vec![path(binary), "--test-threads=1".to_string()],
            })
        })
        .collect()
}

/// Builds the tests crate's test binaries; returns them by target name.
fn test_binaries(artifacts: &Artifacts) -> Result<BTreeMap<String, PathBuf>> {
    let mut cmd = build::host_cargo(&artifacts.ebpf_object);
    cmd.args(["test", "--release", "-p", TESTS_PACKAGE, "--no-run"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit());
    say!("running: {}", util::describe(&cmd));
    let output = cmd.output().context("cannot run cargo test --no-run")?;
    if !output.status.success() {
        bail!(
            "building the tests failed ({})",
            util::exit_text(output.status)
        );
    }
    Ok(test_executables(&String::from_utf8_lossy(&output.stdout)))
}

/// The test executables in cargo's JSON messages, by target name.
fn test_executables(messages: &str) -> BTreeMap<String, PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter(|m| {
            let kinds = m["target"]["kind"].as_array().into_iter().flatten();
            kinds.into_iter().any(|k| k == "test")
        })
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_string();
            let exe = m["executable"].as_str()?;
            Some((name, PathBuf::from(exe)))
        })
        .collect()
}

/// The guest's kernel, unpacked from its Debian package.
struct Kernel {
    package: String,
    release: String,
    vmlinuz: PathBuf,
    /// `lib/modules/<release>/`
    modules_dir: PathBuf,
}

impl Kernel {
    fn dir() -> PathBuf {
        util::target_dir().join("kernel-6.1")
    }

    /// Unpacks `package` (default: the newest 6.1 apt knows) into
    /// `target/kernel-6.1/` unless it is there already.
    fn ensure(package: Option<&str>) -> Result<Self> {
        let dir = Self::dir();
        let root = dir.join("root");
        let unpacked = std::fs::read_to_string(dir.join("PACKAGE")).ok();
        let unpacked = unpacked.as_deref().map(str::trim);
        let package = match (package, unpacked) {
            (Some(wanted), _) => wanted.to_string(),
            (None, Some(have)) => have.to_string(),
            (None, None) => newest_kernel_package()?,
        };
        if unpacked != Some(package.as_str()) {
            say!(
                "downloading the kernel {package} into {} (first use; not installed on this machine)",
                dir.display()
            );
            let started = Instant::now();
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir)?;
            util::run(
                Command::new("apt-get")
                    .args(["-q", "download", &package])
                    .current_dir(&dir)
                    .stdin(Stdio::null()),
            )?;
            let deb = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
                .with_context(|| format!("apt-get download left no .deb in {}", dir.display()))?;
            util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
            std::fs::remove_file(&deb)?;
            std::fs::write(dir.join("PACKAGE"), format!("{package}\n"))?;
            util::timing("the kernel package", started);
        }
        let modules_root = root.join("lib/modules");
        let release = std::fs::read_dir(&modules_root)
            .with_context(|| format!("cannot read {}", modules_root.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .next()
            .with_context(|| format!("no kernel release in {}", modules_root.display()))?;
        let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
        anyhow::ensure!(vmlinuz.exists(), "{} is missing", vmlinuz.display());
        say!("guest kernel: {release} ({package}), {}", vmlinuz.display());
        Ok(Self {
            package,
            modules_dir: modules_root.join(&release),
            release,
            vmlinuz,
        })
    }

    /// The module files to load, in order: (path in the initramfs, file).
    fn modules(&self) -> Result<Vec<(String, PathBuf)>> {
        let dep = modules::ensure_modules_dep(&self.modules_dir)?;
        let builtin = std::fs::read_to_string(self.modules_dir.join("modules.builtin"))
            .context("the kernel package has no modules.builtin")?;
        let order = dep.load_order(modules::WANTED, &modules::parse_builtin(&builtin))?;
        say!(
            "guest modules: {}",
            order
                .iter()
                .map(|p| modules::module_name(p))
                .collect::<Vec<_>>()
                .join(" ")
        );
        Ok(order
            .into_iter()
            .map(|rel| {
                let file = self.modules_dir.join(&rel);
                (format!("lib/modules/{rel}"), file)
            })
            .collect())
    }
}

fn newest_kernel_package() -> Result<String> {
    let search = || -> Result<Option<String>> {
        let output = Command::new("apt-cache")
            .args(["search", "--names-only", KERNEL_PATTERN])
            .output()
            .context("cannot run apt-cache")?;
        Ok(newest_kernel(&String::from_utf8_lossy(&output.stdout)))
    };
    if let Some(package) = search()? {
        return Ok(package);
    }
    util::run(&mut setup::apt_get_update())?;
    search()?.with_context(|| format!("apt knows no package matching {KERNEL_PATTERN}"))
}

/// The package of the highest ABI in `apt-cache search` output.
fn newest_kernel(search: &str) -> Option<String> {
    search
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| {
            let abi = name
                .strip_prefix("linux-image-6.1.0-")?
                .strip_suffix("-amd64-unsigned")?;
            Some((abi.parse::<u32>().ok()?, name.to_string()))
        })
        .max()
        .map(|(_, name)| name)
}

fn write_initramfs(path: &Path, init: &str, modules: &[(String, PathBuf)]) -> Result<()> {
    let mut cpio = Cpio::default();
    let mut dirs = std::collections::BTreeSet::new();
    let mut add_parents = |cpio: &mut Cpio, path: &str| {
        let mut at = String::new();
        let parents: Vec<&str> = path.split('/').collect();
        for part in &parents[..parents.len() - 1] {
            at = if at.is_empty() {
                part.to_string()
            } else {
                format!("{at}/{part}")
            };
            if dirs.insert(at.clone()) {
                cpio.dir(&at);
            }
        }
    };
    add_parents(&mut cpio, "bin/busybox");
    let busybox = std::fs::read("/bin/busybox").context("cannot read /bin/busybox")?;
    cpio.file("bin/busybox", 0o755, &busybox);
    for dir in ["proc", "sys", "dev", "mnt/root"] {
        add_parents(&mut cpio, &format!("{dir}/."));
    }
    for (inside, file) in modules {
        add_parents(&mut cpio, inside);
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        cpio.file(inside, 0o644, &bytes);
    }
    cpio.file("init", 0o755, init.as_bytes());
    std::fs::write(path, cpio.finish()).with_context(|| format!("cannot write {}", path.display()))
}

fn qemu_command(kernel: &Kernel, initrd: &Path, scratch: &Path, memory: u32) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg,thread=multi", "-smp", "2"])
        .args(["-m", &memory.to_string()])
        .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .arg("-virtfs")
        .arg(format!(
            "local,path=/,mount_tag={},security_model=none,readonly=on,multidevs=remap",
            initramfs::ROOT_TAG
        ))
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag={},security_model=none",
            scratch.display(),
            initramfs::SCRATCH_TAG
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

/// The run's own directory, removed when dropped.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn create() -> Result<Self> {
        let path = util::target_dir()
            .join("kernel-test")
            .join(format!("run-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            say!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// QEMU, killed and reaped when dropped.
struct Guest {
    child: Child,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The signal that interrupted us (SIGINT, SIGTERM, SIGHUP), or 0.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    INTERRUPTED.store(signal, Ordering::SeqCst);
}

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Runs QEMU to the end (the guest powers off), the timeout or a signal;
/// prints the console and returns what the guest reported.
fn run_guest(cmd: &mut Command, timeout: Duration) -> Result<Report> {
    // SAFETY: between fork and exec only async-signal-safe calls: QEMU gets
    // its own process group (a Ctrl-C is ours to handle) and dies with us.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    // SAFETY: a handler that only stores to an atomic; restored below.
    let previous: Vec<_> = SIGNALS
        .iter()
        .map(|&s| unsafe { libc::signal(s, on_signal as *const () as libc::sighandler_t) })
        .collect();
    let result = run_guest_inner(cmd, timeout);
    for (&s, prev) in SIGNALS.iter().zip(previous) {
        // SAFETY: as above.
        unsafe { libc::signal(s, prev) };
    }
    result
}

fn run_guest_inner(cmd: &mut Command, timeout: Duration) -> Result<Report> {
    say!("running: {}", util::describe(cmd));
    let started = Instant::now();
    let mut guest = Guest {
        child: cmd.spawn().context("cannot start qemu-system-x86_64")?,
    };
    let stdout = guest.child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf).into_owned();
            if tx.send((line, started.elapsed())).is_err() {
                break;
            }
            buf.clear();
        }
    });
    let mut report = Report::default();
    let mut out = std::io::stdout().lock();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((line, at)) => {
                report.line(&line, at);
                let text = results::strip_escapes(&line);
                let _ = writeln!(out, "guest| {}", text.trim_end_matches(['\r', '\n']));
            }
            // QEMU closed its console: it has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let signal = INTERRUPTED.load(Ordering::SeqCst);
        if signal != 0 {
            drop(guest);
            bail!("interrupted by signal {signal}: QEMU stopped, the run's files removed");
        }
        if started.elapsed() > timeout {
            say!(
                "the guest ran over the timeout ({} s): killing QEMU",
                timeout.as_secs()
            );
            report.timed_out = true;
            break;
        }
    }
    drop(out);
    drop(guest);
    say!(
        "{}guest ran for {:.1} s",
        util::TIMING,
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_6_1_abi_is_chosen_numerically() {
        let search = "\
linux-image-6.1.0-9-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-57-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-57-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.1.0-100-rt-amd64-unsigned - Linux 6.1 for 64-bit PCs, PREEMPT_RT
linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
";
        assert_eq!(
            newest_kernel(search).as_deref(),
            Some("linux-image-6.1.0-57-amd64-unsigned")
        );
        assert_eq!(newest_kernel(""), None);
    }

    #[test]
    fn test_executables_come_from_cargo_json_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"havip_tests","kind":["lib"]},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","target":{"name":"datapath","kind":["test"]},"profile":{"test":true},"executable":"/w/target/release/deps/datapath-abc"}
{"reason":"compiler-artifact","target":{"name":"havip-lab","kind":["bin"]},"profile":{"test":false},"executable":"/w/target/release/havip-lab"}
{"reason":"compiler-artifact","target":{"name":"havip-lab","kind":["bin"]},"profile":{"test":true},"executable":"/w/target/release/deps/havip_lab-1"}
{"reason":"build-finished","success":true}
not json"#;
        let found = test_executables(messages);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found["datapath"],
            PathBuf::from("/w/target/release/deps/datapath-abc")
        );
    }
}
