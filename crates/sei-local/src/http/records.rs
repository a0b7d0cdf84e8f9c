//! `GET /v1/servicenow/{integration_id}/{entity}[/{sys_id}]`: reading back what was stored.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nowstream_model::Entity;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, SharedState};
use crate::auth::Tenant;
use crate::store::{RecordState, Scope};

/// Page size when the request gives none.
const DEFAULT_LIMIT: usize = 1000;
/// Largest page size.
const MAX_LIMIT: usize = 10_000;

/// Query of a listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The contract's `EntityPage`.
#[derive(Debug, Serialize)]
pub(super) struct EntityPage {
    items: Vec<Value>,
    next_cursor: Option<String>,
}

/// One page of live records, ordered by sys_id. The cursor is the last sys_id of the page,
/// base64url-encoded so clients treat it as opaque.
pub(super) async fn list_records(
    State(state): State<SharedState>,
    tenant: Tenant,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<EntityPage>, ApiError> {
    let Path((integration_id, entity)) = path.map_err(bad_path)?;
    let entity = Entity::from_api_path(&entity)?;
    let Query(query) = query.map_err(|rejection| ApiError::BadQuery {
        field: None,
        reason: rejection.body_text(),
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadQuery {
            field: Some("limit".to_owned()),
            reason: format!("limit must be 1..={MAX_LIMIT}, got {limit}"),
        });
    }
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let scope = Scope::new(tenant.as_str(), &integration_id, entity);
    let store = state.store.clone();
    // One row past the page says whether another page follows.
    let mut rows =
        tokio::task::spawn_blocking(move || store.list(&scope, after.as_deref(), limit + 1))
            .await
            .map_err(|_| ApiError::WorkerFailed)??;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|(sys_id, _)| URL_SAFE_NO_PAD.encode(sys_id))
    } else {
        None
    };
    Ok(Json(EntityPage {
        items: rows.into_iter().map(|(_, body)| body).collect(),
        next_cursor,
    }))
}

/// The newest version of one record; 404 `deleted` for a tombstone.
pub(super) async fn get_record(
    State(state): State<SharedState>,
    tenant: Tenant,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((integration_id, entity, sys_id)) = path.map_err(bad_path)?;
    let entity = Entity::from_api_path(&entity)?;
    let scope = Scope::new(tenant.as_str(), &integration_id, entity);
    let store = state.store.clone();
    let wanted = sys_id.clone();
    let record = tokio::task::spawn_blocking(move || store.get(&scope, &wanted))
        .await
        .map_err(|_| ApiError::WorkerFailed)??;
    match record.map(|record| record.state) {
        Some(RecordState::Live(body)) => Ok(Json(body)),
        Some(RecordState::Deleted { .. }) => Err(ApiError::Deleted { entity, sys_id }),
        None => Err(ApiError::NotFound { entity, sys_id }),
    }
}

fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError::BadPath {
        reason: rejection.body_text(),
    }
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::BadQuery {
            field: Some("cursor".to_owned()),
            reason: "cursor is not one this server handed out".to_owned(),
        })
}
