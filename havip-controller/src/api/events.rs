//! `GET /v1/havips/{id}/events`: a HAVIP's failover history.

use axum::extract::{Path, State};
use axum::Json;

use super::extract::{ApiResult, Auth};
use super::AppState;
use crate::history::OwnerChanges;

/// The owner changes of a HAVIP, newest first: when, from which port (VM,
/// host for operators) to which. The controller keeps the newest
/// `history_per_vip` of its config.
#[utoipa::path(get, path = "/v1/havips/{id}/events", tag = "havip",
    params(("id" = String, Path, description = "HAVIP id")),
    responses((status = 200, description = "Its owner changes", body = OwnerChanges)))]
pub(super) async fn owner_changes(
    State(st): State<AppState>,
    Auth(scope): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<OwnerChanges>> {
    Ok(Json(st.store.owner_changes(&scope, &id).await?))
}
