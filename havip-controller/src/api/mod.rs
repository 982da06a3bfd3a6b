//! The HTTP API (axum), documented by an OpenAPI document generated from the
//! same route registrations (utoipa-axum), so a route cannot exist without
//! its documentation.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, ResponseBuilder};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod eips;
mod events;
mod extract;
mod networks;

use extract::ApiResult;
pub use extract::{ApiError, ApiJson, ApiQuery, Auth};

use crate::error::{Error, ErrorBody, ErrorCode};
use crate::export;
use crate::model::*;
use crate::store::{BindMode, Store};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    tokens: Arc<crate::Tokens>,
    openapi: Arc<OpenApiDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Binary file contents.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBody(#[allow(dead_code)] Vec<u8>);

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "havip-controller",
        description = "High-availability virtual IPs (HAVIP): create, bind to VM ports, search, export, delete. \
Errors are `{\"error\":{\"code\":...,\"message\":...}}` with a stable code.",
    ),
    components(schemas(ErrorBody, Error, ErrorCode)),
    tags(
        (name = "havip", description = "High-availability virtual IPs"),
        (name = "network", description = "VPCs, subnets and ports (registered by orchestration with an operator token)"),
        (name = "limits", description = "Ports-per-VIP, VIPs-per-port, VIPs-per-project and VIPs-per-subnet limits (operator)"),
        (name = "eip", description = "EIPs: public addresses of pools, associated with HAVIPs (pools and EIP quotas: operator)"),
        (name = "records", description = "Stored records that cannot be read (operator)"),
        (name = "meta", description = "Health and this document"),
    )
)]
struct ApiDoc;

/// The router and its OpenAPI document.
pub fn router(store: Store, tokens: impl Into<crate::Tokens>) -> Router {
    let (router, doc) = openapi_router().split_for_parts();
    let mut doc = doc;
    finish_doc(&mut doc);
    let state = AppState {
        store,
        tokens: Arc::new(tokens.into()),
        openapi: Arc::new(doc),
    };
    router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .fallback(no_route)
        .merge(crate::console::router())
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The OpenAPI document alone (for tests and tools).
pub fn openapi() -> OpenApiDoc {
    let (_, mut doc) = openapi_router().split_for_parts();
    finish_doc(&mut doc);
    doc
}

fn openapi_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .routes(routes!(healthz))
        .routes(routes!(put_vpc, get_vpc))
        .routes(routes!(put_subnet, get_subnet))
        .routes(routes!(networks::list_vpcs))
        .routes(routes!(networks::list_subnets))
        .routes(routes!(networks::check_address))
        .routes(routes!(list_ports))
        .routes(routes!(put_port, get_port, delete_port))
        .routes(routes!(set_port_limits))
        .routes(routes!(list_havips, create_havip))
        .routes(routes!(get_havip, update_havip, delete_havip))
        .routes(routes!(bind_ports, replace_ports))
        .routes(routes!(unbind_port))
        .routes(routes!(batch_delete))
        .routes(routes!(export_havips))
        .routes(routes!(set_vip_limits))
        .routes(routes!(get_project_limits, set_project_limits))
        .routes(routes!(corrupt_records))
        .merge(eips::routes())
        .routes(routes!(events::owner_changes))
}

/// Adds the bearer scheme and the error responses every authenticated
/// operation can give.
fn finish_doc(doc: &mut OpenApiDoc) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    let errors: &[(u16, &str)] = &[
        (
            400,
            "invalid_argument, address_out_of_range, port_in_other_subnet, ip_version_mismatch",
        ),
        (401, "unauthenticated"),
        (403, "forbidden"),
        (404, "not_found"),
        (
            409,
            "address_in_use, subnet_exhausted, quota_exceeded, wrong_state, conflict, corrupt_record, pool_exhausted, already_associated",
        ),
        (413, "payload_too_large"),
        (500, "internal"),
        (503, "unavailable"),
    ];
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let public = op.security.as_ref().is_some_and(|s| s.is_empty());
            if !public && op.security.is_none() {
                op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            }
            for (status, codes) in errors {
                if public && *status != 500 {
                    continue;
                }
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(format!("Error ({codes})"))
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
        }
    }
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    Error::not_found(format!("no route for {method} {}", uri.path())).into()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = ErrorBody {
        error: Error::invalid_argument(format!("{method} is not allowed on {}", uri.path())),
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

// ---- meta ----

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
async fn openapi_json(State(st): State<AppState>) -> Json<OpenApiDoc> {
    Json((*st.openapi).clone())
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "Serving", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

// ---- networks and ports ----

/// Register or rename a VPC (operator).
#[utoipa::path(put, path = "/v1/vpcs/{id}", tag = "network", request_body = PutVpc,
    params(("id" = String, Path, description = "VPC id")),
    responses((status = 200, description = "The VPC", body = Vpc)))]
async fn put_vpc(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PutVpc>,
) -> ApiResult<Json<Vpc>> {
    auth.operator()?;
    Ok(Json(st.store.put_vpc(&id, &req).await?))
}

/// A VPC.
#[utoipa::path(get, path = "/v1/vpcs/{id}", tag = "network",
    params(("id" = String, Path, description = "VPC id")),
    responses((status = 200, description = "The VPC", body = Vpc)))]
async fn get_vpc(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vpc>> {
    Ok(Json(st.store.get_vpc(&scope, &id).await?))
}

/// Register or rename a subnet (operator). Its VPC and ranges are fixed.
#[utoipa::path(put, path = "/v1/subnets/{id}", tag = "network", request_body = PutSubnet,
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 200, description = "The subnet", body = Subnet)))]
async fn put_subnet(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PutSubnet>,
) -> ApiResult<Json<Subnet>> {
    auth.operator()?;
    Ok(Json(st.store.put_subnet(&id, &req).await?))
}

/// A subnet.
#[utoipa::path(get, path = "/v1/subnets/{id}", tag = "network",
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 200, description = "The subnet", body = Subnet)))]
async fn get_subnet(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Subnet>> {
    Ok(Json(st.store.get_subnet(&scope, &id).await?))
}

/// Ports visible to the caller.
#[utoipa::path(get, path = "/v1/ports", tag = "network", params(PortQuery),
    responses((status = 200, description = "Ports", body = Vec<Port>)))]
async fn list_ports(
    State(st): State<AppState>,
    Auth(scope): Auth,
    ApiQuery(q): ApiQuery<PortQuery>,
) -> ApiResult<Json<Vec<Port>>> {
    Ok(Json(st.store.list_ports(&scope, &q).await?))
}

/// Register a port or change an unbound one (operator; compute
/// orchestration). Its fixed IPs are reserved in the subnet.
#[utoipa::path(put, path = "/v1/ports/{id}", tag = "network", request_body = PutPort,
    params(("id" = String, Path, description = "Port id")),
    responses((status = 200, description = "The port", body = Port)))]
async fn put_port(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PutPort>,
) -> ApiResult<Json<Port>> {
    auth.operator()?;
    Ok(Json(st.store.put_port(&id, &req).await?))
}

/// A port.
#[utoipa::path(get, path = "/v1/ports/{id}", tag = "network",
    params(("id" = String, Path, description = "Port id")),
    responses((status = 200, description = "The port", body = Port)))]
async fn get_port(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Port>> {
    Ok(Json(st.store.get_port(&scope, &id).await?))
}

/// Remove an unbound port (operator).
#[utoipa::path(delete, path = "/v1/ports/{id}", tag = "network",
    params(("id" = String, Path, description = "Port id")),
    responses((status = 204, description = "Removed")))]
async fn delete_port(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.operator()?;
    st.store.delete_port(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a port's own VIPs-per-port limit (operator).
#[utoipa::path(put, path = "/v1/ports/{id}/limits", tag = "limits", request_body = PortLimits,
    params(("id" = String, Path, description = "Port id")),
    responses((status = 200, description = "The port", body = Port)))]
async fn set_port_limits(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PortLimits>,
) -> ApiResult<Json<Port>> {
    auth.operator()?;
    Ok(Json(st.store.set_port_limits(&id, &req).await?))
}

// ---- HAVIPs ----

/// List HAVIPs: fuzzy search, filters, pages (newest first).
#[utoipa::path(get, path = "/v1/havips", tag = "havip", params(ListQuery),
    responses((status = 200, description = "One page", body = HavipPage)))]
async fn list_havips(
    State(st): State<AppState>,
    Auth(scope): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<HavipPage>> {
    Ok(Json(st.store.list_havips(&scope, &q).await?))
}

/// Create a HAVIP with a given or allocated address, optionally binding
/// ports. With an `Idempotency-Key` header (or `client_token`), a retry
/// within 24 hours answers the first create's HAVIP, never a second one.
#[utoipa::path(post, path = "/v1/havips", tag = "havip", request_body = CreateHavip,
    params(("Idempotency-Key" = Option<String>, Header, description = "1-128 of A-Z a-z 0-9 . _ - :")),
    responses((status = 201, description = "Created (or the first create's HAVIP, on a retry)", body = Havip)))]
async fn create_havip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateHavip>,
) -> ApiResult<(StatusCode, Json<Havip>)> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            Error::invalid_argument("Idempotency-Key must be 1-128 of A-Z a-z 0-9 . _ - :")
        })?),
    };
    Ok((
        StatusCode::CREATED,
        Json(st.store.create_havip(&scope, &req, key).await?),
    ))
}

/// A HAVIP.
#[utoipa::path(get, path = "/v1/havips/{id}", tag = "havip",
    params(("id" = String, Path, description = "HAVIP id")),
    responses((status = 200, description = "The HAVIP", body = Havip)))]
async fn get_havip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Havip>> {
    Ok(Json(st.store.get_havip(&scope, &id).await?))
}

/// Change name, description and/or the split-brain hold-down
/// (`hold_down_ms`, 0..=3600000) in any state.
#[utoipa::path(patch, path = "/v1/havips/{id}", tag = "havip", request_body = UpdateHavip,
    params(("id" = String, Path, description = "HAVIP id")),
    responses((status = 200, description = "The HAVIP", body = Havip)))]
async fn update_havip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateHavip>,
) -> ApiResult<Json<Havip>> {
    Ok(Json(st.store.update_havip(&scope, &id, &req).await?))
}

/// Delete an available or failed HAVIP (its ports are unbound first).
#[utoipa::path(delete, path = "/v1/havips/{id}", tag = "havip",
    params(("id" = String, Path, description = "HAVIP id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_havip(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.store.delete_havip(&scope, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bind ports in addition to the bound ones.
#[utoipa::path(post, path = "/v1/havips/{id}/ports", tag = "havip", request_body = PortsRequest,
    params(("id" = String, Path, description = "HAVIP id")),
    responses((status = 200, description = "The HAVIP", body = Havip)))]
async fn bind_ports(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PortsRequest>,
) -> ApiResult<Json<Havip>> {
    Ok(Json(
        st.store
            .set_ports(&scope, &id, BindMode::Add, &req.ports)
            .await?,
    ))
}

/// Make exactly these ports the bound ones (replace, add, remove at once).
#[utoipa::path(put, path = "/v1/havips/{id}/ports", tag = "havip", request_body = PortsRequest,
    params(("id" = String, Path, description = "HAVIP id")),
    responses((status = 200, description = "The HAVIP", body = Havip)))]
async fn replace_ports(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PortsRequest>,
) -> ApiResult<Json<Havip>> {
    Ok(Json(
        st.store
            .set_ports(&scope, &id, BindMode::Replace, &req.ports)
            .await?,
    ))
}

/// Unbind one port.
#[utoipa::path(delete, path = "/v1/havips/{id}/ports/{port}", tag = "havip",
    params(("id" = String, Path, description = "HAVIP id"), ("port" = String, Path, description = "Port id")),
    responses((status = 200, description = "The HAVIP", body = Havip)))]
async fn unbind_port(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path((id, port)): Path<(String, String)>,
) -> ApiResult<Json<Havip>> {
    Ok(Json(
        st.store
            .set_ports(&scope, &id, BindMode::Remove, &[port])
            .await?,
    ))
}

/// Delete several HAVIPs; one result per id.
#[utoipa::path(post, path = "/v1/havips/batch-delete", tag = "havip", request_body = BatchDelete,
    responses((status = 200, description = "A result per id, in order", body = BatchDeleteResult)))]
async fn batch_delete(
    State(st): State<AppState>,
    Auth(scope): Auth,
    ApiJson(req): ApiJson<BatchDelete>,
) -> ApiResult<Json<BatchDeleteResult>> {
    if req.ids.len() > MAX_BATCH {
        return Err(Error::invalid_argument(format!(
            "{} ids given, at most {MAX_BATCH} per batch",
            req.ids.len()
        ))
        .into());
    }
    Ok(Json(BatchDeleteResult {
        results: st.store.batch_delete(&scope, &req.ids).await,
    }))
}

/// All the caller's HAVIPs as a spreadsheet (xlsx, default) or CSV.
#[utoipa::path(get, path = "/v1/havips/export", tag = "havip", params(ExportQuery),
    responses((status = 200, description = "The file", content(
        (FileBody = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (String = "text/csv"),
    ))))]
async fn export_havips(
    State(st): State<AppState>,
    Auth(scope): Auth,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let vips = st.store.all_havips(&scope).await?;
    let format = q.format.unwrap_or_default();
    let (bytes, content_type, ext) = match format {
        ExportFormat::Xlsx => (export::to_xlsx(&vips), XLSX, "xlsx"),
        ExportFormat::Csv => (export::to_csv(&vips), "text/csv; charset=utf-8", "csv"),
    };
    let bytes = bytes.map_err(|e| {
        log::error!("export: {e}");
        Error::internal("the export could not be written")
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"havips.{ext}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Set one HAVIP's own ports-per-VIP limit (operator).
#[utoipa::path(put, path = "/v1/havips/{id}/limits", tag = "limits", request_body = VipLimits,
    params(("id" = String, Path, description = "HAVIP id")),
    responses((status = 200, description = "The HAVIP", body = Havip)))]
async fn set_vip_limits(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<VipLimits>,
) -> ApiResult<Json<Havip>> {
    auth.operator()?;
    Ok(Json(st.store.set_vip_limits(&id, &req).await?))
}

/// The limits in effect for a project (its own token or the operator).
#[utoipa::path(get, path = "/v1/limits/projects/{project}", tag = "limits",
    params(("project" = String, Path, description = "Project")),
    responses((status = 200, description = "Limits in effect", body = EffectiveLimits)))]
async fn get_project_limits(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(project): Path<String>,
) -> ApiResult<Json<EffectiveLimits>> {
    Ok(Json(st.store.get_project_limits(&scope, &project).await?))
}

/// Set a project's limits (operator); `null` returns to the default.
#[utoipa::path(put, path = "/v1/limits/projects/{project}", tag = "limits", request_body = ProjectLimits,
    params(("project" = String, Path, description = "Project")),
    responses((status = 200, description = "Limits in effect", body = EffectiveLimits)))]
async fn set_project_limits(
    State(st): State<AppState>,
    auth: Auth,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<ProjectLimits>,
) -> ApiResult<Json<EffectiveLimits>> {
    auth.operator()?;
    Ok(Json(
        st.store.set_project_limits(&project, &req.into()).await?,
    ))
}

/// Every stored record that cannot be read or breaks the schema's rules
/// (operator): reads skip them; repair or delete them in etcd.
#[utoipa::path(get, path = "/v1/records/corrupt", tag = "records",
    responses((status = 200, description = "The corrupt records", body = CorruptRecords)))]
async fn corrupt_records(
    State(st): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<CorruptRecords>> {
    auth.operator()?;
    Ok(Json(st.store.corrupt_records().await?))
}
