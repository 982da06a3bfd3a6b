//! The HAVIP store on etcd. Every change is one etcd transaction guarded by
//! `mod_revision` compares on everything it read (optimistic concurrency);
//! on a lost race the operation reads again and retries, so rules checked
//! on the read (free address, limits, same subnet) still hold when the
//! write lands, however many controllers run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp, WatchOptions,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::keys;
use crate::model::*;
use crate::rules;

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

/// How `set_ports` changes the bound ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Bind these ports in addition to the bound ones.
    Add,
    /// Unbind these ports.
    Remove,
    /// Make these exactly the bound ports.
    Replace,
}

/// A connection to etcd plus the controller's default limits.
#[derive(Clone)]
pub struct Store {
    client: Client,
    defaults: EffectiveLimits,
}

fn put<T: Serialize>(key: &str, value: &T) -> TxnOp {
    TxnOp::put(
        key,
        serde_json::to_vec(value).expect("records serialize"),
        None,
    )
}

fn unchanged(key: &str, mod_revision: i64) -> Compare {
    // A key that does not exist compares with mod_revision 0.
    Compare::mod_revision(key, CompareOp::Equal, mod_revision)
}

fn absent(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, 0)
}

fn exists(key: &str) -> Compare {
    Compare::version(key, CompareOp::Greater, 0)
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    serde_json::from_slice(value)
        .map_err(|e| Error::internal(format!("corrupt record at {key}: {e}")))
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

/// A VIP record without the fields computed on read.
fn stored(vip: &Havip) -> Havip {
    Havip {
        pending_hosts: Vec::new(),
        master: None,
        ..vip.clone()
    }
}

fn dedup(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

fn new_vip_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("havip-{}", &u[..16])
}

impl Store {
    pub async fn connect(endpoints: &[String], defaults: EffectiveLimits) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Store { client, defaults })
    }

    pub fn defaults(&self) -> EffectiveLimits {
        self.defaults
    }

    // ---- etcd helpers ----

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>> {
        let resp = self.client.kv_client().get(key, None).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some((decode(key, kv.value())?, kv.mod_revision()))),
        }
    }

    /// `(key, value, mod_revision)` of every key under `prefix`, and the
    /// store revision of the read.
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
            let value = decode(&key, kv.value())?;
            out.push((key, value, kv.mod_revision()));
        }
        Ok((out, revision))
    }

    async fn commit(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool> {
        let txn = Txn::new().when(compares).and_then(ops);
        Ok(self.client.kv_client().txn(txn).await?.succeeded())
    }

    // ---- networks ----

    /// Registers or renames a VPC. A VPC never changes project.
    pub async fn put_vpc(&self, id: &str, req: &PutVpc) -> Result<Vpc> {
        rules::check_id("vpc", id)?;
        rules::check_id("project", &req.project)?;
        let key = keys::vpc(id);
        for attempt in 0..RETRIES {
            let existing = self.get::<Vpc>(&key).await?;
            let guard = match &existing {
                Some((v, _)) if v.project != req.project => {
                    return Err(Error::conflict(format!(
                        "vpc {id} already exists in project {}",
                        v.project
                    )))
                }
                Some((_, rev)) => unchanged(&key, *rev),
                None => absent(&key),
            };
            let vpc = Vpc {
                id: id.to_string(),
                project: req.project.clone(),
                name: req.name.clone(),
            };
            if self.commit(vec![guard], vec![put(&key, &vpc)]).await? {
                return Ok(vpc);
            }
            backoff(attempt).await;
        }
        Err(lost_race("put vpc"))
    }

    pub async fn get_vpc(&self, scope: &Scope, id: &str) -> Result<Vpc> {
        match self.get::<Vpc>(&keys::vpc(id)).await? {
            Some((v, _)) if scope.sees(&v.project) => Ok(v),
            _ => Err(Error::not_found(format!("vpc {id} not found"))),
        }
    }

    /// Registers a subnet (or renames it). Its VPC and ranges are fixed once
    /// registered.
    pub async fn put_subnet(&self, id: &str, req: &PutSubnet) -> Result<Subnet> {
        rules::check_id("subnet", id)?;
        rules::check_id("vpc", &req.vpc)?;
        if req.cidr_v4.is_none() && req.cidr_v6.is_none() {
            return Err(Error::invalid_argument(
                "a subnet needs cidr_v4, cidr_v6 or both",
            ));
        }
        if let Some(n) = req.cidr_v4.filter(|n| n.trunc() != *n) {
            return Err(Error::invalid_argument(format!(
                "cidr_v4 {n} has host bits set (did you mean {}?)",
                n.trunc()
            )));
        }
        if let Some(n) = req.cidr_v6.filter(|n| n.trunc() != *n) {
            return Err(Error::invalid_argument(format!(
                "cidr_v6 {n} has host bits set (did you mean {}?)",
                n.trunc()
            )));
        }
        let key = keys::subnet(id);
        let vpc_key = keys::vpc(&req.vpc);
        for attempt in 0..RETRIES {
            let Some((vpc, vpc_rev)) = self.get::<Vpc>(&vpc_key).await? else {
                return Err(Error::not_found(format!("vpc {} not found", req.vpc)));
            };
            let subnet = Subnet {
                id: id.to_string(),
                vpc: vpc.id.clone(),
                project: vpc.project.clone(),
                name: req.name.clone(),
                cidr_v4: req.cidr_v4,
                cidr_v6: req.cidr_v6,
            };
            let guard = match self.get::<Subnet>(&key).await? {
                Some((s, _))
                    if s.vpc != subnet.vpc
                        || s.cidr_v4 != subnet.cidr_v4
                        || s.cidr_v6 != subnet.cidr_v6 =>
                {
                    return Err(Error::conflict(format!(
                        "subnet {id} already exists with another VPC or other ranges"
                    )))
                }
                Some((_, rev)) => unchanged(&key, rev),
                None => absent(&key),
            };
            if self
                .commit(
                    vec![guard, unchanged(&vpc_key, vpc_rev)],
                    vec![put(&key, &subnet)],
                )
                .await?
            {
                return Ok(subnet);
            }
            backoff(attempt).await;
        }
        Err(lost_race("put subnet"))
    }

    pub async fn get_subnet(&self, scope: &Scope, id: &str) -> Result<Subnet> {
        match self.get::<Subnet>(&keys::subnet(id)).await? {
            Some((s, _)) if scope.sees(&s.project) => Ok(s),
            _ => Err(Error::not_found(format!("subnet {id} not found"))),
        }
    }

    // ---- ports ----

    /// Registers a port or changes an unbound one. Its fixed IPs are claimed
    /// in the subnet, so no HAVIP can take them (and it cannot take a VIP's).
    pub async fn put_port(&self, id: &str, req: &PutPort) -> Result<Port> {
        rules::check_id("port", id)?;
        rules::check_id("vm", &req.vm)?;
        rules::check_id("subnet", &req.subnet)?;
        rules::check_id("host", &req.host)?;
        rules::check_id("interface", &req.interface)?;
        rules::check_mac(&req.mac)?;
        let vlans = rules::check_vlans(&req.vlans)?;
        let link_locals = rules::check_link_locals(&req.link_locals)?;
        let fixed_ips: Vec<IpAddr> = {
            let mut seen = HashSet::new();
            req.fixed_ips
                .iter()
                .filter(|ip| seen.insert(**ip))
                .copied()
                .collect()
        };
        let key = keys::port(id);
        let subnet_key = keys::subnet(&req.subnet);
        for attempt in 0..RETRIES {
            let Some((subnet, subnet_rev)) = self.get::<Subnet>(&subnet_key).await? else {
                return Err(Error::not_found(format!("subnet {} not found", req.subnet)));
            };
            for ip in &fixed_ips {
                let net = rules::subnet_range(&subnet, IpVersion::of(ip))?;
                rules::check_host_address(&subnet.id, net, *ip)?;
            }
            let existing = self.get::<Port>(&key).await?;
            let mut port = Port {
                id: id.to_string(),
                project: subnet.project.clone(),
                vm: req.vm.clone(),
                vpc: subnet.vpc.clone(),
                subnet: subnet.id.clone(),
                mac: req.mac.to_ascii_lowercase(),
                fixed_ips: fixed_ips.clone(),
                host: req.host.clone(),
                interface: req.interface.clone(),
                vips: Vec::new(),
                vips_per_port: None,
                vlans: vlans.clone(),
                link_locals: link_locals.clone(),
            };
            let mut compares = vec![unchanged(&subnet_key, subnet_rev)];
            let mut ops = Vec::new();
            let mut old_claims = HashSet::new();
            match &existing {
                Some((old, rev)) => {
                    if old.project != port.project {
                        return Err(Error::conflict(format!(
                            "port {id} already exists in another project"
                        )));
                    }
                    port.vips = old.vips.clone();
                    port.vips_per_port = old.vips_per_port;
                    if !old.vips.is_empty() && *old != port {
                        let ids: Vec<&str> = old.vips.iter().map(|v| v.id.as_str()).collect();
                        return Err(Error::wrong_state(format!(
                            "port {id} is bound to {}; unbind it before changing it",
                            ids.join(", ")
                        )));
                    }
                    compares.push(unchanged(&key, *rev));
                    if old.host != port.host {
                        ops.push(TxnOp::delete(keys::host_port(&old.host, id), None));
                    }
                    old_claims = old
                        .claimed_addresses()
                        .map(|ip| keys::addr(&old.subnet, &ip))
                        .collect();
                }
                None => compares.push(absent(&key)),
            }
            let claim = Claim::Port {
                id: id.to_string(),
                vm: port.vm.clone(),
            };
            let mut new_claims = HashSet::new();
            for ip in port.claimed_addresses() {
                let ckey = keys::addr(&port.subnet, &ip);
                if !old_claims.contains(&ckey) {
                    if let Some((holder, _)) = self.get::<Claim>(&ckey).await? {
                        return Err(Error::address_in_use(format!(
                            "{ip} is already in use by {holder}"
                        )));
                    }
                    compares.push(absent(&ckey));
                }
                ops.push(put(&ckey, &claim));
                new_claims.insert(ckey);
            }
            for gone in old_claims.difference(&new_claims) {
                ops.push(TxnOp::delete(gone.as_str(), None));
            }
            ops.push(put(&key, &port));
            ops.push(put(
                &keys::host_port(&port.host, id),
                &HostPort::from(&port),
            ));
            if self.commit(compares, ops).await? {
                return Ok(port);
            }
            backoff(attempt).await;
        }
        Err(lost_race("put port"))
    }

    pub async fn get_port(&self, scope: &Scope, id: &str) -> Result<Port> {
        match self.get::<Port>(&keys::port(id)).await? {
            Some((p, _)) if scope.sees(&p.project) => Ok(p),
            _ => Err(Error::not_found(format!("port {id} not found"))),
        }
    }

    pub async fn list_ports(&self, scope: &Scope, q: &PortQuery) -> Result<Vec<Port>> {
        let (ports, _) = self.list::<Port>(&keys::ports()).await?;
        Ok(ports
            .into_iter()
            .map(|(_, p, _)| p)
            .filter(|p| scope.sees(&p.project))
            .filter(|p| q.subnet.as_ref().is_none_or(|s| *s == p.subnet))
            .filter(|p| q.vm.as_ref().is_none_or(|vm| *vm == p.vm))
            .collect())
    }

    /// Removes an unbound port and releases its addresses.
    pub async fn delete_port(&self, id: &str) -> Result<()> {
        let key = keys::port(id);
        for attempt in 0..RETRIES {
            let Some((port, rev)) = self.get::<Port>(&key).await? else {
                return Err(Error::not_found(format!("port {id} not found")));
            };
            if !port.vips.is_empty() {
                let ids: Vec<&str> = port.vips.iter().map(|v| v.id.as_str()).collect();
                return Err(Error::wrong_state(format!(
                    "port {id} is bound to {}; unbind it first",
                    ids.join(", ")
                )));
            }
            let mut ops = vec![
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(keys::host_port(&port.host, id), None),
            ];
            for ip in port.claimed_addresses() {
                ops.push(TxnOp::delete(keys::addr(&port.subnet, &ip), None));
            }
            if self.commit(vec![unchanged(&key, rev)], ops).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(lost_race("delete port"))
    }

    /// Operator override of the VIPs-per-port limit of one port.
    pub async fn set_port_limits(&self, id: &str, limits: &PortLimits) -> Result<Port> {
        check_limit("vips_per_port", limits.vips_per_port)?;
        let key = keys::port(id);
        for attempt in 0..RETRIES {
            let Some((mut port, rev)) = self.get::<Port>(&key).await? else {
                return Err(Error::not_found(format!("port {id} not found")));
            };
            port.vips_per_port = limits.vips_per_port;
            if self
                .commit(vec![unchanged(&key, rev)], vec![put(&key, &port)])
                .await?
            {
                return Ok(port);
            }
            backoff(attempt).await;
        }
        Err(lost_race("set port limits"))
    }

    // ---- limits ----

    async fn project_limits_rev(&self, project: &str) -> Result<(ProjectLimits, i64)> {
        Ok(self
            .get::<ProjectLimits>(&keys::project_limits(project))
            .await?
            .unwrap_or_default())
    }

    fn effective(&self, l: &ProjectLimits) -> EffectiveLimits {
        EffectiveLimits {
            ports_per_vip: l.ports_per_vip.unwrap_or(self.defaults.ports_per_vip),
            vips_per_port: l.vips_per_port.unwrap_or(self.defaults.vips_per_port),
        }
    }

    pub async fn get_project_limits(
        &self,
        scope: &Scope,
        project: &str,
    ) -> Result<EffectiveLimits> {
        if !scope.sees(project) {
            return Err(Error::not_found(format!("project {project} not found")));
        }
        let (l, _) = self.project_limits_rev(project).await?;
        Ok(self.effective(&l))
    }

    /// Operator: the limits of a project (`None` = default). Lowering a limit
    /// keeps existing bindings but refuses new ones above it.
    pub async fn set_project_limits(
        &self,
        project: &str,
        limits: &ProjectLimits,
    ) -> Result<EffectiveLimits> {
        rules::check_id("project", project)?;
        check_limit("ports_per_vip", limits.ports_per_vip)?;
        check_limit("vips_per_port", limits.vips_per_port)?;
        self.client
            .kv_client()
            .put(
                keys::project_limits(project),
                serde_json::to_vec(limits).expect("limits serialize"),
                None,
            )
            .await?;
        Ok(self.effective(limits))
    }

    /// Operator override of the ports-per-VIP limit of one VIP.
    pub async fn set_vip_limits(&self, id: &str, limits: &VipLimits) -> Result<Havip> {
        check_limit("ports_per_vip", limits.ports_per_vip)?;
        let key = keys::vip(id);
        for attempt in 0..RETRIES {
            let Some((mut vip, rev)) = self.get::<Havip>(&key).await? else {
                return Err(Error::not_found(format!("havip {id} not found")));
            };
            vip.ports_per_vip = limits.ports_per_vip;
            if self
                .commit(vec![unchanged(&key, rev)], vec![put(&key, &stored(&vip))])
                .await?
            {
                return self.view(vip).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("set havip limits"))
    }

    // ---- HAVIPs ----

    async fn vip_in_scope(&self, scope: &Scope, id: &str) -> Result<(Havip, i64)> {
        rules::check_id("havip", id)?;
        match self.get::<Havip>(&keys::vip(id)).await? {
            Some((v, rev)) if scope.sees(&v.project) => Ok((v, rev)),
            _ => Err(Error::not_found(format!("havip {id} not found"))),
        }
    }

    /// Reads the ports whose bindings change and prepares their writes.
    /// Returns the new bindings of `vip`, and compares and writes to add to
    /// the transaction. `ports_per_vip` is the limit in effect for `vip`.
    async fn plan_bindings(
        &self,
        vip: &Havip,
        wanted: &[String],
        limits: &EffectiveLimits,
        ports_per_vip: u32,
    ) -> Result<(Vec<Binding>, Vec<Compare>, Vec<TxnOp>)> {
        let wanted = dedup(wanted);
        for id in &wanted {
            rules::check_id("port", id)?;
        }
        let old: Vec<&str> = vip.ports.iter().map(|b| b.port.as_str()).collect();
        if wanted.len() > old.len() && wanted.len() > ports_per_vip as usize {
            return Err(Error::quota_exceeded(format!(
                "havip {} may have at most {ports_per_vip} bound ports ({} requested); ask an operator to raise the limit",
                vip.id,
                wanted.len()
            )));
        }
        let added: Vec<&String> = wanted
            .iter()
            .filter(|p| !old.contains(&p.as_str()))
            .collect();
        let removed: Vec<&str> = old
            .iter()
            .filter(|p| !wanted.iter().any(|w| w == *p))
            .copied()
            .collect();
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut new_ports: HashMap<&str, Port> = HashMap::new();
        for id in added {
            let key = keys::port(id);
            let port = match self.get::<Port>(&key).await? {
                Some((p, rev)) if p.project == vip.project => {
                    compares.push(unchanged(&key, rev));
                    p
                }
                _ => return Err(Error::not_found(format!("port {id} not found"))),
            };
            if port.vpc != vip.vpc {
                return Err(Error::port_in_other_subnet(format!(
                    "port {id} is in VPC {}, havip {} in VPC {}",
                    port.vpc, vip.id, vip.vpc
                )));
            }
            if port.subnet != vip.subnet {
                return Err(Error::port_in_other_subnet(format!(
                    "port {id} is in subnet {}, havip {} in subnet {}",
                    port.subnet, vip.id, vip.subnet
                )));
            }
            let limit = port.vips_per_port.unwrap_or(limits.vips_per_port);
            if port.vips.len() >= limit as usize {
                return Err(Error::quota_exceeded(format!(
                    "port {id} (VM {}) is already bound to {} HAVIPs, the most allowed is {limit}",
                    port.vm,
                    port.vips.len()
                )));
            }
            let mut port = port;
            port.vips.push(PortVip {
                id: vip.id.clone(),
                address: vip.address,
            });
            new_ports.insert(id.as_str(), port);
        }
        for id in removed {
            let key = keys::port(id);
            if let Some((mut port, rev)) = self.get::<Port>(&key).await? {
                compares.push(unchanged(&key, rev));
                port.vips.retain(|v| v.id != vip.id);
                ops.push(put(&key, &port));
                ops.push(put(
                    &keys::host_port(&port.host, id),
                    &HostPort::from(&port),
                ));
            }
        }
        let mut bindings = Vec::with_capacity(wanted.len());
        for id in &wanted {
            if let Some(port) = new_ports.get(id.as_str()) {
                ops.push(put(&keys::port(id), port));
                ops.push(put(&keys::host_port(&port.host, id), &HostPort::from(port)));
                bindings.push(Binding {
                    port: id.clone(),
                    vm: port.vm.clone(),
                    host: port.host.clone(),
                });
            } else if let Some(b) = vip.ports.iter().find(|b| b.port == *id) {
                bindings.push(b.clone());
            }
        }
        Ok((bindings, compares, ops))
    }

    /// Creates a HAVIP: reserves the given address (or the lowest free one)
    /// in the subnet and binds `ports`.
    pub async fn create_havip(&self, scope: &Scope, req: &CreateHavip) -> Result<Havip> {
        let project = scope.project()?.to_string();
        rules::check_name(&req.name)?;
        let description = req.description.clone().unwrap_or_default();
        rules::check_description(&description)?;
        if req.network_type == Some(NetworkType::Internet) {
            return Err(Error::invalid_argument(
                "only intranet HAVIPs are served by this controller",
            ));
        }
        rules::check_id("subnet", &req.subnet)?;
        if let Some(vrid) = req.vrid {
            rules::check_vrid(vrid)?;
        }
        let hold_down_ms = req
            .hold_down_ms
            .map(rules::check_hold_down)
            .transpose()?
            .unwrap_or(havip_common::vip::DEFAULT_HOLD_DOWN_MS);
        let subnet_key = keys::subnet(&req.subnet);
        let limits_key = keys::project_limits(&project);
        for attempt in 0..RETRIES {
            let subnet = match self.get::<Subnet>(&subnet_key).await? {
                Some((s, rev)) if s.project == project => (s, rev),
                _ => return Err(Error::not_found(format!("subnet {} not found", req.subnet))),
            };
            let (subnet, subnet_rev) = subnet;
            let version = match (req.ip_version, req.address) {
                (Some(v), Some(a)) if v != IpVersion::of(&a) => {
                    return Err(Error::invalid_argument(format!(
                        "address {a} is not an {} address",
                        v.as_str()
                    )))
                }
                (Some(v), _) => v,
                (None, Some(a)) => IpVersion::of(&a),
                (None, None) if subnet.cidr_v4.is_some() => IpVersion::Ipv4,
                (None, None) => IpVersion::Ipv6,
            };
            let net = rules::subnet_range(&subnet, version)?;
            let address = match req.address {
                Some(a) => {
                    rules::check_host_address(&subnet.id, net, a)?;
                    if let Some((holder, _)) =
                        self.get::<Claim>(&keys::addr(&subnet.id, &a)).await?
                    {
                        return Err(Error::address_in_use(format!(
                            "{a} is already in use by {holder}"
                        )));
                    }
                    a
                }
                None => {
                    let (claims, _) = self.list::<Claim>(&keys::addrs(&subnet.id)).await?;
                    let claimed: HashSet<IpAddr> = claims
                        .iter()
                        .filter_map(|(k, _, _)| keys::last_segment(k).parse().ok())
                        .collect();
                    rules::first_free(net, &claimed).ok_or_else(|| {
                        Error::subnet_exhausted(format!(
                            "subnet {} has no free {} address left in {net}",
                            subnet.id,
                            version.as_str()
                        ))
                    })?
                }
            };
            let (project_limits, limits_rev) = self.project_limits_rev(&project).await?;
            let limits = self.effective(&project_limits);
            let mut vip = Havip {
                id: new_vip_id(),
                project: project.clone(),
                name: req.name.clone(),
                description: description.clone(),
                network_type: NetworkType::Intranet,
                vpc: subnet.vpc.clone(),
                subnet: subnet.id.clone(),
                ip_version: version,
                address,
                ports: Vec::new(),
                status: Status::Available,
                status_reason: None,
                generation: 1,
                ports_per_vip: None,
                vrid: req.vrid,
                hold_down_ms,
                created_at: Utc::now(),
                pending_hosts: Vec::new(),
                master: None,
            };
            let (bindings, mut compares, mut ops) = self
                .plan_bindings(&vip, &req.ports, &limits, limits.ports_per_vip)
                .await?;
            if !bindings.is_empty() {
                vip.status = Status::Creating;
            }
            vip.ports = bindings;
            let vip_key = keys::vip(&vip.id);
            let addr_key = keys::addr(&subnet.id, &address);
            compares.extend([
                absent(&addr_key),
                absent(&vip_key),
                unchanged(&subnet_key, subnet_rev),
                unchanged(&limits_key, limits_rev),
            ]);
            ops.push(put(
                &addr_key,
                &Claim::Vip {
                    id: vip.id.clone(),
                    name: vip.name.clone(),
                },
            ));
            ops.push(put(&vip_key, &vip));
            if self.commit(compares, ops).await? {
                log::info!("created {} {} in {}", vip.id, vip.address, vip.subnet);
                return self.view(vip).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("create havip"))
    }

    /// Binds, unbinds or replaces the ports of a HAVIP. Every change starts
    /// a new generation which the bound ports' hosts must acknowledge.
    pub async fn set_ports(
        &self,
        scope: &Scope,
        id: &str,
        mode: BindMode,
        ports: &[String],
    ) -> Result<Havip> {
        let vip_key = keys::vip(id);
        for attempt in 0..RETRIES {
            let (mut vip, rev) = self.vip_in_scope(scope, id).await?;
            if vip.status == Status::Deleting {
                return Err(Error::wrong_state(format!("havip {id} is being deleted")));
            }
            let old: Vec<String> = vip.ports.iter().map(|b| b.port.clone()).collect();
            let wanted: Vec<String> = match mode {
                BindMode::Replace => dedup(ports),
                BindMode::Add => {
                    let mut w = old.clone();
                    w.extend(ports.iter().cloned());
                    dedup(&w)
                }
                BindMode::Remove => {
                    if let Some(p) = ports.iter().find(|p| !old.contains(p)) {
                        return Err(Error::not_found(format!(
                            "port {p} is not bound to havip {id}"
                        )));
                    }
                    old.iter().filter(|p| !ports.contains(p)).cloned().collect()
                }
            };
            if wanted == old {
                return self.view(vip).await;
            }
            let limits_key = keys::project_limits(&vip.project);
            let (project_limits, limits_rev) = self.project_limits_rev(&vip.project).await?;
            let limits = self.effective(&project_limits);
            let ports_per_vip = vip.ports_per_vip.unwrap_or(limits.ports_per_vip);
            let (bindings, mut compares, mut ops) = self
                .plan_bindings(&vip, &wanted, &limits, ports_per_vip)
                .await?;
            vip.ports = bindings;
            vip.generation += 1;
            vip.status_reason = None;
            vip.status = if vip.ports.is_empty() {
                Status::Available
            } else {
                Status::Creating
            };
            compares.push(unchanged(&vip_key, rev));
            compares.push(unchanged(&limits_key, limits_rev));
            ops.push(put(&vip_key, &stored(&vip)));
            if self.commit(compares, ops).await? {
                return self.view(vip).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("bind ports"))
    }

    /// Renames or re-describes a HAVIP, or sets its hold-down, in any state.
    pub async fn update_havip(&self, scope: &Scope, id: &str, req: &UpdateHavip) -> Result<Havip> {
        if let Some(n) = &req.name {
            rules::check_name(n)?;
        }
        if let Some(d) = &req.description {
            rules::check_description(d)?;
        }
        let hold_down_ms = req.hold_down_ms.map(rules::check_hold_down).transpose()?;
        let vip_key = keys::vip(id);
        for attempt in 0..RETRIES {
            let (mut vip, rev) = self.vip_in_scope(scope, id).await?;
            if let Some(n) = &req.name {
                vip.name = n.clone();
            }
            if let Some(d) = &req.description {
                vip.description = d.clone();
            }
            if let Some(vrid) = req.vrid {
                vip.vrid = (vrid != 0).then_some(vrid);
            }
            if let Some(ms) = hold_down_ms {
                vip.hold_down_ms = ms;
            }
            let addr_key = keys::addr(&vip.subnet, &vip.address);
            let claim = Claim::Vip {
                id: vip.id.clone(),
                name: vip.name.clone(),
            };
            if self
                .commit(
                    vec![unchanged(&vip_key, rev)],
                    vec![put(&vip_key, &stored(&vip)), put(&addr_key, &claim)],
                )
                .await?
            {
                return self.view(vip).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("update havip"))
    }

    /// Deletes an `available` or `failed` HAVIP: first it becomes `deleting`
    /// and loses its ports (hosts see the VIP leave their ports and
    /// unprogram it), then the record, address claim, owner and acks go.
    /// A HAVIP left `deleting` by a crash is finished by deleting it again.
    pub async fn delete_havip(&self, scope: &Scope, id: &str) -> Result<()> {
        let vip_key = keys::vip(id);
        for attempt in 0..RETRIES {
            let (mut vip, rev) = self.vip_in_scope(scope, id).await?;
            match vip.status {
                Status::Creating => {
                    return Err(Error::wrong_state(format!(
                        "havip {id} is creating (waiting for hosts {}); only available or failed HAVIPs can be deleted",
                        self.view(vip.clone()).await?.pending_hosts.join(", ")
                    )))
                }
                Status::Available | Status::Failed => {
                    let limits = self.effective(&self.project_limits_rev(&vip.project).await?.0);
                    let (_, mut compares, mut ops) =
                        self.plan_bindings(&vip, &[], &limits, u32::MAX).await?;
                    vip.ports.clear();
                    vip.generation += 1;
                    vip.status = Status::Deleting;
                    compares.push(unchanged(&vip_key, rev));
                    ops.push(put(&vip_key, &stored(&vip)));
                    // Success or lost race: read again either way.
                    if !self.commit(compares, ops).await? {
                        backoff(attempt).await;
                    }
                }
                Status::Deleting => {
                    let ops = vec![
                        TxnOp::delete(vip_key.as_str(), None),
                        TxnOp::delete(keys::addr(&vip.subnet, &vip.address), None),
                        TxnOp::delete(keys::owner(id), None),
                        TxnOp::delete(keys::acks_of(id), Some(DeleteOptions::new().with_prefix())),
                    ];
                    if self.commit(vec![unchanged(&vip_key, rev)], ops).await? {
                        log::info!("deleted {id}");
                        return Ok(());
                    }
                    backoff(attempt).await;
                }
            }
        }
        Err(lost_race("delete havip"))
    }

    /// Deletes each HAVIP independently; one result per id, in order.
    pub async fn batch_delete(&self, scope: &Scope, ids: &[String]) -> Vec<BatchDeleteItem> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = self.delete_havip(scope, id).await;
            out.push(BatchDeleteItem {
                id: id.clone(),
                deleted: r.is_ok(),
                error: r.err(),
            });
        }
        out
    }

    pub async fn get_havip(&self, scope: &Scope, id: &str) -> Result<Havip> {
        let (vip, _) = self.vip_in_scope(scope, id).await?;
        self.view(vip).await
    }

    /// Fills the fields computed on read: pending hosts and master.
    async fn view(&self, mut vip: Havip) -> Result<Havip> {
        let (acks, _) = self.list::<Ack>(&keys::acks_of(&vip.id)).await?;
        let acks: HashMap<String, Ack> = acks
            .into_iter()
            .map(|(k, a, _)| (keys::last_segment(&k).to_string(), a))
            .collect();
        let owner = self
            .get::<Owner>(&keys::owner(&vip.id))
            .await?
            .map(|(o, _)| o);
        fill(&mut vip, &acks, owner);
        Ok(vip)
    }

    /// Every HAVIP in scope with computed fields, newest first.
    pub async fn all_havips(&self, scope: &Scope) -> Result<Vec<Havip>> {
        let (vips, _) = self.list::<Havip>(&keys::vips()).await?;
        let (acks, _) = self.list::<Ack>(&keys::acks()).await?;
        let (owners, _) = self.list::<Owner>(&keys::owners()).await?;
        let mut acks_by_vip: HashMap<String, HashMap<String, Ack>> = HashMap::new();
        for (k, a, _) in acks {
            if let Some((vip, host)) = keys::parse_ack(&k) {
                acks_by_vip
                    .entry(vip.to_string())
                    .or_default()
                    .insert(host.to_string(), a);
            }
        }
        let mut owners: HashMap<String, Owner> = owners
            .into_iter()
            .map(|(k, o, _)| (keys::last_segment(&k).to_string(), o))
            .collect();
        let empty = HashMap::new();
        let mut out: Vec<Havip> = vips
            .into_iter()
            .map(|(_, v, _)| v)
            .filter(|v| scope.sees(&v.project))
            .map(|mut v| {
                let owner = owners.remove(&v.id);
                let acks = acks_by_vip.get(&v.id).unwrap_or(&empty);
                fill(&mut v, acks, owner);
                v
            })
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// One page of the HAVIPs in scope that pass the filters.
    pub async fn list_havips(&self, scope: &Scope, q: &ListQuery) -> Result<HavipPage> {
        let page = q.page.unwrap_or(1);
        let page_size = q.page_size.unwrap_or(20);
        if page == 0 {
            return Err(Error::invalid_argument("page starts at 1"));
        }
        if page_size == 0 || page_size > 1000 {
            return Err(Error::invalid_argument("page_size must be 1..=1000"));
        }
        let matching: Vec<Havip> = self
            .all_havips(scope)
            .await?
            .into_iter()
            .filter(|v| q.status.is_none_or(|s| s == v.status))
            .filter(|v| q.subnet.as_ref().is_none_or(|s| *s == v.subnet))
            .filter(|v| {
                q.vm.as_ref()
                    .is_none_or(|vm| v.ports.iter().any(|b| b.vm == *vm))
            })
            .filter(|v| {
                q.q.as_ref()
                    .is_none_or(|text| rules::matches_query(v, text))
            })
            .collect();
        let total = matching.len() as u64;
        let items = matching
            .into_iter()
            .skip((page as usize - 1) * page_size as usize)
            .take(page_size as usize)
            .collect();
        Ok(HavipPage {
            items,
            total,
            page,
            page_size,
        })
    }

    // ---- the agents' side (they will write these keys directly) ----

    /// Records the port (and host) currently answering for `vip`.
    pub async fn report_owner(
        &self,
        vip: &str,
        port: &str,
        host: &str,
        since: DateTime<Utc>,
    ) -> Result<()> {
        let owner = Owner {
            port: port.to_string(),
            host: host.to_string(),
            since,
            split_brain: None,
        };
        if self
            .commit(
                vec![exists(&keys::vip(vip))],
                vec![put(&keys::owner(vip), &owner)],
            )
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found(format!("havip {vip} not found")))
        }
    }

    /// `host` has programmed the current generation of `vip`.
    pub async fn ack_programmed(&self, vip: &str, host: &str) -> Result<Status> {
        let generation = self.current_generation(vip).await?;
        self.ack(vip, host, generation, AckResult::Programmed, None)
            .await
    }

    /// `host` could not program the current generation of `vip`.
    pub async fn report_failed(&self, vip: &str, host: &str, reason: &str) -> Result<Status> {
        let generation = self.current_generation(vip).await?;
        self.ack(
            vip,
            host,
            generation,
            AckResult::Failed,
            Some(reason.to_string()),
        )
        .await
    }

    async fn current_generation(&self, vip: &str) -> Result<u64> {
        match self.get::<Havip>(&keys::vip(vip)).await? {
            Some((v, _)) => Ok(v.generation),
            None => Err(Error::not_found(format!("havip {vip} not found"))),
        }
    }

    /// Writes the ack key of `(vip, host)` for `generation`, then brings the
    /// VIP's status up to date. Returns the status after that.
    pub async fn ack(
        &self,
        vip: &str,
        host: &str,
        generation: u64,
        result: AckResult,
        reason: Option<String>,
    ) -> Result<Status> {
        rules::check_id("host", host)?;
        let ack = Ack {
            generation,
            result,
            reason,
            at: Utc::now(),
        };
        if !self
            .commit(
                vec![exists(&keys::vip(vip))],
                vec![put(&keys::ack(vip, host), &ack)],
            )
            .await?
        {
            return Err(Error::not_found(format!("havip {vip} not found")));
        }
        self.reconcile(vip).await
    }

    /// Derives the status of `vip` from the acks of its bound ports' hosts
    /// for the current generation: any failure → `failed`; all programmed
    /// → `available`; otherwise `creating`. `deleting` is left alone.
    pub async fn reconcile(&self, id: &str) -> Result<Status> {
        let vip_key = keys::vip(id);
        for attempt in 0..RETRIES {
            let Some((vip, rev)) = self.get::<Havip>(&vip_key).await? else {
                return Err(Error::not_found(format!("havip {id} not found")));
            };
            if vip.status == Status::Deleting {
                return Ok(vip.status);
            }
            let (acks, _) = self.list::<Ack>(&keys::acks_of(id)).await?;
            let acks: BTreeMap<String, Ack> = acks
                .into_iter()
                .map(|(k, a, _)| (keys::last_segment(&k).to_string(), a))
                .filter(|(_, a)| a.generation == vip.generation)
                .collect();
            let hosts: HashSet<&str> = vip.ports.iter().map(|b| b.host.as_str()).collect();
            let mut failures: Vec<String> = acks
                .iter()
                .filter(|(h, a)| hosts.contains(h.as_str()) && a.result == AckResult::Failed)
                .map(|(h, a)| format!("{h}: {}", a.reason.as_deref().unwrap_or("failed")))
                .collect();
            failures.sort();
            let (status, reason) = if !failures.is_empty() {
                (Status::Failed, Some(failures.join("; ")))
            } else if hosts.iter().all(|h| {
                acks.get(*h)
                    .is_some_and(|a| a.result == AckResult::Programmed)
            }) {
                (Status::Available, None)
            } else {
                (Status::Creating, None)
            };
            if status == vip.status && reason == vip.status_reason {
                return Ok(status);
            }
            let mut vip = vip;
            vip.status = status;
            vip.status_reason = reason;
            if self
                .commit(
                    vec![unchanged(&vip_key, rev)],
                    vec![put(&vip_key, &stored(&vip))],
                )
                .await?
            {
                log::info!("{id} is now {}", status.as_str());
                return Ok(status);
            }
            backoff(attempt).await;
        }
        Err(lost_race("reconcile havip"))
    }

    /// Keeps VIP statuses in step with the ack keys agents write: reconciles
    /// every VIP once, then each VIP whose acks change. Runs until etcd
    /// fails; the caller restarts it.
    pub async fn run_ack_reconciler(&self) -> Result<()> {
        let (vips, revision) = self.list::<Havip>(&keys::vips()).await?;
        for (_, v, _) in vips {
            if v.status != Status::Deleting {
                if let Err(e) = self.reconcile(&v.id).await {
                    log::warn!("reconcile {}: {e}", v.id);
                }
            }
        }
        let mut stream = self
            .client
            .clone()
            .watch(
                keys::acks(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await?;
        while let Some(resp) = stream.message().await? {
            let mut seen = HashSet::new();
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                if let Some((vip, _)) = keys::parse_ack(&key) {
                    if seen.insert(vip.to_string()) {
                        match self.reconcile(vip).await {
                            Ok(_) => {}
                            Err(e) if e.code == crate::error::ErrorCode::NotFound => {}
                            Err(e) => log::warn!("reconcile {vip}: {e}"),
                        }
                    }
                }
            }
        }
        Err(Error::unavailable("etcd closed the ack watch"))
    }

    /// The host projection of `host` (what its agent sees).
    pub async fn host_ports(&self, host: &str) -> Result<Vec<HostPort>> {
        let (ports, _) = self.list::<HostPort>(&keys::host_ports(host)).await?;
        Ok(ports.into_iter().map(|(_, p, _)| p).collect())
    }
}

fn check_limit(what: &str, v: Option<u32>) -> Result<()> {
    match v {
        Some(0) => Err(Error::invalid_argument(format!(
            "{what} must be at least 1"
        ))),
        Some(n) if n > 10_000 => Err(Error::invalid_argument(format!(
            "{what} must be at most 10000"
        ))),
        _ => Ok(()),
    }
}

fn fill(vip: &mut Havip, acks: &HashMap<String, Ack>, owner: Option<Owner>) {
    let mut pending: Vec<String> = vip
        .ports
        .iter()
        .map(|b| b.host.clone())
        .filter(|h| {
            !acks.get(h).is_some_and(|a| {
                a.generation == vip.generation && a.result == AckResult::Programmed
            })
        })
        .collect();
    pending.sort();
    pending.dedup();
    vip.pending_hosts = pending;
    vip.master = owner;
}
