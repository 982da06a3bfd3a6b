//! What the API answers: views of the stored records (`havip_schema`),
//! with the fields computed on read and the OpenAPI schemas. A tenant's
//! view names no hypervisor host and no host interface; an operator's does.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use havip_schema::limits::Limits;
use havip_schema::records::{self, Ack, AckResult, IpVersion, NetworkType, Status};
use havip_schema::Mac;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

use crate::error::Error;
use crate::store::Scope;

/// A VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vpc {
    pub id: String,
    pub project: String,
    #[serde(default)]
    pub name: String,
}

impl From<records::Vpc> for Vpc {
    fn from(v: records::Vpc) -> Self {
        Vpc {
            id: v.id,
            project: v.project,
            name: v.name,
        }
    }
}

/// A subnet of a VPC with an IPv4 and/or an IPv6 range, its gateways and
/// the addresses no HAVIP gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subnet {
    pub id: String,
    pub vpc: String,
    pub project: String,
    #[serde(default)]
    pub name: String,
    #[schema(value_type = Option<String>, example = "10.0.6.0/24")]
    pub cidr_v4: Option<Ipv4Net>,
    #[schema(value_type = Option<String>, example = "fd00:6::/64")]
    pub cidr_v6: Option<Ipv6Net>,
    /// The IPv4 gateway in effect (the first host address unless named).
    #[schema(value_type = Option<String>, example = "10.0.6.1")]
    #[serde(default)]
    pub gateway_v4: Option<Ipv4Addr>,
    #[schema(value_type = Option<String>, example = "fd00:6::1")]
    #[serde(default)]
    pub gateway_v6: Option<Ipv6Addr>,
    /// Ranges the operator keeps out of allocation (`first-last` or one
    /// address).
    #[schema(value_type = Vec<String>, example = json!(["10.0.6.2-10.0.6.9"]))]
    #[serde(default)]
    pub reserved: Vec<String>,
}

impl From<records::Subnet> for Subnet {
    fn from(s: records::Subnet) -> Self {
        let gw = |v| s.gateway(v);
        Subnet {
            gateway_v4: match gw(IpVersion::Ipv4) {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            },
            gateway_v6: match gw(IpVersion::Ipv6) {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            },
            reserved: s.reserved.iter().map(ToString::to_string).collect(),
            id: s.id,
            vpc: s.vpc,
            project: s.project,
            name: s.name,
            cidr_v4: s.cidr_v4,
            cidr_v6: s.cidr_v6,
        }
    }
}

/// A HAVIP as a port sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortVip {
    pub id: String,
    #[schema(value_type = String, example = "10.0.6.19")]
    pub address: IpAddr,
}

/// A VM's network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Port {
    pub id: String,
    pub project: String,
    pub vm: String,
    pub vpc: String,
    pub subnet: String,
    #[schema(value_type = String, example = "52:54:00:12:34:56")]
    pub mac: Mac,
    #[schema(value_type = Vec<String>)]
    pub fixed_ips: Vec<IpAddr>,
    /// The hypervisor host the port lives on (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The port's interface on that host (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// HAVIPs bound to this port.
    #[serde(default)]
    pub vips: Vec<PortVip>,
    /// Operator override of the VIPs-per-port limit for this port.
    #[serde(default)]
    pub vips_per_port: Option<u32>,
    /// VLAN ids the VM may send tagged frames into.
    #[serde(default)]
    pub vlans: Vec<u16>,
    /// IPv6 link-locals the VM may use besides the EUI-64 of its MAC.
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub link_locals: Vec<Ipv6Addr>,
}

impl Port {
    pub fn view(p: records::Port, scope: &Scope) -> Self {
        let operator = *scope == Scope::Operator;
        Port {
            host: operator.then_some(p.host),
            interface: operator.then_some(p.interface),
            id: p.id,
            project: p.project,
            vm: p.vm,
            vpc: p.vpc,
            subnet: p.subnet,
            mac: p.mac,
            fixed_ips: p.fixed_ips,
            vips: p
                .vips
                .into_iter()
                .map(|v| PortVip {
                    id: v.id,
                    address: v.address,
                })
                .collect(),
            vips_per_port: p.vips_per_port,
            vlans: p.vlans,
            link_locals: p.link_locals,
        }
    }
}

/// A port bound to a HAVIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Binding {
    pub port: String,
    pub vm: String,
    /// Its hypervisor host (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The port currently answering for a VIP, as the host agents report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Owner {
    pub port: String,
    /// Its hypervisor host (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub since: DateTime<Utc>,
    /// Set while two bound ports claim the VIP within its hold-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain: Option<SplitBrain>,
}

/// A split brain: bound ports that claimed a VIP within its hold-down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SplitBrain {
    /// The ports claiming the VIP, the owner first.
    pub ports: Vec<String>,
    /// The port whose claim waits for the end of the hold-down, if any.
    #[serde(default)]
    pub pending: Option<String>,
}

fn status_schema() -> utoipa::openapi::Object {
    string_enum(Status::ALL.map(Status::as_str).to_vec())
}
fn network_type_schema() -> utoipa::openapi::Object {
    string_enum(vec!["intranet", "internet"])
}
fn ip_version_schema() -> utoipa::openapi::Object {
    string_enum(vec!["ipv4", "ipv6"])
}
pub(crate) fn string_enum(values: Vec<&str>) -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

/// A high-availability virtual IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Havip {
    pub id: String,
    pub project: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(schema_with = network_type_schema)]
    pub network_type: NetworkType,
    pub vpc: String,
    pub subnet: String,
    #[schema(schema_with = ip_version_schema)]
    pub ip_version: IpVersion,
    #[schema(value_type = String, example = "10.0.6.19")]
    pub address: IpAddr,
    /// Bound ports, in binding order.
    pub ports: Vec<Binding>,
    /// `creating`, `available`, `failed` or `deleting`.
    #[schema(schema_with = status_schema)]
    pub status: Status,
    /// Why the VIP is `failed` (per bound port).
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Bumped on every change of the bound ports; hosts acknowledge a
    /// generation.
    pub generation: u64,
    /// Operator override of the ports-per-VIP limit for this VIP.
    #[serde(default)]
    pub ports_per_vip: Option<u32>,
    /// The VRRP virtual router id (1-255) of the HA software that holds
    /// it, when it sends from virtual MACs (keepalived's `use_vmac`).
    #[serde(default)]
    pub vrid: Option<u8>,
    /// Split-brain damping: a claim by another bound port within this many
    /// milliseconds of the last owner change waits for its end. 0: none.
    pub hold_down_ms: u32,
    pub created_at: DateTime<Utc>,
    /// Bound ports whose hosts have not acknowledged `generation` yet.
    #[serde(default)]
    pub pending_ports: Vec<String>,
    /// Their hosts (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_hosts: Option<Vec<String>>,
    /// The current master.
    #[serde(default)]
    pub master: Option<Owner>,
    /// The EIP associated with it, if any.
    #[serde(default)]
    pub eip: Option<HavipEip>,
}

/// The EIP of a HAVIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HavipEip {
    pub id: String,
    #[schema(value_type = String, example = "198.51.100.19")]
    pub address: IpAddr,
}

impl Havip {
    /// The view of `vip` for `scope`, given the acks of its hosts and its
    /// owner record.
    pub fn view(
        vip: records::Vip,
        acks: &HashMap<String, Ack>,
        owner: Option<records::Owner>,
        scope: &Scope,
    ) -> Self {
        let operator = *scope == Scope::Operator;
        let acked = |host: &str| {
            acks.get(host).is_some_and(|a| {
                a.generation == vip.generation && a.result == AckResult::Programmed
            })
        };
        let pending: Vec<&records::Binding> =
            vip.ports.iter().filter(|b| !acked(&b.host)).collect();
        let pending_ports = pending.iter().map(|b| b.port.clone()).collect();
        let mut pending_hosts: Vec<String> = pending.iter().map(|b| b.host.clone()).collect();
        pending_hosts.sort();
        pending_hosts.dedup();
        Havip {
            pending_ports,
            pending_hosts: operator.then_some(pending_hosts),
            master: owner.map(|o| Owner {
                port: o.port,
                host: operator.then_some(o.host),
                since: o.since,
                split_brain: o.split_brain.map(|s| SplitBrain {
                    ports: s.ports,
                    pending: s.pending,
                }),
            }),
            ports: vip
                .ports
                .into_iter()
                .map(|b| Binding {
                    port: b.port,
                    vm: b.vm,
                    host: operator.then_some(b.host),
                })
                .collect(),
            id: vip.id,
            project: vip.project,
            name: vip.name,
            description: vip.description,
            network_type: vip.network_type,
            vpc: vip.vpc,
            subnet: vip.subnet,
            ip_version: vip.ip_version,
            address: vip.address,
            status: vip.status,
            status_reason: vip.status_reason,
            generation: vip.generation,
            ports_per_vip: vip.ports_per_vip,
            vrid: vip.vrid,
            hold_down_ms: vip.hold_down_ms,
            created_at: vip.created_at,
            eip: None,
        }
    }
}

/// Limits in effect for a project (defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EffectiveLimits {
    pub ports_per_vip: u32,
    pub vips_per_port: u32,
    pub vips_per_project: u32,
    pub vips_per_subnet: u32,
}

impl From<Limits> for EffectiveLimits {
    fn from(l: Limits) -> Self {
        EffectiveLimits {
            ports_per_vip: l.ports_per_vip,
            vips_per_port: l.vips_per_port,
            vips_per_project: l.vips_per_project,
            vips_per_subnet: l.vips_per_subnet,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchDeleteItem {
    pub id: String,
    pub deleted: bool,
    #[serde(default)]
    pub error: Option<Error>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchDeleteResult {
    pub results: Vec<BatchDeleteItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HavipPage {
    pub items: Vec<Havip>,
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

/// A stored record that cannot be read or breaks the schema's rules.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CorruptRecord {
    pub key: String,
    pub problem: String,
}

/// Every corrupt record in etcd (operators), and how many reads skipped
/// one since this controller started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CorruptRecords {
    pub records: Vec<CorruptRecord>,
    pub skipped_reads: u64,
}

/// What a given address of a subnet would be for a new HAVIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddressState {
    /// A HAVIP can be created at it now.
    Free,
    /// A port or another HAVIP holds it.
    InUse,
    /// Not inside the subnet's range of its family, or not a unicast
    /// address.
    OutOfRange,
    /// The gateway, the network or broadcast address, or a range the
    /// operator reserved.
    Reserved,
}

/// The answer of an address check (read-only; a create can still race).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddressCheck {
    pub subnet: String,
    #[schema(value_type = String, example = "10.0.6.19")]
    pub address: IpAddr,
    pub state: AddressState,
    /// Why it is not free, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
