//! The etcd source (`havip-agent run --etcd URL --host NAME`): this host's
//! share of the controller's state, turned into the agent's [`Config`] and
//! kept applied, and the owners the datapath learns reported back.
//!
//! The key layout and the agent's duties are in `havip_controller`'s crate
//! documentation. In short:
//! 1. Read a [`Snapshot`] at one etcd revision: this host's ports
//!    (`hosts/<host>/ports/`), their subnets, the VIPs of those subnets,
//!    their owners, and the MACs of bound ports on other hosts.
//! 2. Turn it into a [`Config`] ([`to_config`]) and apply it by diff, then
//!    acknowledge each VIP's generation for this host (`acks/<vip>/<host>`).
//! 3. Watch the whole root from the next revision: an owner record of
//!    another host is programmed at once as a remote owner; any other
//!    relevant change reads a new snapshot and applies it by diff (what did
//!    not change is not touched, so nothing is applied twice).
//! 4. Each owner change the datapath reports is written to `owners/<vip>`.
//! 5. When etcd is unreachable, the datapath keeps the last state and keeps
//!    learning; owner reports wait (the latest per VIP); on reconnection a
//!    new snapshot brings everything up to date.
//!
//! Datapath ids are `u32`; the controller's are strings. [`numeric_id`]
//! maps one to the other, the same on every host and across restarts.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use havip_common::{vip::MAX_BINDINGS, Event};
use havip_controller::{
    keys,
    model::{Ack, AckResult, Havip, HostPort, Owner as OwnerRecord, Port as PortRecord, Subnet},
};
use ipnet::IpNet;
use log::{debug, error, info, warn};
use serde::de::DeserializeOwned;

use crate::{
    config::{Config, Network, PortConfig, VipConfig},
    connection::{retry_delay, Connection},
    datapath::Datapath,
    util::{eui64_link_local, format_mac, BpfClock},
};

/// Where the controller's state is and which host this is.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub host: String,
    /// Where the last snapshot read is kept, to start from it when etcd is
    /// unreachable at start (`None`: not kept).
    pub cache: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the watch was cancelled by etcd (compacted or closed); reading again")]
    WatchEnded,
}

/// The datapath id of a controller id: 32-bit FNV-1a of its text, never 0
/// (0 means "no owner"). Stable across hosts and restarts; [`to_config`]
/// refuses the rare collision.
pub fn numeric_id(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

/// This host's share of the controller's state, read at one revision.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub revision: i64,
    pub host_ports: Vec<HostPort>,
    pub subnets: BTreeMap<String, Subnet>,
    /// The VIPs of the local ports' subnets.
    pub vips: BTreeMap<String, Havip>,
    /// vip -> its owner record and that key's mod revision.
    pub owners: BTreeMap<String, (OwnerRecord, i64)>,
    /// port -> MAC, for the bound ports of the VIPs above.
    pub port_macs: HashMap<String, [u8; 6]>,
}

impl Snapshot {
    /// Reads the snapshot of `host` at the current revision.
    pub async fn read(client: &Client, host: &str) -> Result<Self, SourceError> {
        let mut kv = client.kv_client();
        let resp = kv
            .get(
                keys::host_ports(host),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let at = || GetOptions::new().with_revision(revision);
        let mut s = Snapshot {
            revision,
            host_ports: decode_all(resp.kvs()),
            ..Snapshot::default()
        };
        for p in &s.host_ports {
            s.port_macs
                .extend(parse_mac(&p.mac).map(|m| (p.port.clone(), m)));
        }
        let subnet_ids: BTreeSet<String> = s.host_ports.iter().map(|p| p.subnet.clone()).collect();
        for id in subnet_ids {
            let resp = kv.get(keys::subnet(&id), Some(at())).await?;
            if let Some(subnet) = decode_all::<Subnet>(resp.kvs()).pop() {
                s.subnets.insert(id, subnet);
            }
        }
        let resp = kv.get(keys::vips(), Some(at().with_prefix())).await?;
        s.vips = decode_all::<Havip>(resp.kvs())
            .into_iter()
            .filter(|v| s.subnets.contains_key(&v.subnet))
            .map(|v| (v.id.clone(), v))
            .collect();
        let resp = kv.get(keys::owners(), Some(at().with_prefix())).await?;
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let vip = keys::last_segment(&key).to_string();
            if s.vips.contains_key(&vip) {
                if let Some(o) = decode::<OwnerRecord>(&key, kv.value()) {
                    s.owners.insert(vip, (o, kv.mod_revision()));
                }
            }
        }
        let remote_ports: BTreeSet<String> = s
            .vips
            .values()
            .flat_map(|v| v.ports.iter().map(|b| b.port.clone()))
            .filter(|p| !s.port_macs.contains_key(p))
            .collect();
        for port in remote_ports {
            let resp = kv.get(keys::port(&port), Some(at())).await?;
            if let Some(p) = decode_all::<PortRecord>(resp.kvs()).pop() {
                s.port_macs.extend(parse_mac(&p.mac).map(|m| (port, m)));
            }
        }
        Ok(s)
    }

    /// Whether a change of `key` can change this snapshot.
    fn concerns(&self, host: &str, key: &str, value: &[u8]) -> bool {
        let Some(rest) = key.strip_prefix(keys::ROOT) else {
            return false;
        };
        if rest.starts_with("/hosts/") {
            return key.starts_with(&keys::host_ports(host));
        }
        if let Some(id) = rest.strip_prefix("/subnets/") {
            return self.subnets.contains_key(id);
        }
        if let Some(id) = rest.strip_prefix("/ports/") {
            return self.port_macs.contains_key(id);
        }
        if let Some(id) = rest.strip_prefix("/vips/") {
            // A known VIP changed or went, or a new one in a local subnet.
            return self.vips.contains_key(id)
                || serde_json::from_slice::<Havip>(value)
                    .is_ok_and(|v| self.subnets.contains_key(&v.subnet));
        }
        false
    }
}

impl Snapshot {
    /// Keeps this snapshot in `path` (written aside, then renamed over).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    }

    /// The snapshot kept in `path`.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!("etcd: ignoring {key}: not a valid record: {e}");
            None
        }
    }
}

fn decode_all<T: DeserializeOwned>(kvs: &[etcd_client::KeyValue]) -> Vec<T> {
    kvs.iter()
        .filter_map(|kv| decode(&String::from_utf8_lossy(kv.key()), kv.value()))
        .collect()
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    match text.parse::<macaddr::MacAddr6>() {
        Ok(m) => Some(m.into_array()),
        Err(_) => {
            warn!("etcd: ignoring MAC {text:?}: not a MAC address");
            None
        }
    }
}

/// A snapshot as the agent's configuration, and the way back to the
/// controller's ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Programmed {
    pub config: Config,
    /// Datapath vip id -> controller VIP id.
    pub vip_ids: BTreeMap<u32, String>,
    /// Datapath port id -> controller port id (local ports).
    pub port_ids: BTreeMap<u32, String>,
    /// VIP id -> why this host cannot program it.
    pub problems: BTreeMap<String, String>,
}

/// Turns `s` into the agent's configuration: every local port (port
/// security on, link-local from the MAC), the networks of their subnets,
/// and every VIP of those subnets with all its bound ports (also those on
/// other hosts, where remote owners live).
pub fn to_config(s: &Snapshot) -> Programmed {
    let mut p = Programmed {
        // The controller enforces the binding limits.
        config: Config::default(),
        ..Programmed::default()
    };
    let mut networks: HashMap<&str, u32> = HashMap::new();
    for (id, subnet) in &s.subnets {
        let nid = numeric_id(id);
        if p.config.networks.contains_key(&nid) {
            error!("etcd: subnet {id} collides with another subnet's datapath id {nid}; skipped");
            continue;
        }
        let cidrs: Vec<IpNet> = subnet
            .cidr_v4
            .map(IpNet::V4)
            .into_iter()
            .chain(subnet.cidr_v6.map(IpNet::V6))
            .collect();
        p.config.networks.insert(
            nid,
            Network {
                id: nid,
                name: Some(id.clone()),
                cidrs,
            },
        );
        networks.insert(id, nid);
    }
    for hp in &s.host_ports {
        let (Some(&network), Some(&mac)) =
            (networks.get(hp.subnet.as_str()), s.port_macs.get(&hp.port))
        else {
            warn!("etcd: port {}: no subnet record or MAC; skipped", hp.port);
            continue;
        };
        let id = numeric_id(&hp.port);
        if p.port_ids.contains_key(&id) {
            error!(
                "etcd: port {} collides with another port's datapath id {id}; skipped",
                hp.port
            );
            continue;
        }
        p.port_ids.insert(id, hp.port.clone());
        p.config.ports.insert(
            id,
            PortConfig {
                id,
                name: Some(hp.port.clone()),
                interface: hp.interface.clone(),
                network,
                mac,
                ips: hp.fixed_ips.clone(),
                port_security: true,
                link_local: eui64_link_local(&mac),
            },
        );
    }
    let mut addresses: HashMap<(u32, IpAddr), &str> = HashMap::new();
    for (vid, v) in &s.vips {
        let Some(&network) = networks.get(v.subnet.as_str()) else {
            continue;
        };
        let id = numeric_id(vid);
        let problem = if p.vip_ids.contains_key(&id) {
            Some(format!("its datapath id {id} collides with another VIP's"))
        } else if let Some(other) = addresses.get(&(network, v.address)) {
            Some(format!("{other} has the same address {}", v.address))
        } else if v.ports.len() > MAX_BINDINGS {
            Some(format!(
                "{} bound ports, the datapath holds at most {MAX_BINDINGS}",
                v.ports.len()
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            error!("etcd: vip {vid}: not programmed: {problem}");
            p.problems.insert(vid.clone(), problem);
            continue;
        }
        addresses.insert((network, v.address), vid);
        p.vip_ids.insert(id, vid.clone());
        p.config.vips.insert(
            id,
            VipConfig {
                id,
                name: Some(vid.clone()),
                network,
                address: v.address,
                ports: v.ports.iter().map(|b| numeric_id(&b.port)).collect(),
            },
        );
    }
    p
}

/// Keeps in force what `in_force` programs for each VIP that `p` cannot
/// program now (a bad change must not undo what worked), unless that would
/// clash with the new state (its id or address taken).
pub fn keep_in_force(p: &mut Programmed, in_force: &Config) {
    for vid in p.problems.keys() {
        let id = numeric_id(vid);
        let Some(old) = in_force.vips.get(&id) else {
            continue;
        };
        let clash = p.config.vips.contains_key(&id)
            || p.config
                .vips
                .values()
                .any(|v| v.network == old.network && v.address == old.address)
            || !p.config.networks.contains_key(&old.network);
        if !clash {
            p.config.vips.insert(id, old.clone());
            p.vip_ids.insert(id, vid.clone());
        }
    }
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
        }
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
                let options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(5))
                    .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
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

    /// Acknowledges again after a reconcile changed which ports are
    /// protected (a retried attach succeeded, or one failed).
    pub async fn reacknowledge(&mut self, dp: &Datapath) {
        if !self.connected() {
            return; // the resync acknowledges everything
        }
        if let Err(e) = self.acknowledge(dp, None).await {
            warn!("etcd: cannot acknowledge: {e}; will retry");
            self.conn.down(false, Duration::ZERO);
        }
    }

    /// Puts `acks/<vip>/<host>` for each VIP bound to a port of this host
    /// whose (generation, result) we have not acknowledged yet. A VIP bound
    /// to a port of this host that is not protected (its programs could not
    /// be attached) is `failed` with that reason, never `programmed`.
    async fn acknowledge(
        &mut self,
        dp: &Datapath,
        apply_error: Option<String>,
    ) -> Result<(), SourceError> {
        let client = self
            .conn
            .watching_client()
            .ok_or(SourceError::WatchEnded)?
            .clone();
        let host = self.opts.host.clone();
        let unprotected: BTreeMap<&str, &String> = dp
            .unprotected_ports()
            .iter()
            .filter_map(|(id, why)| Some((self.programmed.port_ids.get(id)?.as_str(), why)))
            .collect();
        for (id, vip) in &self.snapshot.vips {
            if !vip.ports.iter().any(|b| b.host == host) {
                continue;
            }
            let unprotected_port = vip
                .ports
                .iter()
                .filter(|b| b.host == host)
                .find_map(|b| Some((b.port.as_str(), unprotected.get(b.port.as_str())?)))
                .map(|(port, why)| format!("port {port} on host {host} is not protected: {why}"));
            let reason = self
                .programmed
                .problems
                .get(id)
                .cloned()
                .or_else(|| apply_error.clone())
                .or(unprotected_port);
            let result = if reason.is_some() {
                AckResult::Failed
            } else {
                AckResult::Programmed
            };
            let want = (vip.generation, result, reason.clone());
            if self.acked.get(id) == Some(&want) {
                continue;
            }
            let ack = Ack {
                generation: vip.generation,
                result,
                reason,
                at: Utc::now(),
            };
            let done = guarded_put(&client, id, &keys::ack(id, &host), &ack).await?;
            if done.is_some() {
                debug!(
                    "etcd: acked {id} generation {} ({result:?})",
                    vip.generation
                );
                self.acked.insert(id.clone(), want);
            }
        }
        Ok(())
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
        let since: DateTime<Utc> = BpfClock::now().wall(event.ts_ns).into();
        let record = OwnerRecord {
            port,
            host: self.opts.host.clone(),
            since,
        };
        let client = self
            .conn
            .watching_client()
            .ok_or(SourceError::WatchEnded)?
            .clone();
        if let Some(revision) = guarded_put(&client, vip, &keys::owner(vip), &record).await? {
            debug!(
                "etcd: reported owner of {vip}: {} at revision {revision}",
                record.port
            );
            self.reported.insert(vip.to_string(), revision);
            // Another host may have reported after us, before our put.
            let resp = client.kv_client().get(keys::owner(vip), None).await?;
            if let Some(kv) = resp.kvs().first() {
                if kv.mod_revision() > revision {
                    if let Some(o) = decode::<OwnerRecord>(&keys::owner(vip), kv.value()) {
                        self.settle_owner(dp, vip, &o, kv.mod_revision()).await?;
                    }
                }
            }
        }
        Ok(())
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
        let vip_id = numeric_id(vip);
        if self.programmed.vip_ids.get(&vip_id).map(String::as_str) != Some(vip) {
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
        let port_id = numeric_id(&record.port);
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
            if let Some(vip) = key.strip_prefix(&keys::owners()) {
                if event.event_type() == EventType::Put && self.snapshot.vips.contains_key(vip) {
                    if let Some(o) = decode::<OwnerRecord>(&key, kv.value()) {
                        owners.push((vip.to_string(), o, kv.mod_revision()));
                    }
                }
            } else if self.snapshot.concerns(&self.opts.host, &key, kv.value()) {
                reread = true;
            }
        }
        let result = async {
            for (vip, record, revision) in owners {
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
        .when(vec![Compare::version(
            keys::vip(vip),
            CompareOp::Greater,
            0,
        )])
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
    use havip_controller::model::{Binding, IpVersion, NetworkType, PortVip, Status};

    #[test]
    fn numeric_ids_are_stable_and_never_zero() {
        assert_eq!(numeric_id("havip-1"), numeric_id("havip-1"));
        assert_ne!(numeric_id("havip-1"), numeric_id("havip-2"));
        assert_ne!(numeric_id(""), 0);
        // FNV-1a of "a" (a published test vector).
        assert_eq!(numeric_id("a"), 0xe40c_292c);
    }

    fn snapshot() -> Snapshot {
        let subnet = Subnet {
            id: "subnet-a".into(),
            vpc: "vpc-1".into(),
            project: "p".into(),
            name: String::new(),
            cidr_v4: Some("10.0.6.0/24".parse().unwrap()),
            cidr_v6: Some("fd00:6::/64".parse().unwrap()),
        };
        let vip = |id: &str, addr: &str, ports: &[(&str, &str)]| Havip {
            id: id.into(),
            project: "p".into(),
            name: id.into(),
            description: String::new(),
            network_type: NetworkType::Intranet,
            vpc: "vpc-1".into(),
            subnet: "subnet-a".into(),
            ip_version: IpVersion::Ipv4,
            address: addr.parse().unwrap(),
            ports: ports
                .iter()
                .map(|(port, host)| Binding {
                    port: (*port).into(),
                    vm: format!("vm-{port}"),
                    host: (*host).into(),
                })
                .collect(),
            status: Status::Creating,
            status_reason: None,
            generation: 1,
            ports_per_vip: None,
            created_at: Utc::now(),
            pending_hosts: vec![],
            master: None,
        };
        let host_port = HostPort {
            port: "port-1".into(),
            vm: "vm-1".into(),
            vpc: "vpc-1".into(),
            subnet: "subnet-a".into(),
            mac: "02:00:00:00:00:11".into(),
            interface: "tap-vm1".into(),
            fixed_ips: vec!["10.0.6.9".parse().unwrap()],
            vips: vec![PortVip {
                id: "havip-web".into(),
                address: "10.0.6.19".parse().unwrap(),
            }],
        };
        Snapshot {
            revision: 7,
            host_ports: vec![host_port],
            subnets: BTreeMap::from([("subnet-a".into(), subnet)]),
            vips: BTreeMap::from([
                (
                    "havip-web".into(),
                    vip(
                        "havip-web",
                        "10.0.6.19",
                        &[("port-1", "hv-a"), ("port-2", "hv-b")],
                    ),
                ),
                (
                    "havip-db".into(),
                    vip("havip-db", "10.0.6.29", &[("port-3", "hv-c")]),
                ),
                ("havip-dup".into(), vip("havip-dup", "10.0.6.19", &[])),
            ]),
            owners: BTreeMap::new(),
            port_macs: HashMap::from([
                ("port-1".into(), [2, 0, 0, 0, 0, 0x11]),
                ("port-2".into(), [2, 0, 0, 0, 0, 0x12]),
            ]),
        }
    }

    #[test]
    fn a_snapshot_becomes_the_hosts_config() {
        let mut s = snapshot();
        s.vips.remove("havip-dup");
        let p = to_config(&s);
        let c = &p.config;
        let net = numeric_id("subnet-a");
        assert_eq!(c.networks[&net].cidrs.len(), 2);
        let port = &c.ports[&numeric_id("port-1")];
        assert_eq!(port.interface, "tap-vm1");
        assert_eq!(port.network, net);
        assert!(port.port_security);
        assert_eq!(
            port.link_local,
            "fe80::ff:fe00:11".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(c.ports.len(), 1, "only this host's ports");

        let web = &c.vips[&numeric_id("havip-web")];
        assert_eq!(
            web.ports,
            vec![numeric_id("port-1"), numeric_id("port-2")],
            "bound ports of every host"
        );
        assert!(
            c.vips.contains_key(&numeric_id("havip-db")),
            "VIPs of the subnet bound elsewhere are programmed too (ARP answers, delivery)"
        );
        assert_eq!(p.vip_ids[&numeric_id("havip-web")], "havip-web");
        assert_eq!(p.port_ids[&numeric_id("port-1")], "port-1");
    }

    #[test]
    fn a_vip_that_cannot_be_programmed_says_why() {
        let p = to_config(&snapshot());
        // "havip-db" < "havip-dup" < "havip-web": dup takes .19 first.
        assert_eq!(
            p.problems.get("havip-web").map(String::as_str),
            Some("havip-dup has the same address 10.0.6.19")
        );
        assert!(!p.config.vips.contains_key(&numeric_id("havip-web")));

        let mut s = snapshot();
        s.vips.remove("havip-dup");
        let many: Vec<Binding> = (0..=MAX_BINDINGS)
            .map(|i| Binding {
                port: format!("port-x{i}"),
                vm: "vm".into(),
                host: "hv-a".into(),
            })
            .collect();
        s.vips.get_mut("havip-db").unwrap().ports = many;
        let p = to_config(&s);
        assert!(
            p.problems["havip-db"].contains("at most 16"),
            "{:?}",
            p.problems
        );
        assert!(p.config.vips.contains_key(&numeric_id("havip-web")));
    }

    #[test]
    fn a_vip_that_cannot_be_programmed_keeps_what_was_in_force() {
        let mut s = snapshot();
        s.vips.remove("havip-dup");
        let before = to_config(&s).config;
        let web = numeric_id("havip-web");
        // Now bound to more ports than the datapath holds.
        s.vips.get_mut("havip-web").unwrap().ports = (0..=MAX_BINDINGS)
            .map(|i| Binding {
                port: format!("port-x{i}"),
                vm: "vm".into(),
                host: "hv-a".into(),
            })
            .collect();
        let mut p = to_config(&s);
        assert!(!p.config.vips.contains_key(&web));
        keep_in_force(&mut p, &before);
        assert_eq!(p.config.vips[&web], before.vips[&web]);
        assert_eq!(p.vip_ids[&web], "havip-web");
        assert!(p.problems.contains_key("havip-web"), "still reported");

        // Not when its address went to another VIP meanwhile.
        let mut p = to_config(&snapshot());
        keep_in_force(&mut p, &before);
        assert!(!p.config.vips.contains_key(&web));
    }

    #[test]
    fn a_kept_snapshot_reads_back_the_same_config() {
        let dir = std::env::temp_dir().join(format!("havip-etcd-cache-{}", std::process::id()));
        let path = dir.join("hv-a.json");
        let s = snapshot();
        s.save(&path).unwrap();
        let back = Snapshot::load(&path).unwrap();
        assert_eq!(back.revision, 7);
        assert_eq!(to_config(&back), to_config(&s));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_changes_that_concern_the_host_reread() {
        let s = snapshot();
        let other_subnet = serde_json::to_vec(&Havip {
            subnet: "subnet-z".into(),
            ..s.vips["havip-db"].clone()
        })
        .unwrap();
        let new_here = serde_json::to_vec(&Havip {
            id: "havip-new".into(),
            ..s.vips["havip-db"].clone()
        })
        .unwrap();
        let cases: &[(&str, &[u8], bool)] = &[
            ("/havip/v1/hosts/hv-a/ports/port-9", b"", true),
            ("/havip/v1/hosts/hv-b/ports/port-2", b"", false),
            ("/havip/v1/subnets/subnet-a", b"", true),
            ("/havip/v1/subnets/subnet-z", b"", false),
            ("/havip/v1/ports/port-2", b"", true),
            ("/havip/v1/ports/port-77", b"", false),
            ("/havip/v1/vips/havip-web", b"", true),
            ("/havip/v1/vips/havip-zz", &other_subnet, false),
            ("/havip/v1/vips/havip-new", &new_here, true),
            ("/havip/v1/acks/havip-web/hv-a", b"", false),
            ("/havip/v1/addrs/subnet-a/10.0.6.40", b"", false),
            ("/other/app", b"", false),
        ];
        for (key, value, want) in cases {
            assert_eq!(s.concerns("hv-a", key, value), *want, "{key}");
        }
    }
}
