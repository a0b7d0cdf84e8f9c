//! `/sim/*`: what tests need to steer and observe the simulator over HTTP. No auth.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nowstream_model::table_api::parse_time;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::store_error;
use crate::faults::FaultRule;
use crate::stats::Stats;

/// Body of `POST /sim/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFaults {
    /// Rules to install.
    rules: Vec<FaultRule>,
    /// Add to the current rules instead of replacing them.
    #[serde(default)]
    append: bool,
}

/// `GET /sim/faults`: rules with their counters.
pub async fn get_faults(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({ "rules": state.faults().report() })).into_response()
}

/// `POST /sim/faults`.
pub async fn set_faults(
    State(state): State<Arc<AppState>>,
    Json(body): Json<SetFaults>,
) -> Response {
    let mut faults = state.faults();
    if body.append {
        body.rules.into_iter().for_each(|rule| faults.add(rule));
    } else {
        faults.replace(body.rules);
    }
    Json(json!({ "rules": faults.report() })).into_response()
}

/// `DELETE /sim/faults`.
pub async fn clear_faults(State(state): State<Arc<AppState>>) -> StatusCode {
    state.faults().replace(Vec::new());
    StatusCode::NO_CONTENT
}

/// `GET /sim/stats`.
pub async fn get_stats(State(state): State<Arc<AppState>>) -> Json<Stats> {
    Json(state.stats().clone())
}

/// `DELETE /sim/stats`.
pub async fn reset_stats(State(state): State<Arc<AppState>>) -> StatusCode {
    *state.stats() = Stats::default();
    StatusCode::NO_CONTENT
}

/// Body of `POST /sim/clock`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetClock {
    /// Frozen UTC time `yyyy-MM-dd HH:mm:ss`, or null to follow the wall clock.
    now: Option<String>,
}

/// `POST /sim/clock`: freeze (or unfreeze) the time stamped on writes.
pub async fn set_clock(State(state): State<Arc<AppState>>, Json(body): Json<SetClock>) -> Response {
    let now = match body.now.as_deref().map(parse_time).transpose() {
        Ok(now) => now,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": err.to_string() })),
            )
                .into_response();
        }
    };
    state.write_store().set_now(now);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /sim/tokens/expire`: every access token expires now.
pub async fn expire_tokens(State(state): State<Arc<AppState>>) -> StatusCode {
    state.auth.expire_all_access_tokens();
    StatusCode::NO_CONTENT
}

/// `GET /sim/tables/{table}`: raw stored rows, no auth, no faults.
pub async fn snapshot(State(state): State<Arc<AppState>>, Path(table): Path<String>) -> Response {
    match state.read_store().snapshot(&table) {
        Ok(rows) => Json(json!({ "result": rows })).into_response(),
        Err(err) => store_error(&err),
    }
}
