//! One registry of everything the lab creates (processes, namespaces, pin
//! directories), so that it is removed whichever way the lab ends: a guard's
//! `Drop` (normal end, test failure, panic) or SIGINT/SIGTERM (Ctrl-C), when
//! the signal thread removes whatever is still registered and exits.
//!
//! The registry owns the resources; guards hold a [`Token`]. Releasing runs
//! under the registry lock, so a signal arriving during a guard's own
//! cleanup waits for it and then removes the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// Something to remove at the end.
pub enum Resource {
    /// A child process; with `group`, its whole process group (it was
    /// started as a group leader) is signalled.
    Process {
        name: String,
        child: Child,
        group: bool,
        grace: Duration,
    },
    /// A named network namespace (`ip netns del`).
    Netns(String),
    /// A directory (temp files, bpffs pins), removed recursively.
    Dir(PathBuf),
}

/// Handle of a registered resource.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
pub struct Token(u64);

static NEXT: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Mutex<BTreeMap<u64, Resource>> = Mutex::new(BTreeMap::new());
static SIGNALS: Once = Once::new();

fn registry() -> MutexGuard<'static, BTreeMap<u64, Resource>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a resource; removed by [`release`] or on a signal.
pub fn register(r: Resource) -> Token {
    install_signal_handler();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    registry().insert(id, r);
    Token(id)
}

/// Removes the resource now (if a signal handler did not already).
pub fn release(t: Token) {
    let mut reg = registry();
    if let Some(r) = reg.remove(&t.0) {
        remove(r);
    }
}

/// Runs `f` on the registered child process (if still registered).
pub fn with_child<R>(t: Token, f: impl FnOnce(&mut Child) -> R) -> Option<R> {
    let mut reg = registry();
    match reg.get_mut(&t.0) {
        Some(Resource::Process { child, .. }) => Some(f(child)),
        _ => None,
    }
}

/// Removes everything still registered, newest first.
pub fn release_all() {
    let mut reg = registry();
    while let Some((_, r)) = reg.pop_last() {
        remove(r);
    }
}

/// SIGINT/SIGTERM: remove everything, then exit 130. Installed on the first
/// [`register`]; idempotent.
pub fn install_signal_handler() {
    SIGNALS.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("havip-tests: cannot install signal handler: {e}");
                return;
            }
        };
        std::thread::Builder::new()
            .name("havip-cleanup".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    eprintln!(
                        "\ninterrupted (signal {sig}): removing namespaces, processes and pins"
                    );
                    release_all();
                    eprintln!("cleaned up");
                    std::process::exit(130);
                }
            })
            .ok();
    });
}

fn remove(r: Resource) {
    match r {
        Resource::Process {
            name,
            mut child,
            group,
            grace,
        } => {
            stop_child(&name, &mut child, group, grace);
        }
        Resource::Netns(name) => {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        Resource::Dir(path) => {
            if path.exists() {
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    eprintln!("havip-tests: cannot remove {}: {e}", path.display());
                }
            }
        }
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps.
pub fn stop_child(name: &str, child: &mut Child, group: bool, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), group, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "havip-tests: {name} (pid {}) ignored SIGTERM for {grace:?}; killing it",
        child.id()
    );
    signal(child.id(), group, libc::SIGKILL);
    let _ = child.wait();
}

/// Sends `sig` to `pid` (or its process group).
pub fn signal(pid: u32, group: bool, sig: libc::c_int) {
    let target = if group {
        -(pid as libc::pid_t)
    } else {
        pid as libc::pid_t
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(target, sig);
    }
}
