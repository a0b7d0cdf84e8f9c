//! The fetcher's Prometheus metrics, recorded in one place so names and labels stay consistent.

use chrono::{DateTime, Utc};

use crate::unit_state::UnitState;

pub const RECORDS: &str = "nowstream_fetcher_records_total";
pub const PAGES: &str = "nowstream_fetcher_pages_total";
pub const INVALID_RECORDS: &str = "nowstream_fetcher_invalid_records_total";
pub const DEAD_LETTERS: &str = "nowstream_fetcher_dead_letters_total";
pub const CHECKPOINT_LAG: &str = "nowstream_fetcher_checkpoint_lag_seconds";
pub const UNITS_OWNED: &str = "nowstream_fetcher_units_owned";
pub const UNIT_ERRORS: &str = "nowstream_fetcher_unit_errors_total";
pub const UNIT_STATE: &str = "nowstream_fetcher_unit_state";
pub const UNIT_RESTARTS: &str = "nowstream_fetcher_unit_restarts_total";
pub const REFRESH_TOKEN_WRITE_FAILURES: &str =
    "nowstream_fetcher_refresh_token_write_failures_total";
pub const DELETION_DETECTION: &str = "nowstream_fetcher_deletion_detection";
pub const RECONCILE_ROUNDS: &str = "nowstream_fetcher_reconcile_rounds_total";
pub const RECONCILE_LISTED: &str = "nowstream_fetcher_reconcile_listed_keys";
pub const RECONCILE_DELETES: &str = "nowstream_fetcher_reconcile_deletes_total";
pub const MISSING_IDENTITY: &str = "nowstream_fetcher_records_missing_identity_total";

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
        "Rows that could not be keyed or versioned (no sys_id, a bad sys_updated_on or \
         sys_mod_count, ...); each is dead-lettered to the fetcher DLQ."
    );
    metrics::describe_counter!(
        DEAD_LETTERS,
        "Rows written to the fetcher DLQ instead of a raw topic, by integration, table and \
         reason (bad_sys_mod_count, too_large, response_too_large, ...)."
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
    metrics::describe_gauge!(
        DELETION_DETECTION,
        "1 for how each integration finds deletions now (mode: audit or reconcile)."
    );
    metrics::describe_counter!(
        RECONCILE_ROUNDS,
        "Completed reconciliation rounds, by integration and table."
    );
    metrics::describe_gauge!(
        RECONCILE_LISTED,
        "sys_ids the last reconciliation round listed, by integration and table."
    );
    metrics::describe_counter!(
        RECONCILE_DELETES,
        "Deletes published by reconciliation, by integration and table."
    );
    metrics::describe_counter!(
        MISSING_IDENTITY,
        "Records published without a mapped identity field (number, sys_created_on), by \
         integration, table and field: the field list or an ACL withholds it."
    );
    nowstream_servicenow::client::describe_metrics();
}

pub fn deletion_detection(integration: &str, mode: &'static str) {
    for other in ["audit", "reconcile"] {
        metrics::gauge!(DELETION_DETECTION, "integration" => integration.to_owned(), "mode" => other)
            .set(if other == mode { 1.0 } else { 0.0 });
    }
}

pub fn reconcile_round(integration: &str, table: &str, listed: usize, deleted: usize) {
    metrics::counter!(RECONCILE_ROUNDS, "integration" => integration.to_owned(), "table" => table.to_owned())
        .increment(1);
    metrics::gauge!(RECONCILE_LISTED, "integration" => integration.to_owned(), "table" => table.to_owned())
        .set(listed as f64);
    metrics::counter!(RECONCILE_DELETES, "integration" => integration.to_owned(), "table" => table.to_owned())
        .increment(deleted as u64);
}

pub fn missing_identity(integration: &str, table: &str, field: &str, count: usize) {
    metrics::counter!(MISSING_IDENTITY, "integration" => integration.to_owned(), "table" => table.to_owned(), "field" => field.to_owned())
        .increment(count as u64);
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

pub fn dead_lettered(integration: &str, table: &str, reason: &str) {
    metrics::counter!(DEAD_LETTERS, "integration" => integration.to_owned(), "table" => table.to_owned(), "reason" => reason.to_owned())
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
