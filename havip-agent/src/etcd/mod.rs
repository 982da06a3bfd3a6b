//! The etcd source (`havip-agent run --etcd URL --host NAME`): this host's
//! share of the controller's state, turned into the agent's [`Config`](crate::config::Config) and
//! kept applied, and the owners the datapath learns reported back.
//!
//! The key layout and the agent's duties are in `havip_schema`'s crate
//! documentation. In short:
//! 1. Read a [`Snapshot`] at one etcd revision: this host's ports
//!    (`hosts/<host>/ports/`), their subnets, the VIPs of those subnets,
//!    their owners, and the MACs of bound ports on other hosts.
//! 2. Turn it into a `Config` ([`to_config`]) and apply it by diff, then
//!    acknowledge each VIP's generation for this host
//!    (`reports/<host>/acks/<vip>`).
//! 3. Watch the whole root from the next revision: an owner record of
//!    another host is programmed at once as a remote owner; any other
//!    relevant change reads a new snapshot and applies it by diff (what did
//!    not change is not touched, so nothing is applied twice).
//! 4. Each owner change the datapath reports is written to
//!    `reports/<host>/owners/<vip>`; a VIP's owner is the newest report of
//!    any host ([`current_owner`]).
//! 5. When etcd is unreachable, the datapath keeps the last state and keeps
//!    learning; owner reports wait (the latest per VIP); on reconnection a
//!    new snapshot brings everything up to date.
//! 6. A record that cannot be read (malformed JSON, wrong types) or does
//!    not hold (a VIP outside its subnet, a MAC that is not one) fails the
//!    VIP or port it concerns, and only that: it is logged, acknowledged
//!    `failed` with the reason ([`acks`]), and what it had in force stays
//!    ([`keep_in_force`]) until the record is fixed. So is a VIP that does
//!    not fit the datapath's maps.
//!
//! Datapath ids are `u32`s the controller allocates and keeps in the
//! records (`datapath_id`: dense, never given twice, the same on every
//! host); a record written before it did falls back to [`numeric_id`].

mod acks;
mod snapshot;
mod split_brain;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use etcd_client::{Client, ConnectOptions, EventType, Txn, TxnOp, WatchOptions};
use havip_common::Event;
use havip_schema::{
    guards, keys,
    keys::Key,
    owners::{current_owner, OwnerReport},
    records::{AckResult, Owner as OwnerRecord},
};
use log::{debug, error, info, warn};

pub(crate) use self::snapshot::decode;
pub use self::snapshot::{datapath_id, keep_in_force, numeric_id, to_config, Programmed, Snapshot};
use crate::{
    connection::{retry_delay, Connection},
    datapath::Datapath,
    protection::SourceProblems,
    util::{format_mac, BpfClock},
};

/// Where the controller's state is and which host this is.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub host: String,
    /// TLS with a client certificate (`None`: plaintext).
    pub tls: Option<havip_schema::tls::EtcdTls>,
    /// Where the last snapshot read is kept, to start from it when etcd is
    /// unreachable at start (`None`: not kept).
    pub cache: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("{0}")]
    Tls(#[from] havip_schema::tls::TlsError),
    #[error("the watch was cancelled by etcd (compacted or closed); reading again")]
    WatchEnded,
    #[error(
        "the store has schema version {0} (0: unreadable), this agent reads version {ours}: \
         run `havip-controller migrate` (or start a controller of this version), or \
         upgrade the agent",
        ours = havip_schema::SCHEMA_VERSION
    )]
    Schema(u32),
}

/// An owner learned on this host (a remote owner has no ifindex).
fn is_local(o: &havip_common::Owner) -> bool {
    !o.is_vacant() && o.ifindex != 0
}

/// The owner change event that `o` stands for.
fn owner_event(vip_id: u32, o: &havip_common::Owner) -> Event {
    Event {
        kind: havip_common::EventKind::OwnerChanged as u32,
        vip_id,
        port_id: o.port_id,
        ifindex: o.ifindex,
        mac: o.mac,
        generation: o.generation,
        ts_ns: o.since_ns,
        ..Event::default()
    }
}

/// The etcd side of a running agent.
pub struct EtcdSource {
    opts: EtcdOptions,
    conn: Connection,
    snapshot: Snapshot,
    programmed: Programmed,
    /// vip id -> the mod revision of our last owner report.
    reported: HashMap<String, i64>,
    /// vip id -> the latest owner change not yet reported (etcd was away).
    unreported: BTreeMap<String, Event>,
    /// Datapath vip id -> the generation of the last local owner taken up
    /// for a report (from its event, a resync or the owner audit). The
    /// audit compares `havip_owners` with it, so an owner change whose
    /// event was lost is reported late, never not at all.
    taken_up: HashMap<u32, u64>,
    /// vip id -> the (generation, result) we acknowledged.
    acked: HashMap<String, (u64, AckResult, Option<String>)>,
    /// Whether a snapshot (from etcd or the cache) was applied.
    applied_once: bool,
    /// Owner records not taken up (naming an unbound port, or a port on
    /// another host than the record's).
    bad_owner_records: u64,
}

impl EtcdSource {
    pub fn new(opts: EtcdOptions) -> Self {
        Self {
            opts,
            conn: Connection::default(),
            snapshot: Snapshot::default(),
            programmed: Programmed::default(),
            reported: HashMap::new(),
            unreported: BTreeMap::new(),
            taken_up: HashMap::new(),
            acked: HashMap::new(),
            applied_once: false,
            bad_owner_records: 0,
        }
    }

    /// The ports and VIPs this host cannot program from etcd, and why (for
    /// `havip-agent status`).
    pub fn problems(&self) -> SourceProblems {
        let by_id = |problems: &BTreeMap<String, String>, dpid: &dyn Fn(&str) -> u32| {
            problems
                .iter()
                .map(|(id, why)| (dpid(id), id.clone(), why.clone()))
                .collect()
        };
        SourceProblems {
            ports: by_id(&self.programmed.port_problems, &|id| {
                self.port_datapath_id(id)
            }),
            vips: by_id(&self.programmed.problems, &|id| self.vip_datapath_id(id)),
        }
    }

    /// The datapath id of VIP `vip`: the one in force (also for a VIP
    /// whose record no longer reads, kept in force), else its record's.
    fn vip_datapath_id(&self, vip: &str) -> u32 {
        self.programmed
            .vip_ids
            .iter()
            .find(|(_, id)| id.as_str() == vip)
            .map(|(dpid, _)| *dpid)
            .unwrap_or_else(|| self.snapshot.vip_datapath_id(vip))
    }

    /// The datapath id of port `port`, the same way.
    fn port_datapath_id(&self, port: &str) -> u32 {
        self.programmed
            .port_ids
            .iter()
            .find(|(_, id)| id.as_str() == port)
            .map(|(dpid, _)| *dpid)
            .unwrap_or_else(|| self.snapshot.port_datapath_id(port))
    }

    pub fn connected(&self) -> bool {
        self.conn.is_watching()
    }

    /// When the next connection attempt is due (if disconnected).
    pub fn next_attempt(&self) -> Instant {
        self.conn.retry_at()
    }

    /// Connects (if needed), reads a snapshot, applies it, reports what
    /// waited, and starts watching. On failure, drops the connection and
    /// schedules the next attempt; the datapath keeps its state.
    pub async fn resync(&mut self, dp: &mut Datapath) {
        if let Err(e) = self.try_resync(dp).await {
            if !self.applied_once {
                self.apply_cache(dp);
            }
            let (failures, delay) = self.conn.resync_failed(matches!(e, SourceError::Etcd(_)));
            if failures == 1 || failures.is_multiple_of(20) {
                warn!(
                    "etcd {}: {e}; the datapath keeps its last state; retrying every {:?}",
                    self.opts.endpoints.join(","),
                    delay
                );
            }
        }
    }

    async fn try_resync(&mut self, dp: &mut Datapath) -> Result<(), SourceError> {
        let client = match self.conn.client() {
            Some(c) => c.clone(),
            None => {
                let options = havip_schema::tls::connect_options(
                    self.opts.tls.as_ref(),
                    ConnectOptions::new()
                        .with_connect_timeout(Duration::from_secs(2))
                        .with_timeout(Duration::from_secs(5))
                        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2)),
                )?;
                let c = Client::connect(&self.opts.endpoints, Some(options)).await?;
                self.conn.connected(c.clone());
                c
            }
        };
        let snapshot = Snapshot::read(&client, &self.opts.host).await?;
        let stream = client
            .watch_client()
            .watch(
                keys::ROOT,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(snapshot.revision + 1),
                ),
            )
            .await?;
        if self.conn.failures() > 0 {
            info!(
                "etcd: connected again; resynchronised at revision {}",
                snapshot.revision
            );
        } else {
            info!(
                "etcd: {} port(s), {} vip(s) for host {} at revision {}",
                snapshot.host_ports.len(),
                snapshot.vips.len(),
                self.opts.host,
                snapshot.revision
            );
        }
        self.conn.watching(client, stream);
        self.apply_snapshot(dp, snapshot).await
    }

    /// Applies the snapshot kept from the last run, when etcd cannot be
    /// reached at start: the host serves its last known state meanwhile.
    fn apply_cache(&mut self, dp: &mut Datapath) {
        let Some(path) = self.opts.cache.clone() else {
            return;
        };
        match Snapshot::load(&path) {
            Ok(snapshot) => {
                info!(
                    "etcd: unreachable; serving the state kept in {} (revision {}) until it is back",
                    path.display(),
                    snapshot.revision
                );
                let _ = self.apply_config(dp, snapshot);
                // The next resync reads everything; skip no watch event.
                self.snapshot.revision = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("etcd: cannot read the kept state {}: {e}", path.display()),
        }
    }

    /// Brings the datapath to `snapshot` (by diff) and makes it the one in
    /// force; the error of a failed apply, for the acks.
    fn apply_config(&mut self, dp: &mut Datapath, snapshot: Snapshot) -> Result<(), String> {
        let mut programmed = to_config(&snapshot);
        keep_in_force(&mut programmed, dp.config());
        let applied = if &programmed.config == dp.config() {
            Ok(())
        } else {
            match dp.apply(&programmed.config) {
                Ok(s) => {
                    info!("etcd: applied revision {}: {s}", snapshot.revision);
                    Ok(())
                }
                Err(e) => {
                    error!(
                        "etcd: applying revision {} failed part way: {e}",
                        snapshot.revision
                    );
                    Err(e.to_string())
                }
            }
        };
        self.snapshot = snapshot;
        self.programmed = programmed;
        self.applied_once = true;
        applied
    }

    /// Applies `snapshot`, keeps it, acknowledges, reports waiting owner
    /// changes, and settles each VIP's owner between the datapath and etcd.
    async fn apply_snapshot(
        &mut self,
        dp: &mut Datapath,
        snapshot: Snapshot,
    ) -> Result<(), SourceError> {
        let applied = self.apply_config(dp, snapshot);
        if let Some(path) = &self.opts.cache {
            if let Err(e) = self.snapshot.save(path) {
                warn!("etcd: cannot keep the state in {}: {e}", path.display());
            }
        }
        self.acknowledge(dp, applied.err()).await?;

        for (vip, event) in std::mem::take(&mut self.unreported) {
            self.report_owner(dp, &vip, &event).await?;
        }
        let owners: Vec<(String, OwnerRecord, i64)> = self
            .snapshot
            .owners
            .iter()
            .map(|(v, (o, r))| (v.clone(), o.clone(), *r))
            .collect();
        for (vip, record, revision) in owners {
            self.settle_owner(dp, &vip, &record, revision).await?;
        }
        // What the datapath has now is settled with etcd: the audit looks
        // for changes from here on.
        for (vip_id, o) in self.local_owners(dp) {
            self.taken_up.insert(vip_id, o.generation);
        }
        Ok(())
    }

    /// Reports every local owner in `havip_owners` that no event reported:
    /// the event was lost (the ring was full) or came while we were busy.
    /// Called on a timer.
    pub async fn audit_owners(&mut self, dp: &mut Datapath) {
        if !self.connected() {
            return; // the resync settles every owner when etcd is back
        }
        for (vip_id, o) in self.local_owners(dp) {
            if self.taken_up.get(&vip_id) == Some(&o.generation) {
                continue;
            }
            info!(
                "vip {vip_id}: owner port {} (generation {}) found in havip_owners without its event: reporting it",
                o.port_id, o.generation
            );
            self.owner_changed(dp, owner_event(vip_id, &o)).await;
        }
    }

    /// The owners the datapath learned on this host, of the VIPs programmed
    /// from etcd.
    fn local_owners(&self, dp: &Datapath) -> Vec<(u32, havip_common::Owner)> {
        self.programmed
            .vip_ids
            .keys()
            .filter_map(|&vip_id| Some((vip_id, dp.owner(vip_id).filter(is_local)?)))
            .collect()
    }

    /// Reports an owner change the datapath learned, or keeps it for when
    /// etcd is back.
    pub async fn owner_changed(&mut self, dp: &mut Datapath, event: Event) {
        let Some(vip) = self.programmed.vip_ids.get(&event.vip_id).cloned() else {
            return;
        };
        if self.taken_up.insert(event.vip_id, event.generation) == Some(event.generation) {
            return; // the audit found it first
        }
        if !self.connected() {
            self.unreported.insert(vip, event);
            return;
        }
        if let Err(e) = self.report_owner(dp, &vip, &event).await {
            warn!("etcd: cannot report the owner of {vip}: {e}; will retry");
            self.unreported.insert(vip, event);
            self.conn.down(false, Duration::ZERO);
        }
    }

    async fn report_owner(
        &mut self,
        dp: &mut Datapath,
        vip: &str,
        event: &Event,
    ) -> Result<(), SourceError> {
        let Some(port) = self.programmed.port_ids.get(&event.port_id).cloned() else {
            return Ok(());
        };
        // Only if the datapath still has this owner (a newer claim or a
        // remote owner may have replaced it meanwhile).
        match dp.owner(event.vip_id) {
            Some(o) if o.port_id == event.port_id && o.ifindex != 0 => {}
            _ => return Ok(()),
        }
        let clock = BpfClock::now();
        let since: DateTime<Utc> = clock.wall(event.ts_ns).into();
        let split_brain = self.split_brain_record(dp, event.vip_id, &clock);
        let record = OwnerRecord {
            port,
            host: self.opts.host.clone(),
            since,
            split_brain,
        };
        let client = self
            .conn
            .watching_client()
            .ok_or(SourceError::WatchEnded)?
            .clone();
        let key = keys::owner_report(vip, &self.opts.host);
        if let Some(revision) = guarded_put(&client, vip, &key, &record).await? {
            debug!(
                "etcd: reported owner of {vip}: {} at revision {revision}",
                record.port
            );
            self.reported.insert(vip.to_string(), revision);
            // Another host may have reported after us, before our put.
            let mut reports = self.owner_reports(&client, vip).await?;
            reports.push(OwnerReport {
                host: self.opts.host.clone(),
                owner: record,
                revision,
            });
            if let Some((o, newest)) = current_owner(reports) {
                if newest > revision {
                    self.settle_owner(dp, vip, &o, newest).await?;
                }
            }
        }
        Ok(())
    }

    /// The owner reports of `vip` by the other hosts of its bound ports.
    async fn owner_reports(
        &self,
        client: &Client,
        vip: &str,
    ) -> Result<Vec<OwnerReport>, SourceError> {
        let mut hosts: Vec<&str> = self
            .snapshot
            .vips
            .get(vip)
            .map(|v| v.ports.iter().map(|b| b.host.as_str()).collect())
            .unwrap_or_default();
        hosts.sort_unstable();
        hosts.dedup();
        hosts.retain(|h| *h != self.opts.host);
        let ops: Vec<TxnOp> = hosts
            .iter()
            .map(|h| TxnOp::get(keys::owner_report(vip, h), None))
            .collect();
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let resp = client.kv_client().txn(Txn::new().and_then(ops)).await?;
        let mut reports = Vec::new();
        for (op, host) in resp.op_responses().into_iter().zip(hosts) {
            let etcd_client::TxnOpResponse::Get(get) = op else {
                continue;
            };
            for kv in get.kvs() {
                let key = keys::owner_report(vip, host);
                if let Some(owner) = decode::<OwnerRecord>(&key, kv.value()) {
                    reports.push(OwnerReport {
                        host: host.to_string(),
                        owner,
                        revision: kv.mod_revision(),
                    });
                }
            }
        }
        Ok(reports)
    }

    /// Brings the datapath's owner of `vip` and etcd's record (at
    /// `revision`) to agree: a record of another host for a newer claim
    /// than the local owner's becomes the remote owner; a newer local claim
    /// is reported (again) instead.
    async fn settle_owner(
        &mut self,
        dp: &mut Datapath,
        vip: &str,
        record: &OwnerRecord,
        revision: i64,
    ) -> Result<(), SourceError> {
        let vip_id = self.vip_datapath_id(vip);
        if self.programmed.vip_ids.get(&vip_id).map(String::as_str) != Some(vip) {
            return Ok(());
        }
        if let Some(why) = self.owner_problem(vip, record) {
            self.bad_owner_records += 1;
            error!(
                "etcd: the owner record of {vip} is not taken up: {why} ({} such records so far)",
                self.bad_owner_records
            );
            return Ok(());
        }
        if self.unreported.contains_key(vip) {
            return Ok(()); // our newer claim goes first
        }
        let current = dp.owner(vip_id).filter(|o| !o.is_vacant());
        let local = current.filter(|o| o.ifindex != 0);
        if record.host == self.opts.host {
            match local {
                Some(o) if self.programmed.port_ids.get(&o.port_id) == Some(&record.port) => {
                    self.reported.insert(vip.to_string(), revision);
                }
                // Our record, but the datapath has moved on (a restart,
                // a claim while etcd was away): report what it has now.
                Some(o) => self.report_current(dp, vip, vip_id, o).await?,
                None => {}
            }
            return Ok(());
        }
        if let Some(o) = local {
            // The newer claim wins: ours if etcd had it after this record,
            // or if it was made after the record's (two hosts racing
            // converge on the later claim).
            let ours = self.reported.get(vip).copied().unwrap_or(0);
            let record_is_older =
                revision <= ours || BpfClock::now().wall(o.since_ns) > record.since.into();
            if record_is_older {
                if revision > ours {
                    return self.report_current(dp, vip, vip_id, o).await;
                }
                return Ok(());
            }
        }
        let port_id = self.snapshot.port_datapath_id(&record.port);
        let Some(&mac) = self.snapshot.port_macs.get(&record.port) else {
            warn!(
                "etcd: owner of {vip} is port {}, whose MAC is unknown here",
                record.port
            );
            return Ok(());
        };
        if current.is_some_and(|o| o.port_id == port_id && o.mac == mac && o.ifindex == 0) {
            return Ok(());
        }
        match dp.set_remote_owner(vip_id, port_id, mac) {
            Ok(o) => info!(
                "{vip}: owner port {} ({}) on host {}, generation {}",
                record.port,
                format_mac(&mac),
                record.host,
                o.generation
            ),
            Err(e) => error!("{vip}: cannot program the remote owner: {e}"),
        }
        Ok(())
    }

    /// Why an owner record of `vip` cannot be: it names a port not bound
    /// to the VIP, or a host the port is not on (another host claiming one
    /// of this host's ports, say).
    fn owner_problem(&self, vip: &str, record: &OwnerRecord) -> Option<String> {
        let v = self.snapshot.vips.get(vip)?;
        match v.ports.iter().find(|b| b.port == record.port) {
            None => Some(format!("port {} is not bound to it", record.port)),
            Some(b) if b.host != record.host => Some(format!(
                "port {} is on host {}, not on {}",
                record.port, b.host, record.host
            )),
            Some(_) => None,
        }
    }

    async fn report_current(
        &mut self,
        dp: &mut Datapath,
        vip: &str,
        vip_id: u32,
        o: havip_common::Owner,
    ) -> Result<(), SourceError> {
        let event = owner_event(vip_id, &o);
        Box::pin(self.report_owner(dp, vip, &event)).await
    }

    /// Waits for the next watch response (forever when not watching).
    pub async fn next_change(&mut self) -> Result<Option<etcd_client::WatchResponse>, SourceError> {
        match self.conn.watch_mut() {
            Some(w) => Ok(w.message().await?),
            None => std::future::pending().await,
        }
    }

    /// Handles one watch response: owner records of other hosts at once,
    /// anything else that concerns this host by a new snapshot.
    pub async fn on_change(
        &mut self,
        dp: &mut Datapath,
        resp: Result<Option<etcd_client::WatchResponse>, SourceError>,
    ) {
        let resp = match resp {
            Ok(Some(r)) if !r.canceled() => r,
            Ok(_) => {
                warn!("etcd: {}", SourceError::WatchEnded);
                self.conn.down(false, Duration::ZERO);
                return;
            }
            Err(e) => {
                warn!("etcd: watch failed: {e}; the datapath keeps its last state");
                self.conn.down(true, retry_delay(1));
                return;
            }
        };
        let mut reread = false;
        let mut owners = Vec::new();
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            if kv.mod_revision() <= self.snapshot.revision {
                continue; // already in the snapshot
            }
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if let Some(Key::Owner { vip, host }) = Key::parse(&key) {
                if event.event_type() == EventType::Put && self.snapshot.vips.contains_key(vip) {
                    match decode::<OwnerRecord>(&key, kv.value()) {
                        Some(o) if o.host != host => {
                            self.bad_owner_records += 1;
                            error!(
                                "etcd: {key} names host {}, not its own: not taken up ({} such records so far)",
                                o.host, self.bad_owner_records
                            );
                        }
                        Some(o) => {
                            owners.push((vip.to_string(), host.to_string(), o, kv.mod_revision()))
                        }
                        None => {}
                    }
                }
            } else if self.snapshot.concerns(&self.opts.host, &key, kv.value()) {
                reread = true;
            }
        }
        let result = async {
            for (vip, host, record, revision) in owners {
                let known = self.snapshot.owners.get(&vip).map(|(o, r)| OwnerReport {
                    host: o.host.clone(),
                    owner: o.clone(),
                    revision: *r,
                });
                let report = OwnerReport {
                    host,
                    owner: record,
                    revision,
                };
                let Some((record, revision)) = current_owner(known.into_iter().chain([report]))
                else {
                    continue;
                };
                if self.snapshot.owners.get(&vip).map(|(_, r)| *r) == Some(revision) {
                    continue; // not newer, or not taken up (another host's name)
                }
                self.snapshot
                    .owners
                    .insert(vip.clone(), (record.clone(), revision));
                self.settle_owner(dp, &vip, &record, revision).await?;
            }
            if reread {
                let client = self
                    .conn
                    .watching_client()
                    .ok_or(SourceError::WatchEnded)?
                    .clone();
                let snapshot = Snapshot::read(&client, &self.opts.host).await?;
                self.apply_snapshot(dp, snapshot).await?;
            }
            Ok::<_, SourceError>(())
        }
        .await;
        if let Err(e) = result {
            warn!("etcd: {e}; reading everything again");
            self.conn.down(false, retry_delay(1));
        }
    }
}

/// Puts `value` at `key` if `/vips/<vip>` still exists (so a deleted VIP is
/// not brought back). Returns the revision of the put, or `None` when the
/// VIP is gone.
async fn guarded_put<T: serde::Serialize>(
    client: &Client,
    vip: &str,
    key: &str,
    value: &T,
) -> Result<Option<i64>, SourceError> {
    let txn = Txn::new()
        .when(vec![guards::vip_exists(vip)])
        .and_then(vec![TxnOp::put(
            key,
            serde_json::to_vec(value).expect("records serialize"),
            None,
        )]);
    let resp = client.kv_client().txn(txn).await?;
    Ok(resp
        .succeeded()
        .then(|| resp.header().map_or(0, |h| h.revision())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use havip_schema::records::{Binding, IpVersion, NetworkType, Status, Vip};

    /// An owner record is taken up only if it names a port bound to the
    /// VIP, on the host the binding says.
    #[test]
    fn an_owner_record_names_a_bound_port_on_its_host() {
        let mut source = EtcdSource::new(EtcdOptions {
            endpoints: vec![],
            host: "hv-a".into(),
            tls: None,
            cache: None,
        });
        let binding = |port: &str, host: &str| Binding {
            port: port.into(),
            vm: format!("vm-{port}"),
            host: host.into(),
            datapath_id: None,
        };
        source.snapshot.vips.insert(
            "havip-1".into(),
            Vip {
                id: "havip-1".into(),
                project: "p".into(),
                name: "v".into(),
                description: String::new(),
                network_type: NetworkType::Intranet,
                vpc: "vpc".into(),
                subnet: "s".into(),
                ip_version: IpVersion::Ipv4,
                address: "10.0.6.19".parse().unwrap(),
                ports: vec![binding("port-1", "hv-a"), binding("port-2", "hv-b")],
                status: Status::Available,
                status_reason: None,
                generation: 1,
                ports_per_vip: None,
                vrid: None,
                hold_down_ms: 0,
                created_at: Utc::now(),
                datapath_id: Some(7),
            },
        );
        let owner = |port: &str, host: &str| OwnerRecord {
            port: port.into(),
            host: host.into(),
            since: Utc::now(),
            split_brain: None,
        };
        let cases = [
            (owner("port-2", "hv-b"), None),
            (owner("port-1", "hv-a"), None),
            (
                owner("port-7", "hv-b"),
                Some("port port-7 is not bound to it"),
            ),
            // Another host claiming this host's port.
            (
                owner("port-1", "hv-b"),
                Some("port port-1 is on host hv-a, not on hv-b"),
            ),
        ];
        for (record, want) in cases {
            assert_eq!(
                source.owner_problem("havip-1", &record).as_deref(),
                want,
                "{record:?}"
            );
        }
    }
}
