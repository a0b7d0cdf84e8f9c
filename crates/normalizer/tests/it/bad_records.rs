//! Every kind of bad raw record gives its own error, with a stable DLQ code and a message
//! naming the table, the sys_id when known, and the field.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use nowstream_model::{RawRecord, RecordOp};
use nowstream_normalizer::{ExclusionPolicy, MapError, map_record};
use nowstream_testkit::fixtures::raw_record;
use serde_json::{Value, json};

const SYS_ID: &str = "46d44a23a9fe19810012d100cca80666";

fn raw(table: &str, payload: Option<String>) -> RawRecord {
    RawRecord {
        integration_id: "42".into(),
        ..raw_record(
            table,
            SYS_ID,
            Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap(),
            2,
            RecordOp::Upsert,
            payload,
        )
    }
}

fn with_payload(table: &str, payload: Value) -> RawRecord {
    raw(table, Some(payload.to_string()))
}

fn error_of(raw: &RawRecord) -> MapError {
    match map_record(raw, &ExclusionPolicy::none()) {
        Ok(mapped) => panic!("expected an error, got {mapped:?}"),
        Err(error) => error,
    }
}

/// Asserts the error's code and that its message mentions every fragment.
fn assert_error(error: &MapError, code: &str, fragments: &[&str]) {
    assert_eq!(error.code(), code, "{error}");
    let message = error.to_string();
    for fragment in fragments {
        assert!(
            message.contains(fragment),
            "{fragment:?} missing from: {message}"
        );
    }
}

/// One bad record of each kind, with the code and the message fragments it must give.
fn cases() -> Vec<(&'static str, RawRecord, &'static str, Vec<&'static str>)> {
    let mut no_sys_id = with_payload("incident", json!({"number": "INC1"}));
    no_sys_id.sys_id = String::new();
    let mut delete_without_sys_id = raw("incident", None);
    delete_without_sys_id.op = RecordOp::Delete;
    delete_without_sys_id.sys_id = String::new();
    let mut colon_in_sys_id = with_payload("incident", json!({}));
    colon_in_sys_id.sys_id = "a:b".into();
    let mut no_integration = with_payload("incident", json!({}));
    no_integration.integration_id = String::new();
    vec![
        (
            "truncated payload",
            raw(
                "incident",
                Some(r#"{"number": {"value": "INC1", "displ"#.into()),
            ),
            "payload_not_json",
            vec!["incident", SYS_ID, "not JSON"],
        ),
        (
            "payload that is a list",
            raw("incident", Some("[1, 2]".into())),
            "payload_not_object",
            vec!["incident", SYS_ID, "array"],
        ),
        (
            "no sys_id anywhere",
            no_sys_id,
            "missing_sys_id",
            vec!["incident", "sys_id"],
        ),
        (
            "deletion without sys_id",
            delete_without_sys_id,
            "missing_sys_id",
            vec!["incident"],
        ),
        (
            "payload of another record",
            with_payload(
                "incident",
                json!({"sys_id": {"value": "ffff", "display_value": "ffff"}}),
            ),
            "sys_id_mismatch",
            vec!["incident", SYS_ID, "ffff"],
        ),
        (
            "table without an entity",
            with_payload("problem", json!({})),
            "unknown_table",
            vec!["problem", SYS_ID],
        ),
        (
            "upsert without payload",
            raw("change_request", None),
            "missing_payload",
            vec!["change_request", SYS_ID],
        ),
        (
            "time in a local format",
            with_payload(
                "incident",
                json!({"opened_at": {"value": "05/03/2024 07:08", "display_value": "05/03/2024 07:08"}}),
            ),
            "unparseable_time",
            vec!["incident", SYS_ID, "opened_at", "05/03/2024 07:08"],
        ),
        (
            "boolean that is not one",
            with_payload(
                "sys_user",
                json!({"active": {"value": "yes", "display_value": "Yes"}}),
            ),
            "invalid_field_value",
            vec!["sys_user", SYS_ID, "active", "\"yes\""],
        ),
        (
            "count that is not a number",
            {
                let mut raw = with_payload("sys_user", json!({"sys_mod_count": "many"}));
                raw.sys_mod_count = None;
                raw
            },
            "invalid_field_value",
            vec!["sys_user", SYS_ID, "sys_mod_count", "\"many\""],
        ),
        (
            "field that is a list",
            with_payload("change_request", json!({"priority": [{"value": "1"}]})),
            "unexpected_field_shape",
            vec!["change_request", SYS_ID, "priority", "array"],
        ),
        (
            "custom field that is an object of something else",
            with_payload("incident", json!({"u_blob": {"a": 1}})),
            "unexpected_field_shape",
            vec!["incident", SYS_ID, "u_blob"],
        ),
        (
            "dictionary row without its table",
            with_payload(
                "sys_dictionary",
                json!({"element": {"value": "u_x", "display_value": "u_x"}}),
            ),
            "missing_required_field",
            vec!["sys_dictionary", SYS_ID, "name"],
        ),
        (
            "sys_id with the key separator",
            colon_in_sys_id,
            "invalid_record_key",
            vec!["incident", "a:b"],
        ),
        (
            "no integration",
            no_integration,
            "invalid_record_key",
            vec!["incident", "integration_id"],
        ),
    ]
}

#[test]
fn each_kind_of_bad_record_gives_its_code_and_names_where() {
    for (what, raw, code, fragments) in cases() {
        let error = error_of(&raw);
        assert_eq!(error.code(), code, "{what}: {error}");
        assert_error(&error, code, &fragments);
    }
}

#[test]
fn every_documented_code_is_produced_by_some_bad_record() {
    let produced: BTreeSet<&str> = cases()
        .iter()
        .map(|(_, raw, ..)| error_of(raw).code())
        .collect();
    let documented: BTreeSet<&str> = MapError::CODES.into_iter().collect();
    assert_eq!(produced, documented);
}

#[test]
fn not_json_errors_quote_no_payload_content() {
    let error = error_of(&raw("incident", Some("secret-text-not-json".into())));
    assert_error(&error, "payload_not_json", &[]);
    assert!(!error.to_string().contains("secret-text"), "{error}");
}

#[test]
fn long_bad_values_are_quoted_only_in_part() {
    let long = format!("2024-01-01 {}", "9".repeat(5_000));
    let error = error_of(&with_payload(
        "incident",
        json!({"closed_at": {"value": long, "display_value": ""}}),
    ));
    assert_error(&error, "unparseable_time", &["closed_at"]);
    assert!(error.to_string().len() < 400, "{error}");
}

#[test]
fn a_bad_value_in_an_excluded_field_is_no_error_because_it_is_never_read() {
    let raw = with_payload(
        "incident",
        json!({"opened_at": {"value": "not a time", "display_value": ""}}),
    );
    let policy = ExclusionPolicy::new(&["opened_at".to_owned()]).unwrap();
    assert!(map_record(&raw, &policy).is_ok());
}

#[test]
fn a_deletion_needs_no_payload_and_ignores_one_that_is_bad() {
    let mut deletion = raw("sys_user", Some("not json".into()));
    deletion.op = RecordOp::Delete;
    let mapped = map_record(&deletion, &ExclusionPolicy::none()).unwrap();
    assert_eq!(mapped.key(), format!("42:{SYS_ID}"));
    assert_eq!(mapped.encode_value().unwrap(), None);
}
