//! VPCs and subnets (registered by orchestration with an operator token).

use std::net::IpAddr;

use havip_schema::addresses::{overlap, AddrRange, AddressError};
use havip_schema::guards::{absent, unchanged};
use havip_schema::records::{self, Claim, IdKind, IpVersion};
use havip_schema::{keys, rules};
use ipnet::IpNet;

use super::{backoff, lost_race, put, Scope, Store, RETRIES};
use crate::error::{Error, Result};
use crate::model::{AddressCheck, AddressState, PutSubnet, PutVpc, Subnet, SubnetQuery, Vpc};

fn ranges(s: &records::Subnet) -> impl Iterator<Item = IpNet> {
    s.cidr_v4
        .map(IpNet::V4)
        .into_iter()
        .chain(s.cidr_v6.map(IpNet::V6))
}

impl Store {
    /// Registers or renames a VPC. A VPC never changes project.
    pub async fn put_vpc(&self, id: &str, req: &PutVpc) -> Result<Vpc> {
        rules::check_id("vpc", id)?;
        rules::check_id("project", &req.project)?;
        let key = keys::vpc(id);
        for attempt in 0..RETRIES {
            let existing = self.get::<records::Vpc>(&key).await?;
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
            let vpc = records::Vpc {
                id: id.to_string(),
                project: req.project.clone(),
                name: req.name.clone(),
            };
            if self.commit(vec![guard], vec![put(&key, &vpc)]).await? {
                return Ok(vpc.into());
            }
            backoff(attempt).await;
        }
        Err(lost_race("put vpc"))
    }

    pub async fn get_vpc(&self, scope: &Scope, id: &str) -> Result<Vpc> {
        match self.read::<records::Vpc>(&keys::vpc(id)).await? {
            Some((v, _)) if scope.sees(&v.project) => Ok(v.into()),
            _ => Err(Error::not_found(format!("vpc {id} not found"))),
        }
    }

    /// Registers a subnet, or changes its name, gateways and reserved
    /// ranges. Its VPC and ranges are fixed once registered; its ranges
    /// overlap no other subnet's of the VPC.
    pub async fn put_subnet(&self, id: &str, req: &PutSubnet) -> Result<Subnet> {
        rules::check_id("subnet", id)?;
        rules::check_id("vpc", &req.vpc)?;
        let reserved = req
            .reserved
            .iter()
            .map(|r| r.parse::<AddrRange>())
            .collect::<Result<Vec<_>, _>>()?;
        let key = keys::subnet(id);
        let vpc_key = keys::vpc(&req.vpc);
        for attempt in 0..RETRIES {
            let Some((vpc, vpc_rev)) = self.get::<records::Vpc>(&vpc_key).await? else {
                return Err(Error::not_found(format!("vpc {} not found", req.vpc)));
            };
            let mut subnet = records::Subnet {
                id: id.to_string(),
                vpc: vpc.id.clone(),
                project: vpc.project.clone(),
                name: req.name.clone(),
                cidr_v4: req.cidr_v4,
                cidr_v6: req.cidr_v6,
                gateway_v4: req.gateway_v4,
                gateway_v6: req.gateway_v6,
                reserved: reserved.clone(),
                datapath_id: None,
            };
            if let Some(why) = subnet.problem() {
                return Err(Error::invalid_argument(why));
            }
            let (all, _) = self.list::<records::Subnet>(&keys::subnets()).await?;
            let mut compares = vec![unchanged(&vpc_key, vpc_rev)];
            let mut existing = None;
            for (k, other, rev) in &all {
                if other.id == id {
                    existing = Some((other.clone(), *rev));
                    continue;
                }
                if other.vpc != subnet.vpc {
                    continue;
                }
                compares.push(unchanged(k, *rev));
                for (a, b) in ranges(&subnet).flat_map(|a| ranges(other).map(move |b| (a, b))) {
                    if overlap(&a, &b) {
                        return Err(Error::conflict(format!(
                            "{a} overlaps {b} of subnet {} in vpc {}",
                            other.id, subnet.vpc
                        )));
                    }
                }
            }
            match &existing {
                Some((s, _))
                    if s.vpc != subnet.vpc
                        || s.cidr_v4 != subnet.cidr_v4
                        || s.cidr_v6 != subnet.cidr_v6 =>
                {
                    return Err(Error::conflict(format!(
                        "subnet {id} already exists with another VPC or other ranges"
                    )))
                }
                Some((_, rev)) => compares.push(unchanged(&key, *rev)),
                None => compares.push(absent(&key)),
            }
            let mut ops = Vec::new();
            subnet.datapath_id = match existing.as_ref().and_then(|(s, _)| s.datapath_id) {
                Some(id) => Some(id),
                None => {
                    let taken = self.next_datapath_id(IdKind::Subnets).await?;
                    compares.push(taken.compare);
                    ops.push(taken.op);
                    Some(taken.id)
                }
            };
            // A gateway a port or VIP holds cannot become the gateway.
            for v in [IpVersion::Ipv4, IpVersion::Ipv6] {
                let Some(gw) = subnet.gateway(v) else {
                    continue;
                };
                let ckey = keys::addr(id, &gw);
                if let Some((holder, _)) = self.get::<Claim>(&ckey).await? {
                    return Err(Error::address_in_use(format!(
                        "gateway {gw} is already in use by {holder}"
                    )));
                }
                compares.push(absent(&ckey));
            }
            // Rewriting the VPC makes a racing subnet of the same VPC (whose
            // key this read could not see) lose its compare on the VPC.
            ops.extend([put(&key, &subnet), put(&vpc_key, &vpc)]);
            if self.commit(compares, ops).await? {
                return Ok(subnet.into());
            }
            backoff(attempt).await;
        }
        Err(lost_race("put subnet"))
    }

    pub async fn get_subnet(&self, scope: &Scope, id: &str) -> Result<Subnet> {
        match self.read::<records::Subnet>(&keys::subnet(id)).await? {
            Some((s, _)) if scope.sees(&s.project) => Ok(s.into()),
            _ => Err(Error::not_found(format!("subnet {id} not found"))),
        }
    }

    /// The VPCs the caller sees, by id.
    pub async fn list_vpcs(&self, scope: &Scope) -> Result<Vec<Vpc>> {
        let (vpcs, _) = self.list::<records::Vpc>(&keys::vpcs()).await?;
        let mut out: Vec<Vpc> = vpcs
            .into_iter()
            .map(|(_, v, _)| v)
            .filter(|v| scope.sees(&v.project))
            .map(Vpc::from)
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The subnets the caller sees (of one VPC if asked), by id.
    pub async fn list_subnets(&self, scope: &Scope, q: &SubnetQuery) -> Result<Vec<Subnet>> {
        let (subnets, _) = self.list::<records::Subnet>(&keys::subnets()).await?;
        let mut out: Vec<Subnet> = subnets
            .into_iter()
            .map(|(_, s, _)| s)
            .filter(|s| scope.sees(&s.project))
            .filter(|s| q.vpc.as_ref().is_none_or(|v| *v == s.vpc))
            .map(Subnet::from)
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Whether a HAVIP could be created at `address` in subnet `id` now
    /// (the create's own checks, read-only).
    pub async fn check_address(
        &self,
        scope: &Scope,
        id: &str,
        address: IpAddr,
    ) -> Result<AddressCheck> {
        rules::check_id("subnet", id)?;
        let subnet = match self.read::<records::Subnet>(&keys::subnet(id)).await? {
            Some((s, _)) if scope.sees(&s.project) => s,
            _ => return Err(Error::not_found(format!("subnet {id} not found"))),
        };
        let not_free = |state, message: String| AddressCheck {
            subnet: id.to_string(),
            address,
            state,
            message: Some(message),
        };
        if let Some(why) = rules::vip_address_problem(&address) {
            return Ok(not_free(AddressState::OutOfRange, why));
        }
        match subnet.check_host_address(&address) {
            Err(AddressError::OutOfRange(why)) => {
                return Ok(not_free(AddressState::OutOfRange, why))
            }
            Err(AddressError::Reserved(why)) => return Ok(not_free(AddressState::Reserved, why)),
            Ok(()) => {}
        }
        if let Some((holder, _)) = self.get::<Claim>(&keys::addr(id, &address)).await? {
            return Ok(not_free(
                AddressState::InUse,
                format!("{address} is already in use by {holder}"),
            ));
        }
        Ok(AddressCheck {
            subnet: id.to_string(),
            address,
            state: AddressState::Free,
            message: None,
        })
    }
}
