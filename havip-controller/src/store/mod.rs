//! The HAVIP store on etcd. Every change is one etcd transaction guarded by
//! `mod_revision` compares on everything it read (optimistic concurrency);
//! on a lost race the operation reads again and retries, so rules checked
//! on the read (free address, limits, same subnet) still hold when the
//! write lands, however many controllers run.
//!
//! A stored record that cannot be read is skipped by every read (logged
//! and counted, never an error for the caller); an operation that must
//! change it answers `corrupt_record`, naming the resource, not the key.
//!
//! - [`networks`]: VPCs and subnets.
//! - [`ports`]: ports and their address claims.
//! - [`limits`]: the limits in effect and the operators' overrides.
//! - [`havips`]: creating, binding, changing and deleting HAVIPs.
//! - [`reads`]: HAVIP views, lists, pages.
//! - [`acks`]: the agents' side (owners, acks) and the ack reconciler.
//! - [`reports`]: reading the hosts' acks and owner reports.
//! - [`migrate`]: moving a store of an older schema version to this one.
//! - [`corrupt`]: the scan for corrupt records.
//! - [`ids`]: the datapath ids of subnets, ports and VIPs.
//! - [`eips`]: EIP pools and EIPs (allocate, associate, release).

mod acks;
mod corrupt;
mod eips;
mod havips;
mod history;
mod ids;
mod limits;
mod migrate;
mod networks;
mod ports;
mod reads;
mod reports;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, ConnectOptions, GetOptions, Txn, TxnOp};
use havip_schema::keys::Key;
use havip_schema::limits::Limits;
use havip_schema::tls::EtcdTls;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

pub use havips::BindMode;
pub use history::DEFAULT_HISTORY_PER_VIP;
pub use migrate::Migrated;

/// How often an operation re-reads and retries after losing a race.
const RETRIES: usize = 200;

/// Who is asking: a project sees only its own resources; the operator sees
/// all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Project(String),
    Operator,
}

impl Scope {
    pub fn sees(&self, project: &str) -> bool {
        match self {
            Scope::Project(p) => p == project,
            Scope::Operator => true,
        }
    }

    /// The project of a tenant; operators do not own HAVIPs.
    pub fn project(&self) -> Result<&str> {
        match self {
            Scope::Project(p) => Ok(p),
            Scope::Operator => Err(Error::forbidden(
                "operator tokens manage networks, ports and limits; use a project token for HAVIPs",
            )),
        }
    }
}

/// A connection to etcd plus the controller's default limits.
#[derive(Clone)]
pub struct Store {
    client: Client,
    defaults: Limits,
    /// Reads that skipped a corrupt record since start.
    skipped: Arc<AtomicU64>,
    /// Owner changes kept per VIP.
    history_per_vip: usize,
}

fn put<T: Serialize>(key: &str, value: &T) -> TxnOp {
    TxnOp::put(
        key,
        serde_json::to_vec(value).expect("records serialize"),
        None,
    )
}

async fn backoff(attempt: usize) {
    // Jitter so racing controllers do not retry in lockstep.
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 4;
    let base = 100 * (attempt.min(20) as u64);
    tokio::time::sleep(Duration::from_micros(base + jitter)).await;
}

fn lost_race(what: &str) -> Error {
    Error::conflict(format!("{what}: too many concurrent changes, try again"))
}

fn dedup(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// What a key holds, for people (never the key itself).
fn what(key: &str) -> String {
    match Key::parse(key) {
        Some(Key::Vpc(id)) => format!("vpc {id}"),
        Some(Key::Subnet(id)) => format!("subnet {id}"),
        Some(Key::Port(id)) => format!("port {id}"),
        Some(Key::Vip(id)) => format!("havip {id}"),
        Some(Key::Addr { ip, .. }) => format!("the claim of address {ip}"),
        Some(Key::Owner { vip, .. }) => format!("an owner report of havip {vip}"),
        Some(Key::Ack { vip, .. }) => format!("an acknowledgement of havip {vip}"),
        Some(Key::ProjectLimits(p)) => format!("the limits of project {p}"),
        _ => "a stored record".to_string(),
    }
}

/// A client of etcd at `endpoints`, over TLS if `tls`.
pub async fn etcd_client(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    let options = havip_schema::tls::connect_options(tls, options)
        .map_err(|e| Error::unavailable(e.to_string()))?;
    Ok(Client::connect(endpoints, Some(options)).await?)
}

impl Store {
    pub async fn connect(endpoints: &[String], defaults: Limits) -> Result<Self> {
        Self::connect_tls(endpoints, None, defaults).await
    }

    /// [`Store::connect`], over TLS with a client certificate if `tls`.
    pub async fn connect_tls(
        endpoints: &[String],
        tls: Option<&EtcdTls>,
        defaults: Limits,
    ) -> Result<Self> {
        let client = etcd_client(endpoints, tls).await?;
        Ok(Store {
            client,
            defaults,
            skipped: Arc::default(),
            history_per_vip: history::DEFAULT_HISTORY_PER_VIP,
        })
    }

    /// Keeps the newest `n` owner changes per VIP (the config's
    /// `history_per_vip`).
    pub fn with_history_per_vip(mut self, n: usize) -> Self {
        self.history_per_vip = n;
        self
    }

    pub fn history_per_vip(&self) -> usize {
        self.history_per_vip
    }

    pub fn defaults(&self) -> Limits {
        self.defaults
    }

    /// Reads that skipped a corrupt record since this controller started.
    pub fn skipped_reads(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Decodes the record at `key`; a corrupt one is logged and counted.
    fn decode<T: DeserializeOwned>(&self, key: &str, value: &[u8]) -> Option<T> {
        match havip_schema::decode(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "corrupt record at {key}: {e}; skipped (GET /v1/records/corrupt lists it)"
                );
                None
            }
        }
    }

    // ---- etcd helpers ----

    /// The record at `key` and its mod revision, for an operation that
    /// changes it: a corrupt one is a `corrupt_record` error.
    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>> {
        let resp = self.client.kv_client().get(key, None).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => match self.decode(key, kv.value()) {
                Some(v) => Ok(Some((v, kv.mod_revision()))),
                None => Err(Error::corrupt_record(format!(
                    "the stored record of {} cannot be read; an operator must repair it",
                    what(key)
                ))),
            },
        }
    }

    /// The record at `key`, for a read: a corrupt one is skipped.
    async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>> {
        match self.get(key).await {
            Err(e) if e.code == crate::ErrorCode::CorruptRecord => Ok(None),
            other => other,
        }
    }

    /// `(key, value, mod_revision)` of every good record under `prefix`
    /// (corrupt ones skipped), and the store revision of the read.
    async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(String, T, i64)>, i64)> {
        let resp = self
            .client
            .kv_client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut out = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if let Some(value) = self.decode(&key, kv.value()) {
                out.push((key, value, kv.mod_revision()));
            }
        }
        Ok((out, revision))
    }

    /// How many keys are under `prefix`, and the store revision of the read.
    async fn count(&self, prefix: &str) -> Result<(u64, i64)> {
        let resp = self
            .client
            .kv_client()
            .get(
                prefix,
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.count().max(0) as u64, revision))
    }

    async fn commit(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool> {
        let txn = Txn::new().when(compares).and_then(ops);
        Ok(self.client.kv_client().txn(txn).await?.succeeded())
    }
}
