//! The compatibility rule: every current schema may replace each of its released versions,
//! and the rule's check rejects the edits that would break customers.

use std::path::PathBuf;

use apache_avro::Schema;
use nowstream_model::compatibility::{CompatibilityViolation, check};
use nowstream_model::contract;
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
