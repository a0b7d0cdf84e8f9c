//! `GET /v1/metrics/dora`: the DORA report.
//!
//! The query string is read as plain pairs rather than into a struct: list parameters may be
//! repeated (`change_state=3&change_state=4`) or comma-separated (`change_state=3,4`), and
//! every refusal names the parameter it is about.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};

use super::{ApiError, SharedState};
use crate::auth::Tenant;
use crate::dora::{DoraGroupBy, DoraParams, DoraReport, FailureFilter, MttrStart};

/// The parameters `GET /v1/metrics/dora` knows.
const KNOWN: [&str; 9] = [
    "integration_id",
    "from",
    "to",
    "group_by",
    "mttr_start",
    "change_state",
    "change_type",
    "failure_priority",
    "failure_category",
];

fn bad(field: &str, reason: impl Into<String>) -> ApiError {
    ApiError::BadQuery {
        field: Some(field.to_owned()),
        reason: reason.into(),
    }
}

/// Reads and checks the report's query pairs.
pub(crate) fn parse_params(pairs: &[(String, String)]) -> Result<DoraParams, ApiError> {
    if let Some((name, _)) = pairs
        .iter()
        .find(|(name, _)| !KNOWN.contains(&name.as_str()))
    {
        return Err(bad(
            name,
            format!("unknown parameter `{name}`; known: {}", KNOWN.join(", ")),
        ));
    }
    let single = |name: &str| -> Result<Option<&str>, ApiError> {
        let mut values = pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad(name, format!("`{name}` is given more than once")));
        }
        Ok(first.map(String::as_str))
    };
    let required = |name: &str| -> Result<&str, ApiError> {
        single(name)?
            .filter(|value| !value.trim().is_empty())
            .ok_or_else(|| bad(name, format!("`{name}` is required")))
    };
    let list = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let integration_id = required("integration_id")?.to_owned();
    let from = parse_time("from", required("from")?)?;
    let to = parse_time("to", required("to")?)?;
    if from >= to {
        return Err(bad("to", "from must be before to"));
    }
    let group_by = match single("group_by")?.filter(|value| !value.is_empty()) {
        None => None,
        Some("week") => Some(DoraGroupBy::Week),
        Some("month") => Some(DoraGroupBy::Month),
        Some("priority") => Some(DoraGroupBy::Priority),
        Some(_) => return Err(bad("group_by", "group_by must be week, month or priority")),
    };
    let mttr_start = match single("mttr_start")?.filter(|value| !value.is_empty()) {
        None | Some("sys_created_on") => MttrStart::SysCreatedOn,
        Some("opened_at") => MttrStart::OpenedAt,
        Some(_) => {
            return Err(bad(
                "mttr_start",
                "mttr_start must be sys_created_on or opened_at",
            ));
        }
    };
    Ok(DoraParams {
        integration_id,
        from,
        to,
        group_by,
        mttr_start,
        change_states: list("change_state"),
        change_types: list("change_type"),
        failure: FailureFilter::with_defaults(list("failure_priority"), list("failure_category")),
    })
}

/// The DORA report of the tenant's live records.
pub(super) async fn get_dora(
    State(state): State<SharedState>,
    tenant: Tenant,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<DoraReport>, ApiError> {
    let Query(pairs) = query.map_err(|rejection| ApiError::BadQuery {
        field: None,
        reason: rejection.body_text(),
    })?;
    let params = parse_params(&pairs)?;
    Ok(Json(report(&state, &tenant, &params).await?))
}

/// Builds the report off the async threads.
pub(crate) async fn report(
    state: &SharedState,
    tenant: &Tenant,
    params: &DoraParams,
) -> Result<DoraReport, ApiError> {
    let store = state.store.clone();
    let (tenant, integration_id) = (tenant.as_str().to_owned(), params.integration_id.clone());
    let (incidents, changes) =
        tokio::task::spawn_blocking(move || store.dora_facts(&tenant, &integration_id))
            .await
            .map_err(|_| ApiError::WorkerFailed)??;
    DoraReport::build(params, &incidents, &changes)
        .map_err(|error| bad("group_by", error.to_string()))
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.to_utc())
        .map_err(|error| {
            bad(
                field,
                format!(
                    "{field} is not an RFC 3339 time ({error}); note that `+` in a query string means a space, send %2B or Z"
                ),
            )
        })
}
