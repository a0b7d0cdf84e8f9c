//! The OpenAPI document of the SEI ingestion contract agrees with the Avro schemas and
//! with the entity JSON the Rust types produce.

use crate::common;

use std::path::PathBuf;

use nowstream_model::{Entity, contract};
use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

fn openapi() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/sei-ingestion.openapi.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1);
    to_json(&docs.remove(0))
}

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Hash(hash) => Value::Object(
            hash.iter()
                .map(|(key, value)| {
                    let key = match key {
                        Yaml::String(key) => key.clone(),
                        Yaml::Integer(number) => number.to_string(),
                        other => panic!("unexpected key {other:?}"),
                    };
                    (key, to_json(value))
                })
                .collect::<Map<_, _>>(),
        ),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::String(text) => Value::from(text.clone()),
        Yaml::Integer(number) => Value::from(*number),
        Yaml::Real(text) => Value::from(text.parse::<f64>().unwrap()),
        Yaml::Boolean(flag) => Value::from(*flag),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML {other:?}"),
    }
}

/// The OpenAPI component for an Avro record: same name, same fields in the same order,
/// nullable exactly where Avro has a union, required exactly where Avro has no default.
fn assert_component_mirrors(component: &Value, avro_record: &Value) {
    let name = avro_record["name"].as_str().unwrap();
    let properties = component["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}"));
    let fields = avro_record["fields"].as_array().unwrap();
    let avro_names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    let api_names: Vec<&str> = properties.keys().map(String::as_str).collect();
    assert_eq!(api_names, avro_names, "{name}: properties");

    let required: Vec<&str> = component["required"]
        .as_array()
        .map(|names| names.iter().map(|n| n.as_str().unwrap()).collect())
        .unwrap_or_default();
    for field in fields {
        let field_name = field["name"].as_str().unwrap();
        let property = &properties[field_name];
        let nullable = field["type"].is_array();
        assert_eq!(
            property["nullable"] == true,
            nullable,
            "{name}.{field_name}: nullable"
        );
        assert_eq!(
            required.contains(&field_name),
            field.get("default").is_none(),
            "{name}.{field_name}: required"
        );
        let avro_type = if nullable {
            &field["type"][1]
        } else {
            &field["type"]
        };
        if avro_type["logicalType"] == "timestamp-millis" {
            assert_eq!(
                property["format"], "date-time",
                "{name}.{field_name}: format"
            );
        }
    }
}

fn named_record<'v>(json: &'v Value, name: &str) -> Option<&'v Value> {
    match json {
        Value::Object(object) => {
            if object.get("type") == Some(&Value::from("record")) && object["name"] == name {
                return Some(json);
            }
            object.values().find_map(|value| named_record(value, name))
        }
        Value::Array(items) => items.iter().find_map(|item| named_record(item, name)),
        _ => None,
    }
}

#[test]
fn entity_components_mirror_the_avro_schemas() {
    let api = openapi();
    for entity in Entity::ALL {
        let avro: Value = serde_json::from_str(entity.schema().source()).unwrap();
        let component_name = avro["name"].as_str().unwrap();
        assert_component_mirrors(&api["components"]["schemas"][component_name], &avro);
    }
}

#[test]
fn shared_field_value_components_mirror_the_avro_records() {
    let api = openapi();
    let incident: Value = serde_json::from_str(contract::INCIDENT.source()).unwrap();
    for name in ["Choice", "Reference", "CustomField"] {
        let avro = named_record(&incident, name).unwrap();
        assert_component_mirrors(&api["components"]["schemas"][name], avro);
    }
}

#[test]
fn the_entity_path_parameter_lists_every_api_path() {
    let api = openapi();
    let listed: Vec<&str> = api["components"]["parameters"]["Entity"]["schema"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = Entity::ALL.iter().map(|entity| entity.api_path()).collect();
    assert_eq!(listed, expected);
}

#[test]
fn entity_json_has_exactly_the_documented_properties() {
    let api = openapi();
    let samples = [
        (
            "Incident",
            serde_json::to_value(common::incident()).unwrap(),
        ),
        (
            "ChangeRequest",
            serde_json::to_value(common::change_request()).unwrap(),
        ),
        ("User", serde_json::to_value(common::user()).unwrap()),
        (
            "FieldDefinition",
            serde_json::to_value(common::field_definition()).unwrap(),
        ),
    ];
    for (name, sample) in samples {
        let documented: Vec<&String> = api["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        let produced: Vec<&String> = sample.as_object().unwrap().keys().collect();
        assert_eq!(produced, documented, "{name}");
    }
}

#[test]
fn the_ingestion_endpoint_documents_every_outcome_the_sink_handles() {
    let api = openapi();
    let post = &api["paths"]["/v1/ingest/servicenow/{integration_id}/{entity}"]["post"];
    for status in ["200", "400", "401", "403", "413", "429", "5XX"] {
        assert!(post["responses"].get(status).is_some(), "missing {status}");
    }
    let result = &api["components"]["schemas"]["IngestResult"]["required"];
    assert_eq!(result, &serde_json::json!(["upserted", "deleted", "stale"]));
    assert!(
        api["components"]["responses"]["RateLimited"]["headers"]
            .get("Retry-After")
            .is_some()
    );
}
