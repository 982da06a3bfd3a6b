//! The EIP routes: pools (operator), EIPs of a project, their association
//! with a HAVIP, and the EIP quota.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiQuery, ApiResult, Auth};
use super::AppState;
use crate::eip_model::*;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_eip_pools, create_eip_pool))
        .routes(routes!(get_eip_pool, delete_eip_pool))
        .routes(routes!(list_eips, allocate_eip))
        .routes(routes!(get_eip, release_eip))
        .routes(routes!(associate_eip, disassociate_eip))
        .routes(routes!(get_eip_limits, set_eip_limits))
}

/// Every EIP pool, with how many of its addresses are allocated.
#[utoipa::path(get, path = "/v1/eip-pools", tag = "eip",
    responses((status = 200, description = "The pools", body = Vec<EipPool>)))]
async fn list_eip_pools(State(st): State<AppState>, _auth: Auth) -> ApiResult<Json<Vec<EipPool>>> {
    Ok(Json(st.store.list_eip_pools().await?))
}

/// Create a pool of public addresses served by a named gateway (operator).
#[utoipa::path(post, path = "/v1/eip-pools", tag = "eip", request_body = CreateEipPool,
    responses((status = 201, description = "Created (or the same pool again)", body = EipPool)))]
async fn create_eip_pool(
    State(st): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateEipPool>,
) -> ApiResult<(StatusCode, Json<EipPool>)> {
    auth.operator()?;
    Ok((
        StatusCode::CREATED,
        Json(st.store.create_eip_pool(&req).await?),
    ))
}

/// An EIP pool.
#[utoipa::path(get, path = "/v1/eip-pools/{id}", tag = "eip",
    params(("id" = String, Path, description = "Pool id")),
    responses((status = 200, description = "The pool", body = EipPool)))]
async fn get_eip_pool(
    State(st): State<AppState>,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<EipPool>> {
    Ok(Json(st.store.get_eip_pool(&id).await?))
}

/// Delete a pool none of whose addresses is allocated (operator).
#[utoipa::path(delete, path = "/v1/eip-pools/{id}", tag = "eip",
    params(("id" = String, Path, description = "Pool id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_eip_pool(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.operator()?;
    st.store.delete_eip_pool(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Your EIPs (the operator: everyone's), newest first, each with its
/// HAVIP and that HAVIP's current master.
#[utoipa::path(get, path = "/v1/eips", tag = "eip", params(EipQuery),
    responses((status = 200, description = "The EIPs", body = Vec<Eip>)))]
async fn list_eips(
    State(st): State<AppState>,
    Auth(scope): Auth,
    ApiQuery(q): ApiQuery<EipQuery>,
) -> ApiResult<Json<Vec<Eip>>> {
    Ok(Json(st.store.list_eips(&scope, &q).await?))
}

/// Allocate an EIP from a pool: a given address or the lowest free one.
#[utoipa::path(post, path = "/v1/eips", tag = "eip", request_body = AllocateEip,
    responses((status = 201, description = "Allocated", body = Eip)))]
async fn allocate_eip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    ApiJson(req): ApiJson<AllocateEip>,
) -> ApiResult<(StatusCode, Json<Eip>)> {
    Ok((
        StatusCode::CREATED,
        Json(st.store.allocate_eip(&scope, &req).await?),
    ))
}

/// An EIP.
#[utoipa::path(get, path = "/v1/eips/{id}", tag = "eip",
    params(("id" = String, Path, description = "EIP id")),
    responses((status = 200, description = "The EIP", body = Eip)))]
async fn get_eip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Eip>> {
    Ok(Json(st.store.get_eip(&scope, &id).await?))
}

/// Release an EIP (refused while it is associated: disassociate first).
#[utoipa::path(delete, path = "/v1/eips/{id}", tag = "eip",
    params(("id" = String, Path, description = "EIP id")),
    responses((status = 204, description = "Released")))]
async fn release_eip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.store.release_eip(&scope, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Associate an EIP with a HAVIP of your project and its IP version (one
/// EIP per HAVIP); its gateway then sends the EIP's traffic to the
/// HAVIP's master.
#[utoipa::path(put, path = "/v1/eips/{id}/association", tag = "eip", request_body = AssociateEip,
    params(("id" = String, Path, description = "EIP id")),
    responses((status = 200, description = "The EIP", body = Eip)))]
async fn associate_eip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AssociateEip>,
) -> ApiResult<Json<Eip>> {
    Ok(Json(st.store.associate_eip(&scope, &id, &req.havip).await?))
}

/// Disassociate an EIP from its HAVIP: its traffic stops at the gateway.
#[utoipa::path(delete, path = "/v1/eips/{id}/association", tag = "eip",
    params(("id" = String, Path, description = "EIP id")),
    responses((status = 200, description = "The EIP", body = Eip)))]
async fn disassociate_eip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Eip>> {
    Ok(Json(st.store.disassociate_eip(&scope, &id).await?))
}

/// A project's EIP quota and its EIPs (its own token or the operator).
#[utoipa::path(get, path = "/v1/limits/eip-projects/{project}", tag = "limits",
    params(("project" = String, Path, description = "Project")),
    responses((status = 200, description = "Quota in effect", body = EffectiveEipLimits)))]
async fn get_eip_limits(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(project): Path<String>,
) -> ApiResult<Json<EffectiveEipLimits>> {
    Ok(Json(st.store.get_eip_limits(&scope, &project).await?))
}

/// Set a project's EIP quota (operator); `null` returns to the default.
#[utoipa::path(put, path = "/v1/limits/eip-projects/{project}", tag = "limits", request_body = EipLimits,
    params(("project" = String, Path, description = "Project")),
    responses((status = 200, description = "Quota in effect", body = EffectiveEipLimits)))]
async fn set_eip_limits(
    State(st): State<AppState>,
    auth: Auth,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<EipLimits>,
) -> ApiResult<Json<EffectiveEipLimits>> {
    auth.operator()?;
    Ok(Json(st.store.set_eip_limits(&project, &req).await?))
}
