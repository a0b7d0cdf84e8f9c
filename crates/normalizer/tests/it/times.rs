//! Times come from the UTC `value` only; time to restore is derived from them.

use chrono::{DateTime, TimeZone, Utc};
use nowstream_model::{Incident, RawRecord, RecordOp};
use nowstream_normalizer::{EntityRecord, ExclusionPolicy, Mapped, map_record};
use nowstream_testkit::fixtures::raw_record;
use serde_json::{Value, json};

fn incident(payload: Value) -> Incident {
    let raw = RawRecord {
        integration_id: "42".into(),
        ..raw_record(
            "incident",
            "9d385017c611228701d22104cc95c371",
            Utc.with_ymd_and_hms(2024, 3, 10, 0, 0, 0).unwrap(),
            1,
            RecordOp::Upsert,
            Some(payload.to_string()),
        )
    };
    match map_record(&raw, &ExclusionPolicy::none()).unwrap() {
        Mapped::Upsert(EntityRecord::Incident(incident)) => incident,
        other => panic!("not an incident: {other:?}"),
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<DateTime<Utc>> {
    Some(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap())
}

#[test]
fn time_to_restore_is_resolved_minus_opened_in_milliseconds() {
    let incident = incident(json!({
        "opened_at": {"value": "2024-03-05 10:00:00", "display_value": "2024-03-05 02:00:00"},
        "resolved_at": {"value": "2024-03-06 12:30:15", "display_value": "2024-03-06 04:30:15"},
        "closed_at": {"value": "2024-03-08 00:00:00", "display_value": "2024-03-07 16:00:00"},
    }));
    assert_eq!(incident.opened_at, utc(2024, 3, 5, 10, 0, 0));
    assert_eq!(incident.resolved_at, utc(2024, 3, 6, 12, 30, 15));
    assert_eq!(incident.closed_at, utc(2024, 3, 8, 0, 0, 0));
    assert_eq!(
        incident.time_to_restore_ms,
        Some(((26 * 60 + 30) * 60 + 15) * 1000)
    );
}

#[test]
fn time_to_restore_is_null_until_resolved_and_when_resolved_before_opened() {
    let unresolved = incident(json!({
        "opened_at": {"value": "2024-03-05 10:00:00", "display_value": ""},
        "resolved_at": {"value": "", "display_value": ""},
    }));
    assert_eq!(unresolved.resolved_at, None);
    assert_eq!(unresolved.time_to_restore_ms, None);

    let backwards = incident(json!({
        "opened_at": {"value": "2024-03-05 10:00:00", "display_value": ""},
        "resolved_at": {"value": "2024-03-05 09:59:59", "display_value": ""},
    }));
    assert_eq!(backwards.time_to_restore_ms, None);

    let instant = incident(json!({
        "opened_at": "2024-03-05 10:00:00",
        "resolved_at": "2024-03-05 10:00:00",
    }));
    assert_eq!(instant.time_to_restore_ms, Some(0));
}

#[test]
fn display_values_in_another_zone_never_become_times() {
    // An API user in Asia/Kolkata (UTC+5:30) with a dd-MM-yyyy date format.
    let incident = incident(json!({
        "opened_at": {"value": "2024-03-05 22:45:00", "display_value": "06-03-2024 04:15:00", "display_value_internal": "2024-03-06 04:15:00"},
        "resolved_at": {"value": "2024-03-06 01:00:00", "display_value": "06-03-2024 06:30:00"},
        "sys_created_on": {"value": "2024-03-05 22:44:59", "display_value": "not even a time"},
    }));
    assert_eq!(incident.opened_at, utc(2024, 3, 5, 22, 45, 0));
    assert_eq!(incident.resolved_at, utc(2024, 3, 6, 1, 0, 0));
    assert_eq!(incident.sys_created_on, utc(2024, 3, 5, 22, 44, 59));
    assert_eq!(incident.time_to_restore_ms, Some(135 * 60 * 1000));
}

#[test]
fn a_time_with_only_a_display_value_stays_null() {
    let incident = incident(json!({
        "opened_at": {"display_value": "2024-03-05 02:00:00"},
        "sla_due": {"value": "", "display_value": "UNKNOWN"},
    }));
    assert_eq!(incident.opened_at, None);
    assert_eq!(incident.sla_due, None);
}

#[test]
fn the_version_is_the_raw_records_whatever_the_payload_says() {
    let incident = incident(json!({
        "sys_updated_on": {"value": "1999-01-01 00:00:00", "display_value": ""},
        "sys_mod_count": {"value": "99", "display_value": "99"},
    }));
    assert_eq!(
        incident.sys_updated_on,
        Utc.with_ymd_and_hms(2024, 3, 10, 0, 0, 0).unwrap()
    );
    assert_eq!(incident.sys_mod_count, Some(1));
}
