//! Read-only network routes a tenant's tools (the console's creation
//! wizard) need: the VPCs and subnets in scope, and whether an address of a
//! subnet is free for a new HAVIP.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::Json;

use super::extract::ApiResult;
use super::{ApiQuery, AppState, Auth};
use crate::error::Error;
use crate::model::{AddressCheck, Subnet, SubnetQuery, Vpc};

/// The VPCs visible to the caller.
#[utoipa::path(get, path = "/v1/vpcs", tag = "network",
    responses((status = 200, description = "VPCs, by id", body = Vec<Vpc>)))]
pub(super) async fn list_vpcs(
    State(st): State<AppState>,
    Auth(scope): Auth,
) -> ApiResult<Json<Vec<Vpc>>> {
    Ok(Json(st.store.list_vpcs(&scope).await?))
}

/// The subnets visible to the caller (of one VPC with `vpc`).
#[utoipa::path(get, path = "/v1/subnets", tag = "network", params(SubnetQuery),
    responses((status = 200, description = "Subnets, by id", body = Vec<Subnet>)))]
pub(super) async fn list_subnets(
    State(st): State<AppState>,
    Auth(scope): Auth,
    ApiQuery(q): ApiQuery<SubnetQuery>,
) -> ApiResult<Json<Vec<Subnet>>> {
    Ok(Json(st.store.list_subnets(&scope, &q).await?))
}

/// Whether a HAVIP could be created at this address of the subnet now:
/// `free`, `in_use` (by a port or a HAVIP), `out_of_range` or `reserved`.
/// Read-only; the create itself decides.
#[utoipa::path(get, path = "/v1/subnets/{id}/addresses/{address}", tag = "network",
    params(("id" = String, Path, description = "Subnet id"),
           ("address" = String, Path, description = "An IPv4 or IPv6 address")),
    responses((status = 200, description = "The address's state", body = AddressCheck)))]
pub(super) async fn check_address(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path((id, address)): Path<(String, String)>,
) -> ApiResult<Json<AddressCheck>> {
    let address: IpAddr = address
        .parse()
        .map_err(|_| Error::invalid_argument(format!("{address:?} is not an IP address")))?;
    Ok(Json(st.store.check_address(&scope, &id, address).await?))
}
