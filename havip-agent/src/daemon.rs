//! `havip-agent run`: load the datapath, apply the configuration, then keep
//! it applied as its source changes (the file: SIGHUP or a write; etcd: its
//! watch) and as interfaces come and go, until SIGINT/SIGTERM. The
//! programs stay attached when it exits (see [`crate::attach`]).

use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::Duration,
};

use aya_log::EbpfLogger;
use havip_common::{Event, EventKind as DatapathEvent};
use log::{debug, error, info, warn};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
    sync::mpsc,
};

use crate::{
    config::{Config, ConfigError},
    damping::Damper,
    datapath::{AttachMode, Datapath, DatapathError, ObjectSource, TcAttach},
    etcd::{EtcdOptions, EtcdSource},
    events, links,
    metrics::{self, Step},
    pins,
    protection::{SourceProblems, StateFile},
    shortfall,
};

/// The datapath object built into this binary, if any (see build.rs).
#[cfg(havip_embedded_object)]
pub const EMBEDDED_OBJECT: Option<&[u8]> =
    Some(aya::include_bytes_aligned!(env!("HAVIP_EBPF_OBJECT_PATH")));
/// The datapath object built into this binary, if any (see build.rs).
#[cfg(not(havip_embedded_object))]
pub const EMBEDDED_OBJECT: Option<&[u8]> = None;

/// How the file watcher coalesces bursts of writes (editors write, rename,
/// chmod...).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// How often the etcd source compares `havip_owners` with what it reported.
const OWNER_AUDIT: Duration = Duration::from_secs(1);

/// How often the damper looks at every VIP for a pending claim or a split
/// brain whose report the ring lost (it is told of the others at once).
const DAMPER_SWEEP: Duration = Duration::from_secs(5);

fn sweep_timer() -> tokio::time::Interval {
    let mut t = tokio::time::interval(DAMPER_SWEEP);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

/// How long the daemon spends moving TC egress to TCX links before it
/// looks at its other work again (a TCX attach takes ~14 ms).
const HANDOVER_SLICE: Duration = Duration::from_millis(50);

/// The first and the longest wait before a reconcile retries the ports
/// whose programs could not be attached.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// When to retry the unprotected ports: soon after a failure, then less
/// often while they keep failing (doubling up to [`RETRY_MAX`]).
struct Retry {
    delay: Duration,
    at: tokio::time::Instant,
}

impl Retry {
    fn new() -> Self {
        Self {
            delay: RETRY_FIRST,
            at: tokio::time::Instant::now() + RETRY_FIRST,
        }
    }

    /// After a reconcile: back to the first delay when everything is in
    /// force, else the next, longer one.
    fn after(&mut self, dp: &Datapath) {
        if dp.all_in_force() {
            self.delay = RETRY_FIRST;
        } else {
            self.delay = (self.delay * 2).min(RETRY_MAX);
        }
        self.at = tokio::time::Instant::now() + self.delay;
    }
}

/// Retries the unprotected ports and the VIPs and addresses that did not
/// fit: a reconcile puts in force what it can (and warns of what it still
/// cannot).
fn retry_unprotected(dp: &mut Datapath, retry: &mut Retry) {
    match dp.reconcile() {
        Ok(s) if !s.is_empty() => info!("retried what was not in force: {s}"),
        Ok(_) => {}
        Err(e) => {
            metrics::reconcile_failed(Step::Retry);
            error!("retrying the unprotected ports: {e}")
        }
    }
    retry.after(dp);
}

/// Where the desired state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A config file (one host, the default).
    File(PathBuf),
    /// The controller's etcd: this host's ports and VIPs; owners reported.
    Etcd(EtcdOptions),
}

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub source: Source,
    pub pin_dir: PathBuf,
    pub mode: AttachMode,
    pub tc: TcAttach,
    /// `None`: the embedded object.
    pub bpf_object: Option<PathBuf>,
    /// On exit, detach the programs and remove every pin and the pin dir
    /// (otherwise the programs stay attached, enforcing the last state).
    pub unpin_on_exit: bool,
    /// Serve Prometheus metrics on this address ([`crate::metrics`]).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The VIPs this host holds (the VIP maps' size).
    pub max_vips: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("cannot {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io { what, source }
}

/// Runs the agent until SIGINT/SIGTERM. Needs a tokio runtime.
pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    let object = match (&opts.bpf_object, EMBEDDED_OBJECT) {
        (Some(p), _) => ObjectSource::File(p.clone()),
        (None, Some(bytes)) => ObjectSource::Embedded(bytes),
        (None, None) => return Err(DatapathError::NoObject.into()),
    };
    // A file that does not validate never reaches the datapath.
    let config = match &opts.source {
        Source::File(path) => {
            let config = Config::load(path)?;
            info!("{}: {}", path.display(), config.summary());
            for warning in shortfall::over_capacity(&config, opts.max_vips) {
                warn!("{}: {warning}", path.display());
            }
            Some(config)
        }
        Source::Etcd(_) => None,
    };
    if let Some(addr) = opts.metrics_listen {
        let (names, host) = match &opts.source {
            Source::File(path) => (metrics::Names::File(path.clone()), None),
            Source::Etcd(e) => (
                metrics::Names::Etcd {
                    snapshot: e.cache.clone(),
                },
                Some(e.host.as_str()),
            ),
        };
        metrics::serve(addr, metrics::registry(opts.pin_dir.clone(), names, host)).await?;
    }

    // Subscribe before resolving interfaces, so no change falls in between.
    let links = links::watch().map_err(io("subscribe to netlink link events"))?;
    // Handle signals from now on: a SIGTERM during the load is acted on
    // right after it, with the usual cleanup, instead of killing us.
    let signals = Signals::new()?;

    let pin_dir_existed = opts.pin_dir.exists();
    let (mut dp, pollables) =
        match Datapath::load(&object, &opts.pin_dir, (opts.mode, opts.tc), opts.max_vips) {
            Ok(loaded) => loaded,
            Err(e) => {
                if opts.unpin_on_exit && !pin_dir_existed && opts.pin_dir.exists() {
                    pins::unpin(&opts.pin_dir);
                }
                return Err(e.into());
            }
        };
    let (claims_tx, claims) = mpsc::unbounded_channel();
    tokio::spawn(events::owner_changes(pollables.events, claims_tx));
    tokio::spawn(events::rejections(pollables.rejects));
    if let Some(logger) = pollables.logger {
        tokio::spawn(poll_logger(logger));
    }

    let mut state = StateFile::new(&opts.pin_dir);
    let result = match (&opts.source, config) {
        (Source::File(path), Some(config)) => {
            serve_file(&mut dp, config, path, (links, signals, claims), &mut state).await
        }
        (Source::Etcd(etcd), _) => {
            serve_etcd(&mut dp, etcd, (links, signals, claims), &mut state).await
        }
        (Source::File(_), None) => unreachable!("a file source is loaded above"),
    };
    if opts.unpin_on_exit {
        dp.detach_all();
        // Still holding the pin dir's lock.
        pins::unpin(&opts.pin_dir);
        StateFile::remove(&opts.pin_dir);
        drop(dp);
    } else {
        drop(dp);
        info!(
            "the programs stay attached and the maps pinned under {} \
             (`havip-agent detach` takes them off)",
            opts.pin_dir.display()
        );
    }
    result
}

/// The signals the daemon acts on.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> Result<Self, DaemonError> {
        Ok(Self {
            hup: signal(SignalKind::hangup()).map_err(io("handle SIGHUP"))?,
            term: signal(SignalKind::terminate()).map_err(io("handle SIGTERM"))?,
            int: signal(SignalKind::interrupt()).map_err(io("handle SIGINT"))?,
        })
    }
}

/// What the daemon listens to besides its source: interfaces coming and
/// going, signals, and the datapath's owner changes and deferred claims.
type Inputs = (
    mpsc::UnboundedReceiver<links::LinkEvent>,
    Signals,
    mpsc::UnboundedReceiver<Event>,
);

/// When the damper next needs a look (forever when it watches nothing).
async fn damper_due(damper: &Damper) {
    match damper.next_at() {
        Some(at) => {
            let wait = at.saturating_sub(crate::util::BpfClock::now().mono_now_ns());
            tokio::time::sleep(Duration::from_nanos(wait)).await
        }
        None => std::future::pending().await,
    }
}

async fn serve_file(
    dp: &mut Datapath,
    config: Config,
    path: &Path,
    (mut links, signals, mut claims): Inputs,
    state: &mut StateFile,
) -> Result<(), DaemonError> {
    let Signals {
        mut hup,
        mut term,
        mut int,
    } = signals;
    let (file_tx, mut file_rx) = mpsc::unbounded_channel();
    let _watcher = watch_file(path, file_tx)?;

    apply(dp, &config, path);
    // What is in force is on record before the agent says it runs.
    state.update(dp, &SourceProblems::default());
    // Claims deferred before this agent ran are applied from here on.
    let mut damper = Damper::default();
    damper.sweep(dp);
    let mut sweep = sweep_timer();
    info!(
        "running; reload with SIGHUP or by editing {}",
        path.display()
    );

    let mut retry = Retry::new();
    loop {
        state.update(dp, &SourceProblems::default());
        let unprotected = !dp.all_in_force();
        let handover = dp.egress_handover_pending() > 0;
        tokio::select! {
            _ = tokio::time::sleep_until(retry.at), if unprotected => retry_unprotected(dp, &mut retry),
            _ = std::future::ready(()), if handover => { dp.hand_over_egress(HANDOVER_SLICE); }
            _ = hup.recv() => reload(dp, path, "SIGHUP"),
            Some(()) = file_rx.recv() => reload(dp, path, "file changed"),
            Some(e) = claims.recv() => if e.kind == DatapathEvent::ClaimDeferred as u32 { damper.watch(e.vip_id) },
            _ = damper_due(&damper) => { damper.settle(dp); }
            _ = sweep.tick() => damper.sweep(dp),
            Some(ev) = links.recv() => follow_links(dp, ev, &mut links),
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
        }
    }
    Ok(())
}

/// The etcd source: apply what etcd says as it changes, report owners, and
/// keep the last state through an outage. SIGHUP reads everything again.
async fn serve_etcd(
    dp: &mut Datapath,
    opts: &EtcdOptions,
    (mut links, signals, mut claims): Inputs,
    state: &mut StateFile,
) -> Result<(), DaemonError> {
    let Signals {
        mut hup,
        mut term,
        mut int,
    } = signals;
    let mut source = EtcdSource::new(opts.clone());
    source.resync(dp).await;
    // The owner map is the truth: an owner change whose event was lost is
    // found there and reported.
    let mut audit = tokio::time::interval(OWNER_AUDIT);
    audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut retry = Retry::new();
    let mut damper = Damper::default();
    damper.sweep(dp);
    let mut sweep = sweep_timer();
    state.update(dp, &source.problems());
    info!(
        "running; host {} from etcd {}",
        opts.host,
        opts.endpoints.join(",")
    );
    loop {
        metrics::etcd_watching(source.connected());
        state.update(dp, &source.problems());
        let reconnect = tokio::time::sleep_until(source.next_attempt().into());
        let unprotected = !dp.all_in_force();
        let handover = dp.egress_handover_pending() > 0;
        tokio::select! {
            _ = std::future::ready(()), if handover => { dp.hand_over_egress(HANDOVER_SLICE); }
            _ = tokio::time::sleep_until(retry.at), if unprotected => {
                retry_unprotected(dp, &mut retry);
                source.reacknowledge(dp).await;
            }
            _ = reconnect, if !source.connected() => source.resync(dp).await,
            change = source.next_change() => source.on_change(dp, change).await,
            Some(event) = claims.recv() => {
                if event.kind == DatapathEvent::ClaimDeferred as u32 {
                    damper.watch(event.vip_id);
                } else {
                    source.owner_changed(dp, event).await;
                }
            }
            _ = damper_due(&damper) => {
                for (vip_id, settled) in damper.settle(dp) {
                    source.settled(dp, vip_id, settled).await;
                }
            }
            _ = sweep.tick() => damper.sweep(dp),
            _ = audit.tick() => source.audit_owners(dp).await,
            Some(ev) = links.recv() => follow_links(dp, ev, &mut links),
            _ = hup.recv() => { info!("SIGHUP: reading etcd again"); source.resync(dp).await }
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
        }
    }
    Ok(())
}

/// Follows `first` and every link event already queued behind it with one
/// reconcile (attaching a thousand ports makes a thousand events). After a
/// lost subscription ([`links::LinkEvent::Resubscribed`]) every interface
/// may have changed: that reconciles too.
fn follow_links(
    dp: &mut Datapath,
    first: links::LinkEvent,
    queued: &mut mpsc::UnboundedReceiver<links::LinkEvent>,
) {
    let mut relevant = Vec::new();
    let mut next = Some(first);
    while let Some(ev) = next {
        let resubscribed = ev == links::LinkEvent::Resubscribed;
        if resubscribed || dp.interested_in(ev.ifindex(), ev.name()) {
            debug!("link event {ev:?}");
            relevant.push(ev);
        }
        next = queued.try_recv().ok();
    }
    if relevant.is_empty() {
        return;
    }
    let what = if relevant.contains(&links::LinkEvent::Resubscribed) {
        "after the link events were lost"
    } else {
        "interfaces changed"
    };
    match dp.reconcile() {
        Ok(s) if !s.is_empty() => info!("{what}: {s}"),
        Ok(_) => {}
        Err(e) => {
            metrics::reconcile_failed(Step::Links);
            error!(
                "cannot follow {} interface change(s) ({:?}...): {e}",
                relevant.len(),
                relevant[0]
            )
        }
    }
}

fn apply(dp: &mut Datapath, config: &Config, path: &Path) {
    let started = std::time::Instant::now();
    match dp.apply(config) {
        Ok(s) => info!(
            "applied {} in {:.1} ms: {s}",
            path.display(),
            started.elapsed().as_secs_f64() * 1000.0
        ),
        Err(e) => {
            metrics::reconcile_failed(Step::Apply);
            error!("applying {} failed part way: {e}", path.display())
        }
    }
}

fn reload(dp: &mut Datapath, path: &Path, why: &str) {
    match Config::load(path) {
        Err(e) => error!("{why}: not applying: {e}; the state in force is unchanged"),
        Ok(c) if &c == dp.config() => info!("{why}: {} unchanged", path.display()),
        Ok(c) => {
            info!("{why}: {}: {}", path.display(), c.summary());
            apply(dp, &c, path);
        }
    }
}

/// Watches the file's directory (editors replace files) and sends one
/// message per burst of changes to the file. Reads (ours included) are not
/// changes.
fn watch_file(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> Result<Debouncer<notify::RecommendedWatcher, RecommendedCache>, DaemonError> {
    let abs = std::path::absolute(path).map_err(io("resolve the config path"))?;
    let dir = abs.parent().unwrap_or(Path::new("/")).to_owned();
    let name = abs.file_name().map(ToOwned::to_owned);
    let watch_err = |source| DaemonError::Watch {
        path: dir.clone(),
        source,
    };
    let handler = move |res: DebounceEventResult| match res {
        Ok(events) => {
            let changed = events.iter().any(|e| {
                matches!(
                    e.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) && e.paths.iter().any(|p| p.file_name() == name.as_deref())
            });
            if changed {
                let _ = tx.send(());
            }
        }
        Err(errors) => {
            for e in errors {
                warn!("config watcher: {e}");
            }
        }
    };
    let mut debouncer = new_debouncer(DEBOUNCE, None, handler).map_err(watch_err)?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(watch_err)?;
    Ok(debouncer)
}

async fn poll_logger(logger: EbpfLogger<&'static dyn log::Log>) {
    let fd = logger.as_raw_fd();
    // SAFETY: the logger owns its ring buffer fd, open and unchanged until
    // the logger is dropped, which only happens with the AsyncFd.
    let registered =
        unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
    let mut logger = match registered {
        Ok(l) => l,
        Err(e) => {
            warn!("cannot poll aya-log records (fd {fd}): {e}");
            return;
        }
    };
    loop {
        match logger.readable_mut().await {
            Ok(mut guard) => {
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            Err(e) => {
                warn!("aya-log records: {e}");
                return;
            }
        }
    }
}
