//! Named network namespaces: created with `ip netns add`, deleted on drop.
//!
//! Two ways to run something inside one:
//! - [`Netns::cmd`]: `ip netns exec NAME prog …`, for tools (ip, sysctl,
//!   keepalived, tcpdump, arping). `ip netns exec` also gives the process a
//!   private mount namespace with a fresh /sys, which hides bpffs.
//! - [`Netns::cmd_keep_mounts`]: the child only `setns(2)`s into the network
//!   namespace and keeps the host's mounts, so /sys/fs/bpf is the host's
//!   bpffs. The agent runs this way, so its pins are visible to `status`
//!   and to the cleanup.
//!
//! [`Netns::spawn_thread`] runs a closure on a thread inside the namespace
//! (the UDP echo servers and the prober).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

use crate::cleanup::{self, Resource, Token};
use crate::cmd;

/// Prefix of every namespace the lab creates: `havip-{pid}-{n}-{role}`.
pub const PREFIX: &str = "havip-";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A unique name stem for one lab in this process: `havip-{pid}-{n}`.
pub fn unique_stem() -> String {
    format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        NEXT_LAB.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace, deleted on drop.
pub struct Netns {
    name: String,
    token: Option<Token>,
}

impl Netns {
    /// Creates the namespace `name` with loopback up.
    pub fn new(name: &str) -> Result<Self> {
        cmd::run("ip", &["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
            token: Some(cleanup::register(Resource::Netns(name.to_owned()))),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program args…`, not yet run.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args…` inside; returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        cmd::output(self.cmd(program).args(args))
    }

    /// `ip -n NAME args…`; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        cmd::output(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `sysctl -w key=value` inside.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Turns IPv6 off on every interface of the namespace, present and to
    /// come: a namespace that only switches stays quiet on the VM network.
    pub fn disable_ipv6(&self) -> Result<()> {
        self.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        self.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
    }

    /// The namespace file, for setns(2).
    pub fn open(&self) -> Result<File> {
        let path = format!("/run/netns/{}", self.name);
        File::open(&path).with_context(|| format!("open {path}"))
    }

    /// `program` whose process joins only this network namespace (host
    /// mounts kept, so bpffs at /sys/fs/bpf stays the host's).
    pub fn cmd_keep_mounts(&self, program: &Path) -> Result<Command> {
        command_in(&self.name, program)
    }

    /// Runs `f` on a new thread that has joined this network namespace:
    /// sockets it opens live in the namespace.
    pub fn spawn_thread<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<Result<T>>> {
        spawn_thread_in(&self.name, name, f)
    }
}

/// [`Netns::spawn_thread`] for the namespace named `ns_name`.
pub fn spawn_thread_in<T: Send + 'static>(
    ns_name: &str,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    let path = format!("/run/netns/{ns_name}");
    let ns = File::open(&path).with_context(|| format!("open {path}"))?;
    let ns_name = ns_name.to_owned();
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // SAFETY: plain syscall on a valid fd; affects only this thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("setns into {ns_name}"));
            }
            drop(ns);
            Ok(f())
        })?;
    Ok(handle)
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            cleanup::release(t);
        }
    }
}

/// `program` whose process joins only the network namespace `ns_name` (see
/// the module docs).
pub fn command_in(ns_name: &str, program: &Path) -> Result<Command> {
    let path = format!("/run/netns/{ns_name}");
    let ns = File::open(&path).with_context(|| format!("open {path}"))?;
    let mut c = Command::new(program);
    // SAFETY: the closure only calls setns(2), which is async-signal-safe;
    // `ns` is moved in and stays open until exec (it is close-on-exec).
    unsafe {
        c.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(c)
}

/// Namespaces named by this crate whose creating process is gone (a lab
/// killed with SIGKILL): `havip-{pid}-…` with no live `{pid}`.
pub fn stale_namespaces() -> Vec<String> {
    let list = cmd::run("ip", &["netns", "list"]).unwrap_or_default();
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .filter(|n| {
            let pid = n[PREFIX.len()..]
                .split('-')
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            match pid {
                Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                None => false,
            }
        })
        .map(str::to_owned)
        .collect()
}

/// Namespaces this process created and still has (for leak checks).
pub fn own_namespaces() -> Vec<String> {
    let mine = format!("{PREFIX}{}-", std::process::id());
    cmd::run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&mine))
        .map(str::to_owned)
        .collect()
}
