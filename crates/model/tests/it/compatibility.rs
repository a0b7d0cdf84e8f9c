//! The compatibility rule: every current schema may replace each of its released versions,
//! and the rule's check rejects the edits that would break customers.

use crate::common;

use std::fmt::Debug;
use std::path::PathBuf;

use apache_avro::types::Value as AvroValue;
use apache_avro::{Schema, from_avro_datum, to_avro_datum};
use nowstream_model::compatibility::{CompatibilityViolation, check};
use nowstream_model::contract::{self, ReleasedSchema};
use nowstream_model::single_object::MAGIC;
use nowstream_model::{AvroRecord, Incident, User};
use serde_json::{Value, json};

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

#[test]
fn every_current_schema_is_fully_compatible_with_each_released_version() {
    for contract in contract::all() {
        assert!(
            !contract.released().is_empty(),
            "{} has no release",
            contract.name()
        );
        for released in contract.released() {
            check(released.schema(), contract.schema()).unwrap_or_else(|violation| {
                panic!(
                    "{} against v{}: {violation}",
                    contract.name(),
                    released.version()
                )
            });
        }
    }
}

#[test]
fn every_released_file_on_disk_is_compiled_in() {
    let released_dir = schemas_dir().join("released");
    let mut found = 0;
    for entry in std::fs::read_dir(&released_dir).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let contract = contract::all()
            .into_iter()
            .find(|contract| contract.name() == name)
            .unwrap_or_else(|| panic!("released/{name} belongs to no contract schema"));
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let stem = file.file_stem().unwrap().to_str().unwrap();
            let version: u32 = stem.strip_prefix('v').unwrap().parse().unwrap();
            let compiled = contract
                .released()
                .iter()
                .find(|released| released.version() == version)
                .unwrap_or_else(|| panic!("released/{name}/{stem}.avsc is not compiled in"));
            assert_eq!(compiled.source(), std::fs::read_to_string(&file).unwrap());
            found += 1;
        }
    }
    assert!(found >= contract::all().len());
}

/// The released incident schema with `edit` applied, as the "current" candidate.
fn edited_incident(edit: impl FnOnce(&mut Vec<Value>)) -> Schema {
    let mut json: Value = serde_json::from_str(contract::INCIDENT.released()[0].source()).unwrap();
    let fields = json["fields"].as_array_mut().unwrap();
    edit(fields);
    Schema::parse_str(&json.to_string()).unwrap()
}

fn released_incident() -> &'static Schema {
    contract::INCIDENT.released()[0].schema()
}

fn field_mut<'f>(fields: &'f mut [Value], name: &str) -> &'f mut Value {
    fields
        .iter_mut()
        .find(|field| field["name"] == name)
        .unwrap()
}

#[test]
fn adding_a_nullable_field_with_a_null_default_passes() {
    let current = edited_incident(|fields| {
        fields.push(
            json!({"name": "u_new", "type": ["null", "string"], "default": null, "doc": "x"}),
        );
    });
    check(released_incident(), &current).unwrap();
}

#[test]
fn adding_a_field_without_default_fails_and_names_it() {
    let current = edited_incident(|fields| {
        fields.push(json!({"name": "problem_id", "type": "string", "doc": "x"}));
    });
    let violation = check(released_incident(), &current).unwrap_err();
    assert!(
        matches!(&violation, CompatibilityViolation::FieldAddedWithoutDefault { record, field }
            if record == "io.nowstream.sei.Incident" && field == "problem_id"),
        "{violation}"
    );
}

#[test]
fn adding_a_field_without_default_inside_a_shared_record_fails() {
    let current = edited_incident(|fields| {
        let choice = &mut field_mut(fields, "priority")["type"][1];
        choice["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sequence", "type": "int"}));
    });
    let violation = check(released_incident(), &current).unwrap_err();
    assert!(
        matches!(&violation, CompatibilityViolation::FieldAddedWithoutDefault { record, field }
            if record == "io.nowstream.sei.Choice" && field == "sequence"),
        "{violation}"
    );
}

#[test]
fn changing_a_field_type_fails() {
    let current = edited_incident(|fields| {
        field_mut(fields, "number")["type"] = json!(["null", "long"]);
    });
    let violation = check(released_incident(), &current).unwrap_err();
    assert!(
        matches!(
            violation,
            CompatibilityViolation::CurrentCannotReadReleased { .. }
        ),
        "{violation}"
    );
}

#[test]
fn making_a_nullable_field_required_fails() {
    let current = edited_incident(|fields| {
        let number = field_mut(fields, "number");
        number["type"] = json!("string");
        number.as_object_mut().unwrap().remove("default");
    });
    assert!(check(released_incident(), &current).is_err());
}

#[test]
fn removing_a_field_that_released_readers_require_fails() {
    let current = edited_incident(|fields| fields.retain(|field| field["name"] != "sys_id"));
    let violation = check(released_incident(), &current).unwrap_err();
    assert!(
        matches!(
            violation,
            CompatibilityViolation::ReleasedCannotReadCurrent { .. }
        ),
        "{violation}"
    );
}

#[test]
fn adding_an_enum_symbol_fails_because_released_readers_cannot_read_it() {
    let mut json: Value =
        serde_json::from_str(contract::RAW_RECORD.released()[0].source()).unwrap();
    let fields = json["fields"].as_array_mut().unwrap();
    let op = fields
        .iter_mut()
        .find(|field| field["name"] == "op")
        .unwrap();
    op["type"]["symbols"] = json!(["UPSERT", "DELETE", "UNDELETE"]);
    let current = Schema::parse_str(&json.to_string()).unwrap();
    let violation = check(contract::RAW_RECORD.released()[0].schema(), &current).unwrap_err();
    assert!(
        matches!(
            violation,
            CompatibilityViolation::ReleasedCannotReadCurrent { .. }
        ),
        "{violation}"
    );
}

#[test]
fn every_release_is_fully_compatible_with_each_earlier_release() {
    // The current schema is checked against every release above; this checks the releases
    // among themselves, so v2 is held to v1 in both directions even once v3 is current.
    let mut pairs = 0;
    for contract in contract::all() {
        for (newer_index, newer) in contract.released().iter().enumerate() {
            for older in &contract.released()[..newer_index] {
                check(older.schema(), newer.schema()).unwrap_or_else(|violation| {
                    panic!(
                        "{} v{} against v{}: {violation}",
                        contract.name(),
                        newer.version(),
                        older.version()
                    )
                });
                pairs += 1;
            }
        }
    }
    assert!(pairs >= 2, "incident and user have a v2 to hold against v1");
}

/// Field names of a schema text, in order.
fn field_names(source: &str) -> Vec<String> {
    let json: Value = serde_json::from_str(source).unwrap();
    json["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn v2_adds_employee_number_to_user_and_caused_by_to_incident_and_nothing_else() {
    for (contract, added) in [
        (&*contract::USER, "employee_number"),
        (&*contract::INCIDENT, "caused_by"),
    ] {
        let [v1, v2] = contract.released() else {
            panic!("{} should have exactly v1 and v2", contract.name());
        };
        assert_eq!((v1.version(), v2.version()), (1, 2));
        assert_ne!(v1.fingerprint(), v2.fingerprint());
        let mut without_added = field_names(v2.source());
        without_added.retain(|name| name != added);
        assert_eq!(
            without_added,
            field_names(v1.source()),
            "{}",
            contract.name()
        );
        let v2_json: Value = serde_json::from_str(v2.source()).unwrap();
        let field = v2_json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|field| field["name"] == added)
            .unwrap();
        assert_eq!(field["type"][0], "null", "{added} is nullable");
        assert_eq!(field.get("default"), Some(&Value::Null), "{added}");
        // v2 is what producers write today.
        assert_eq!(v2.fingerprint(), contract.fingerprint());
    }
    // Entities the datasheet check found complete stay at v1.
    assert_eq!(contract::CHANGE_REQUEST.released().len(), 1);
    assert_eq!(contract::FIELD_DEFINITION.released().len(), 1);
}

/// What a reader still on `release` makes of a message the current producer wrote.
fn read_as_release<T: AvroRecord>(record: &T, release: &ReleasedSchema) -> AvroValue {
    let message = record.encode().unwrap();
    let mut body = &message[10..];
    from_avro_datum(T::contract().schema(), &mut body, Some(release.schema())).unwrap()
}

/// A message as a producer still on `release` writes it.
fn written_with_release(value: AvroValue, release: &ReleasedSchema) -> Vec<u8> {
    let mut message = MAGIC.to_vec();
    message.extend(release.fingerprint().wire_bytes());
    message.extend(to_avro_datum(release.schema(), value).unwrap());
    message
}

fn record_field_names(value: &AvroValue) -> Vec<String> {
    match value {
        AvroValue::Record(fields) => fields.iter().map(|(name, _)| name.clone()).collect(),
        other => panic!("not a record: {other:?}"),
    }
}

/// Both directions with real records: a v1 reader reads what v2 writes (every v1 field,
/// unchanged), and v2 reads what a v1 producer wrote (the added field null).
fn assert_v1_and_v2_read_each_other<T>(record: T, without_added: T)
where
    T: AvroRecord + PartialEq + Debug,
{
    let v1 = &T::contract().released()[0];
    let as_v1 = read_as_release(&record, v1);
    assert_eq!(record_field_names(&as_v1), field_names(v1.source()));
    let written_by_v1 = written_with_release(as_v1, v1);
    assert_eq!(T::decode(&written_by_v1).unwrap(), without_added);
}

#[test]
fn a_v1_reader_and_a_v2_reader_read_each_others_incidents() {
    let incident = common::incident();
    assert!(
        incident.caused_by.is_some(),
        "the sample must carry the new field"
    );
    let without = Incident {
        caused_by: None,
        ..incident.clone()
    };
    assert_v1_and_v2_read_each_other(incident, without);
}

#[test]
fn a_v1_reader_and_a_v2_reader_read_each_others_users() {
    let user = common::user();
    assert!(
        user.employee_number.is_some(),
        "the sample must carry the new field"
    );
    let without = User {
        employee_number: None,
        ..user.clone()
    };
    assert_v1_and_v2_read_each_other(user, without);
}
