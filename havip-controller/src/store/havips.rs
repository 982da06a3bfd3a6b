//! Creating, binding, changing and deleting HAVIPs, within the limits.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use chrono::Utc;
use etcd_client::{Compare, PutOptions, TxnOp};
use havip_schema::guards::{absent, none_newer, unchanged};
use havip_schema::limits::{Limits, MAX_PORTS_PER_VIP};
use havip_schema::records::{
    self, Binding, Claim, HostPort, IdKind, IdempotentCreate, IndexEntry, IpVersion, NetworkType,
    PortVip, Status,
};
use havip_schema::{keys, rules};

use super::{backoff, dedup, lost_race, put, Scope, Store, RETRIES};
use crate::error::{Error, Result};
use crate::model::{BatchDeleteItem, CreateHavip, Havip, UpdateHavip};

/// How long a create's idempotency key answers retries.
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

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

fn new_vip_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("havip-{}", &u[..16])
}

/// The ports of one request: at most what a VIP can hold.
fn check_port_list(ports: &[String]) -> Result<()> {
    if ports.len() > MAX_PORTS_PER_VIP as usize {
        return Err(Error::invalid_argument(format!(
            "{} ports given; a HAVIP holds at most {MAX_PORTS_PER_VIP}",
            ports.len()
        )));
    }
    ports
        .iter()
        .try_for_each(|id| rules::check_id("port", id).map_err(Error::from))
}

/// The bindings a VIP will have, and the compares and writes that get it
/// there.
struct Plan {
    bindings: Vec<Binding>,
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
}

impl Store {
    pub(super) async fn vip_in_scope(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<(records::Vip, i64)> {
        rules::check_id("havip", id)?;
        match self.get::<records::Vip>(&keys::vip(id)).await? {
            Some((v, rev)) if scope.sees(&v.project) => Ok((v, rev)),
            _ => Err(Error::not_found(format!("havip {id} not found"))),
        }
    }

    /// Reads the ports whose bindings change and prepares their writes.
    /// `ports_per_vip` is the limit in effect for `vip`: a change that
    /// binds a port must end within it (a replace too); one that only
    /// unbinds may leave a VIP above a lowered limit.
    async fn plan_bindings(
        &self,
        vip: &records::Vip,
        wanted: &[String],
        limits: &Limits,
        ports_per_vip: u32,
    ) -> Result<Plan> {
        let wanted = dedup(wanted);
        check_port_list(&wanted)?;
        let old: Vec<&str> = vip.ports.iter().map(|b| b.port.as_str()).collect();
        let added: Vec<&String> = wanted
            .iter()
            .filter(|p| !old.contains(&p.as_str()))
            .collect();
        let limit = ports_per_vip.min(MAX_PORTS_PER_VIP);
        if !added.is_empty() && wanted.len() > limit as usize {
            return Err(Error::quota_exceeded(format!(
                "havip {} may have at most {limit} bound ports ({} requested); ask an operator to raise the limit",
                vip.id,
                wanted.len()
            )));
        }
        let removed: Vec<&str> = old
            .iter()
            .filter(|p| !wanted.iter().any(|w| w == *p))
            .copied()
            .collect();
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut new_ports: HashMap<&str, records::Port> = HashMap::new();
        for id in added {
            let key = keys::port(id);
            let port = match self.get::<records::Port>(&key).await? {
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
            if let Some((mut port, rev)) = self.get::<records::Port>(&key).await? {
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
                    datapath_id: port.datapath_id,
                });
            } else if let Some(b) = vip.ports.iter().find(|b| b.port == *id) {
                bindings.push(b.clone());
            }
        }
        Ok(Plan {
            bindings,
            compares,
            ops,
        })
    }

    /// Checks a create request on its own (no store).
    fn check_create(req: &CreateHavip) -> Result<()> {
        rules::check_name(&req.name)?;
        rules::check_description(req.description.as_deref().unwrap_or(""))?;
        if req.network_type == Some(NetworkType::Internet) {
            return Err(Error::invalid_argument(
                "only intranet HAVIPs are served by this controller",
            ));
        }
        rules::check_id("subnet", &req.subnet)?;
        if let Some(vrid) = req.vrid {
            rules::check_vrid(vrid)?;
        }
        if let Some(why) = req.address.as_ref().and_then(rules::vip_address_problem) {
            return Err(Error::address_out_of_range(why));
        }
        check_port_list(&req.ports)
    }

    /// The idempotency key of a create: the `Idempotency-Key` header or the
    /// request's `client_token` (the same if both are given).
    fn idempotency_key(
        project: &str,
        header: Option<&str>,
        req: &CreateHavip,
    ) -> Result<Option<String>> {
        let key = match (header, req.client_token.as_deref()) {
            (Some(h), Some(t)) if h != t => {
                return Err(Error::invalid_argument(
                    "Idempotency-Key and client_token differ; give one",
                ))
            }
            (h, t) => h.or(t),
        };
        key.map(|k| {
            rules::check_id("Idempotency-Key", k)?;
            Ok(keys::idempotency(project, k))
        })
        .transpose()
    }

    /// Creates a HAVIP: reserves the given address (or the lowest free one)
    /// in the subnet and binds `ports`, within the project's and the
    /// subnet's HAVIP quotas. With an idempotency key, a retry answers the
    /// first create's HAVIP (another request under the key is refused).
    pub async fn create_havip(
        &self,
        scope: &Scope,
        req: &CreateHavip,
        idempotency: Option<&str>,
    ) -> Result<Havip> {
        let project = scope.project()?.to_string();
        Self::check_create(req)?;
        let idem_key = Self::idempotency_key(&project, idempotency, req)?;
        let fingerprint = serde_json::to_string(&CreateHavip {
            client_token: None,
            ..req.clone()
        })
        .expect("requests serialize");
        let lease = match idem_key {
            Some(_) => Some(
                self.client
                    .lease_client()
                    .grant(IDEMPOTENCY_TTL_SECS, None)
                    .await?
                    .id(),
            ),
            None => None,
        };
        let hold_down_ms = req
            .hold_down_ms
            .map(rules::check_hold_down)
            .transpose()?
            .unwrap_or(havip_common::vip::DEFAULT_HOLD_DOWN_MS);
        let subnet_key = keys::subnet(&req.subnet);
        let limits_key = keys::project_limits(&project);
        for attempt in 0..RETRIES {
            if let Some(ikey) = &idem_key {
                if let Some((first, _)) = self.get::<IdempotentCreate>(ikey).await? {
                    if first.request != fingerprint {
                        return Err(Error::conflict(
                            "this idempotency key was used for another create request",
                        ));
                    }
                    let (vip, _) = self.vip_in_scope(scope, &first.vip).await?;
                    return self.view(vip, scope).await;
                }
            }
            let (subnet, subnet_rev) = match self.get::<records::Subnet>(&subnet_key).await? {
                Some((s, rev)) if s.project == project => (s, rev),
                _ => return Err(Error::not_found(format!("subnet {} not found", req.subnet))),
            };
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
            let Some(net) = subnet.range(version) else {
                return Err(Error::invalid_argument(format!(
                    "subnet {} has no {} range",
                    subnet.id,
                    version.as_str()
                )));
            };
            let address = match req.address {
                Some(a) => {
                    subnet.check_host_address(&a)?;
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
                    let resp = self
                        .client
                        .kv_client()
                        .get(
                            keys::addrs(&subnet.id),
                            Some(
                                etcd_client::GetOptions::new()
                                    .with_prefix()
                                    .with_keys_only(),
                            ),
                        )
                        .await?;
                    let claimed: HashSet<IpAddr> = resp
                        .kvs()
                        .iter()
                        .filter_map(|kv| match keys::Key::parse(kv.key_str().ok()?)? {
                            keys::Key::Addr { ip, .. } => Some(ip),
                            _ => None,
                        })
                        .collect();
                    subnet.first_free(version, &claimed).ok_or_else(|| {
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
            let project_index = keys::project_vips(&project);
            let subnet_index = keys::subnet_vips(&subnet.id);
            let (in_project, project_index_rev) = self.count(&project_index).await?;
            if in_project >= u64::from(limits.vips_per_project) {
                return Err(Error::quota_exceeded(format!(
                    "project {project} has {in_project} HAVIPs, the most allowed is {}; ask an operator to raise vips_per_project",
                    limits.vips_per_project
                )));
            }
            let (in_subnet, subnet_index_rev) = self.count(&subnet_index).await?;
            if in_subnet >= u64::from(limits.vips_per_subnet) {
                return Err(Error::quota_exceeded(format!(
                    "subnet {} has {in_subnet} HAVIPs, the most allowed is {}; ask an operator to raise vips_per_subnet",
                    subnet.id, limits.vips_per_subnet
                )));
            }
            let mut vip = records::Vip {
                id: new_vip_id(),
                project: project.clone(),
                name: req.name.clone(),
                description: req.description.clone().unwrap_or_default(),
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
                datapath_id: None,
            };
            let taken = self.next_datapath_id(IdKind::Vips).await?;
            vip.datapath_id = Some(taken.id);
            let Plan {
                bindings,
                mut compares,
                mut ops,
            } = self
                .plan_bindings(&vip, &req.ports, &limits, limits.ports_per_vip)
                .await?;
            if !bindings.is_empty() {
                vip.status = Status::Creating;
            }
            vip.ports = bindings;
            let vip_key = keys::vip(&vip.id);
            let addr_key = keys::addr(&subnet.id, &address);
            ops.push(taken.op);
            compares.extend([
                taken.compare,
                absent(&addr_key),
                absent(&vip_key),
                unchanged(&subnet_key, subnet_rev),
                unchanged(&limits_key, limits_rev),
                none_newer(&project_index, project_index_rev),
                none_newer(&subnet_index, subnet_index_rev),
            ]);
            ops.push(put(
                &addr_key,
                &Claim::Vip {
                    id: vip.id.clone(),
                    name: vip.name.clone(),
                },
            ));
            ops.push(put(&vip_key, &vip));
            ops.push(put(&keys::project_vip(&project, &vip.id), &IndexEntry {}));
            ops.push(put(&keys::subnet_vip(&subnet.id, &vip.id), &IndexEntry {}));
            if let (Some(ikey), Some(lease)) = (&idem_key, lease) {
                compares.push(absent(ikey));
                let first = IdempotentCreate {
                    vip: vip.id.clone(),
                    request: fingerprint.clone(),
                };
                ops.push(TxnOp::put(
                    ikey.as_str(),
                    serde_json::to_vec(&first).expect("records serialize"),
                    Some(PutOptions::new().with_lease(lease)),
                ));
            }
            if self.commit(compares, ops).await? {
                log::info!("created {} {} in {}", vip.id, vip.address, vip.subnet);
                return self.view(vip, scope).await;
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
        check_port_list(ports)?;
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
                return self.view(vip, scope).await;
            }
            let limits_key = keys::project_limits(&vip.project);
            let (project_limits, limits_rev) = self.project_limits_rev(&vip.project).await?;
            let limits = self.effective(&project_limits);
            let ports_per_vip = vip.ports_per_vip.unwrap_or(limits.ports_per_vip);
            let Plan {
                bindings,
                mut compares,
                mut ops,
            } = self
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
            ops.push(put(&vip_key, &vip));
            if self.commit(compares, ops).await? {
                return self.view(vip, scope).await;
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
                    vec![put(&vip_key, &vip), put(&addr_key, &claim)],
                )
                .await?
            {
                return self.view(vip, scope).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("update havip"))
    }

    /// Deletes an `available` or `failed` HAVIP: first it becomes `deleting`
    /// and loses its ports (hosts see the VIP leave their ports and
    /// unprogram it), then the record, address claim, index entries, owner
    /// and acks go. A HAVIP left `deleting` by a crash is finished by
    /// deleting it again.
    pub async fn delete_havip(&self, scope: &Scope, id: &str) -> Result<()> {
        let vip_key = keys::vip(id);
        for attempt in 0..RETRIES {
            let (mut vip, rev) = self.vip_in_scope(scope, id).await?;
            match vip.status {
                Status::Creating => {
                    let pending = self.view(vip.clone(), scope).await?.pending_ports;
                    return Err(Error::wrong_state(format!(
                        "havip {id} is creating (waiting for the hosts of ports {}); only available or failed HAVIPs can be deleted",
                        pending.join(", ")
                    )));
                }
                Status::Available | Status::Failed => {
                    if let Some(eip) = self.eip_of_vip(id).await? {
                        return Err(Error::wrong_state(format!(
                            "havip {id} has EIP {} ({}); disassociate it first",
                            eip.eip, eip.address
                        )));
                    }
                    let limits = self.effective(&self.project_limits_rev(&vip.project).await?.0);
                    let Plan {
                        mut compares,
                        mut ops,
                        ..
                    } = self.plan_bindings(&vip, &[], &limits, u32::MAX).await?;
                    vip.ports.clear();
                    vip.generation += 1;
                    vip.status = Status::Deleting;
                    compares.push(unchanged(&vip_key, rev));
                    compares.push(absent(&keys::vip_eip(id)));
                    ops.push(put(&vip_key, &vip));
                    // Success or lost race: read again either way.
                    if !self.commit(compares, ops).await? {
                        backoff(attempt).await;
                    }
                }
                Status::Deleting => {
                    let reports = self.report_keys_of(id).await?;
                    let mut ops = vec![
                        TxnOp::delete(vip_key.as_str(), None),
                        TxnOp::delete(keys::addr(&vip.subnet, &vip.address), None),
                        TxnOp::delete(keys::project_vip(&vip.project, id), None),
                        TxnOp::delete(keys::subnet_vip(&vip.subnet, id), None),
                        Store::delete_history(id),
                    ];
                    ops.extend(reports.into_iter().map(|k| TxnOp::delete(k, None)));
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
}
