//! `/admin/faults` and `/admin/stats`: steering faults and reading counters from tests or
//! a shell, without restarting the server.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;

use super::{ApiError, SharedState};
use crate::faults::{FaultRule, RuleReport};
use crate::stats::Stats;

/// Body of `POST /admin/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FaultRules {
    rules: Vec<FaultRule>,
}

/// The active rules with their counters.
pub(super) async fn get_faults(State(state): State<SharedState>) -> Json<Vec<RuleReport>> {
    Json(state.faults().report())
}

/// Replaces the rules (counters restart).
pub(super) async fn set_faults(
    State(state): State<SharedState>,
    body: Result<Json<FaultRules>, JsonRejection>,
) -> Result<Json<Vec<RuleReport>>, ApiError> {
    let Json(FaultRules { rules }) = body.map_err(|rejection| ApiError::BadQuery {
        field: None,
        reason: rejection.body_text(),
    })?;
    for (index, rule) in rules.iter().enumerate() {
        crate::faults::validate(rule).map_err(|reason| ApiError::BadQuery {
            field: Some(format!("rules[{index}]")),
            reason,
        })?;
    }
    tracing::info!(rules = rules.len(), "fault rules replaced");
    let mut faults = state.faults();
    faults.replace(rules);
    Ok(Json(faults.report()))
}

/// Removes every rule.
pub(super) async fn clear_faults(State(state): State<SharedState>) -> Json<Vec<RuleReport>> {
    state.faults().replace(Vec::new());
    Json(Vec::new())
}

/// Request counters.
pub(super) async fn get_stats(State(state): State<SharedState>) -> Json<Stats> {
    Json(state.stats().clone())
}

/// Zeroes the counters.
pub(super) async fn reset_stats(State(state): State<SharedState>) -> Json<Stats> {
    *state.stats() = Stats::default();
    Json(Stats::default())
}
