//! Realistic sample records shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use nowstream_model::{
    ChangeRequest, Checkpoint, Choice, CustomField, FieldDefinition, Incident, RawRecord, RecordOp,
    Reference, User,
};

pub const INTEGRATION: &str = "4242";
pub const SYS_ID: &str = "9d385017c611228701d22104cc95c371";

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn choice(value: &str, label: &str) -> Option<Choice> {
    Some(Choice {
        value: Some(value.into()),
        label: Some(label.into()),
    })
}

fn reference(sys_id: &str, display: &str) -> Option<Reference> {
    Some(Reference {
        sys_id: sys_id.into(),
        display_value: Some(display.into()),
    })
}

pub fn raw_upsert() -> RawRecord {
    RawRecord {
        integration_id: INTEGRATION.into(),
        table: "incident".into(),
        sys_id: SYS_ID.into(),
        sys_updated_on: at("2024-03-01T10:15:30Z"),
        sys_mod_count: Some(7),
        op: RecordOp::Upsert,
        fetched_at: Utc.timestamp_millis_opt(1_709_288_131_123).unwrap(),
        instance_url: "https://acme.service-now.com".into(),
        payload: Some(
            r#"{"sys_id":{"value":"9d385017c611228701d22104cc95c371","display_value":"9d385017c611228701d22104cc95c371"},"short_description":{"value":"Überweisung schlägt fehl 🔥","display_value":"Überweisung schlägt fehl 🔥"}}"#
                .into(),
        ),
    }
}

pub fn raw_delete() -> RawRecord {
    RawRecord {
        op: RecordOp::Delete,
        sys_mod_count: None,
        payload: None,
        ..raw_upsert()
    }
}

pub fn checkpoint() -> Checkpoint {
    Checkpoint {
        integration_id: INTEGRATION.into(),
        table: "change_request".into(),
        last_updated_on: at("2024-03-01T10:15:30Z"),
        last_sys_id: SYS_ID.into(),
        updated_at: at("2024-03-01T10:16:00.250Z"),
        records_total: 123_456,
        deletes_last_created_on: Some(at("2024-02-28T23:59:59Z")),
        deletes_last_sys_id: Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9".into()),
    }
}

pub fn custom_fields() -> BTreeMap<String, CustomField> {
    BTreeMap::from([
        (
            "u_root_cause".to_owned(),
            CustomField {
                value: Some("dns".into()),
                display_value: Some("DNS — 名前解決 ✅".into()),
            },
        ),
        ("u_empty".to_owned(), CustomField::default()),
    ])
}

pub fn incident() -> Incident {
    let opened_at = at("2024-03-01T08:00:00Z");
    let resolved_at = at("2024-03-01T09:30:00Z");
    Incident {
        integration_id: INTEGRATION.into(),
        sys_id: SYS_ID.into(),
        sys_updated_on: at("2024-03-01T10:15:30Z"),
        sys_mod_count: Some(7),
        number: Some("INC0010042".into()),
        short_description: None,
        description: Some("Zahlungen 💸 hängen\nseit 08:00 — see \"payments\" dashboard".into()),
        comments: None,
        work_notes: Some("2024-03-01 09:00:00 - Ana (Work notes)\nRestarted pods".into()),
        priority: choice("1", "1 - Critical"),
        urgency: choice("1", "1 - High"),
        impact: choice("1", "1 - High"),
        severity: choice("2", "2 - Medium"),
        state: choice("6", "Resolved"),
        escalation: choice("0", "Normal"),
        category: choice("software", "Software"),
        close_code: Some(Choice {
            value: Some("Solved (Permanently)".into()),
            label: None,
        }),
        sys_created_on: Some(opened_at),
        opened_at: Some(opened_at),
        resolved_at: Some(resolved_at),
        closed_at: None,
        sla_due: Some(at("2024-03-01T12:00:00Z")),
        time_to_restore_ms: Incident::derive_time_to_restore_ms(Some(opened_at), Some(resolved_at)),
        parent: None,
        assigned_to: reference("5137153cc611227c000bbd1bd8cd2005", "Fred Luddy"),
        created_by: reference("6816f79cc0a8016401c5a33be04be441", "System Administrator"),
        resolved_by: reference("5137153cc611227c000bbd1bd8cd2005", "Fred Luddy"),
        business_service: reference("26da329f0a0a0bb400f69d8159bc753d", "Payments"),
        business_service_department: Some(Reference {
            sys_id: "221f79b7c6112284005d646b76ab978c".into(),
            display_value: None,
        }),
        caused_by: reference("c83c5e5347c12200e0ef563dbb9a7190", "CHG0030002"),
        excluded_fields: vec!["short_description".into(), "comments".into()],
        custom_fields: custom_fields(),
    }
}

/// An incident with every optional field empty: the smallest valid record.
pub fn sparse_incident() -> Incident {
    Incident {
        integration_id: INTEGRATION.into(),
        sys_id: SYS_ID.into(),
        sys_updated_on: at("1970-01-01T00:00:00Z"),
        sys_mod_count: None,
        number: None,
        short_description: None,
        description: None,
        comments: None,
        work_notes: None,
        priority: None,
        urgency: None,
        impact: None,
        severity: None,
        state: None,
        escalation: None,
        category: None,
        close_code: None,
        sys_created_on: None,
        opened_at: None,
        resolved_at: None,
        closed_at: None,
        sla_due: None,
        time_to_restore_ms: None,
        parent: None,
        assigned_to: None,
        created_by: None,
        resolved_by: None,
        business_service: None,
        business_service_department: None,
        caused_by: None,
        excluded_fields: Vec::new(),
        custom_fields: BTreeMap::new(),
    }
}

pub fn change_request() -> ChangeRequest {
    ChangeRequest {
        integration_id: INTEGRATION.into(),
        sys_id: "c83c5e5347c12200e0ef563dbb9a7190".into(),
        sys_updated_on: at("2024-02-10T17:45:00Z"),
        sys_mod_count: Some(12),
        number: Some("CHG0030002".into()),
        short_description: Some("Rollout 🚀 v2.3 to eu-west".into()),
        description: None,
        comments: None,
        work_notes: None,
        priority: choice("3", "3 - Moderate"),
        urgency: choice("2", "2 - Medium"),
        impact: choice("2", "2 - Medium"),
        state: choice("3", "Closed"),
        r#type: choice("normal", "Normal"),
        scope: choice("3", "Medium"),
        close_code: choice("successful", "Successful"),
        sys_created_on: Some(at("2024-02-01T09:00:00Z")),
        start_date: Some(at("2024-02-10T16:00:00Z")),
        end_date: Some(at("2024-02-10T18:00:00Z")),
        closed_at: Some(at("2024-02-10T17:45:00Z")),
        parent: reference("a9e9c33dc61122760072455df62663d2", "CHG0030001"),
        assigned_to: reference("5137153cc611227c000bbd1bd8cd2005", "Fred Luddy"),
        created_by: reference("6816f79cc0a8016401c5a33be04be441", "System Administrator"),
        closed_by: reference("5137153cc611227c000bbd1bd8cd2005", "Fred Luddy"),
        business_service: reference("26da329f0a0a0bb400f69d8159bc753d", "Payments"),
        business_service_department: None,
        requested_by_department: reference("221f79b7c6112284005d646b76ab978c", "IT"),
        excluded_fields: vec!["description".into()],
        custom_fields: custom_fields(),
    }
}

pub fn user() -> User {
    User {
        integration_id: INTEGRATION.into(),
        sys_id: "5137153cc611227c000bbd1bd8cd2005".into(),
        sys_updated_on: at("2023-11-05T06:07:08Z"),
        sys_mod_count: Some(3),
        user_name: Some("fred.luddy".into()),
        name: Some("Fred Lüddy 👋".into()),
        email: None,
        employee_number: Some("E-01042".into()),
        title: Some("SRE".into()),
        active: Some(true),
        department: reference("221f79b7c6112284005d646b76ab978c", "IT"),
        manager: None,
        sys_created_on: Some(at("2012-02-18T03:04:52Z")),
        excluded_fields: vec!["email".into()],
        custom_fields: BTreeMap::new(),
    }
}

pub fn field_definition() -> FieldDefinition {
    FieldDefinition {
        integration_id: INTEGRATION.into(),
        sys_id: "f1e2d3c4b5a697887766554433221100".into(),
        sys_updated_on: at("2024-01-01T00:00:00Z"),
        sys_mod_count: Some(0),
        table: "incident".into(),
        element: Some("u_root_cause".into()),
        column_label: Some("Root cause (原因)".into()),
        internal_type: Some("choice".into()),
        reference: None,
        mandatory: Some(false),
        active: Some(true),
        max_length: Some(40),
        excluded_fields: Vec::new(),
        custom_fields: BTreeMap::new(),
    }
}
