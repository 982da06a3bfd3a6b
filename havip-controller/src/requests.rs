//! The request bodies and queries of the API, with their OpenAPI schemas.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use havip_schema::records::{IpVersion, NetworkType, Status};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::views::string_enum;

/// The most ids one batch delete takes.
pub const MAX_BATCH: usize = 1000;
/// The most HAVIPs one page holds.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The longest search text.
pub const MAX_QUERY: usize = 256;
/// The largest request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

fn status_schema() -> utoipa::openapi::Object {
    string_enum(Status::ALL.map(Status::as_str).to_vec())
}
fn network_type_schema() -> utoipa::openapi::Object {
    string_enum(vec!["intranet", "internet"])
}
fn ip_version_schema() -> utoipa::openapi::Object {
    string_enum(vec!["ipv4", "ipv6"])
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutVpc {
    pub project: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
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
    /// Default: the first host address (none in /31 and /32).
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub gateway_v4: Option<Ipv4Addr>,
    /// Default: the first host address (none in /127 and /128).
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub gateway_v6: Option<Ipv6Addr>,
    /// Addresses no HAVIP gets: `first-last` ranges or single addresses.
    #[serde(default)]
    pub reserved: Vec<String>,
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
    #[schema(schema_with = network_type_schema)]
    #[serde(default)]
    pub network_type: Option<NetworkType>,
    pub subnet: String,
    /// Defaults to the version of `address`, else IPv4 when the subnet has
    /// an IPv4 range.
    #[schema(schema_with = ip_version_schema)]
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
    /// 0..=3600000; default 1000.
    #[serde(default)]
    pub hold_down_ms: Option<i64>,
    /// A retried create with the same token answers the first result
    /// (like the `Idempotency-Key` header).
    #[serde(default)]
    pub client_token: Option<String>,
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
    /// 0..=3600000.
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

/// A project's limits; `null` (or absent) means the controller's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectLimits {
    /// At most 16 (what the datapath holds).
    #[serde(default)]
    pub ports_per_vip: Option<u32>,
    #[serde(default)]
    pub vips_per_port: Option<u32>,
    #[serde(default)]
    pub vips_per_project: Option<u32>,
    #[serde(default)]
    pub vips_per_subnet: Option<u32>,
}

impl From<ProjectLimits> for havip_schema::limits::ProjectLimits {
    fn from(l: ProjectLimits) -> Self {
        havip_schema::limits::ProjectLimits {
            ports_per_vip: l.ports_per_vip,
            vips_per_port: l.vips_per_port,
            vips_per_project: l.vips_per_project,
            vips_per_subnet: l.vips_per_subnet,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDelete {
    /// At most 1000.
    pub ids: Vec<String>,
}

/// List filters. `q` matches name, description, id and address
/// (case-insensitive substring; several words must all match).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most 256 characters.
    pub q: Option<String>,
    #[param(schema_with = status_schema)]
    pub status: Option<Status>,
    pub subnet: Option<String>,
    /// VIPs bound to a port of this VM.
    pub vm: Option<String>,
    pub vpc: Option<String>,
    #[param(schema_with = ip_version_schema)]
    pub ip_version: Option<IpVersion>,
    /// 1-based.
    pub page: Option<u32>,
    /// Default 20, at most 1000.
    pub page_size: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    #[default]
    Xlsx,
    Csv,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub format: Option<ExportFormat>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PortQuery {
    pub subnet: Option<String>,
    pub vm: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubnetQuery {
    pub vpc: Option<String>,
}
