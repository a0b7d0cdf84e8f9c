//! House rules of the `.avsc` files: documented, self-contained, nullable fields default
//! to null, and every file in `schemas/` is part of the compiled-in contract.

use std::path::PathBuf;

use nowstream_model::contract;
use serde_json::Value;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

/// Visits every record definition in a schema JSON.
fn each_record<'v>(json: &'v Value, visit: &mut dyn FnMut(&'v Value)) {
    match json {
        Value::Object(object) => {
            if object.get("type") == Some(&Value::from("record")) {
                visit(json);
            }
            for value in object.values() {
                each_record(value, visit);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| each_record(item, visit)),
        _ => {}
    }
}

#[test]
fn every_avsc_file_is_a_compiled_in_contract_schema() {
    let mut on_disk: Vec<String> = std::fs::read_dir(schemas_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "avsc"))
        .map(|path| path.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    on_disk.sort();
    let mut compiled: Vec<String> = contract::all()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    compiled.sort();
    assert_eq!(on_disk, compiled);
}

#[test]
fn every_record_and_field_is_documented() {
    for contract in contract::all() {
        let json: Value = serde_json::from_str(contract.source()).unwrap();
        each_record(&json, &mut |record| {
            let name = record["name"].as_str().unwrap();
            assert!(
                record["doc"].as_str().is_some_and(|doc| !doc.is_empty()),
                "{name} lacks a doc"
            );
            for field in record["fields"].as_array().unwrap() {
                assert!(
                    field["doc"].as_str().is_some_and(|doc| !doc.is_empty()),
                    "{}: {name}.{} lacks a doc",
                    contract.name(),
                    field["name"]
                );
            }
        });
    }
}

#[test]
fn every_nullable_field_puts_null_first_and_defaults_to_it() {
    for contract in contract::all() {
        let json: Value = serde_json::from_str(contract.source()).unwrap();
        each_record(&json, &mut |record| {
            for field in record["fields"].as_array().unwrap() {
                if let Value::Array(branches) = &field["type"] {
                    let what = format!("{}: {}", contract.name(), field["name"]);
                    assert_eq!(branches.len(), 2, "{what}");
                    assert_eq!(branches[0], "null", "{what}");
                    assert_eq!(field.get("default"), Some(&Value::Null), "{what}");
                }
            }
        });
    }
}

#[test]
fn schemas_live_under_the_io_nowstream_namespace() {
    for contract in contract::all() {
        assert!(
            contract.full_name().starts_with("io.nowstream."),
            "{}",
            contract.full_name()
        );
    }
}

#[test]
fn every_sei_entity_carries_identity_version_and_exclusion_fields() {
    for entity in nowstream_model::Entity::ALL {
        let json: Value = serde_json::from_str(entity.schema().source()).unwrap();
        let names: Vec<&str> = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|field| field["name"].as_str().unwrap())
            .collect();
        for required in [
            "integration_id",
            "sys_id",
            "sys_updated_on",
            "sys_mod_count",
            "excluded_fields",
            "custom_fields",
        ] {
            assert!(names.contains(&required), "{entity} lacks {required}");
        }
    }
}
