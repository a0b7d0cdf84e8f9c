//! Turning Table API records into `RawRecord`s.
//!
//! The payload is the record exactly as ServiceNow returned it (with
//! `sysparm_display_value=all`); only the key fields are read here, always from their `value`
//! (UTC), never from the display value, which is in the integration user's time zone
//! ([`stored_value`], the model's reader).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use nowstream_model::table_api::{parse_time, stored_value};
use nowstream_model::{RawRecord, RecordOp};
use nowstream_servicenow::row::Row;

/// A record the fetcher cannot key or version. ServiceNow always sends these fields, so this
/// points at a proxy or instance returning something that is not a Table API record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table} record {sys_id}: {problem}")]
pub struct RecordError {
    /// Stable, machine-readable reason (the DLQ's `nowstream.reason`), e.g. `bad_sys_mod_count`.
    pub code: &'static str,
    pub table: String,
    pub sys_id: String,
    pub problem: String,
}

/// Where a record came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub integration_id: &'a str,
    pub instance_url: &'a str,
    pub fetched_at: DateTime<Utc>,
}

/// The fields a record is keyed and versioned by: all the fetcher reads of a record it
/// publishes as received ([`upsert_row`]).
pub const KEY_FIELDS: [&str; 3] = ["sys_id", "sys_updated_on", "sys_mod_count"];

/// A new or changed record of `table`, its payload `record` serialized.
pub fn upsert(
    origin: &Origin<'_>,
    table: &str,
    record: &Map<String, Value>,
) -> Result<RawRecord, RecordError> {
    upsert_with(origin, table, record, || {
        serde_json::to_string(record).map_err(|error| format!("cannot serialise payload: {error}"))
    })
}

/// A new or changed record of `table` published as the text it was received as: `keys` holds
/// its [`KEY_FIELDS`] (read from `row` alone, [`Row::select`]), and the record is not
/// parsed further.
pub fn upsert_row(
    origin: &Origin<'_>,
    table: &str,
    keys: &Map<String, Value>,
    row: &Row,
) -> Result<RawRecord, RecordError> {
    upsert_with(origin, table, keys, || Ok(row.json().to_owned()))
}

fn upsert_with(
    origin: &Origin<'_>,
    table: &str,
    record: &Map<String, Value>,
    payload: impl FnOnce() -> Result<String, String>,
) -> Result<RawRecord, RecordError> {
    let sys_id = stored_value(record, "sys_id").unwrap_or_default();
    let problem = |code: &'static str, problem: String| RecordError {
        code,
        table: table.to_owned(),
        sys_id: if sys_id.is_empty() {
            "(no sys_id)".into()
        } else {
            sys_id.to_string()
        },
        problem,
    };
    if sys_id.is_empty() {
        return Err(problem("no_sys_id", "has no sys_id".into()));
    }
    let updated_on = stored_value(record, "sys_updated_on")
        .ok_or_else(|| problem("no_sys_updated_on", "has no sys_updated_on".into()))?;
    let sys_updated_on = parse_time(&updated_on)
        .map_err(|error| problem("bad_sys_updated_on", format!("sys_updated_on: {error}")))?;
    let sys_mod_count = stored_value(record, "sys_mod_count")
        .map(|count| {
            count.parse::<i64>().map_err(|_| {
                problem(
                    "bad_sys_mod_count",
                    format!("sys_mod_count {count:?} is not a number"),
                )
            })
        })
        .transpose()?;
    let payload = payload().map_err(|reason| problem("unserialisable", reason))?;
    Ok(RawRecord {
        integration_id: origin.integration_id.to_owned(),
        table: table.to_owned(),
        sys_id: sys_id.to_string(),
        sys_updated_on,
        sys_mod_count,
        op: RecordOp::Upsert,
        fetched_at: origin.fetched_at,
        instance_url: origin.instance_url.to_owned(),
        payload: Some(payload),
    })
}

/// A deletion, from a `sys_audit_delete` row (`tablename`, `documentkey`). Its version is the
/// deletion time, which is later than any version of the deleted record.
pub fn deletion(
    origin: &Origin<'_>,
    audit_row: &Map<String, Value>,
) -> Result<RawRecord, RecordError> {
    let audit_id = stored_value(audit_row, "sys_id").unwrap_or(Cow::Borrowed("(no sys_id)"));
    let problem = |code: &'static str, problem: &str| RecordError {
        code,
        table: "sys_audit_delete".into(),
        sys_id: audit_id.to_string(),
        problem: problem.to_owned(),
    };
    let table = stored_value(audit_row, "tablename")
        .ok_or_else(|| problem("no_tablename", "has no tablename"))?;
    let sys_id = stored_value(audit_row, "documentkey")
        .ok_or_else(|| problem("no_documentkey", "has no documentkey"))?;
    let deleted_on = stored_value(audit_row, "sys_updated_on")
        .or_else(|| stored_value(audit_row, "sys_created_on"))
        .ok_or_else(|| problem("no_sys_updated_on", "has no sys_updated_on"))?;
    let sys_updated_on = parse_time(&deleted_on).map_err(|error| RecordError {
        code: "bad_sys_updated_on",
        table: "sys_audit_delete".into(),
        sys_id: audit_id.to_string(),
        problem: format!("sys_updated_on: {error}"),
    })?;
    Ok(RawRecord {
        integration_id: origin.integration_id.to_owned(),
        table: table.into_owned(),
        sys_id: sys_id.into_owned(),
        sys_updated_on,
        sys_mod_count: None,
        op: RecordOp::Delete,
        fetched_at: origin.fetched_at,
        instance_url: origin.instance_url.to_owned(),
        payload: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Origin<'static> {
        Origin {
            integration_id: "4711",
            instance_url: "https://acme.service-now.com",
            fetched_at: Utc::now(),
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn an_upsert_is_keyed_and_versioned_from_stored_values_not_display_values() {
        let record = object(json!({
            "sys_id": {"display_value": "abc", "value": "abc"},
            "sys_updated_on": {"display_value": "01/02/2026 10:04:05 PM", "value": "2026-01-03 03:04:05"},
            "sys_mod_count": {"display_value": "1,204", "value": "1204"},
            "short_description": {"display_value": "Ünïcode 🚀", "value": "Ünïcode 🚀"}
        }));
        let raw = upsert(&origin(), "incident", &record).unwrap();
        assert_eq!(raw.sys_id, "abc");
        assert_eq!(raw.sys_updated_on.to_rfc3339(), "2026-01-03T03:04:05+00:00");
        assert_eq!(raw.sys_mod_count, Some(1204));
        assert_eq!(raw.op, RecordOp::Upsert);
        let payload: Value = serde_json::from_str(raw.payload.as_deref().unwrap()).unwrap();
        assert_eq!(
            Value::Object(record),
            payload,
            "payload is the record as returned"
        );
    }

    #[test]
    fn a_row_is_published_as_the_text_it_came_as_keyed_from_its_key_fields_alone() {
        let text = r#"{"sys_id": {"display_value": "abc", "value": "abc"}, "sys_updated_on": {"display_value": "01/02/2026 10:04:05 PM", "value": "2026-01-03 03:04:05"}, "sys_mod_count": {"display_value": "3", "value": "3"}, "u_note": {"display_value": "a\u00e9", "value": "a\u00e9"}}"#;
        let row: Row = serde_json::from_str(text).unwrap();
        let keys = row.select(&KEY_FIELDS).unwrap();
        assert_eq!(keys.len(), 3, "only the key fields are read");
        let raw = upsert_row(&origin(), "incident", &keys, &row).unwrap();
        assert_eq!(raw.payload.as_deref(), Some(text));
        assert_eq!(raw.sys_id, "abc");
        assert_eq!(raw.sys_updated_on.to_rfc3339(), "2026-01-03T03:04:05+00:00");
        assert_eq!(raw.sys_mod_count, Some(3));

        let no_id: Row = serde_json::from_str(r#"{"number": {"value": "INC1"}}"#).unwrap();
        let keys = no_id.select(&KEY_FIELDS).unwrap();
        let error = upsert_row(&origin(), "incident", &keys, &no_id).unwrap_err();
        assert_eq!(error.code, "no_sys_id");
    }

    #[test]
    fn a_record_without_sys_id_or_with_a_bad_time_is_an_error_naming_it() {
        let no_id = object(json!({"sys_updated_on": {"value": "2026-01-03 03:04:05"}}));
        let error = upsert(&origin(), "incident", &no_id).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("incident record (no sys_id): has no sys_id")
        );

        let bad_time =
            object(json!({"sys_id": {"value": "x1"}, "sys_updated_on": {"value": "yesterday"}}));
        let error = upsert(&origin(), "incident", &bad_time)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("x1") && error.contains("sys_updated_on"),
            "{error}"
        );
    }

    #[test]
    fn an_audit_delete_row_becomes_a_delete_of_the_document() {
        let row = object(json!({
            "sys_id": {"value": "audit1"},
            "tablename": {"value": "incident", "display_value": "incident"},
            "documentkey": {"value": "abc", "display_value": "abc"},
            "sys_updated_on": {"value": "2026-01-03 03:04:05"}
        }));
        let raw = deletion(&origin(), &row).unwrap();
        assert_eq!(
            (raw.table.as_str(), raw.sys_id.as_str()),
            ("incident", "abc")
        );
        assert_eq!(raw.op, RecordOp::Delete);
        assert_eq!(raw.payload, None);
    }
}
