//! The mapping as it runs (payload read without a `Value` tree, entity written by the
//! direct Avro writer) against the mapping as it was ([`map_record_via_value_tree`], then
//! apache-avro's encoder): for generated records of every entity, under several exclusion
//! policies, both give the same entity or the same error, and the two encodings decode to
//! the same Avro value with the released schema.

use apache_avro::from_avro_datum;
use chrono::TimeZone;
use nowstream_model::single_object::HEADER_LEN;
use nowstream_model::{AvroRecord, ChangeRequest, FieldDefinition, Incident, User};
use serde_json::{Map, Value, json};

use super::*;

/// Marks the values of excluded fields: no output may contain it.
const WITHHELD: &str = "WITHHELD-VALUE";

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self) -> String {
        const TEXTS: &[&str] = &[
            "",
            "Email drops connections",
            "Zürich — café ✓ 日本語 🚀",
            "quotes \" and \\ and\nnewlines",
            "5302c7465a884170652eaff0c0295d49",
            "  padded  ",
        ];
        TEXTS[self.below(TEXTS.len() as u64) as usize].to_owned()
    }

    /// A value for a field of `kind`, in any of the shapes payloads come in (mostly the
    /// `sysparm_display_value=all` pair), sometimes broken.
    fn field(&mut self, kind: SourceKind, index: usize) -> Option<Value> {
        let stored = match kind {
            SourceKind::Time => match self.below(8) {
                0 => "2024-13-01 00:00:00".to_owned(),
                1 => String::new(),
                _ => format!(
                    "2024-03-{:02} 1{}:{:02}:00",
                    1 + index % 28,
                    index % 10,
                    index
                ),
            },
            SourceKind::Flag => {
                ["true", "false", "1", "FALSE", "maybe", ""][self.below(6) as usize].to_owned()
            }
            SourceKind::Integer => {
                ["40", " 7 ", "1,000", "", "-3"][self.below(5) as usize].to_owned()
            }
            SourceKind::Reference => format!("{index:032x}"),
            _ => self.text(),
        };
        let display = self.text();
        Some(match self.below(24) {
            0 => return None,
            1 => Value::Null,
            2 => Value::String(stored),
            3 => json!(index),
            4 => json!(1.5),
            5 => json!(true),
            6 => json!([stored]),
            7 => json!({"link": "https://x"}),
            8 => json!({"value": {"deep": stored}}),
            9 => json!({"display_value": display}),
            10 => json!({"value": stored, "display_value": [display]}),
            11 => json!({"value": 3.0, "display_value": display}),
            _ => json!({
                "display_value": display,
                "link": format!("https://acme.service-now.com/api/now/table/x/{index}"),
                "value": stored,
            }),
        })
    }

    fn payload(&mut self, entity: Entity, policy: &ExclusionPolicy) -> Map<String, Value> {
        let mut map = Map::new();
        if self.below(20) != 0 {
            map.insert(
                "sys_id".into(),
                json!({"value": SYS_ID, "display_value": SYS_ID}),
            );
        }
        if self.below(3) == 0 {
            map.insert("sys_mod_count".into(), json!({"value": "12"}));
        }
        for (index, source) in field_sources(entity).iter().enumerate() {
            if let Some(value) = self.field(source.kind, index) {
                map.insert(source.source.to_owned(), value);
            }
        }
        for name in [
            "u_root_cause",
            "u_tier",
            "u_vendor.name",
            "caller_id",
            "sys_class_name",
        ] {
            if self.below(2) == 0 {
                let value = self
                    .field(SourceKind::Text, name.len())
                    .unwrap_or(Value::Null);
                map.insert(name.to_owned(), value);
            }
        }
        // Excluded fields carry a marker that must not come out.
        for (name, value) in map.iter_mut() {
            if policy.excludes(name) {
                *value = json!({"value": WITHHELD, "display_value": WITHHELD});
            }
        }
        map
    }
}

const SYS_ID: &str = "9d385017c611228701d22104cc95c371";

fn raw(entity: Entity, sys_id: &str, payload: String) -> RawRecord {
    RawRecord {
        integration_id: "42".into(),
        table: entity.source_table().into(),
        sys_id: sys_id.into(),
        sys_updated_on: Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).unwrap(),
        sys_mod_count: None,
        op: RecordOp::Upsert,
        fetched_at: Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 5).unwrap(),
        instance_url: "https://acme.service-now.com".into(),
        payload: Some(payload),
    }
}

fn policies() -> Vec<ExclusionPolicy> {
    let lists: &[&[&str]] = &[
        &[],
        &["Summary", "Comments", "u_root_cause"],
        &["assigned_to", "opened_at", "department"],
        &["business_service.department", "email", "u_vendor", "table"],
        &["SysCreatedOn", "priority", "link"],
    ];
    lists
        .iter()
        .map(|names| {
            let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
            ExclusionPolicy::new(&names).unwrap()
        })
        .collect()
}

/// The record's Avro body decoded by apache-avro with its entity's current schema.
fn decoded(entity: Entity, bytes: &[u8]) -> apache_avro::types::Value {
    let mut body = &bytes[HEADER_LEN..];
    from_avro_datum(entity.schema().schema(), &mut body, None).unwrap()
}

fn encode_both(record: &EntityRecord) -> (Vec<u8>, Vec<u8>) {
    let reference = match record {
        EntityRecord::Incident(r) => r.encode_with_apache_avro(),
        EntityRecord::ChangeRequest(r) => r.encode_with_apache_avro(),
        EntityRecord::User(r) => r.encode_with_apache_avro(),
        EntityRecord::FieldDefinition(r) => r.encode_with_apache_avro(),
    };
    (record.encode().unwrap(), reference.unwrap())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn generated_records_of_every_entity_map_and_encode_as_through_value_trees() {
    let policies = policies();
    let (mut mapped, mut refused) = (0, 0);
    for seed in 1..=300u64 {
        let mut generator = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        for entity in Entity::ALL {
            for policy in &policies {
                let payload = Value::Object(generator.payload(entity, policy)).to_string();
                let sys_id = if generator.below(10) == 0 { "" } else { SYS_ID };
                let raw = raw(entity, sys_id, payload);
                let context = format!(
                    "seed {seed}, {entity}, {:?}",
                    policy.names().collect::<Vec<_>>()
                );
                match (
                    map_record(&raw, policy),
                    map_record_via_value_tree(&raw, policy),
                ) {
                    (Ok(Mapped::Upsert(record)), Ok(Mapped::Upsert(reference))) => {
                        assert_eq!(record, reference, "{context}");
                        let (direct, by_apache) = encode_both(&record);
                        assert_eq!(
                            decoded(entity, &direct),
                            decoded(entity, &by_apache),
                            "{context}"
                        );
                        if record_custom_fields(&record) <= 1 {
                            assert_eq!(direct, by_apache, "{context}");
                        }
                        assert!(!contains(&direct, WITHHELD), "{context}: leaked");
                        assert_eq!(EntityRecord::decode(entity, &direct).unwrap(), record);
                        mapped += 1;
                    }
                    (Err(error), Err(reference)) => {
                        assert_eq!(error.code(), reference.code(), "{context}");
                        assert_eq!(error.to_string(), reference.to_string(), "{context}");
                        assert!(!error.to_string().contains(WITHHELD), "{context}: leaked");
                        refused += 1;
                    }
                    (direct, reference) => {
                        panic!("{context}: direct {direct:?}, reference {reference:?}")
                    }
                }
            }
        }
    }
    // The generator exercises both outcomes.
    assert!(
        mapped > 200 && refused > 200,
        "{mapped} mapped, {refused} refused"
    );
}

fn record_custom_fields(record: &EntityRecord) -> usize {
    match record {
        EntityRecord::Incident(Incident { custom_fields, .. })
        | EntityRecord::ChangeRequest(ChangeRequest { custom_fields, .. })
        | EntityRecord::User(User { custom_fields, .. })
        | EntityRecord::FieldDefinition(FieldDefinition { custom_fields, .. }) => {
            custom_fields.len()
        }
    }
}

#[test]
fn malformed_payloads_fail_as_through_value_trees() {
    let policy = &policies()[1];
    for payload in [
        "",
        "[1]",
        "\"text\"",
        "null",
        "{\"number\": }",
        "{\"number\": \"INC1\",}",
        "{\"number\": \"INC1\"} trailing",
        "{\"short_description\": {\"value\": \"\\ud800\"}}",
        "{\"number\": {\"value\": \"INC1\"}, \"number\": [1]}",
    ] {
        let raw = raw(Entity::Incident, SYS_ID, payload.to_owned());
        let direct = map_record(&raw, policy);
        let reference = map_record_via_value_tree(&raw, policy);
        match (direct, reference) {
            (Err(direct), Err(reference)) => {
                assert_eq!(direct.code(), reference.code(), "{payload}");
                assert_eq!(direct.to_string(), reference.to_string(), "{payload}");
            }
            (direct, reference) => panic!("{payload}: {direct:?} / {reference:?}"),
        }
    }
}
