//! The records stored in etcd, typed (addresses, MACs, ids), as every
//! writer puts them and every reader gets them. API views (with fields
//! computed on read) are the controller's; these are what is stored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::addresses::AddrRange;
use crate::mac::Mac;
use crate::Invalid;

/// A VPC (`vpcs/<vpc>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub project: String,
    #[serde(default)]
    pub name: String,
}

/// A subnet of a VPC with an IPv4 and/or an IPv6 range (`subnets/<subnet>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc: String,
    pub project: String,
    #[serde(default)]
    pub name: String,
    pub cidr_v4: Option<Ipv4Net>,
    pub cidr_v6: Option<Ipv6Net>,
    /// The IPv4 gateway; `None`: the first host address (see
    /// [`crate::addresses`]).
    #[serde(default)]
    pub gateway_v4: Option<Ipv4Addr>,
    #[serde(default)]
    pub gateway_v6: Option<Ipv6Addr>,
    /// Addresses the operator keeps out of every allocation.
    #[serde(default)]
    pub reserved: Vec<AddrRange>,
    /// Its datapath (network) id, allocated by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<u32>,
}

/// A HAVIP as a port carries it: enough for the host agent to program it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortVip {
    pub id: String,
    pub address: IpAddr,
}

/// A VM's network interface on a hypervisor host (`ports/<port>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub id: String,
    pub project: String,
    pub vm: String,
    pub vpc: String,
    pub subnet: String,
    pub mac: Mac,
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
    /// VLAN ids the VM may send tagged frames into.
    #[serde(default)]
    pub vlans: Vec<u16>,
    /// IPv6 link-locals the VM may use besides the EUI-64 of its MAC.
    #[serde(default)]
    pub link_locals: Vec<Ipv6Addr>,
    /// Its datapath id, allocated by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<u32>,
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

/// What a host agent watches under `hosts/<host>/ports/<port>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    pub port: String,
    pub vm: String,
    pub vpc: String,
    pub subnet: String,
    pub mac: Mac,
    pub interface: String,
    pub fixed_ips: Vec<IpAddr>,
    pub vips: Vec<PortVip>,
    #[serde(default)]
    pub vlans: Vec<u16>,
    #[serde(default)]
    pub link_locals: Vec<Ipv6Addr>,
    /// The port's datapath id (see [`Port::datapath_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<u32>,
}

impl From<&Port> for HostPort {
    fn from(p: &Port) -> Self {
        HostPort {
            port: p.id.clone(),
            vm: p.vm.clone(),
            vpc: p.vpc.clone(),
            subnet: p.subnet.clone(),
            mac: p.mac,
            interface: p.interface.clone(),
            fixed_ips: p.fixed_ips.clone(),
            vips: p.vips.clone(),
            vlans: p.vlans.clone(),
            link_locals: p.link_locals.clone(),
            datapath_id: p.datapath_id,
        }
    }
}

impl HostPort {
    /// What in this record no host can program: its MAC, interface name,
    /// fixed IPs, VLANs or link-locals.
    pub fn problem(&self) -> Option<String> {
        if self.datapath_id == Some(0) {
            return Some("datapath id 0 is no port's".into());
        }
        if let Some(why) = self.mac.unicast_problem() {
            return Some(why);
        }
        if let Err(e) = crate::rules::check_interface(&self.interface) {
            return Some(e.0);
        }
        if let Some(ip) = self
            .fixed_ips
            .iter()
            .find(|ip| !crate::rules::is_unicast(ip))
        {
            return Some(format!("fixed ip {ip} is not a unicast address"));
        }
        let vlans: Vec<i64> = self.vlans.iter().map(|v| i64::from(*v)).collect();
        if let Err(e) = crate::rules::check_vlans(&vlans) {
            return Some(e.0);
        }
        crate::rules::check_link_locals(&self.link_locals)
            .err()
            .map(|e| e.0)
    }
}

/// HAVIP lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    pub const ALL: [Status; 4] = [
        Status::Creating,
        Status::Available,
        Status::Failed,
        Status::Deleting,
    ];

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
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Invalid(format!(
                    "unknown status {s:?} (creating, available, failed, deleting)"
                ))
            })
    }
}

/// Only intranet (VPC-internal) VIPs are served by this dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetworkType {
    #[default]
    Intranet,
    Internet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub port: String,
    pub vm: String,
    pub host: String,
    /// The port's datapath id (hosts program remote ports by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<u32>,
}

/// The port currently answering for a VIP (`owners/<vip>`), as the host
/// agents report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub port: String,
    pub host: String,
    pub since: DateTime<Utc>,
    /// Set while two bound ports claim the VIP within its hold-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain: Option<SplitBrain>,
}

/// One owner change of a VIP (`events/<vip>/<revision>`), kept by the
/// controller from the owner reports; the newest `history_per_vip` (the
/// controller's config) are kept, older ones deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerEvent {
    /// When the new owner's claim was accepted (the report's `since`).
    pub at: DateTime<Utc>,
    /// The owner before, if there was one.
    #[serde(default)]
    pub from: Option<OwnerEnd>,
    pub to: OwnerEnd,
    /// The etcd revision of the owner report.
    pub revision: i64,
}

/// One side of an owner change: the port, its VM (when the port record
/// was readable) and host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerEnd {
    pub port: String,
    #[serde(default)]
    pub vm: Option<String>,
    pub host: String,
}

/// A split brain: bound ports that claimed a VIP within its hold-down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// A high-availability virtual IP as stored (`vips/<vip>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip {
    pub id: String,
    pub project: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub network_type: NetworkType,
    pub vpc: String,
    pub subnet: String,
    pub ip_version: IpVersion,
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
    /// The VRRP virtual router id (1-255) of the HA software that holds it.
    #[serde(default)]
    pub vrid: Option<u8>,
    /// Split-brain damping, in milliseconds. 0: no damping.
    #[serde(default = "default_hold_down_ms")]
    pub hold_down_ms: u32,
    pub created_at: DateTime<Utc>,
    /// Its datapath id, allocated by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath_id: Option<u32>,
}

impl Vip {
    /// What in this record no host can program: an address that is no
    /// VIP's or of the other family, more bound ports than the datapath
    /// holds, a port bound twice, a VRID of 0, a hold-down out of range.
    pub fn problem(&self) -> Option<String> {
        if let Some(why) = crate::rules::vip_address_problem(&self.address) {
            return Some(format!("its address {why}"));
        }
        if IpVersion::of(&self.address) != self.ip_version {
            return Some(format!(
                "its address {} is not {}",
                self.address,
                self.ip_version.as_str()
            ));
        }
        let max = crate::limits::MAX_PORTS_PER_VIP as usize;
        if self.ports.len() > max {
            return Some(format!(
                "{} bound ports, the datapath holds at most {max}",
                self.ports.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(b) = self.ports.iter().find(|b| !seen.insert(b.port.as_str())) {
            return Some(format!("port {} is bound twice", b.port));
        }
        if self.vrid == Some(0) {
            return Some("vrid 0 is not a VRRP router id (1-255)".into());
        }
        if let Err(e) = crate::rules::check_hold_down(i64::from(self.hold_down_ms)) {
            return Some(e.0);
        }
        if self.datapath_id == Some(0) {
            return Some("datapath id 0 is no VIP's".into());
        }
        if let Some(b) = self.ports.iter().find(|b| b.datapath_id == Some(0)) {
            return Some(format!(
                "bound port {}'s datapath id 0 is no port's",
                b.port
            ));
        }
        let mut ids = std::collections::HashSet::new();
        if let Some(b) = self
            .ports
            .iter()
            .find(|b| b.datapath_id.is_some_and(|id| !ids.insert(id)))
        {
            return Some(format!(
                "bound port {}'s datapath id is another bound port's",
                b.port
            ));
        }
        None
    }
}

/// Who holds an address of a subnet (`addrs/<subnet>/<ip>`).
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

/// A host's answer for one generation of a VIP (`acks/<vip>/<host>`).
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

/// The first result of a create made with an idempotency key
/// (`idempotency/<project>/<key>`): a retry answers that VIP again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentCreate {
    pub vip: String,
    /// The request's fingerprint: another request under the same key is
    /// refused.
    pub request: String,
}

/// The datapath ids of one kind (`ids/<kind>`): the next one to hand
/// out. Ids are dense (1, 2, 3, ...), never 0 (no owner) and never given
/// twice, so no two records of a kind share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdCounter {
    pub next: u32,
}

impl Default for IdCounter {
    fn default() -> Self {
        IdCounter { next: 1 }
    }
}

/// The layout version of the store (`schema`): absent means version 1
/// (acks and owners under `acks/` and `owners/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    pub version: u32,
}

/// The kinds of records that carry a datapath id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Subnets,
    Ports,
    Vips,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Subnets => "subnets",
            IdKind::Ports => "ports",
            IdKind::Vips => "vips",
        }
    }
}

/// An index entry (`index/...`): its existence counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {}

/// A pool of public addresses (`eip-pools/<pool>`), served by one named
/// EIP gateway (the `--gateway` of its `havip-agent gateway run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EipPool {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub gateway: String,
    /// The pool's addresses: ranges of one family each, IPv4 and/or IPv6.
    pub ranges: Vec<AddrRange>,
    pub created_at: DateTime<Utc>,
}

impl EipPool {
    /// What keeps this record from being a pool (see [`crate::eips`]).
    pub fn problem(&self) -> Option<String> {
        crate::eips::pool_problem(self)
    }
}

/// The HAVIP an EIP is associated with, as the gateway needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EipVip {
    pub id: String,
    pub address: IpAddr,
    pub subnet: String,
    /// The subnet's datapath (network) id, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<u32>,
}

/// An EIP of a project (`eips/<eip>`): a public address of a pool, and
/// the HAVIP it is associated with, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eip {
    pub id: String,
    pub project: String,
    #[serde(default)]
    pub name: String,
    pub pool: String,
    /// The pool's gateway when the EIP was allocated (pools never change
    /// their gateway).
    pub gateway: String,
    pub ip_version: IpVersion,
    pub address: IpAddr,
    pub status: Status,
    #[serde(default)]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub havip: Option<EipVip>,
    pub created_at: DateTime<Utc>,
}

impl Eip {
    /// An address of the other family, or an association across families.
    pub fn problem(&self) -> Option<String> {
        if IpVersion::of(&self.address) != self.ip_version {
            return Some(format!(
                "its address {} is not {}",
                self.address,
                self.ip_version.as_str()
            ));
        }
        if let Some(vip) = &self.havip {
            if IpVersion::of(&vip.address) != self.ip_version {
                return Some(format!(
                    "its HAVIP's address {} is not {}",
                    vip.address,
                    self.ip_version.as_str()
                ));
            }
        }
        None
    }
}

/// Who holds a public address of a pool (`eip-addrs/<pool>/<ip>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EipClaim {
    pub eip: String,
    pub project: String,
}

/// The EIP associated with a VIP (`vip-eips/<vip>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipEip {
    pub eip: String,
    pub address: IpAddr,
}

/// A project's EIP quota (`limits/project-eips/<project>`); `None`: the
/// default ([`crate::limits::DEFAULT_EIPS_PER_PROJECT`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EipLimits {
    #[serde(default)]
    pub eips_per_project: Option<u32>,
}
