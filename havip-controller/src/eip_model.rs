//! What the EIP API answers and takes: pools of public addresses
//! (operator) and the EIPs of a project, with their OpenAPI schemas.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use havip_schema::records::{self, IpVersion, Status};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::Scope;
use crate::views::{string_enum, Owner};

fn status_schema() -> utoipa::openapi::Object {
    string_enum(Status::ALL.map(Status::as_str).to_vec())
}
fn ip_version_schema() -> utoipa::openapi::Object {
    string_enum(vec!["ipv4", "ipv6"])
}

/// An operator's new pool: public addresses served by one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEipPool {
    /// 1-128 of A-Z a-z 0-9 . _ - :
    pub id: String,
    /// The name of the gateway that serves these addresses (its
    /// `havip-agent gateway run --gateway NAME`).
    pub gateway: String,
    /// CIDRs (their host addresses), `first-last` ranges or single
    /// addresses; IPv4 and/or IPv6; 1 to 64.
    #[schema(example = json!(["198.51.100.0/28", "2001:db8:100::/120"]))]
    pub ranges: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A pool of public addresses and how many of them are allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EipPool {
    pub id: String,
    pub description: String,
    pub gateway: String,
    /// `first-last` or one address each.
    pub ranges: Vec<String>,
    /// Addresses in the pool (IPv6 ranges may be huge: saturated).
    pub size: u64,
    /// EIPs allocated from it.
    pub allocated: u64,
    pub created_at: DateTime<Utc>,
}

impl EipPool {
    pub fn view(p: records::EipPool, allocated: u64) -> Self {
        let size = p
            .ranges
            .iter()
            .map(|r| {
                let n = |ip: &IpAddr| match ip {
                    IpAddr::V4(a) => u128::from(u32::from(*a)),
                    IpAddr::V6(a) => u128::from(*a),
                };
                u64::try_from(n(&r.last) - n(&r.first) + 1).unwrap_or(u64::MAX)
            })
            .fold(0u64, u64::saturating_add);
        EipPool {
            id: p.id,
            description: p.description,
            gateway: p.gateway,
            ranges: p.ranges.iter().map(ToString::to_string).collect(),
            size,
            allocated,
            created_at: p.created_at,
        }
    }
}

/// A tenant's new EIP: from a pool, at a given address or the lowest free
/// one of `ip_version` (default: IPv4 if the pool has IPv4 addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateEip {
    pub pool: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "198.51.100.19")]
    pub address: Option<IpAddr>,
    #[serde(default)]
    #[schema(schema_with = ip_version_schema)]
    pub ip_version: Option<IpVersion>,
}

/// Associate an EIP with a HAVIP of the same project and IP version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssociateEip {
    pub havip: String,
}

/// The HAVIP an EIP is associated with, and its current master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EipAssociation {
    pub havip: String,
    #[schema(value_type = String, example = "10.0.6.19")]
    pub address: IpAddr,
    pub subnet: String,
    /// The HAVIP's current master: where the gateway sends the EIP's
    /// traffic.
    #[serde(default)]
    pub master: Option<Owner>,
}

/// An EIP (elastic public address) of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Eip {
    pub id: String,
    pub project: String,
    pub name: String,
    pub pool: String,
    /// The gateway that serves it.
    pub gateway: String,
    #[schema(schema_with = ip_version_schema)]
    pub ip_version: IpVersion,
    #[schema(value_type = String, example = "198.51.100.19")]
    pub address: IpAddr,
    /// `available` once allocated (no host programs an EIP before it is
    /// associated); `deleting` while being released.
    #[schema(schema_with = status_schema)]
    pub status: Status,
    #[serde(default)]
    pub status_reason: Option<String>,
    /// The associated HAVIP, if any.
    #[serde(default)]
    pub association: Option<EipAssociation>,
    pub created_at: DateTime<Utc>,
}

impl Eip {
    /// The view of `eip` for `scope`, with its HAVIP's owner record.
    pub fn view(eip: records::Eip, owner: Option<records::Owner>, scope: &Scope) -> Self {
        let operator = *scope == Scope::Operator;
        Eip {
            association: eip.havip.map(|v| EipAssociation {
                havip: v.id,
                address: v.address,
                subnet: v.subnet,
                master: owner.map(|o| Owner {
                    port: o.port,
                    host: operator.then_some(o.host),
                    since: o.since,
                    split_brain: None,
                }),
            }),
            id: eip.id,
            project: eip.project,
            name: eip.name,
            pool: eip.pool,
            gateway: eip.gateway,
            ip_version: eip.ip_version,
            address: eip.address,
            status: eip.status,
            status_reason: eip.status_reason,
            created_at: eip.created_at,
        }
    }
}

/// EIP list filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EipQuery {
    pub pool: Option<String>,
    /// Only the EIP associated with this HAVIP.
    pub havip: Option<String>,
}

/// A project's EIP quota (operator); `null`: the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EipLimits {
    #[serde(default)]
    pub eips_per_project: Option<u32>,
}

/// A project's EIP quota in effect, and its EIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EffectiveEipLimits {
    pub eips_per_project: u32,
    pub eips: u64,
}
