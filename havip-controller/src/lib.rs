//! The HAVIP API: high-availability virtual IPs of VPC subnets, bound to VM
//! ports, stored in etcd.
//!
//! - [`store`]: every operation and its rules, as etcd transactions.
//! - [`api`]: the HTTP API (axum) and its OpenAPI document (`GET /openapi.json`).
//! - [`rules`]: the rules that need no store (addresses, names, search).
//! - [`config`]: the controller's TOML config (listen address, etcd, tokens, limits).
//! - [`client`]: a typed HTTP client (used by `havipctl`).
//!
//! # Resources and states
//!
//! A HAVIP belongs to one subnet of one VPC of one project. It is created
//! with a name, a given or allocated address, and optionally ports to bind
//! (ports of the same VPC and subnet; at most 3 per VIP and 5 VIPs per port
//! unless an operator changes that per project, per VIP or per port).
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
//! # etcd key layout (version 1)
//!
//! All values are JSON. Host agents implement against this; changing a
//! key or a field meaning means a new version root (`/havip/v2`).
//!
//! | key | value | written by |
//! |-----|-------|------------|
//! | `/havip/v1/vpcs/<vpc>` | [`model::Vpc`] | controller |
//! | `/havip/v1/subnets/<subnet>` | [`model::Subnet`] | controller |
//! | `/havip/v1/ports/<port>` | [`model::Port`] (incl. the VIPs bound to it) | controller |
//! | `/havip/v1/vips/<vip>` | [`model::Havip`] (without `pending_hosts`/`master`) | controller |
//! | `/havip/v1/addrs/<subnet>/<ip>` | [`model::Claim`]: `{"kind":"vip","id","name"}` or `{"kind":"port","id","vm"}` | controller |
//! | `/havip/v1/hosts/<host>/ports/<port>` | [`model::HostPort`]: the port's interface, MAC, fixed IPs and bound VIPs `[{id,address}]` | controller |
//! | `/havip/v1/acks/<vip>/<host>` | [`model::Ack`]: `{"generation","result":"programmed"\|"failed","reason","at"}` | agent of `<host>` |
//! | `/havip/v1/owners/<vip>` | [`model::Owner`]: `{"port","host","since"}`, and `"split_brain":{"ports","pending"}` while two bound ports claim the VIP within its hold-down | agent of the master's host |
//! | `/havip/v1/limits/projects/<project>` | [`model::ProjectLimits`] | controller (operator) |
//!
//! IPv6 addresses in keys are in canonical RFC 5952 form (`fd00::1`).
//!
//! ## What a host agent does
//!
//! 1. Watch the prefix `/havip/v1/hosts/<host>/ports/`: each key is a local
//!    port (interface, MAC) and the VIPs (id, address) it may answer for. A
//!    VIP leaving a port's `vips` (unbind, delete) means unprogram it there.
//! 2. For each VIP id seen there, watch `/havip/v1/vips/<vip>`: `ports`
//!    lists every bound port with its VM and host (the other hosts are
//!    where remote owners live); `generation` is what to acknowledge.
//! 3. After programming generation `g` of a VIP, put
//!    `/havip/v1/acks/<vip>/<host>` = `{"generation":g,"result":"programmed","at":...}`
//!    (or `"failed"` with a `reason`). The controller watches `/havip/v1/acks/`
//!    and moves the VIP to `available` once every bound host acked `g`, or
//!    to `failed` on any failure for `g`. Acks for older generations are
//!    ignored.
//! 4. When a local port becomes the VIP's master (e.g. it sent a GARP for
//!    the VIP), put `/havip/v1/owners/<vip>` = `{"port","host","since"}`;
//!    watch that key to learn remote owners. Guard the put with a compare
//!    that `/havip/v1/vips/<vip>` exists ([`store::Store::report_owner`]
//!    does) so a deleted VIP is not resurrected. While a split brain lasts
//!    (two bound ports claiming within the VIP's `hold_down_ms`), put it
//!    again with `split_brain` as it begins and without it when it clears.
//!
//! The controller deletes `acks/<vip>/`, `owners/<vip>` and the address
//! claim with the VIP.
//!
//! # Concurrency
//!
//! Each operation reads what its rules depend on and commits one etcd
//! transaction that compares the `mod_revision` of every key read (the
//! VIP, each port whose bindings change, the project's limits, the subnet)
//! and the absence of the address-claim key; on a lost race it reads again.
//! So any number of controllers can serve one etcd: an address is never
//! given twice and no limit is exceeded.

pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod export;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod rules;
pub mod store;

use std::collections::HashMap;

pub use error::{Error, ErrorCode};
pub use store::{Scope, Store};

/// Bearer token → who it speaks for.
pub fn tokens(config: &config::Config) -> HashMap<String, Scope> {
    config
        .tokens
        .iter()
        .map(|t| {
            let scope = match &t.project {
                Some(p) => Scope::Project(p.clone()),
                None => Scope::Operator,
            };
            (t.token.clone(), scope)
        })
        .collect()
}

/// Serves the API on `listener` until `shutdown` completes, and keeps VIP
/// statuses in step with the agents' acks meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    tokens: HashMap<String, Scope>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = std::sync::Arc::default();
    serve_metered(listener, store, tokens, metrics, shutdown).await
}

/// [`serve`], counting and timing each request in `metrics`.
pub async fn serve_metered(
    listener: tokio::net::TcpListener,
    store: Store,
    tokens: HashMap<String, Scope>,
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
    let app = api::router(store, tokens).layer(axum::middleware::from_fn_with_state(
        metrics,
        metrics::track,
    ));
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    reconciler.abort();
    result
}
