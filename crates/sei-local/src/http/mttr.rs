//! `GET /v1/metrics/mttr`: the MTTR report.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{ApiError, SharedState};
use crate::auth::Tenant;
use crate::mttr::{GroupBy, MttrReport};

/// Query of the report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MttrQuery {
    integration_id: String,
    from: String,
    to: String,
    group_by: Option<GroupBy>,
}

/// Mean and median time to restore of the tenant's live incidents resolved in `[from, to)`.
pub(super) async fn get_mttr(
    State(state): State<SharedState>,
    tenant: Tenant,
    query: Result<Query<MttrQuery>, QueryRejection>,
) -> Result<Json<MttrReport>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadQuery {
        field: None,
        reason: rejection.body_text(),
    })?;
    if query.integration_id.trim().is_empty() {
        return Err(ApiError::BadQuery {
            field: Some("integration_id".to_owned()),
            reason: "integration_id is empty".to_owned(),
        });
    }
    let from = parse_time("from", &query.from)?;
    let to = parse_time("to", &query.to)?;
    if from >= to {
        return Err(ApiError::BadQuery {
            field: Some("to".to_owned()),
            reason: "from must be before to".to_owned(),
        });
    }
    let store = state.store.clone();
    let integration_id = query.integration_id.clone();
    let incidents = tokio::task::spawn_blocking(move || {
        store.resolved_incidents(tenant.as_str(), &integration_id, from, to)
    })
    .await
    .map_err(|_| ApiError::WorkerFailed)??;
    Ok(Json(MttrReport::build(
        &query.integration_id,
        from,
        to,
        query.group_by,
        &incidents,
    )))
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.to_utc())
        .map_err(|error| ApiError::BadQuery {
            field: Some(field.to_owned()),
            reason: format!(
                "{field} is not an RFC 3339 time ({error}); note that `+` in a query string means a space, send %2B or Z"
            ),
        })
}
