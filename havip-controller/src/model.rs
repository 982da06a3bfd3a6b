//! Resources as stored in etcd and answered by the API, and the request
//! bodies that change them.

use std::net::{IpAddr, Ipv6Addr};

use chrono::{DateTime, Utc};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::Error;

/// A VPC. Registered by compute orchestration (operator token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vpc {
    pub id: String,
    pub project: String,
    #[serde(default)]
    pub name: String,
}

/// A subnet of a VPC with an IPv4 and/or an IPv6 range.
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
}

/// A HAVIP as a port sees it: enough for the host agent to program it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortVip {
    pub id: String,
    #[schema(value_type = String, example = "10.0.6.19")]
    pub address: IpAddr,
}

/// A VM's network interface on a hypervisor host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Port {
    pub id: String,
    pub project: String,
    pub vm: String,
    pub vpc: String,
    pub subnet: String,
    #[schema(example = "52:54:00:12:34:56")]
    pub mac: String,
    #[schema(value_type = Vec<String>)]
    pub fixed_ips: Vec<IpAddr>,
    /// The hypervisor host the port lives on.
    pub host: String,
    /// The port's interface name on that host (e.g. the tap device).
    pub interface: String,
    /// HAVIPs bound to this port.
    #[serde(default)]
    pub vips: Vec<PortVip>,
    /// Operator override of the VIPs-per-port limit for this port.
    #[serde(default)]
    pub vips_per_port: Option<u32>,
    /// VLAN ids the VM may send tagged frames into (at most 8, each 1 to
    /// 4094); untagged and priority-tagged frames need none.
    #[serde(default)]
    pub vlans: Vec<u16>,
    /// IPv6 link-locals the VM may use besides the EUI-64 of its MAC (at
    /// most 8, each in fe80::/10), claimed in the subnet like its fixed IPs.
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub link_locals: Vec<Ipv6Addr>,
}

impl Port {
    /// The addresses the port claims in its subnet: its fixed IPs and its
    /// registered link-locals.
    pub fn claimed_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.fixed_ips
            .iter()
            .copied()
            .chain(self.link_locals.iter().map(|a| IpAddr::V6(*a)))
    }
}

/// What a host agent watches under `/havip/v1/hosts/<host>/ports/<port>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostPort {
    pub port: String,
    pub vm: String,
    pub vpc: String,
    pub subnet: String,
    pub mac: String,
    pub interface: String,
    #[schema(value_type = Vec<String>)]
    pub fixed_ips: Vec<IpAddr>,
    pub vips: Vec<PortVip>,
    #[serde(default)]
    pub vlans: Vec<u16>,
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub link_locals: Vec<Ipv6Addr>,
}

impl From<&Port> for HostPort {
    fn from(p: &Port) -> Self {
        HostPort {
            port: p.id.clone(),
            vm: p.vm.clone(),
            vpc: p.vpc.clone(),
            subnet: p.subnet.clone(),
            mac: p.mac.clone(),
            interface: p.interface.clone(),
            fixed_ips: p.fixed_ips.clone(),
            vips: p.vips.clone(),
            vlans: p.vlans.clone(),
            link_locals: p.link_locals.clone(),
        }
    }
}

/// HAVIP lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Bound ports' hosts have not all confirmed the current bindings.
    Creating,
    /// The address is reserved and every bound port's host has programmed it.
    Available,
    /// A host reported that it could not program the VIP.
    Failed,
    /// Being unbound and removed.
    Deleting,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Available => "available",
            Status::Failed => "failed",
            Status::Deleting => "deleting",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "creating" => Ok(Status::Creating),
            "available" => Ok(Status::Available),
            "failed" => Ok(Status::Failed),
            "deleting" => Ok(Status::Deleting),
            _ => Err(Error::invalid_argument(format!(
                "unknown status {s:?} (creating, available, failed, deleting)"
            ))),
        }
    }
}

/// Only intranet (VPC-internal) VIPs are served by this dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetworkType {
    #[default]
    Intranet,
    Internet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IpVersion {
    Ipv4,
    Ipv6,
}

impl IpVersion {
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => IpVersion::Ipv4,
            IpAddr::V6(_) => IpVersion::Ipv6,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            IpVersion::Ipv4 => "ipv4",
            IpVersion::Ipv6 => "ipv6",
        }
    }
}

/// A port bound to a HAVIP, with where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Binding {
    pub port: String,
    pub vm: String,
    pub host: String,
}

/// The port currently answering for a VIP, as reported by the host agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Owner {
    pub port: String,
    pub host: String,
    pub since: DateTime<Utc>,
    /// Set while two bound ports claim the VIP within its hold-down (both
    /// VMs believe they are master): the owner's host reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain: Option<SplitBrain>,
}

/// A split brain: bound ports that claimed a VIP within its hold-down.
/// Their claims are damped: the owner changes at most once a hold-down,
/// to the latest claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SplitBrain {
    /// The ports claiming the VIP, the owner first.
    pub ports: Vec<String>,
    /// The port whose claim waits for the end of the hold-down, if any.
    #[serde(default)]
    pub pending: Option<String>,
}

fn default_hold_down_ms() -> u32 {
    havip_common::vip::DEFAULT_HOLD_DOWN_MS
}

/// A high-availability virtual IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Havip {
    pub id: String,
    pub project: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub network_type: NetworkType,
    pub vpc: String,
    pub subnet: String,
    pub ip_version: IpVersion,
    #[schema(value_type = String, example = "10.0.6.19")]
    pub address: IpAddr,
    /// Bound ports, in binding order.
    pub ports: Vec<Binding>,
    pub status: Status,
    /// Why the VIP is `failed`.
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Bumped on every change of the bound ports; hosts acknowledge a
    /// generation.
    pub generation: u64,
    /// Operator override of the ports-per-VIP limit for this VIP.
    #[serde(default)]
    pub ports_per_vip: Option<u32>,
    /// The VRRP virtual router id (1-255) of the HA software that holds
    /// it, when it sends from virtual MACs (keepalived's `use_vmac`): the
    /// bound ports may then use that VRID's virtual MAC only; without it,
    /// any virtual MAC of the VIP's family.
    #[serde(default)]
    pub vrid: Option<u8>,
    /// Split-brain damping: a claim by another bound port within this many
    /// milliseconds of the last owner change waits for its end (the latest
    /// claim then wins). 0: no damping. Default 1000.
    #[serde(default = "default_hold_down_ms")]
    pub hold_down_ms: u32,
    pub created_at: DateTime<Utc>,
    /// Hosts of bound ports that have not acknowledged `generation` yet
    /// (computed on read, not stored).
    #[serde(default)]
    pub pending_hosts: Vec<String>,
    /// The current master (computed on read from the owner key).
    #[serde(default)]
    pub master: Option<Owner>,
}

/// Who holds an address of a subnet (value of an address-claim key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Claim {
    Vip { id: String, name: String },
    Port { id: String, vm: String },
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Vip { id, name } => write!(f, "HAVIP {id} ({name})"),
            Claim::Port { id, vm } => write!(f, "port {id} of VM {vm}"),
        }
    }
}

/// A host's answer for one generation of a VIP (value of an ack key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub generation: u64,
    pub result: AckResult,
    #[serde(default)]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckResult {
    Programmed,
    Failed,
}

/// Limits of a project; `None` means the controller's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProjectLimits {
    pub ports_per_vip: Option<u32>,
    pub vips_per_port: Option<u32>,
}

/// Limits in effect for a project (defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EffectiveLimits {
    pub ports_per_vip: u32,
    pub vips_per_port: u32,
}

// ---- requests ----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutVpc {
    pub project: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSubnet {
    pub vpc: String,
    #[serde(default)]
    pub name: String,
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub cidr_v4: Option<Ipv4Net>,
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub cidr_v6: Option<Ipv6Net>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPort {
    pub vm: String,
    pub subnet: String,
    pub mac: String,
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub fixed_ips: Vec<IpAddr>,
    pub host: String,
    pub interface: String,
    /// VLAN ids the VM may tag frames with (at most 8, each 1 to 4094).
    #[serde(default)]
    pub vlans: Vec<i64>,
    /// IPv6 link-locals (fe80::/10) the VM may use besides its EUI-64 one
    /// (at most 8).
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub link_locals: Vec<Ipv6Addr>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHavip {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub network_type: Option<NetworkType>,
    pub subnet: String,
    /// Defaults to the version of `address`, else IPv4 when the subnet has
    /// an IPv4 range.
    #[serde(default)]
    pub ip_version: Option<IpVersion>,
    /// Allocated from the subnet when absent.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// Ports to bind right away.
    #[serde(default)]
    pub ports: Vec<String>,
    /// The VRRP virtual router id (1-255) its HA software uses, if it
    /// sends from virtual MACs.
    #[serde(default)]
    pub vrid: Option<u8>,
    /// 0..=3600000; default 1000 (see [`Havip::hold_down_ms`]).
    #[serde(default)]
    pub hold_down_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHavip {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A new VRRP virtual router id (1-255); 0 removes it.
    #[serde(default)]
    pub vrid: Option<u8>,
    /// 0..=3600000 (see [`Havip::hold_down_ms`]).
    #[serde(default)]
    pub hold_down_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortsRequest {
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VipLimits {
    /// `null` returns to the project's limit.
    pub ports_per_vip: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortLimits {
    /// `null` returns to the project's limit.
    pub vips_per_port: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDelete {
    pub ids: Vec<String>,
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

/// List filters. `q` matches name, description, id and address
/// (case-insensitive substring; several words must all match).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub q: Option<String>,
    pub status: Option<Status>,
    pub subnet: Option<String>,
    /// VIPs bound to a port of this VM.
    pub vm: Option<String>,
    /// 1-based.
    pub page: Option<u32>,
    /// Default 20, at most 1000.
    pub page_size: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HavipPage {
    pub items: Vec<Havip>,
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    #[default]
    Xlsx,
    Csv,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub format: Option<ExportFormat>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PortQuery {
    pub subnet: Option<String>,
    pub vm: Option<String>,
}
