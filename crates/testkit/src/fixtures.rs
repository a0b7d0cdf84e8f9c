//! Records as the stages exchange them, for tests that write a stage's input themselves:
//! raw ServiceNow records as the fetcher publishes them, their keys, and ServiceNow's
//! `{value, display_value}` fields.

use chrono::{DateTime, TimeDelta, Utc};
use nowstream_model::{RawRecord, RecordOp};
use serde_json::{Value, json};

/// The integration id test configs and records use unless a test needs another.
pub const INTEGRATION_ID: &str = "4711";
/// `instance_url` of raw records written by tests (never called).
pub const INSTANCE_URL: &str = "https://acme.service-now.com";

/// The Kafka key of a raw or entity record: `<integration>:<sys_id>`.
pub fn record_key(integration_id: &str, sys_id: &str) -> String {
    format!("{integration_id}:{sys_id}")
}

/// A raw record of [`INTEGRATION_ID`] as the fetcher publishes it, fetched a second after its
/// update; `payload` is the record's JSON text (`None` for a deletion). Adjust other fields
/// with struct update syntax: `RawRecord { integration_id: "42".into(), ..raw_record(…) }`.
pub fn raw_record(
    table: &str,
    sys_id: &str,
    updated: DateTime<Utc>,
    mod_count: i64,
    op: RecordOp,
    payload: Option<String>,
) -> RawRecord {
    RawRecord {
        integration_id: INTEGRATION_ID.into(),
        table: table.into(),
        sys_id: sys_id.into(),
        sys_updated_on: updated,
        sys_mod_count: Some(mod_count),
        op,
        fetched_at: updated + TimeDelta::seconds(1),
        instance_url: INSTANCE_URL.into(),
        payload,
    }
}

/// A field as `sysparm_display_value=all` returns it, value and display value alike.
pub fn field(value: &str) -> Value {
    json!({"value": value, "display_value": value})
}

/// A time as ServiceNow writes it (`2024-01-01 00:00:00`, UTC).
pub fn servicenow_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}
