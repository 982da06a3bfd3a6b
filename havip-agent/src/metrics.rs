//! `havip-agent run --metrics-listen ADDR`: Prometheus metrics on
//! `http://ADDR/metrics` (OpenMetrics text).
//!
//! The datapath's metrics are read from the pinned maps at each scrape, by
//! the same code as `havip-agent status` ([`crate::status::read`]): each
//! VIP's owner (`havip_vip_owner_info`, with the owner's port, VM and host),
//! its counters, the drops by reason, the ring buffers' losses and each
//! port's protection. The daemon adds what only it knows ([`Live`]): the
//! reconcile steps that failed and, with `--etcd`, the connection to etcd.
//!
//! Labels: `vip` is the VIP's name (the controller's id with `--etcd`, the
//! config's `name`, else its numeric id); `port` likewise; `vm` and `host`
//! come from the VIP's bindings in etcd (with a config file, `host` is this
//! machine's hostname and `vm` is empty); `reason` is a drop reason's stable
//! name (README, "Drop reasons").

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, LazyLock, Mutex},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use havip_common::{DropReason, Stat};
use log::{info, warn};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        info::Info,
        MetricType,
    },
    registry::Registry,
};

use crate::{
    config::Config,
    etcd::{datapath_id, Snapshot},
    protection::PortState,
    status::{self, Report},
};

/// Why the metrics cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A reconcile step of the daemon, as counted by
/// `havip_agent_reconcile_errors_total{step}`.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Applying the config file (at start, on SIGHUP or a change).
    Apply,
    /// Following interfaces that came or went.
    Links,
    /// Retrying the ports, VIPs and addresses not in force.
    Retry,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Links => "links",
            Self::Retry => "retry",
        }
    }
}

/// Where the agent stands with etcd, as the metrics tell it.
#[derive(Debug, Default)]
struct EtcdLink {
    /// Whether the agent runs from etcd at all.
    used: bool,
    watching: bool,
    /// When the agent was last in step with etcd: now while watching, the
    /// moment it lost the watch otherwise.
    in_step_at: Option<(Instant, SystemTime)>,
}

/// What the daemon reports as it runs.
#[derive(Debug, Default)]
pub struct Live {
    reconcile_errors: Family<Vec<(&'static str, &'static str)>, Counter>,
    etcd: Mutex<EtcdLink>,
}

static LIVE: LazyLock<Live> = LazyLock::new(Live::default);

/// Counts a reconcile step that failed (its error is logged by the caller).
pub fn reconcile_failed(step: Step) {
    LIVE.reconcile_errors
        .get_or_create(&vec![("step", step.name())])
        .inc();
}

/// Tells the metrics whether the etcd source is watching now (called by
/// the daemon's loop each time round).
pub fn etcd_watching(watching: bool) {
    let mut link = LIVE.etcd.lock().unwrap_or_else(|e| e.into_inner());
    link.used = true;
    if link.watching && !watching {
        // It was in step until now.
        link.in_step_at = Some((Instant::now(), SystemTime::now()));
    }
    link.watching = watching;
}

/// Where the VIP and port names come from.
#[derive(Debug, Clone)]
pub enum Names {
    /// The config file: names from it, `host` this machine's.
    File(PathBuf),
    /// The etcd source's kept snapshot: ids, and bindings' VMs and hosts.
    Etcd { snapshot: Option<PathBuf> },
}

/// Labels for one port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PortNames {
    name: String,
    vm: String,
    host: String,
}

/// The names the labels use, by datapath id.
#[derive(Debug, Default)]
struct Labels {
    vips: HashMap<u32, String>,
    ports: HashMap<u32, PortNames>,
    /// This host, for owners on it that no binding names.
    host: String,
}

impl Labels {
    fn from_config(c: &Config, host: &str) -> Self {
        let name = |id: u32, n: &Option<String>| n.clone().unwrap_or_else(|| id.to_string());
        Self {
            vips: c
                .vips
                .values()
                .map(|v| (v.id, name(v.id, &v.name)))
                .collect(),
            ports: c
                .ports
                .values()
                .map(|p| {
                    let labels = PortNames {
                        name: name(p.id, &p.name),
                        vm: String::new(),
                        host: host.to_owned(),
                    };
                    (p.id, labels)
                })
                .collect(),
            host: host.to_owned(),
        }
    }

    fn from_snapshot(s: &Snapshot, host: &str) -> Self {
        let mut ports = HashMap::new();
        for hp in &s.host_ports {
            let labels = PortNames {
                name: hp.port.clone(),
                vm: hp.vm.clone(),
                host: host.to_owned(),
            };
            ports.insert(datapath_id(hp.datapath_id, &hp.port), labels);
        }
        for binding in s.vips.values().flat_map(|v| &v.ports) {
            let labels = PortNames {
                name: binding.port.clone(),
                vm: binding.vm.clone(),
                host: binding.host.clone(),
            };
            ports
                .entry(s.port_datapath_id(&binding.port))
                .or_insert(labels);
        }
        Self {
            vips: s
                .vips
                .keys()
                .map(|id| (s.vip_datapath_id(id), id.clone()))
                .collect(),
            ports,
            host: host.to_owned(),
        }
    }

    fn vip(&self, id: u32) -> String {
        self.vips
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn port(&self, id: u32) -> PortNames {
        self.ports.get(&id).cloned().unwrap_or_else(|| PortNames {
            name: id.to_string(),
            ..PortNames::default()
        })
    }
}

/// This machine's hostname.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Reads the pinned maps at each scrape.
#[derive(Debug)]
struct Datapath {
    pin_dir: PathBuf,
    names: Names,
    /// `--host` with etcd, the hostname otherwise.
    host: String,
}

impl Datapath {
    /// The labels, and the config for the status's names (file source).
    fn labels(&self) -> (Labels, Option<Config>) {
        match &self.names {
            Names::File(path) => match Config::load(path) {
                Ok(c) => (Labels::from_config(&c, &self.host), Some(c)),
                Err(_) => (
                    Labels {
                        host: self.host.clone(),
                        ..Labels::default()
                    },
                    None,
                ),
            },
            Names::Etcd { snapshot } => {
                let labels = match snapshot.as_deref().map(Snapshot::load) {
                    Some(Ok(s)) => Labels::from_snapshot(&s, &self.host),
                    _ => Labels {
                        host: self.host.clone(),
                        ..Labels::default()
                    },
                };
                (labels, None)
            }
        }
    }
}

type LabelSet = Vec<(&'static str, String)>;

/// The reasons the datapath refuses a claim on a VIP for (`owner::reject`):
/// each VIP has their series from the start; another reason's appears
/// once counted.
const CLAIM_REASONS: [DropReason; 2] = [DropReason::ClaimNotBound, DropReason::VipSourceNotBound];

/// Writes one metric family of `kind` with its samples.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (LabelSet, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

/// The datapath's metrics from one status report.
fn encode_report(
    r: &Report,
    labels: &Labels,
    e: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let vip = |id: u32| -> LabelSet { vec![("vip", labels.vip(id))] };
    family(
        e,
        "havip_vip_owner",
        "The port that owns the VIP (the datapath's owner record), with its VM and host",
        MetricType::Info,
        r.vips.iter().filter_map(|v| {
            let o = v.owner.as_ref()?;
            let port = labels.port(o.port_id);
            // An owner learned here is on this host whatever the bindings say.
            let host = if o.ifindex != 0 {
                labels.host.clone()
            } else {
                port.host
            };
            let set: LabelSet = vec![
                ("vip", labels.vip(v.vip_id)),
                ("address", v.address.clone()),
                ("port", port.name),
                ("vm", port.vm),
                ("host", host),
                ("interface", o.interface.clone().unwrap_or_default()),
                ("mac", o.mac.clone()),
            ];
            Some((LabelSet::new(), Info::new(set)))
        }),
    )?;
    let per_vip = |f: fn(&status::CountersStatus) -> u64| {
        r.vips
            .iter()
            .map(move |v| (vip(v.vip_id), counter(f(&v.counters))))
            .collect::<Vec<_>>()
    };
    family(
        e,
        "havip_vip_owner_generation",
        "The owner record's generation (0: never owned)",
        MetricType::Gauge,
        r.vips
            .iter()
            .map(|v| (vip(v.vip_id), gauge(v.generation as i64))),
    )?;
    family(
        e,
        "havip_vip_owner_since_timestamp_seconds",
        "When the current owner took the VIP (Unix time)",
        MetricType::Gauge,
        r.vips.iter().filter_map(|v| {
            let o = v.owner.as_ref()?;
            Some((vip(v.vip_id), ConstGauge::new(o.since_unix_ms as f64 / 1e3)))
        }),
    )?;
    family(
        e,
        "havip_vip_owner_changes",
        "Owner changes the datapath learned for the VIP",
        MetricType::Counter,
        per_vip(|c| c.owner_changes),
    )?;
    family(
        e,
        "havip_vip_claims_accepted",
        "Claims (GARP, ARP reply, NA) accepted from a bound port",
        MetricType::Counter,
        per_vip(|c| c.claims_accepted),
    )?;
    family(
        e,
        "havip_vip_claims_deferred",
        "Claims deferred by the VIP's split-brain hold-down",
        MetricType::Counter,
        per_vip(|c| c.claims_deferred),
    )?;
    family(
        e,
        "havip_vip_claims_rejected",
        "Claims on the VIP (or frames sourced from it) refused, by reason",
        MetricType::Counter,
        r.vips.iter().flat_map(|v| {
            v.counters
                .drops
                .iter()
                .filter(|(reason, n)| {
                    **reason != DropReason::NotOwner.name()
                        && (**n > 0 || CLAIM_REASONS.iter().any(|r| r.name() == **reason))
                })
                .map(move |(reason, n)| {
                    let mut set = vip(v.vip_id);
                    set.push(("reason", (*reason).to_owned()));
                    (set, counter(*n))
                })
        }),
    )?;
    family(
        e,
        "havip_vip_not_owner_drops",
        "Frames for the VIP dropped on their way to a port that is not its owner",
        MetricType::Counter,
        per_vip(|c| {
            c.drops
                .get(DropReason::NotOwner.name())
                .copied()
                .unwrap_or(0)
        }),
    )?;
    family(
        e,
        "havip_vip_answered",
        "ARP requests and Neighbor Solicitations for the VIP answered by the datapath",
        MetricType::Counter,
        per_vip(|c| c.answered),
    )?;
    family(
        e,
        "havip_vip_delivered_frames",
        "Frames for the VIP delivered to its owner (redirected or MAC rewritten)",
        MetricType::Counter,
        per_vip(|c| c.delivered),
    )?;
    family(
        e,
        "havip_drops",
        "Frames the datapath dropped, by reason (all ports)",
        MetricType::Counter,
        r.drops
            .iter()
            .map(|(reason, n)| (vec![("reason", (*reason).to_owned())], counter(*n))),
    )?;
    let lost = [(Stat::EventsLost, "events"), (Stat::RejectsLost, "rejects")];
    family(
        e,
        "havip_events_lost",
        "Reports the datapath could not make because its ring buffer was full (events: owner changes, found in havip_owners all the same; rejects: rejected claims, counted as drops all the same)",
        MetricType::Counter,
        lost.iter().map(|(stat, ring)| {
            let n = r.stats.get(stat.name()).copied().unwrap_or(0);
            (vec![("ring", (*ring).to_owned())], counter(n))
        }),
    )?;
    family(
        e,
        "havip_datapath_frames",
        "The datapath's other counters, by what happened (see Stat in havip-common)",
        MetricType::Counter,
        r.stats
            .iter()
            .filter(|(name, _)| !lost.iter().any(|(s, _)| s.name() == **name))
            .map(|(name, n)| (vec![("stat", (*name).to_owned())], counter(*n))),
    )?;
    family(
        e,
        "havip_port_protection_state",
        "1 for the port's protection state (protected, failed: its programs cannot be attached, absent: no interface here), 0 for the others",
        MetricType::Gauge,
        r.protection.ports.iter().flat_map(|p| {
            let port = labels.port(p.port_id).name;
            [PortState::Protected, PortState::Failed, PortState::Absent]
                .into_iter()
                .map(move |s| {
                    let set: LabelSet = vec![
                        ("port", port.clone()),
                        ("interface", p.interface.clone()),
                        ("state", s.name().to_owned()),
                    ];
                    (set, gauge(i64::from(p.state == s)))
                })
        }),
    )?;
    family(
        e,
        "havip_not_programmed",
        "VIPs and port addresses of the desired state that are not programmed (no room, a bad record)",
        MetricType::Gauge,
        [
            ("vip", r.protection.vips_not_programmed.len()),
            ("port_address", r.protection.addrs_not_programmed.len()),
        ]
        .map(|(kind, n)| (vec![("kind", kind.to_owned())], gauge(n as i64))),
    )?;
    Ok(())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One scrape's datapath metrics: whether the maps could be read, and what
/// they hold.
fn encode_scrape(
    report: Result<Report, status::StatusError>,
    labels: &Labels,
    e: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    family(
        e,
        "havip_datapath_loaded",
        "1 when the datapath's maps are pinned and read (0: see the agent's log)",
        MetricType::Gauge,
        [(LabelSet::new(), gauge(i64::from(report.is_ok())))],
    )?;
    match report {
        Ok(r) => encode_report(&r, labels, e),
        Err(err) => {
            warn!("metrics: {err}");
            Ok(())
        }
    }
}

impl Collector for Datapath {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (labels, config) = self.labels();
        encode_scrape(
            status::read(&self.pin_dir, config.as_ref()),
            &labels,
            &mut e,
        )
    }
}

impl Collector for &'static Live {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.reconcile_errors.encode(e.encode_descriptor(
            "havip_agent_reconcile_errors",
            "Reconcile steps that failed (logged with the error), by step",
            None,
            MetricType::Counter,
        )?)?;
        let link = self.etcd.lock().unwrap_or_else(|e| e.into_inner());
        if !link.used {
            return Ok(());
        }
        family(
            &mut e,
            "havip_etcd_connected",
            "1 while the agent watches etcd, 0 while it serves its last state",
            MetricType::Gauge,
            [(LabelSet::new(), gauge(i64::from(link.watching)))],
        )?;
        let (age, at) = match (link.watching, link.in_step_at) {
            (true, _) => (0.0, Some(unix_seconds(SystemTime::now()))),
            (false, Some((i, t))) => (i.elapsed().as_secs_f64(), Some(unix_seconds(t))),
            (false, None) => (f64::NAN, None),
        };
        family(
            &mut e,
            "havip_etcd_sync_age_seconds",
            "Seconds since the agent was last in step with etcd (0 while watching; NaN: never)",
            MetricType::Gauge,
            [(LabelSet::new(), ConstGauge::new(age))],
        )?;
        family(
            &mut e,
            "havip_etcd_last_sync_timestamp_seconds",
            "When the agent was last in step with etcd (Unix time; now while watching)",
            MetricType::Gauge,
            at.map(|t| (LabelSet::new(), ConstGauge::new(t))),
        )
    }
}

/// The registry of a running agent.
pub fn registry(pin_dir: PathBuf, names: Names, host: Option<&str>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Datapath {
        pin_dir,
        names,
        host: host.map_or_else(hostname, str::to_owned),
    }));
    registry.register_collector(Box::new(&*LIVE));
    registry
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the registry (reading the pinned maps).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String fails only if a metric's encoding does.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        warn!("metrics: cannot encode: {e}");
    }
    out
}

/// Listens on `addr` and serves `/metrics` from then on, in a task of the
/// current runtime. Fails at once if `addr` cannot be bound.
pub async fn serve(addr: SocketAddr, registry: Registry) -> Result<(), MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Listen { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                // Reading the maps is blocking work: off the daemon's thread.
                let body = tokio::task::spawn_blocking(move || render(&registry))
                    .await
                    .unwrap_or_default();
                ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body)
            }
        }),
    );
    info!("serving metrics on http://{bound}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("metrics: the server stopped: {e}");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{CountersStatus, OwnerStatus, ProtectionStatus, VipStatus};
    use std::collections::BTreeMap;

    fn report() -> Report {
        let drops: BTreeMap<&'static str, u64> =
            DropReason::ALL.iter().map(|r| (r.name(), 0)).collect();
        let mut vip_drops = drops.clone();
        vip_drops.insert("claim_not_bound", 3);
        vip_drops.insert("not_owner", 2);
        Report {
            pin_dir: "/sys/fs/bpf/t".into(),
            abi: Some(1),
            vips: vec![VipStatus {
                vip_id: 7,
                name: None,
                network: 1,
                address: "10.0.6.19".into(),
                ports: vec![11, 12],
                generation: 3,
                owner: Some(OwnerStatus {
                    port_id: 12,
                    port_name: None,
                    ifindex: 0,
                    interface: None,
                    mac: "02:00:00:00:00:12".into(),
                    generation: 3,
                    since_unix_ms: 1_700_000_000_500,
                    last_claim_unix_ms: 0,
                    since_ktime_ns: 0,
                    last_claim_ktime_ns: 0,
                    since_age: Default::default(),
                    last_claim_age: Default::default(),
                }),
                hold_down_ms: 0,
                split_brain: None,
                counters: CountersStatus {
                    claims_accepted: 4,
                    owner_changes: 3,
                    claims_deferred: 0,
                    answered: 5,
                    delivered: 9,
                    drops: vip_drops,
                },
            }],
            ports: vec![],
            drops,
            stats: Stat::ALL.iter().map(|s| (s.name(), 1)).collect(),
            protection: ProtectionStatus {
                source: "agent",
                state_file: String::new(),
                agent_pid: None,
                agent_running: false,
                written_unix_ms: None,
                warning: None,
                ports: vec![crate::protection::PortProtection {
                    port_id: 11,
                    name: None,
                    interface: "tap-a".into(),
                    state: PortState::Failed,
                    reason: Some("busy".into()),
                }],
                vips_not_programmed: vec![],
                addrs_not_programmed: vec![],
                egress_handover: 0,
            },
        }
    }

    type MakeReport = Box<dyn Fn() -> Report + Send + Sync>;
    struct Fixed(MakeReport, Labels);
    impl std::fmt::Debug for Fixed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Fixed")
        }
    }
    impl Collector for Fixed {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode_scrape(Ok((self.0)()), &self.1, &mut e)
        }
    }

    fn text(labels: Labels) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(Box::new(report), labels)));
        render(&registry)
    }

    #[test]
    fn a_remote_owner_is_named_by_its_binding_and_counters_by_the_vip() {
        let labels = Labels {
            vips: [(7, "havip-web".to_owned())].into(),
            ports: [(
                12,
                PortNames {
                    name: "port-b".into(),
                    vm: "vm-b".into(),
                    host: "hv2".into(),
                },
            )]
            .into(),
            host: "hv1".into(),
        };
        let t = text(labels);
        assert!(
            t.contains(
                r#"havip_vip_owner_info{vip="havip-web",address="10.0.6.19",port="port-b",vm="vm-b",host="hv2",interface="",mac="02:00:00:00:00:12"} 1"#
            ),
            "{t}"
        );
        assert!(
            t.contains(r#"havip_vip_owner_changes_total{vip="havip-web"} 3"#),
            "{t}"
        );
        assert!(
            t.contains(
                r#"havip_vip_claims_rejected_total{vip="havip-web",reason="claim_not_bound"} 3"#
            ),
            "{t}"
        );
        assert!(
            !t.contains(r#"havip_vip_claims_rejected_total{vip="havip-web",reason="not_owner"}"#),
            "{t}"
        );
        assert!(
            t.contains(r#"havip_vip_not_owner_drops_total{vip="havip-web"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"havip_vip_owner_since_timestamp_seconds{vip="havip-web"} 1700000000.5"#),
            "{t}"
        );
        assert!(
            t.contains(r#"havip_events_lost_total{ring="events"} 1"#),
            "{t}"
        );
        assert!(!t.contains(r#"stat="events_lost""#), "{t}");
        assert!(
            t.contains(
                r#"havip_port_protection_state{port="11",interface="tap-a",state="failed"} 1"#
            ) && t.contains(
                r#"havip_port_protection_state{port="11",interface="tap-a",state="protected"} 0"#
            ),
            "{t}"
        );
        assert!(t.contains("# TYPE havip_drops counter"), "{t}");
    }

    #[test]
    fn without_names_the_ids_label_and_a_local_owner_is_on_this_host() {
        let local = || {
            let mut r = report();
            r.vips[0].owner.as_mut().unwrap().ifindex = 5;
            r
        };
        let labels = Labels {
            host: "hv1".into(),
            ..Labels::default()
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(Box::new(local), labels)));
        let t = render(&registry);
        assert!(
            t.contains(
                r#"havip_vip_owner_info{vip="7",address="10.0.6.19",port="12",vm="",host="hv1""#
            ),
            "{t}"
        );
    }

    /// The sample names a rendering's `# TYPE` lines give: `_total` for a
    /// counter, `_info` for an info, `_bucket`, `_sum`, `_count` for a
    /// histogram.
    fn exported(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "info" => &["_info"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
        names
    }

    #[test]
    fn every_metric_the_dashboard_queries_is_exported() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../packaging/grafana/havip-vip.json"))
                .expect("the dashboard is JSON");
        // What a scrape of an agent on etcd and of the controller gives.
        etcd_watching(true);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(Box::new(report), Labels::default())));
        registry.register_collector(Box::new(&*LIVE));
        let mut all = exported(&render(&registry));
        let controller = havip_controller::metrics::ControllerMetrics::default();
        controller.observe_vips(&[], std::time::Instant::now());
        controller.record_request("GET", "/v1/havips/{id}", 200, Default::default());
        all.extend(exported(&controller.render()));
        assert!(
            all.contains("havip_vip_owner_info") && all.contains("havip_controller_vips"),
            "{all:?}"
        );

        let mut exprs = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        match (k.as_str(), v) {
                            ("expr" | "definition", serde_json::Value::String(s)) => {
                                out.push(s.clone())
                            }
                            _ => walk(v, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        walk(&dashboard, &mut exprs);
        assert!(exprs.len() >= 10, "{exprs:?}");
        for expr in &exprs {
            let mut found = 0;
            for (i, _) in expr.match_indices("havip_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(all.contains(&name), "{expr}: {name} is not exported");
                found += 1;
            }
            assert!(found > 0, "{expr} queries no havip metric");
        }
    }
}
