//! The HAVIP API: high-availability virtual IPs of VPC subnets, bound to VM
//! ports, stored in etcd.
//!
//! - [`store`]: every operation and its rules, as etcd transactions.
//! - [`views`], [`requests`]: what the API answers and takes.
//! - [`api`]: the HTTP API (axum) and its OpenAPI document (`GET /openapi.json`).
//! - [`rules`]: search matching (the record rules are `havip_schema`'s).
//! - [`config`]: the controller's TOML config (listen address, etcd, tokens, limits).
//! - [`client`]: a typed HTTP client (used by `havipctl`).
//! - [`console`]: the tenant's web console (`/console/`), on the public API.
//!
//! # Resources and states
//!
//! A HAVIP belongs to one subnet of one VPC of one project. It is created
//! with a name, a given or allocated address, and optionally ports to bind
//! (ports of the same VPC and subnet; at most 3 per VIP and 5 VIPs per port,
//! 100 HAVIPs per project and 50 per subnet, unless an operator changes
//! that per project, per VIP or per port; never more than 16 ports per VIP,
//! what the datapath holds).
//!
//! | status      | meaning                                                         |
//! |-------------|-----------------------------------------------------------------|
//! | `creating`  | bound ports' hosts have not all acknowledged the current generation |
//! | `available` | address reserved; every bound port's host has programmed it (a VIP with no ports is available as soon as its address is reserved) |
//! | `failed`    | a host reported it could not program the current generation (`status_reason` says which and why) |
//! | `deleting`  | being unbound and removed                                        |
//!
//! Every change of a VIP's bound ports bumps its `generation` and makes it
//! `creating` again until each bound port's host acknowledges that
//! generation. Only `available` and `failed` VIPs can be deleted (a VIP
//! stuck in `creating` is made deletable by unbinding its ports). Name and
//! description change in any state.
//!
//! # etcd key layout
//!
//! The keys, the stored records and what a host agent does with them are
//! the `havip_schema` crate's (shared with the agent). The API answers
//! views of the records ([`views`]): a tenant's names no hypervisor host.
//!
//! A corrupt record (one that does not decode) is skipped by every read,
//! logged and counted; an operation that must change it answers
//! `corrupt_record` (409) naming the resource, never the key.
//! `GET /v1/records/corrupt` (operator) lists them with their keys.
//!
//! # Concurrency
//!
//! Each operation reads what its rules depend on and commits one etcd
//! transaction that compares the `mod_revision` of every key read (the
//! VIP, each port whose bindings change, the project's limits, the subnet),
//! the absence of the address-claim key, and that no VIP was added to the
//! project's or the subnet's index since they were counted; on a lost race
//! it reads again.
//! So any number of controllers can serve one etcd: an address is never
//! given twice and no limit is exceeded.

pub mod api;
pub mod client;
pub mod config;
pub mod console;
pub mod eip_model;
pub mod error;
pub mod etcd_auth;
pub mod export;
pub mod history;
pub mod metrics;
pub mod model;
pub mod requests;
pub mod rules;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod views;

pub use error::{Error, ErrorCode};
pub use store::{Scope, Store};
pub use tokens::Tokens;

/// The config's bearer tokens (as digests) → who each speaks for.
pub fn tokens(config: &config::Config) -> Tokens {
    config.tokens()
}

/// Serves the API on `listener` until `shutdown` completes, and keeps VIP
/// statuses in step with the agents' acks meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    tokens: impl Into<Tokens>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = std::sync::Arc::default();
    serve_metered(listener, store, tokens, metrics, shutdown).await
}

/// [`serve`], counting and timing each request in `metrics`.
pub async fn serve_metered(
    listener: tokio::net::TcpListener,
    store: Store,
    tokens: impl Into<Tokens>,
    metrics: std::sync::Arc<metrics::ControllerMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, None, store, tokens.into(), metrics, shutdown).await
}

/// [`serve_metered`] over HTTPS with `tls` ([`tls::load`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    store: Store,
    tokens: impl Into<Tokens>,
    metrics: std::sync::Arc<metrics::ControllerMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, Some(tls), store, tokens.into(), metrics, shutdown).await
}

/// Serves until `shutdown` completes; then stops accepting, lets the
/// requests in flight finish, and stops the ack reconciler.
async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    store: Store,
    tokens: Tokens,
    metrics: std::sync::Arc<metrics::ControllerMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reconciler = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = store.run_ack_reconciler().await {
                    log::warn!("ack reconciler: {e}; restarting");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    };
    let recorder = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = store.run_history_recorder(store.history_per_vip()).await {
                    log::warn!("failover history: {e}; restarting");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    };
    let app = api::router(store, tokens).layer(axum::middleware::from_fn_with_state(
        metrics,
        metrics::track,
    ));
    let result = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(None);
            });
            axum_server::from_tcp(listener.into_std()?)
                .acceptor(tls::acceptor(tls))
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
    };
    reconciler.abort();
    recorder.abort();
    let _ = reconciler.await;
    let _ = recorder.await;
    result
}
