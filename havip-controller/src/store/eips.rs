//! EIP pools (operator) and the EIPs of a project: allocating a public
//! address of a pool, associating it with a HAVIP of the project,
//! disassociating, releasing; within the project's EIP quota.
//!
//! An address is one EIP's by its claim key (`eip-addrs/<pool>/<ip>`,
//! created only where absent), a HAVIP has at most one EIP by its
//! `vip-eips/<vip>` key; every change is one transaction guarded like the
//! HAVIPs' ([`super`]).

use std::collections::HashSet;
use std::net::IpAddr;

use chrono::Utc;
use etcd_client::{GetOptions, TxnOp};
use havip_schema::eips;
use havip_schema::guards::{absent, none_newer, unchanged};
use havip_schema::limits::{self, DEFAULT_EIPS_PER_PROJECT};
use havip_schema::records::{self, EipClaim, EipVip, IndexEntry, IpVersion, Status, VipEip};
use havip_schema::{keys, rules};

use super::{backoff, lost_race, put, Scope, Store, RETRIES};
use crate::eip_model::{
    AllocateEip, CreateEipPool, EffectiveEipLimits, Eip, EipLimits, EipPool, EipQuery,
};
use crate::error::{Error, Result};

fn new_eip_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("eip-{}", &u[..16])
}

impl Store {
    // ---- pools (operator) ----

    /// Creates a pool; the same pool again answers it, another one under
    /// its id is a conflict.
    pub async fn create_eip_pool(&self, req: &CreateEipPool) -> Result<EipPool> {
        rules::check_id("pool", &req.id)?;
        rules::check_id("gateway", &req.gateway)?;
        let description = req.description.clone().unwrap_or_default();
        rules::check_description(&description)?;
        let ranges = req
            .ranges
            .iter()
            .map(|r| eips::parse_range(r))
            .collect::<Result<Vec<_>, _>>()?;
        let pool = records::EipPool {
            id: req.id.clone(),
            description,
            gateway: req.gateway.clone(),
            ranges,
            created_at: Utc::now(),
        };
        if let Some(why) = pool.problem() {
            return Err(Error::invalid_argument(format!("pool {}: {why}", req.id)));
        }
        let key = keys::eip_pool(&req.id);
        if !self
            .commit(vec![absent(&key)], vec![put(&key, &pool)])
            .await?
        {
            let existing = self.get_eip_pool(&req.id).await?;
            if existing.gateway == pool.gateway
                && existing.ranges
                    == pool
                        .ranges
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
            {
                return Ok(existing);
            }
            return Err(Error::conflict(format!(
                "pool {} exists with other ranges or another gateway; delete it first",
                req.id
            )));
        }
        log::info!("created EIP pool {} (gateway {})", pool.id, pool.gateway);
        Ok(EipPool::view(pool, 0))
    }

    async fn pool_allocated(&self, pool: &str) -> Result<(u64, i64)> {
        self.count(&keys::eip_addrs(pool)).await
    }

    pub async fn get_eip_pool(&self, id: &str) -> Result<EipPool> {
        rules::check_id("pool", id)?;
        let Some((pool, _)) = self.get::<records::EipPool>(&keys::eip_pool(id)).await? else {
            return Err(Error::not_found(format!("EIP pool {id} not found")));
        };
        Ok(EipPool::view(pool, self.pool_allocated(id).await?.0))
    }

    /// Every pool (any token: tenants choose a pool to allocate from).
    pub async fn list_eip_pools(&self) -> Result<Vec<EipPool>> {
        let (pools, _) = self.list::<records::EipPool>(&keys::eip_pools()).await?;
        let mut out = Vec::with_capacity(pools.len());
        for (_, p, _) in pools {
            let allocated = self.pool_allocated(&p.id).await?.0;
            out.push(EipPool::view(p, allocated));
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Deletes a pool none of whose addresses is allocated.
    pub async fn delete_eip_pool(&self, id: &str) -> Result<()> {
        rules::check_id("pool", id)?;
        let key = keys::eip_pool(id);
        for attempt in 0..RETRIES {
            let Some((_, rev)) = self.get::<records::EipPool>(&key).await? else {
                return Err(Error::not_found(format!("EIP pool {id} not found")));
            };
            let (allocated, at) = self.pool_allocated(id).await?;
            if allocated > 0 {
                return Err(Error::wrong_state(format!(
                    "EIP pool {id} has {allocated} allocated EIPs; they must be released first"
                )));
            }
            let compares = vec![unchanged(&key, rev), none_newer(&keys::eip_addrs(id), at)];
            if self
                .commit(compares, vec![TxnOp::delete(key.as_str(), None)])
                .await?
            {
                log::info!("deleted EIP pool {id}");
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(lost_race("delete EIP pool"))
    }

    // ---- quota ----

    async fn eip_limits_rev(&self, project: &str) -> Result<(records::EipLimits, i64)> {
        Ok(self
            .read::<records::EipLimits>(&keys::eip_limits(project))
            .await?
            .unwrap_or_default())
    }

    pub async fn get_eip_limits(&self, scope: &Scope, project: &str) -> Result<EffectiveEipLimits> {
        if !scope.sees(project) {
            return Err(Error::not_found(format!("project {project} not found")));
        }
        rules::check_id("project", project)?;
        let (l, _) = self.eip_limits_rev(project).await?;
        Ok(EffectiveEipLimits {
            eips_per_project: l.eips_per_project.unwrap_or(DEFAULT_EIPS_PER_PROJECT),
            eips: self.count(&keys::project_eips(project)).await?.0,
        })
    }

    /// Operator: a project's EIP quota. Lowering it keeps the EIPs
    /// allocated and refuses new ones above it.
    pub async fn set_eip_limits(
        &self,
        project: &str,
        req: &EipLimits,
    ) -> Result<EffectiveEipLimits> {
        rules::check_id("project", project)?;
        limits::check("eips_per_project", req.eips_per_project)?;
        let stored = records::EipLimits {
            eips_per_project: req.eips_per_project,
        };
        self.client
            .kv_client()
            .put(
                keys::eip_limits(project),
                serde_json::to_vec(&stored).expect("limits serialize"),
                None,
            )
            .await?;
        self.get_eip_limits(&Scope::Operator, project).await
    }

    // ---- EIPs (tenants) ----

    async fn eip_in_scope(&self, scope: &Scope, id: &str) -> Result<(records::Eip, i64)> {
        rules::check_id("eip", id)?;
        match self.get::<records::Eip>(&keys::eip(id)).await? {
            Some((e, rev)) if scope.sees(&e.project) => Ok((e, rev)),
            _ => Err(Error::not_found(format!("EIP {id} not found"))),
        }
    }

    async fn eip_view(&self, eip: records::Eip, scope: &Scope) -> Result<Eip> {
        let owner = match &eip.havip {
            Some(v) => match self.read::<records::Vip>(&keys::vip(&v.id)).await? {
                Some((vip, _)) => self.reports_of(&vip).await?.owner(&vip.id),
                None => None,
            },
            None => None,
        };
        Ok(Eip::view(eip, owner, scope))
    }

    /// Allocates an EIP from a pool: the given address or the lowest free
    /// one, within the project's EIP quota.
    pub async fn allocate_eip(&self, scope: &Scope, req: &AllocateEip) -> Result<Eip> {
        let project = scope.project()?.to_string();
        rules::check_id("pool", &req.pool)?;
        let name = req.name.clone().unwrap_or_default();
        if !name.is_empty() {
            rules::check_name(&name)?;
        }
        let pool_key = keys::eip_pool(&req.pool);
        let limits_key = keys::eip_limits(&project);
        let index = keys::project_eips(&project);
        for attempt in 0..RETRIES {
            let Some((pool, pool_rev)) = self.get::<records::EipPool>(&pool_key).await? else {
                return Err(Error::not_found(format!("EIP pool {} not found", req.pool)));
            };
            let version = match (req.ip_version, req.address) {
                (Some(v), Some(a)) if v != IpVersion::of(&a) => {
                    return Err(Error::ip_version_mismatch(format!(
                        "address {a} is not an {} address",
                        v.as_str()
                    )))
                }
                (Some(v), _) => v,
                (None, Some(a)) => IpVersion::of(&a),
                (None, None) if eips::serves(&pool, IpVersion::Ipv4) => IpVersion::Ipv4,
                (None, None) => IpVersion::Ipv6,
            };
            if !eips::serves(&pool, version) {
                return Err(Error::ip_version_mismatch(format!(
                    "EIP pool {} has no {} addresses",
                    pool.id,
                    version.as_str()
                )));
            }
            let address = match req.address {
                Some(a) => {
                    if !eips::contains(&pool, &a) {
                        return Err(Error::address_out_of_range(format!(
                            "{a} is not an address of EIP pool {}",
                            pool.id
                        )));
                    }
                    if let Some((holder, _)) =
                        self.read::<EipClaim>(&keys::eip_addr(&pool.id, &a)).await?
                    {
                        let who = if holder.project == project {
                            format!("EIP {}", holder.eip)
                        } else {
                            "another project".to_string()
                        };
                        return Err(Error::address_in_use(format!(
                            "{a} is already allocated to {who}"
                        )));
                    }
                    a
                }
                None => {
                    let claimed = self.pool_claims(&pool.id).await?;
                    eips::first_free(&pool, version, &claimed).ok_or_else(|| {
                        Error::pool_exhausted(format!(
                            "EIP pool {} has no free {} address left",
                            pool.id,
                            version.as_str()
                        ))
                    })?
                }
            };
            let (limits, limits_rev) = self.eip_limits_rev(&project).await?;
            let quota = limits.eips_per_project.unwrap_or(DEFAULT_EIPS_PER_PROJECT);
            let (held, index_rev) = self.count(&index).await?;
            if held >= u64::from(quota) {
                return Err(Error::quota_exceeded(format!(
                    "project {project} has {held} EIPs, the most allowed is {quota}; ask an operator to raise eips_per_project"
                )));
            }
            let eip = records::Eip {
                id: new_eip_id(),
                project: project.clone(),
                name: name.clone(),
                pool: pool.id.clone(),
                gateway: pool.gateway.clone(),
                ip_version: version,
                address,
                status: Status::Available,
                status_reason: None,
                havip: None,
                created_at: Utc::now(),
            };
            let eip_key = keys::eip(&eip.id);
            let addr_key = keys::eip_addr(&pool.id, &address);
            let compares = vec![
                absent(&addr_key),
                absent(&eip_key),
                unchanged(&pool_key, pool_rev),
                unchanged(&limits_key, limits_rev),
                none_newer(&index, index_rev),
            ];
            let ops = vec![
                put(
                    &addr_key,
                    &EipClaim {
                        eip: eip.id.clone(),
                        project: project.clone(),
                    },
                ),
                put(&eip_key, &eip),
                put(&keys::project_eip(&project, &eip.id), &IndexEntry {}),
            ];
            if self.commit(compares, ops).await? {
                log::info!("allocated {} {} from {}", eip.id, eip.address, pool.id);
                return self.eip_view(eip, scope).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("allocate EIP"))
    }

    /// The addresses of a pool that are allocated.
    async fn pool_claims(&self, pool: &str) -> Result<HashSet<IpAddr>> {
        let resp = self
            .client
            .kv_client()
            .get(
                keys::eip_addrs(pool),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| match keys::Key::parse(kv.key_str().ok()?)? {
                keys::Key::EipAddr { ip, .. } => Some(ip),
                _ => None,
            })
            .collect())
    }

    pub async fn get_eip(&self, scope: &Scope, id: &str) -> Result<Eip> {
        let (eip, _) = self.eip_in_scope(scope, id).await?;
        self.eip_view(eip, scope).await
    }

    /// The EIPs in scope (an operator: every project's), newest first.
    pub async fn list_eips(&self, scope: &Scope, q: &EipQuery) -> Result<Vec<Eip>> {
        let (eips, _) = self.list::<records::Eip>(&keys::eips()).await?;
        let (mut reports, _) = self.all_reports().await?;
        let mut out: Vec<Eip> = eips
            .into_iter()
            .map(|(_, e, _)| e)
            .filter(|e| scope.sees(&e.project))
            .filter(|e| q.pool.as_ref().is_none_or(|p| *p == e.pool))
            .filter(|e| {
                q.havip
                    .as_ref()
                    .is_none_or(|h| e.havip.as_ref().is_some_and(|v| v.id == *h))
            })
            .map(|e| {
                let owner = e.havip.as_ref().and_then(|v| reports.owner(&v.id));
                Eip::view(e, owner, scope)
            })
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Associates an EIP with a HAVIP of its project and IP version: one
    /// EIP per HAVIP and one HAVIP per EIP (associating the same pair
    /// again answers it).
    pub async fn associate_eip(&self, scope: &Scope, id: &str, havip: &str) -> Result<Eip> {
        let vip_eip_key = keys::vip_eip(havip);
        for attempt in 0..RETRIES {
            let (mut eip, rev) = self.eip_in_scope(scope, id).await?;
            if eip.status != Status::Available {
                return Err(Error::wrong_state(format!(
                    "EIP {id} is {}; only an available EIP can be associated",
                    eip.status.as_str()
                )));
            }
            match &eip.havip {
                Some(v) if v.id == havip => return self.eip_view(eip, scope).await,
                Some(v) => {
                    return Err(Error::already_associated(format!(
                        "EIP {id} is associated with HAVIP {}; disassociate it first",
                        v.id
                    )))
                }
                None => {}
            }
            // Another project's HAVIP is not found, as in every HAVIP call.
            let (vip, vip_rev) = self
                .vip_in_scope(&Scope::Project(eip.project.clone()), havip)
                .await?;
            if vip.status == Status::Deleting {
                return Err(Error::wrong_state(format!(
                    "HAVIP {havip} is being deleted"
                )));
            }
            if vip.ip_version != eip.ip_version {
                return Err(Error::ip_version_mismatch(format!(
                    "EIP {id} is {} ({}), HAVIP {havip} is {} ({})",
                    eip.ip_version.as_str(),
                    eip.address,
                    vip.ip_version.as_str(),
                    vip.address
                )));
            }
            if let Some((other, _)) = self.read::<VipEip>(&vip_eip_key).await? {
                return Err(Error::already_associated(format!(
                    "HAVIP {havip} has EIP {} ({}) already; one EIP per HAVIP",
                    other.eip, other.address
                )));
            }
            let network = self
                .read::<records::Subnet>(&keys::subnet(&vip.subnet))
                .await?
                .and_then(|(s, _)| s.datapath_id);
            eip.havip = Some(EipVip {
                id: vip.id.clone(),
                address: vip.address,
                subnet: vip.subnet.clone(),
                network,
            });
            let eip_key = keys::eip(id);
            let compares = vec![
                unchanged(&eip_key, rev),
                unchanged(&keys::vip(havip), vip_rev),
                absent(&vip_eip_key),
            ];
            let ops = vec![
                put(&eip_key, &eip),
                put(
                    &vip_eip_key,
                    &VipEip {
                        eip: id.to_string(),
                        address: eip.address,
                    },
                ),
            ];
            if self.commit(compares, ops).await? {
                log::info!(
                    "associated {id} {} with {havip} {}",
                    eip.address,
                    vip.address
                );
                return self.eip_view(eip, scope).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("associate EIP"))
    }

    /// Disassociates an EIP from its HAVIP: its gateway stops translating
    /// it (and drops its traffic, counted).
    pub async fn disassociate_eip(&self, scope: &Scope, id: &str) -> Result<Eip> {
        let eip_key = keys::eip(id);
        for attempt in 0..RETRIES {
            let (mut eip, rev) = self.eip_in_scope(scope, id).await?;
            let Some(vip) = eip.havip.take() else {
                return Err(Error::wrong_state(format!("EIP {id} is not associated")));
            };
            let ops = vec![
                put(&eip_key, &eip),
                TxnOp::delete(keys::vip_eip(&vip.id), None),
            ];
            if self.commit(vec![unchanged(&eip_key, rev)], ops).await? {
                log::info!("disassociated {id} from {}", vip.id);
                return self.eip_view(eip, scope).await;
            }
            backoff(attempt).await;
        }
        Err(lost_race("disassociate EIP"))
    }

    /// Releases an EIP: its address goes back to the pool. An associated
    /// EIP is refused (disassociate first), so no release cuts a HAVIP's
    /// internet access as a side effect.
    pub async fn release_eip(&self, scope: &Scope, id: &str) -> Result<()> {
        let eip_key = keys::eip(id);
        for attempt in 0..RETRIES {
            let (eip, rev) = self.eip_in_scope(scope, id).await?;
            if let Some(v) = &eip.havip {
                return Err(Error::wrong_state(format!(
                    "EIP {id} is associated with HAVIP {}; disassociate it first",
                    v.id
                )));
            }
            let ops = vec![
                TxnOp::delete(eip_key.as_str(), None),
                TxnOp::delete(keys::eip_addr(&eip.pool, &eip.address), None),
                TxnOp::delete(keys::project_eip(&eip.project, id), None),
            ];
            if self.commit(vec![unchanged(&eip_key, rev)], ops).await? {
                log::info!("released {id} {}", eip.address);
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(lost_race("release EIP"))
    }

    /// The EIP associated with HAVIP `vip`, if any (for its view).
    pub(super) async fn eip_of_vip(&self, vip: &str) -> Result<Option<VipEip>> {
        Ok(self
            .read::<VipEip>(&keys::vip_eip(vip))
            .await?
            .map(|(e, _)| e))
    }
}
