//! This host's share of the controller's state, read at one revision
//! ([`Snapshot`]), and turned into the agent's [`Config`] ([`to_config`]).
//! Pure but for [`Snapshot::read`], so it is unit-tested on any host.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::Path,
};

use etcd_client::{Client, GetOptions};
use havip_schema::{
    keys::{self, Key},
    owners::{current_owner, OwnerReport},
    records::{HostPort, Owner as OwnerRecord, Port as PortRecord, SchemaVersion, Subnet, Vip},
    SCHEMA_VERSION,
};
use ipnet::IpNet;
use log::{error, warn};
use serde::de::DeserializeOwned;

use super::SourceError;
use crate::{
    config::{Config, Network, PortConfig, VipConfig},
    util::eui64_link_local,
};

/// The datapath id of a record: the one the controller allocated (dense,
/// never given twice), or for a record written before it allocated them,
/// [`numeric_id`] of its id.
pub fn datapath_id(allocated: Option<u32>, id: &str) -> u32 {
    allocated.unwrap_or_else(|| numeric_id(id))
}

/// The datapath id of a record that carries none (written before the
/// controller allocated them): 32-bit FNV-1a of its id, never 0 (0 means
/// "no owner"). Stable across hosts and restarts; [`to_config`] refuses a
/// collision.
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
    pub vips: BTreeMap<String, Vip>,
    /// vip -> its current owner (the newest report of a host,
    /// [`current_owner`]) and that report's mod revision.
    pub owners: BTreeMap<String, (OwnerRecord, i64)>,
    /// port -> MAC, for the bound ports of the VIPs above.
    pub port_macs: HashMap<String, [u8; 6]>,
    /// The records of this host's share that cannot be read (malformed
    /// JSON, wrong types): each fails what it concerns, and only that.
    #[serde(default)]
    pub bad: BadRecords,
}

/// Records that cannot be read, by what they concern.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRecords {
    /// VIP id -> its record.
    pub vips: BTreeMap<String, BadRecord>,
    /// port id -> this host's record of it (`hosts/<host>/ports/<port>`).
    pub ports: BTreeMap<String, BadRecord>,
    /// subnet id -> its record.
    pub subnets: BTreeMap<String, BadRecord>,
}

/// A record that cannot be read, and what can be told of it all the same
/// (when it is JSON at all): enough to report it to the controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRecord {
    pub key: String,
    pub why: String,
    /// Its `generation` (a VIP's, to acknowledge that generation failed).
    pub generation: Option<u64>,
    /// Its `subnet`.
    pub subnet: Option<String>,
    /// The hosts of its `ports` (a VIP's bindings).
    pub hosts: Vec<String>,
}

impl BadRecord {
    fn of(key: &str, value: &[u8], e: &serde_json::Error) -> Self {
        let json: Option<serde_json::Value> = serde_json::from_slice(value).ok();
        let field = |name: &str| json.as_ref().and_then(|j| j.get(name));
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        Self {
            key: key.to_owned(),
            why: e.to_string(),
            generation: field("generation").and_then(serde_json::Value::as_u64),
            subnet: field("subnet").and_then(text),
            hosts: field("ports")
                .and_then(serde_json::Value::as_array)
                .map(|b| b.iter().filter_map(|b| text(b.get("host")?)).collect())
                .unwrap_or_default(),
        }
    }

    /// Why what it concerns is not programmed.
    pub fn problem(&self) -> String {
        format!("its record {} is not valid: {}", self.key, self.why)
    }
}

/// The id of the resource a record is (its port, subnet or VIP).
fn record_id(key: &str) -> String {
    match Key::parse(key) {
        Some(Key::HostPort { port: id, .. } | Key::Subnet(id) | Key::Vip(id) | Key::Port(id)) => {
            id.to_owned()
        }
        _ => key.rsplit('/').next().unwrap_or(key).to_owned(),
    }
}

/// The records of `kvs` that decode, and the ones that do not (each
/// logged), by the id of their key.
fn decode_each<T: DeserializeOwned>(
    kvs: &[etcd_client::KeyValue],
) -> (Vec<T>, Vec<(String, BadRecord)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for kv in kvs {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        match serde_json::from_slice(kv.value()) {
            Ok(v) => good.push(v),
            Err(e) => {
                warn!("etcd: {key}: not a valid record: {e}; it fails what it concerns only");
                let id = record_id(&key);
                bad.push((id, BadRecord::of(&key, kv.value(), &e)));
            }
        }
    }
    (good, bad)
}

/// Refuses a store of another schema version than this agent's: an
/// unmigrated one (no `schema` record: version 1) or a newer one.
async fn check_schema(kv: &mut etcd_client::KvClient) -> Result<(), SourceError> {
    let resp = kv.get(keys::schema(), None).await?;
    let found = match resp.kvs().first() {
        None => 1,
        Some(kv) => havip_schema::decode::<SchemaVersion>(kv.value())
            .map(|v| v.version)
            .unwrap_or(0),
    };
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(SourceError::Schema(found))
    }
}

impl Snapshot {
    /// Reads the snapshot of `host` at the current revision.
    pub async fn read(client: &Client, host: &str) -> Result<Self, SourceError> {
        let mut kv = client.kv_client();
        check_schema(&mut kv).await?;
        let resp = kv
            .get(
                keys::host_ports(host),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let at = || GetOptions::new().with_revision(revision);
        let (host_ports, bad_ports) = decode_each::<HostPort>(resp.kvs());
        let mut s = Snapshot {
            revision,
            host_ports,
            ..Snapshot::default()
        };
        s.bad.ports.extend(bad_ports);
        for p in &s.host_ports {
            s.port_macs.insert(p.port.clone(), p.mac.octets());
        }
        // A port whose record is bad still tells its subnet, if it can.
        let subnet_ids: BTreeSet<String> = s
            .host_ports
            .iter()
            .map(|p| p.subnet.clone())
            .chain(s.bad.ports.values().filter_map(|b| b.subnet.clone()))
            .collect();
        for id in subnet_ids {
            let resp = kv.get(keys::subnet(&id), Some(at())).await?;
            let (mut subnets, bad) = decode_each::<Subnet>(resp.kvs());
            if let Some(subnet) = subnets.pop() {
                s.subnets.insert(id, subnet);
            }
            s.bad.subnets.extend(bad);
        }
        let local =
            |subnet: &str| s.subnets.contains_key(subnet) || s.bad.subnets.contains_key(subnet);
        let resp = kv.get(keys::vips(), Some(at().with_prefix())).await?;
        let (vips, bad_vips) = decode_each::<Vip>(resp.kvs());
        let vips = vips
            .into_iter()
            .filter(|v| local(&v.subnet))
            .map(|v| (v.id.clone(), v))
            .collect();
        // One that cannot tell its subnet may be local too.
        let bad_vips: Vec<(String, BadRecord)> = bad_vips
            .into_iter()
            .filter(|(_, b)| {
                b.subnet.as_deref().is_none_or(local) || b.hosts.iter().any(|h| h == host)
            })
            .collect();
        s.vips = vips;
        s.bad.vips.extend(bad_vips);
        let resp = kv
            .get(keys::all_reports(), Some(at().with_prefix()))
            .await?;
        let mut reports: BTreeMap<String, Vec<OwnerReport>> = BTreeMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(Key::Owner { vip, host }) = Key::parse(&key) else {
                continue;
            };
            if s.vips.contains_key(vip) {
                if let Some(owner) = decode::<OwnerRecord>(&key, kv.value()) {
                    reports
                        .entry(vip.to_owned())
                        .or_default()
                        .push(OwnerReport {
                            host: host.to_owned(),
                            owner,
                            revision: kv.mod_revision(),
                        });
                }
            }
        }
        s.owners = reports
            .into_iter()
            .filter_map(|(vip, r)| Some((vip, current_owner(r)?)))
            .collect();
        let remote_ports: BTreeSet<String> = s
            .vips
            .values()
            .flat_map(|v| v.ports.iter().map(|b| b.port.clone()))
            .filter(|p| !s.port_macs.contains_key(p))
            .collect();
        for port in remote_ports {
            let resp = kv.get(keys::port(&port), Some(at())).await?;
            if let Some(p) = decode_all::<PortRecord>(resp.kvs()).pop() {
                s.port_macs.insert(port, p.mac.octets());
            }
        }
        Ok(s)
    }

    /// Whether a change of `key` can change this snapshot.
    pub(super) fn concerns(&self, host: &str, key: &str, value: &[u8]) -> bool {
        match Key::parse(key) {
            Some(Key::HostPort { host: h, .. }) => h == host,
            Some(Key::Subnet(id)) => {
                self.subnets.contains_key(id) || self.bad.subnets.contains_key(id)
            }
            Some(Key::Port(id)) => self.port_macs.contains_key(id),
            // A known VIP changed or went, or a new one in a local subnet,
            // or one that cannot be read (it may be local).
            Some(Key::Vip(id)) => {
                self.vips.contains_key(id)
                    || self.bad.vips.contains_key(id)
                    || match serde_json::from_slice::<Vip>(value) {
                        Ok(v) => self.subnets.contains_key(&v.subnet),
                        Err(_) => !value.is_empty(),
                    }
            }
            _ => false,
        }
    }
}

impl Snapshot {
    /// The datapath id of VIP `vip`.
    pub fn vip_datapath_id(&self, vip: &str) -> u32 {
        datapath_id(self.vips.get(vip).and_then(|v| v.datapath_id), vip)
    }

    /// The datapath id of port `port`: this host's record of it, else a
    /// binding of it (a port of another host).
    pub fn port_datapath_id(&self, port: &str) -> u32 {
        let local = self.host_ports.iter().find(|p| p.port == port);
        let allocated = match local {
            Some(p) => p.datapath_id,
            None => self
                .vips
                .values()
                .flat_map(|v| &v.ports)
                .find(|b| b.port == port)
                .and_then(|b| b.datapath_id),
        };
        datapath_id(allocated, port)
    }

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

pub(crate) fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
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
    /// Local port id -> why this host cannot program it.
    pub port_problems: BTreeMap<String, String>,
}

/// Turns `s` into the agent's configuration: every local port (port
/// security on, link-local from the MAC), the networks of their subnets,
/// and every VIP of those subnets with all its bound ports (also those on
/// other hosts, where remote owners live).
///
/// Every record is checked by the rules of the schema (the controller's
/// and the config file's) and by what only this host can tell: a subnet
/// that is not one, a port whose MAC, interface, fixed IPs, VLANs or
/// link-locals no host can program or whose interface or address another
/// local port has, a VIP whose address is no VIP's, outside its subnet,
/// another VIP's or a local port's own address. What breaks a rule is not
/// programmed and says why; everything else is.
pub fn to_config(s: &Snapshot) -> Programmed {
    let mut p = Programmed {
        // The controller enforces the binding limits.
        config: Config::default(),
        ..Programmed::default()
    };
    let mut networks: HashMap<&str, u32> = HashMap::new();
    // subnet id -> why it is not programmed.
    let mut bad_subnets: HashMap<&str, String> = s
        .bad
        .subnets
        .iter()
        .map(|(id, bad)| (id.as_str(), bad.problem()))
        .collect();
    for (id, subnet) in &s.subnets {
        if let Some(why) = subnet.problem() {
            error!("etcd: subnet {id}: not programmed: {why}");
            bad_subnets.insert(id, format!("its record breaks a rule: {why}"));
            continue;
        }
        let nid = datapath_id(subnet.datapath_id, id);
        if p.config.networks.contains_key(&nid) {
            error!("etcd: subnet {id}: not programmed: its datapath id {nid} is another subnet's");
            bad_subnets.insert(id, format!("its datapath id {nid} is another subnet's"));
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
    for (port, bad) in &s.bad.ports {
        not_programmed(&mut p.port_problems, "port", port, bad.problem());
    }
    // What the local ports hold, by the port holding it.
    let mut interfaces: HashMap<&str, &str> = HashMap::new();
    let mut own_addresses: HashMap<(u32, IpAddr), &str> = HashMap::new();
    for hp in &s.host_ports {
        let Some(&network) = networks.get(hp.subnet.as_str()) else {
            let problem = match bad_subnets.get(hp.subnet.as_str()) {
                Some(why) => format!("subnet {}: {why}", hp.subnet),
                None => format!("subnet {} has no record", hp.subnet),
            };
            not_programmed(&mut p.port_problems, "port", &hp.port, problem);
            continue;
        };
        let mac = hp.mac.octets();
        let link_local = eui64_link_local(&mac);
        let cidrs = &p.config.networks[&network].cidrs;
        let addresses: Vec<IpAddr> = hp
            .fixed_ips
            .iter()
            .copied()
            .chain(std::iter::once(IpAddr::V6(link_local)))
            .chain(hp.link_locals.iter().map(|a| IpAddr::V6(*a)))
            .collect();
        let id = datapath_id(hp.datapath_id, &hp.port);
        let problem = hp
            .problem()
            .or_else(|| {
                p.port_ids
                    .get(&id)
                    .map(|other| format!("its datapath id {id} is port {other}'s"))
            })
            .or_else(|| {
                interfaces
                    .get(hp.interface.as_str())
                    .map(|other| format!("interface {} is already port {other}'s", hp.interface))
            })
            .or_else(|| {
                hp.fixed_ips
                    .iter()
                    .find(|ip| !cidrs.iter().any(|c| c.contains(*ip)))
                    .map(|ip| format!("fixed ip {ip} is outside subnet {}", hp.subnet))
            })
            .or_else(|| {
                addresses.iter().find_map(|a| {
                    let other = own_addresses.get(&(network, *a))?;
                    Some(format!("address {a} is already port {other}'s"))
                })
            });
        if let Some(problem) = problem {
            not_programmed(&mut p.port_problems, "port", &hp.port, problem);
            continue;
        }
        interfaces.insert(&hp.interface, &hp.port);
        for a in addresses {
            own_addresses.insert((network, a), &hp.port);
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
                link_local,
                link_locals: hp.link_locals.clone(),
                vlans: hp.vlans.clone(),
            },
        );
    }
    for (vid, bad) in &s.bad.vips {
        not_programmed(&mut p.problems, "vip", vid, bad.problem());
    }
    let local_ids: HashMap<&str, u32> = p
        .port_ids
        .iter()
        .map(|(id, port)| (port.as_str(), *id))
        .collect();
    let mut addresses: HashMap<(u32, IpAddr), &str> = HashMap::new();
    for (vid, v) in &s.vips {
        let Some(&network) = networks.get(v.subnet.as_str()) else {
            if let Some(why) = bad_subnets.get(v.subnet.as_str()) {
                let problem = format!("subnet {}: {why}", v.subnet);
                not_programmed(&mut p.problems, "vip", vid, problem);
            }
            continue;
        };
        let cidrs = &p.config.networks[&network].cidrs;
        let id = datapath_id(v.datapath_id, vid);
        // A local port is bound by the id of its own record; another
        // host's by its binding's.
        let ports: Vec<u32> = v
            .ports
            .iter()
            .map(|b| match local_ids.get(b.port.as_str()) {
                Some(&id) => id,
                None => datapath_id(b.datapath_id, &b.port),
            })
            .collect();
        // A binding whose id is another local port's, or not its port's.
        let misbound = v.ports.iter().zip(&ports).find_map(|(b, pid)| {
            if let Some(local) = p.port_ids.get(pid).filter(|local| **local != b.port) {
                return Some(format!(
                    "bound port {}'s datapath id {pid} is port {local}'s",
                    b.port
                ));
            }
            let given = b.datapath_id.filter(|given| given != pid)?;
            Some(format!(
                "bound port {}'s datapath id {given} is not its record's {pid}",
                b.port
            ))
        });
        let problem = if let Some(why) = v.problem() {
            Some(why)
        } else if let Some(why) = misbound {
            Some(why)
        } else if !cidrs.iter().any(|c| c.contains(&v.address)) {
            let cidrs: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
            Some(format!(
                "its address {} is outside subnet {} ({})",
                v.address,
                v.subnet,
                cidrs.join(", ")
            ))
        } else if p.vip_ids.contains_key(&id) {
            Some(format!("its datapath id {id} collides with another VIP's"))
        } else if let Some(other) = addresses.get(&(network, v.address)) {
            Some(format!("{other} has the same address {}", v.address))
        } else {
            own_addresses
                .get(&(network, v.address))
                .map(|port| format!("its address {} is port {port}'s own address", v.address))
        };
        if let Some(problem) = problem {
            not_programmed(&mut p.problems, "vip", vid, problem);
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
                ports,
                vrid: v.vrid,
                hold_down_ms: v.hold_down_ms,
            },
        );
    }
    p
}

/// Logs that `kind` `id` is not programmed, and why, and notes it.
fn not_programmed(problems: &mut BTreeMap<String, String>, kind: &str, id: &str, problem: String) {
    error!("etcd: {kind} {id}: not programmed: {problem}");
    problems.insert(id.to_owned(), problem);
}

/// Keeps in force what `in_force` programs for each port and VIP that `p`
/// cannot program now (a bad record or change must not undo what worked),
/// unless that would clash with the new state (its id, interface or
/// address taken). A port kept brings its network along if need be.
pub fn keep_in_force(p: &mut Programmed, in_force: &Config) {
    for port in p.port_problems.keys() {
        let Some((&id, old)) = in_force
            .ports
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(port.as_str()))
        else {
            continue;
        };
        let clash = p.config.ports.contains_key(&id)
            || p.config
                .ports
                .values()
                .any(|q| q.interface == old.interface);
        let network = p.config.networks.get(&old.network).cloned();
        let Some(network) = network.or_else(|| in_force.networks.get(&old.network).cloned()) else {
            continue;
        };
        if !clash {
            p.config.networks.insert(old.network, network);
            p.config.ports.insert(id, old.clone());
            p.port_ids.insert(id, port.clone());
        }
    }
    for vid in p.problems.keys() {
        let Some((&id, old)) = in_force
            .vips
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(vid.as_str()))
        else {
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

#[cfg(test)]
mod tests;
