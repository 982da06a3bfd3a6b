//! `havip-controller --metrics-listen ADDR`: Prometheus metrics on
//! `http://ADDR/metrics` (OpenMetrics text), on a listener of their own so
//! they can stay on a private address while the API is public.
//!
//! - `havip_controller_http_requests_total{method,route,status}` and
//!   `havip_controller_http_request_duration_seconds{method,route}`: every
//!   API request, by its route template (`/v1/havips/{id}`; `unmatched` for
//!   a path no route has), counted by [`track`], a layer on the API router.
//! - `havip_controller_vips{status}`: the HAVIPs by status, read from etcd
//!   at each scrape.
//! - `havip_controller_reconcile_backlog_vips` and
//!   `havip_controller_reconcile_lag_seconds`: the VIPs every bound host
//!   has acknowledged as programmed while their status still says
//!   `creating` (the ack reconciler has not caught up), and how long the
//!   oldest of them has been so, as seen at the scrapes.
//! - `havip_controller_etcd_up`: whether the last scrape read etcd.
//! - `havip_controller_eips{status,associated}`: the EIPs by status and
//!   whether they are associated with a HAVIP;
//!   `havip_controller_eip_pool_addresses{pool,gateway,state}`: each EIP
//!   pool's addresses (`state`: `size` or `allocated`), read at each scrape.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::{
    model::{Havip, Status},
    store::{Scope, Store},
};

type Labels = Vec<(&'static str, String)>;

/// The controller's metrics.
#[derive(Debug)]
pub struct ControllerMetrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    vips: Family<Labels, Gauge>,
    backlog: Gauge,
    lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    etcd_up: Gauge,
    eips: Family<Labels, Gauge>,
    pool_addresses: Family<Labels, Gauge>,
    /// (VIP, generation) acknowledged by every host but not `available`
    /// yet -> when a scrape first saw it so.
    behind: Mutex<HashMap<(String, u64), Instant>>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to ~4 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let vips = Family::<Labels, Gauge>::default();
        let backlog = Gauge::default();
        let lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let etcd_up = Gauge::default();
        let eips = Family::<Labels, Gauge>::default();
        let pool_addresses = Family::<Labels, Gauge>::default();
        let mut registry = Registry::default();
        registry.register(
            "havip_controller_eips",
            "EIPs by status and whether they are associated with a HAVIP",
            eips.clone(),
        );
        registry.register(
            "havip_controller_eip_pool_addresses",
            "Addresses of each EIP pool: its size and how many are allocated",
            pool_addresses.clone(),
        );
        registry.register(
            "havip_controller_http_requests",
            "API requests, by method, route template and status code",
            requests.clone(),
        );
        registry.register(
            "havip_controller_http_request_duration_seconds",
            "How long API requests took, by method and route template",
            latency.clone(),
        );
        registry.register(
            "havip_controller_vips",
            "HAVIPs by status (creating, available, failed, deleting)",
            vips.clone(),
        );
        registry.register(
            "havip_controller_reconcile_backlog_vips",
            "HAVIPs every bound host acknowledged as programmed whose status is still creating",
            backlog.clone(),
        );
        registry.register(
            "havip_controller_reconcile_lag_seconds",
            "How long the oldest HAVIP of the backlog has waited for the ack reconciler (0: none waits)",
            lag_seconds.clone(),
        );
        registry.register(
            "havip_controller_etcd_up",
            "1 when the last scrape read the HAVIPs from etcd",
            etcd_up.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            vips,
            backlog,
            lag_seconds,
            etcd_up,
            eips,
            pool_addresses,
            behind: Mutex::new(HashMap::new()),
        }
    }
}

/// A VIP whose hosts have all programmed its generation while its status
/// does not say so yet.
fn reconcile_pending(v: &Havip) -> bool {
    v.status == Status::Creating && !v.ports.is_empty() && v.pending_ports.is_empty()
}

impl ControllerMetrics {
    /// Takes the VIP metrics from `vips` (read at `now`).
    pub fn observe_vips(&self, vips: &[Havip], now: Instant) {
        let mut by_status: HashMap<&'static str, i64> = [
            Status::Creating,
            Status::Available,
            Status::Failed,
            Status::Deleting,
        ]
        .into_iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for v in vips {
            *by_status.entry(v.status.as_str()).or_default() += 1;
        }
        for (status, n) in by_status {
            self.vips
                .get_or_create(&vec![("status", status.to_owned())])
                .set(n);
        }
        let mut behind = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        let now_behind: HashMap<(String, u64), Instant> = vips
            .iter()
            .filter(|v| reconcile_pending(v))
            .map(|v| {
                let key = (v.id.clone(), v.generation);
                let since = behind.get(&key).copied().unwrap_or(now);
                (key, since)
            })
            .collect();
        *behind = now_behind;
        self.backlog.set(behind.len() as i64);
        let lag = behind
            .values()
            .map(|since| now.saturating_duration_since(*since).as_secs_f64())
            .fold(0.0, f64::max);
        self.lag_seconds.set(lag);
    }

    /// Takes the EIP metrics from `eips` and `pools`.
    pub fn observe_eips(&self, eips: &[crate::model::Eip], pools: &[crate::model::EipPool]) {
        self.eips.clear();
        for status in Status::ALL {
            for associated in [false, true] {
                let n = eips
                    .iter()
                    .filter(|e| e.status == status && e.association.is_some() == associated)
                    .count();
                self.eips
                    .get_or_create(&vec![
                        ("status", status.as_str().to_owned()),
                        ("associated", associated.to_string()),
                    ])
                    .set(n as i64);
            }
        }
        self.pool_addresses.clear();
        for p in pools {
            for (state, n) in [("size", p.size), ("allocated", p.allocated)] {
                self.pool_addresses
                    .get_or_create(&vec![
                        ("pool", p.id.clone()),
                        ("gateway", p.gateway.clone()),
                        ("state", state.to_owned()),
                    ])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Counts a request to `route` (its template) answered with `status`
    /// after `took`.
    pub fn record_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("route", route.to_owned()),
            ])
            .observe(took.as_secs_f64());
    }

    /// Reads the VIPs from etcd and renders every metric.
    pub async fn scrape(&self, store: &Store) -> String {
        match store.all_havips(&Scope::Operator).await {
            Ok(vips) => {
                self.observe_vips(&vips, Instant::now());
                self.etcd_up.set(1);
            }
            Err(e) => {
                log::warn!("metrics: cannot read the HAVIPs: {e}");
                self.etcd_up.set(0);
            }
        }
        match (
            store.list_eips(&Scope::Operator, &Default::default()).await,
            store.list_eip_pools().await,
        ) {
            (Ok(eips), Ok(pools)) => self.observe_eips(&eips, &pools),
            (Err(e), _) | (_, Err(e)) => log::warn!("metrics: cannot read the EIPs: {e}"),
        }
        self.render()
    }

    /// Every metric as it stands (without reading etcd).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            log::warn!("metrics: cannot encode: {e}");
        }
        out
    }
}

/// The layer that counts and times each request (`axum::middleware::
/// from_fn_with_state`).
pub async fn track(
    State(metrics): State<Arc<ControllerMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics.record_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the metrics cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Serves `/metrics` on `addr` in a task of its own; fails at once if
/// `addr` cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<ControllerMetrics>,
    store: Store,
) -> Result<SocketAddr, ListenError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            let body = metrics.scrape(&store).await;
            ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            log::warn!("metrics: the server stopped: {e}");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Binding, IpVersion, NetworkType};

    fn vip(id: &str, status: Status, pending: &[&str]) -> Havip {
        Havip {
            id: id.into(),
            project: "p".into(),
            name: id.into(),
            description: String::new(),
            network_type: NetworkType::Intranet,
            vpc: "v".into(),
            subnet: "s".into(),
            ip_version: IpVersion::Ipv4,
            address: "10.0.0.5".parse().unwrap(),
            ports: vec![Binding {
                port: "port-a".into(),
                vm: "vm-a".into(),
                host: Some("hv1".into()),
            }],
            status,
            status_reason: None,
            generation: 2,
            ports_per_vip: None,
            vrid: None,
            hold_down_ms: 1000,
            created_at: chrono::Utc::now(),
            pending_ports: pending.iter().map(|p| p.to_string()).collect(),
            pending_hosts: None,
            master: None,
            eip: None,
        }
    }

    #[test]
    fn vips_are_counted_by_status_and_the_backlog_ages_across_scrapes() {
        let m = ControllerMetrics::default();
        let t0 = Instant::now();
        let vips = [
            vip("a", Status::Available, &[]),
            vip("b", Status::Creating, &["port-a"]),
            vip("c", Status::Creating, &[]),
        ];
        m.observe_vips(&vips, t0);
        m.observe_vips(&vips, t0 + Duration::from_secs(3));
        let t = m.render();
        assert!(
            t.contains(r#"havip_controller_vips{status="creating"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"havip_controller_vips{status="available"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(r#"havip_controller_vips{status="deleting"} 0"#),
            "{t}"
        );
        assert!(
            t.contains("havip_controller_reconcile_backlog_vips 1\n"),
            "{t}"
        );
        assert!(
            t.contains("havip_controller_reconcile_lag_seconds 3.0\n"),
            "{t}"
        );
        // Reconciled: the backlog empties and the lag is 0 again.
        m.observe_vips(
            &[vip("c", Status::Available, &[])],
            t0 + Duration::from_secs(4),
        );
        let t = m.render();
        assert!(
            t.contains("havip_controller_reconcile_backlog_vips 0\n"),
            "{t}"
        );
        assert!(
            t.contains("havip_controller_reconcile_lag_seconds 0.0\n"),
            "{t}"
        );
    }
}
