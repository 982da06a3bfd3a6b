//! The agent under test: `havip-agent run` inside the hypervisor namespace,
//! `havip-agent status --json` parsed into [`Status`], the links and TC
//! filters it leaves, and `havip-agent detach`, the explicit way to take the
//! programs off (an agent that exits leaves them attached).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cleanup::{self, Resource, Token};
use crate::netns::{self, Netns};
pub use crate::status::{
    NotProgrammed, OwnerStatus, PortProtection, PortStatus, Protection, Status, VipCounters,
    VipStatus,
};

mod attached;
use crate::{cmd, wait};
pub use attached::{xdp_programs, LinkInfo};

/// The agent binary: `$HAVIP_AGENT_BIN`, or the workspace's release build.
pub fn agent_bin() -> Result<PathBuf> {
    let path = match std::env::var_os("HAVIP_AGENT_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/havip-agent"),
    };
    if !path.is_file() {
        bail!(
            "havip-agent not found at {}: build it (`cargo xtask build`) or point HAVIP_AGENT_BIN at it",
            path.display()
        );
    }
    Ok(path.canonicalize().unwrap_or(path))
}

/// Mounts bpffs on /sys/fs/bpf if it is not (a fresh machine has none).
pub fn ensure_bpffs() -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a properly sized out-struct.
    let rc = unsafe { libc::statfs(c"/sys/fs/bpf".as_ptr(), &mut st) };
    if rc == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    cmd::run("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .context("mounting bpffs on /sys/fs/bpf")?;
    Ok(())
}

/// How long the agent may take to load and attach: `$HAVIP_AGENT_READY_SECS`
/// or 30 s (loading includes the kernel verifier).
pub fn ready_timeout() -> Duration {
    let secs = std::env::var("HAVIP_AGENT_READY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

static NEXT_PIN: AtomicU32 = AtomicU32::new(0);

/// A pin dir no agent of this process used yet: `{PIN_PREFIX}{pid}-{n}`.
pub fn new_pin_dir() -> PathBuf {
    PathBuf::from(format!(
        "{PIN_PREFIX}{}-{}",
        std::process::id(),
        NEXT_PIN.fetch_add(1, Ordering::Relaxed)
    ))
}

/// What the agent logs (at info) once it has applied its state and runs.
pub const RUNNING: &str = "running; ";

/// Prefix of the lab's pin directories: `/sys/fs/bpf/havip-test-{pid}-{n}`.
pub const PIN_PREFIX: &str = "/sys/fs/bpf/havip-test-";

/// How to start the agent; the default is the lab's: a fresh pin dir,
/// programs detached and pins removed by the agent on exit.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Reuse this pin dir (a previous agent's maps) instead of a fresh one.
    pub pin_dir: Option<PathBuf>,
    /// Pass `--unpin-on-exit`. Without it the agent leaves its programs
    /// attached and its pins when it exits; the guard then takes them off
    /// with `havip-agent detach --unpin`.
    pub unpin_on_exit: bool,
    /// Pass `--tc-attach` (`netlink`: TC egress as on kernels without TCX);
    /// by default `$HAVIP_TC_ATTACH`, if set.
    pub tc_attach: Option<String>,
    /// How long the agent may take to attach every port (default
    /// [`ready_timeout`]): more for a thousand ports.
    pub ready_timeout: Option<Duration>,
    /// Pass `--metrics-listen` with this address.
    pub metrics_listen: Option<String>,
    /// Run the agent under this command (e.g. `setpriv` with a capability
    /// bounding set), the agent's path and arguments after it.
    pub run_under: Vec<String>,
    /// Pass `--max-vips` (the VIPs the host holds).
    pub max_vips: Option<u32>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            pin_dir: None,
            unpin_on_exit: true,
            tc_attach: std::env::var("HAVIP_TC_ATTACH").ok(),
            ready_timeout: None,
            metrics_listen: None,
            run_under: Vec::new(),
            max_vips: None,
        }
    }
}

/// What an agent left pinned on purpose (maps, and links unless it detached
/// them); on drop, `havip-agent detach --unpin` in the hypervisor, then
/// whatever is left of the pin dir is removed.
pub struct Pins {
    pub dir: PathBuf,
    bin: PathBuf,
    hv: String,
    token: Token,
}

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(e) = detach_pins(&self.bin, &self.hv, &self.dir, true) {
            eprintln!("havip-tests: {e:#}");
        }
        cleanup::release(self.token);
    }
}

/// `havip-agent detach --pin-dir DIR [--unpin]` in `hv`; its output.
pub fn detach_pins(bin: &Path, hv: &str, pin_dir: &Path, unpin: bool) -> Result<String> {
    if !pin_dir.exists() {
        return Ok(String::new());
    }
    let mut c = netns::command_in(hv, bin)?;
    c.arg("detach").arg("--pin-dir").arg(pin_dir);
    if unpin {
        c.arg("--unpin");
    }
    cmd::output(&mut c)
}

/// A running `havip-agent run`; stopped (SIGTERM) on drop.
pub struct Agent {
    pub bin: PathBuf,
    /// The config file (`None`: the agent reads etcd).
    pub config: Option<PathBuf>,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
    hv: String,
    taps: Vec<String>,
    /// The arguments of `havip-agent` (from `run` on), to start it again.
    args: Vec<OsString>,
    unpin_on_exit: bool,
    /// The command the agent runs under ([`AgentOptions::run_under`]).
    run_under: Vec<String>,
    ready_timeout: Duration,
    /// Ready once every tap has XDP, before TC egress has moved to TCX
    /// links (to catch the agent in the middle of that move).
    pub ready_when_protected: bool,
    /// When the process was last spawned.
    started_at: Option<Instant>,
    process: Option<Token>,
    pins: Option<Token>,
    /// The agent's runtime dir (`/run/<pin dir name>`, its state file).
    run_dir: Option<Token>,
}

impl Agent {
    /// Starts the agent in `hv`, waits until XDP is attached on every tap
    /// and `status` answers.
    pub fn start(hv: &Netns, config: &Path, dir: &Path, taps: &[&str]) -> Result<Self> {
        Self::start_with(hv, config, dir, taps, AgentOptions::default())
    }

    /// [`Agent::start`] with options.
    pub fn start_with(
        hv: &Netns,
        config: &Path,
        dir: &Path,
        taps: &[&str],
        opts: AgentOptions,
    ) -> Result<Self> {
        Self::start_in_mode(hv, config, dir, taps, opts, &crate::lab::xdp_mode())
    }

    /// [`Agent::start_with`] in the given XDP mode (`generic` or `native`),
    /// whatever `HAVIP_XDP_MODE` says.
    pub fn start_in_mode(
        hv: &Netns,
        config: &Path,
        dir: &Path,
        taps: &[&str],
        opts: AgentOptions,
        xdp_mode: &str,
    ) -> Result<Self> {
        let bin = agent_bin()?;
        let out = cmd::output(
            netns::command_in(hv.name(), &bin)?
                .args(["check", "--config"])
                .arg(config),
        );
        if let Err(e) = out {
            bail!("the lab's agent config is rejected by `havip-agent check`: {e:#}");
        }
        let source = vec!["--config".into(), config.as_os_str().to_owned()];
        Self::launch(hv, source, Some(config), dir, taps, opts, xdp_mode)
    }

    /// Starts the agent of hypervisor `host` on the controller's etcd at
    /// `etcd_url` (`run --etcd URL --host NAME`); returns once XDP is
    /// attached to every interface in `taps`.
    pub fn start_etcd(
        hv: &Netns,
        etcd_url: &str,
        host: &str,
        dir: &Path,
        taps: &[&str],
    ) -> Result<Self> {
        Self::start_etcd_with(hv, etcd_url, host, dir, taps, AgentOptions::default())
    }

    /// [`Agent::start_etcd`] with options. The agent keeps the last state
    /// it read from etcd in `dir`.
    pub fn start_etcd_with(
        hv: &Netns,
        etcd_url: &str,
        host: &str,
        dir: &Path,
        taps: &[&str],
        opts: AgentOptions,
    ) -> Result<Self> {
        let mut source: Vec<std::ffi::OsString> = ["--etcd", etcd_url, "--host", host]
            .iter()
            .map(Into::into)
            .collect();
        source.extend(["--state-dir".into(), dir.as_os_str().to_owned()]);
        let mode = crate::lab::xdp_mode();
        Self::launch(hv, source, None, dir, taps, opts, &mode)
    }

    fn launch(
        hv: &Netns,
        source: Vec<std::ffi::OsString>,
        config: Option<&Path>,
        dir: &Path,
        taps: &[&str],
        opts: AgentOptions,
        xdp_mode: &str,
    ) -> Result<Self> {
        let bin = agent_bin()?;
        ensure_bpffs()?;
        let pin_dir = opts.pin_dir.clone().unwrap_or_else(new_pin_dir);
        let pins = Some(cleanup::register(Resource::Dir(pin_dir.clone())));
        let run_dir = Some(cleanup::register(Resource::Dir(run_dir_of(&pin_dir))));
        let log = dir.join("havip-agent.log");
        File::create(&log)?;
        let mut args: Vec<OsString> = vec!["run".into()];
        args.extend(source);
        args.extend(["--pin-dir".into(), pin_dir.clone().into_os_string()]);
        if opts.unpin_on_exit {
            args.push("--unpin-on-exit".into());
        }
        args.extend(["--xdp-mode".into(), xdp_mode.into()]);
        if let Some(tc) = &opts.tc_attach {
            args.extend(["--tc-attach".into(), tc.into()]);
        }
        if let Some(addr) = &opts.metrics_listen {
            args.extend(["--metrics-listen".into(), addr.into()]);
        }
        if let Some(n) = opts.max_vips {
            args.extend(["--max-vips".into(), n.to_string().into()]);
        }
        args.extend(object_args());
        let mut agent = Self {
            bin,
            config: config.map(Path::to_owned),
            pin_dir,
            log,
            hv: hv.name().to_owned(),
            taps: taps.iter().map(|t| t.to_string()).collect(),
            args,
            unpin_on_exit: opts.unpin_on_exit,
            run_under: opts.run_under.clone(),
            ready_timeout: opts.ready_timeout.unwrap_or_else(ready_timeout),
            ready_when_protected: false,
            started_at: None,
            process: None,
            pins,
            run_dir,
        };
        agent.spawn()?;
        Ok(agent)
    }

    /// Starts the agent process (its log appended to [`Agent::log`]) and
    /// waits until XDP is attached to every tap and `status` answers.
    fn spawn(&mut self) -> Result<()> {
        // XDP may be attached before the agent runs (an adopting agent):
        // ready is also its "running" line, when it logs at info.
        let running_before = self.log_text().matches(RUNNING).count();
        let wait_running = std::env::var("RUST_LOG")
            .map(|l| ["info", "debug", "trace"].iter().any(|v| l.contains(v)))
            .unwrap_or(true);
        let log_file = OpenOptions::new().append(true).open(&self.log)?;
        let mut c = match self.run_under.split_first() {
            Some((program, args)) => {
                let mut c = netns::command_in(&self.hv, Path::new(program))?;
                c.args(args).arg(&self.bin);
                c
            }
            None => netns::command_in(&self.hv, &self.bin)?,
        };
        c.args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0);
        self.started_at = Some(Instant::now());
        let child = c
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        self.process = Some(cleanup::register(Resource::Process {
            name: "havip-agent".into(),
            child,
            group: false,
            grace: Duration::from_secs(10),
        }));
        let agent = &*self;
        let ready = wait::until(
            self.ready_timeout,
            "the agent to attach XDP on every VM port (and move TC egress to TCX)",
            || {
                if agent.exit_status().is_some() {
                    return Ok(true); // reported below
                }
                // The log first: reading it is cheap, listing a thousand
                // ports is not.
                if wait_running && agent.log_text().matches(RUNNING).count() <= running_before {
                    return Ok(false);
                }
                let attached = agent.xdp_attached_all()?;
                if !agent.taps.iter().all(|t| attached.contains(t)) {
                    return Ok(false);
                }
                // Protected from the first; ready once TC egress is where
                // it stays (moved to TCX links, where TCX is).
                agent
                    .status()
                    .map(|s| agent.ready_when_protected || s.protection.egress_handover == 0)
            },
        );
        if let Some(status) = self.exit_status() {
            bail!(
                "havip-agent exited ({status}) before attaching\n--- {} (tail) ---\n{}",
                self.log.display(),
                self.log_tail(30)
            );
        }
        if let Err(e) = ready {
            bail!(
                "{e:#}\n--- {} (tail) ---\n{}",
                self.log.display(),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Sends `signal` (SIGKILL: a crash; SIGTERM: `systemctl restart`) and
    /// waits until the agent has exited; its exit status.
    pub fn signal_and_wait(&mut self, signal: libc::c_int) -> Result<std::process::ExitStatus> {
        let t = self.process.take().context("the agent is not running")?;
        let status = cleanup::with_child(t, |c| {
            cleanup::signal(c.id(), false, signal);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(s)) = c.try_wait() {
                    return Some(s);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        })
        .flatten();
        cleanup::release(t);
        status.with_context(|| format!("the agent did not exit within 10 s of signal {signal}"))
    }

    /// Starts the agent again, as it was started, on the same pin dir
    /// (after [`Agent::signal_and_wait`]).
    pub fn start_again(&mut self) -> Result<()> {
        anyhow::ensure!(self.process.is_none(), "the agent is still running");
        self.spawn()
    }

    /// Makes `bin` the agent that [`Agent::start_again`] starts (an upgrade
    /// or a rollback), with the datapath `object` (`None`: the one embedded
    /// in it).
    pub fn replace_binary(&mut self, bin: PathBuf, object: Option<&Path>) {
        if let Some(i) = self.args.iter().position(|a| a == "--bpf-object") {
            self.args.drain(i..(i + 2).min(self.args.len()));
        }
        if let Some(object) = object {
            self.args
                .extend(["--bpf-object".into(), object.as_os_str().to_owned()]);
        }
        self.bin = bin;
    }

    /// A second `havip-agent run` with the same arguments, run to its end:
    /// (exit status, stderr and stdout).
    pub fn run_another(&self) -> Result<(std::process::ExitStatus, String)> {
        let mut c = netns::command_in(&self.hv, &self.bin)?;
        c.args(&self.args).env("RUST_LOG", "warn");
        let out = c.output().context("start a second havip-agent")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        Ok((out.status, text))
    }

    /// `havip-agent detach` on this agent's pin dir; its output.
    pub fn detach(&self, unpin: bool) -> Result<String> {
        detach_pins(&self.bin, &self.hv, &self.pin_dir, unpin)
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        cleanup::with_child(self.process?, |c| c.id())
    }

    /// When the agent process was last started ([`Agent::start_again`]
    /// included).
    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    /// The exit status, if the agent has exited.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let t = self.process?;
        cleanup::with_child(t, |c| c.try_wait().ok().flatten()).flatten()
    }

    /// `havip-agent status --json`, parsed.
    pub fn status(&self) -> Result<Status> {
        let json = self.status_cmd(true)?;
        serde_json::from_str(&json)
            .with_context(|| format!("parse `havip-agent status --json`: {json}"))
    }

    /// Waits until `port_id` owns `vip_id`; returns the owner record.
    pub fn wait_owner(&self, vip_id: u32, port_id: u32, timeout: Duration) -> Result<OwnerStatus> {
        let mut seen = None;
        let r = wait::until(
            timeout,
            &format!("vip {vip_id} to be owned by port {port_id}"),
            || {
                seen = self.status()?.owner(vip_id)?.cloned();
                Ok(seen.as_ref().is_some_and(|o| o.port_id == port_id))
            },
        );
        match r {
            Ok(()) => Ok(seen.expect("set when the wait succeeded")),
            Err(e) => bail!(
                "{e:#} (owner: {seen:?})\n--- agent log (tail) ---\n{}",
                self.log_tail(20)
            ),
        }
    }

    /// Replaces the agent's config file the way editors do (a new file
    /// renamed over the old); the agent reloads it on its own.
    pub fn edit_config(&self, text: &str) -> Result<()> {
        let config = self
            .config
            .as_ref()
            .context("this agent reads etcd, not a config file")?;
        let tmp = config.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, config).with_context(|| format!("replace {}", config.display()))
    }

    /// `havip-agent reset-link-local PORT` on this agent's pin dir; its
    /// output.
    pub fn reset_link_local(&self, port_id: u32) -> Result<String> {
        let mut c = netns::command_in(&self.hv, &self.bin)?;
        c.arg("reset-link-local")
            .arg(port_id.to_string())
            .arg("--pin-dir")
            .arg(&self.pin_dir);
        cmd::output(&mut c)
    }

    /// `havip-agent status` in its human form.
    pub fn status_text(&self) -> Result<String> {
        self.status_cmd(false)
    }

    fn status_cmd(&self, json: bool) -> Result<String> {
        let mut c = netns::command_in(&self.hv, &self.bin)?;
        c.arg("status").arg("--pin-dir").arg(&self.pin_dir);
        if let Some(config) = &self.config {
            c.arg("--config").arg(config);
        }
        if json {
            c.arg("--json");
        }
        cmd::output(&mut c)
    }

    /// The last `lines` lines of the agent's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then checks what the agent promises on exit: exit status 0;
    /// with `--unpin-on-exit`, XDP detached from every port and the pin
    /// directory gone; without, XDP still attached to every port, until
    /// `havip-agent detach --unpin` (run here) takes it all off. Removes
    /// whatever is left either way.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    /// Stops the agent (started without `--unpin-on-exit`), checks that it
    /// left its programs attached, and keeps its pins (maps and links) for
    /// the next agent to adopt.
    pub fn stop_keeping_pins(mut self) -> Result<Pins> {
        let token = self.pins.take().expect("pins are registered until stop");
        let pins = Pins {
            dir: self.pin_dir.clone(),
            bin: self.bin.clone(),
            hv: self.hv.clone(),
            token,
        };
        self.stop_inner()?;
        Ok(pins)
    }

    fn stop_inner(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        let was_running = self.process.is_some();
        if let Some(t) = self.process.take() {
            let mut exited_before = false;
            let status = cleanup::with_child(t, |c| {
                if let Ok(Some(s)) = c.try_wait() {
                    exited_before = true;
                    return Some(s);
                }
                cleanup::signal(c.id(), false, libc::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(s)) = c.try_wait() {
                        return Some(s);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                None
            })
            .flatten();
            cleanup::release(t);
            match status {
                Some(s) if s.success() => {}
                Some(s) if exited_before => {
                    problems.push(format!("havip-agent had exited by itself ({s})"))
                }
                Some(s) => problems.push(format!("havip-agent exited with {s} after SIGTERM")),
                None => {
                    problems.push("havip-agent did not exit within 10 s of SIGTERM (killed)".into())
                }
            }
        }
        if !self.unpin_on_exit {
            if was_running {
                let progs = xdp_programs(&self.hv).unwrap_or_default();
                for tap in &self.taps {
                    if progs.get(tap).is_some_and(Option::is_none) {
                        problems.push(format!("XDP detached from {tap} when the agent exited"));
                    }
                }
            }
            // Unless kept for the next agent: the explicit way off.
            if self.pins.is_some() {
                if let Err(e) = self.detach(true) {
                    problems.push(format!("{e:#}"));
                }
            }
        }
        let attached = self.xdp_attached_all().unwrap_or_default();
        for tap in &self.taps {
            let kept = !self.unpin_on_exit && self.pins.is_none();
            if !kept && attached.contains(tap) {
                problems.push(format!(
                    "XDP still attached to {tap} after the agent exited{}",
                    if self.unpin_on_exit {
                        " with --unpin-on-exit"
                    } else {
                        " and `havip-agent detach`"
                    }
                ));
                let _ = cmd::run(
                    "ip",
                    &["-n", &self.hv, "link", "set", "dev", tap, "xdp", "off"],
                );
            }
        }
        if let Some(t) = self.pins.take() {
            if self.pin_dir.exists() {
                let left: Vec<String> = std::fs::read_dir(&self.pin_dir)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                problems.push(format!(
                    "pin dir {} still there after exit with --unpin-on-exit or \
                     `detach --unpin` (entries: {left:?})",
                    self.pin_dir.display()
                ));
            }
            cleanup::release(t);
        }
        // The agent is gone: its state file with it.
        if let Some(t) = self.run_dir.take() {
            cleanup::release(t);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "{}\n--- agent log (tail) ---\n{}",
                problems.join("; "),
                self.log_tail(20)
            )
        }
    }
}

/// `--bpf-object PATH` when the tests are given a datapath object:
/// `cargo xtask lab` passes the one it built; the agent embeds one too, so
/// this is optional.
fn object_args() -> Vec<OsString> {
    let embedded = std::env::var_os("HAVIP_AGENT_EMBEDDED_OBJECT").is_some();
    match std::env::var_os("HAVIP_EBPF_OBJECT").filter(|_| !embedded) {
        Some(obj) => vec!["--bpf-object".into(), obj],
        None => Vec::new(),
    }
}

/// Runs `havip-agent run --config CONFIG --pin-dir PIN_DIR ARGS...` in `hv`
/// where it must refuse to start: it exits with a failure (within 30 s,
/// else it is killed and this fails). Its stderr. Nothing is cleaned up
/// after it: what it refused to change stays as it was.
pub fn run_refused(hv: &Netns, config: &Path, pin_dir: &Path, args: &[&str]) -> Result<String> {
    let mut c = netns::command_in(hv.name(), Path::new("timeout"))?;
    c.args(["--signal=KILL", "30"])
        .arg(agent_bin()?)
        .args(["run", "--config"])
        .arg(config)
        .arg("--pin-dir")
        .arg(pin_dir)
        .args(object_args())
        .args(args);
    let out = c.output().context("run havip-agent")?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => bail!("havip-agent started where it had to refuse:\n{stderr}"),
        Some(124 | 137) | None => bail!("havip-agent neither started nor refused in 30 s"),
        Some(_) => Ok(stderr),
    }
}

/// The runtime dir of the agent on `pin_dir`, where it writes its
/// `protection.json`: `/run/<pin dir name>`.
pub fn run_dir_of(pin_dir: &Path) -> PathBuf {
    Path::new("/run").join(pin_dir.file_name().unwrap_or_default())
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.process.is_some() || self.pins.is_some() || self.run_dir.is_some() {
            if let Err(e) = self.stop_inner() {
                eprintln!("havip-tests: {e:#}");
            }
        }
    }
}

/// Pin directories of lab agents whose process is gone.
pub fn stale_pin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return Vec::new();
    };
    let prefix = PIN_PREFIX.trim_start_matches("/sys/fs/bpf/");
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(prefix)?
                .split('-')
                .next()?
                .parse::<u32>()
                .ok()?;
            (!Path::new(&format!("/proc/{pid}")).exists()).then(|| e.path())
        })
        .collect()
}

/// Pin directories this process still has (for leak checks).
pub fn own_pin_dirs() -> Vec<PathBuf> {
    let mine = format!(
        "{}{}-",
        PIN_PREFIX.trim_start_matches("/sys/fs/bpf/"),
        std::process::id()
    );
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&mine))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
