//! The fetcher's Prometheus metrics, recorded in one place so names and labels stay consistent.

use chrono::{DateTime, Utc};

use crate::unit_state::UnitState;

pub const RECORDS: &str = "nowstream_fetcher_records_total";
pub const PAGES: &str = "nowstream_fetcher_pages_total";
pub const INVALID_RECORDS: &str = "nowstream_fetcher_invalid_records_total";
pub const CHECKPOINT_LAG: &str = "nowstream_fetcher_checkpoint_lag_seconds";
pub const UNITS_OWNED: &str = "nowstream_fetcher_units_owned";
pub const UNIT_ERRORS: &str = "nowstream_fetcher_unit_errors_total";
pub const UNIT_STATE: &str = "nowstream_fetcher_unit_state";
pub const UNIT_RESTARTS: &str = "nowstream_fetcher_unit_restarts_total";
pub const REFRESH_TOKEN_WRITE_FAILURES: &str =
    "nowstream_fetcher_refresh_token_write_failures_total";

/// Registers help texts (once, at start-up).
pub fn describe() {
    metrics::describe_counter!(
        RECORDS,
        "Records published to the raw topics, by integration, table and op."
    );
    metrics::describe_counter!(
        PAGES,
        "Table API pages published, by integration and table."
    );
    metrics::describe_counter!(
        INVALID_RECORDS,
        "Records skipped because they had no sys_id or sys_updated_on."
    );
    metrics::describe_gauge!(
        CHECKPOINT_LAG,
        "Seconds between now and the newest sys_updated_on covered by a unit's checkpoint."
    );
    metrics::describe_gauge!(UNITS_OWNED, "Work units this replica currently runs.");
    metrics::describe_counter!(
        UNIT_ERRORS,
        "Unit runs that ended in an error, by integration, table and kind (retry, \
         unauthorized, forbidden, panicked, ended)."
    );
    metrics::describe_gauge!(
        UNIT_STATE,
        "1 for the state each unit of this replica is in (running, backing_off, degraded), \
         0 for the others, by integration and table."
    );
    metrics::describe_counter!(
        UNIT_RESTARTS,
        "Units started again after their run failed, panicked or ended, by integration and table."
    );
    metrics::describe_counter!(
        REFRESH_TOKEN_WRITE_FAILURES,
        "Rotated OAuth refresh tokens that could not be written to refresh_token_file, by \
         integration (a restart would start from a revoked token)."
    );
    nowstream_servicenow::client::describe_metrics();
}

pub fn record_published(integration: &str, table: &str, op: &'static str) {
    metrics::counter!(RECORDS, "integration" => integration.to_owned(), "table" => table.to_owned(), "op" => op)
        .increment(1);
}

pub fn page_fetched(integration: &str, table: &str) {
    metrics::counter!(PAGES, "integration" => integration.to_owned(), "table" => table.to_owned())
        .increment(1);
}

pub fn invalid_record(integration: &str, table: &str) {
    metrics::counter!(INVALID_RECORDS, "integration" => integration.to_owned(), "table" => table.to_owned())
        .increment(1);
}

pub fn checkpoint_time(integration: &str, table: &str, covered_until: DateTime<Utc>) {
    let lag = (Utc::now() - covered_until).num_milliseconds() as f64 / 1000.0;
    metrics::gauge!(CHECKPOINT_LAG, "integration" => integration.to_owned(), "table" => table.to_owned())
        .set(lag.max(0.0));
}

pub fn units_owned(count: usize) {
    metrics::gauge!(UNITS_OWNED).set(count as f64);
}

pub fn unit_error(integration: &str, table: &str, kind: &'static str) {
    metrics::counter!(UNIT_ERRORS, "integration" => integration.to_owned(), "table" => table.to_owned(), "kind" => kind)
        .increment(1);
}

pub fn refresh_token_write_failed(integration: &str) {
    metrics::counter!(REFRESH_TOKEN_WRITE_FAILURES, "integration" => integration.to_owned())
        .increment(1);
}

pub fn unit_restarted(integration: &str, table: &str) {
    metrics::counter!(UNIT_RESTARTS, "integration" => integration.to_owned(), "table" => table.to_owned())
        .increment(1);
}

/// Sets the unit's gauge to 1 for `current` and 0 for every other state, so a sum over
/// states is 1 per unit and a dashboard can count units by state.
pub fn unit_state(integration: &str, table: &str, current: UnitState) {
    for state in UnitState::ALL {
        let value = if state == current { 1.0 } else { 0.0 };
        metrics::gauge!(UNIT_STATE, "integration" => integration.to_owned(), "table" => table.to_owned(), "state" => state.label())
            .set(value);
    }
}

/// The unit left this replica: its gauges go to 0 (another replica reports it now).
pub fn unit_state_cleared(integration: &str, table: &str) {
    for state in UnitState::ALL {
        metrics::gauge!(UNIT_STATE, "integration" => integration.to_owned(), "table" => table.to_owned(), "state" => state.label())
            .set(0.0);
    }
}
