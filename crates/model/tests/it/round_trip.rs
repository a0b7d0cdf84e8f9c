//! Every contract record survives Avro single-object encoding and SEI entity JSON unchanged.

use crate::common;

use std::fmt::Debug;

use nowstream_model::{AvroRecord, Incident, RecordOp, Versioned};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn assert_round_trips<T>(original: &T)
where
    T: AvroRecord + Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = original.encode().unwrap();
    assert_eq!(&T::decode(&bytes).unwrap(), original, "Avro round trip");

    let json = serde_json::to_string(original).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, original, "JSON round trip of {json}");
}

#[test]
fn raw_upserts_keep_their_payload_byte_for_byte() {
    let record = common::raw_upsert();
    assert_round_trips(&record);
    let decoded = nowstream_model::RawRecord::decode(&record.encode().unwrap()).unwrap();
    assert_eq!(decoded.payload, record.payload);
}

#[test]
fn raw_deletes_round_trip_with_a_null_payload() {
    let record = common::raw_delete();
    assert_round_trips(&record);
    let decoded = nowstream_model::RawRecord::decode(&record.encode().unwrap()).unwrap();
    assert_eq!((decoded.op, decoded.payload), (RecordOp::Delete, None));
}

#[test]
fn checkpoints_round_trip() {
    assert_round_trips(&common::checkpoint());
}

#[test]
fn incidents_round_trip_with_unicode_custom_fields_and_exclusions() {
    assert_round_trips(&common::incident());
}

#[test]
fn incidents_with_every_optional_field_empty_round_trip() {
    assert_round_trips(&common::sparse_incident());
}

#[test]
fn change_requests_round_trip() {
    assert_round_trips(&common::change_request());
}

#[test]
fn users_round_trip() {
    assert_round_trips(&common::user());
}

#[test]
fn field_definitions_round_trip() {
    assert_round_trips(&common::field_definition());
}

#[test]
fn times_are_truncated_to_whole_milliseconds_on_the_wire() {
    let mut record = common::raw_upsert();
    record.fetched_at = common::at("2024-03-01T10:15:30.123456789Z");
    let decoded = nowstream_model::RawRecord::decode(&record.encode().unwrap()).unwrap();
    assert_eq!(decoded.fetched_at, common::at("2024-03-01T10:15:30.123Z"));
}

#[test]
fn entity_json_uses_schema_field_names_and_rfc3339_utc_times() {
    let json = serde_json::to_value(common::incident()).unwrap();
    assert_eq!(json["sys_updated_on"], "2024-03-01T10:15:30Z");
    assert_eq!(json["priority"]["value"], "1");
    assert_eq!(json["priority"]["label"], "1 - Critical");
    assert_eq!(json["assigned_to"]["display_value"], "Fred Luddy");
    assert_eq!(json["short_description"], serde_json::Value::Null);
    assert_eq!(json["time_to_restore_ms"], 5_400_000);
    assert_eq!(json["custom_fields"]["u_root_cause"]["value"], "dns");

    let change = serde_json::to_value(common::change_request()).unwrap();
    assert_eq!(
        change["type"]["value"], "normal",
        "r#type is `type` in JSON"
    );
    assert!(change.get("r#type").is_none());
}

#[test]
fn entity_json_without_optional_fields_is_accepted() {
    let incident: Incident = serde_json::from_str(
        r#"{"integration_id":"1","sys_id":"abc","sys_updated_on":"2024-03-01T11:15:30+01:00"}"#,
    )
    .unwrap();
    assert_eq!(incident.sys_updated_on, common::at("2024-03-01T10:15:30Z"));
    assert!(incident.excluded_fields.is_empty() && incident.custom_fields.is_empty());
    assert_eq!(incident.priority, None);
}

#[test]
fn time_to_restore_is_derived_only_from_a_consistent_pair() {
    let opened = common::at("2024-03-01T08:00:00Z");
    let resolved = common::at("2024-03-01T08:00:01.5Z");
    assert_eq!(
        Incident::derive_time_to_restore_ms(Some(opened), Some(resolved)),
        Some(1_500)
    );
    assert_eq!(
        Incident::derive_time_to_restore_ms(None, Some(resolved)),
        None
    );
    assert_eq!(
        Incident::derive_time_to_restore_ms(Some(resolved), Some(opened)),
        None
    );
}

#[test]
fn records_report_their_version() {
    let incident = common::incident();
    let version = incident.version();
    assert_eq!(
        (version.sys_updated_on, version.sys_mod_count),
        (incident.sys_updated_on, Some(7))
    );
    assert_eq!(common::raw_upsert().version().sys_mod_count, Some(7));
}
