//! Golden tests: realistic raw records in `tests/golden/<case>.input.json`, the expected
//! output in `tests/golden/<case>.expected.json` (entity JSON as the SEI API receives it).
//!
//! Inputs come from the ServiceNow simulator (`sim_*`) and from the shapes of real Table API
//! responses (`snow_*`). Each raw record goes through Avro first, as it would over Kafka, and
//! each output entity must survive its own Avro round trip.
//!
//! After an intended mapping change, regenerate the expected files with
//! `NOWSTREAM_BLESS=1 cargo test -p nowstream-normalizer --test golden` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use nowstream_model::{
    AvroRecord, ChangeRequest, Entity, FieldDefinition, Incident, RawRecord, User,
};
use nowstream_normalizer::{EntityRecord, ExclusionPolicy, Mapped, map_record};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldenInput {
    /// What the case shows; documentation only.
    #[allow(dead_code)]
    description: String,
    /// The integration's exclusion policy.
    exclude_fields: Vec<String>,
    /// The raw record without its payload.
    raw: Value,
    /// The payload as a JSON object (stored as text in the raw record), or null.
    payload: Value,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn raw_record(input: &GoldenInput) -> RawRecord {
    let mut raw = input.raw.clone();
    raw["payload"] = match &input.payload {
        Value::Null => Value::Null,
        payload => Value::String(payload.to_string()),
    };
    let raw: RawRecord = serde_json::from_value(raw).expect("golden raw record");
    // Through Avro, as the normalizer receives it from Kafka.
    RawRecord::decode(&raw.encode().expect("encode raw")).expect("decode raw")
}

fn avro_round_trip(record: &EntityRecord) -> EntityRecord {
    let bytes = record.encode().expect("encode entity");
    match record.entity() {
        Entity::Incident => Incident::decode(&bytes).map(EntityRecord::from),
        Entity::ChangeRequest => ChangeRequest::decode(&bytes).map(EntityRecord::from),
        Entity::User => User::decode(&bytes).map(EntityRecord::from),
        Entity::FieldDefinition => FieldDefinition::decode(&bytes).map(EntityRecord::from),
    }
    .expect("decode entity")
}

fn output_json(mapped: &Mapped) -> Value {
    match mapped {
        Mapped::Upsert(record) => {
            assert_eq!(
                &avro_round_trip(record),
                record,
                "Avro round trip changed it"
            );
            json!({"entity": record.entity().name(), "key": record.key(), "value": record})
        }
        Mapped::Delete { entity, key } => {
            assert_eq!(mapped.encode_value().expect("tombstone"), None);
            json!({"entity": entity.name(), "key": key, "value": null})
        }
    }
}

#[test]
fn golden_raw_records_map_to_the_expected_entities() {
    let bless = std::env::var_os("NOWSTREAM_BLESS").is_some();
    let mut inputs: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("golden dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".input.json"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "golden cases missing: {inputs:?}");

    let mut failures = Vec::new();
    for input_path in &inputs {
        let case = input_path.to_string_lossy().replace(".input.json", "");
        let expected_path = PathBuf::from(format!("{case}.expected.json"));
        let input: GoldenInput =
            serde_json::from_str(&fs::read_to_string(input_path).expect("read input"))
                .unwrap_or_else(|e| panic!("{}: {e}", input_path.display()));
        let policy = ExclusionPolicy::new(&input.exclude_fields).expect("golden policy");
        let mapped = map_record(&raw_record(&input), &policy)
            .unwrap_or_else(|e| panic!("{}: {e}", input_path.display()));
        let actual = output_json(&mapped);
        let rendered = format!("{}\n", serde_json::to_string_pretty(&actual).expect("json"));
        if bless {
            fs::write(&expected_path, &rendered).expect("write expected");
            continue;
        }
        let expected: Value = match fs::read_to_string(&expected_path) {
            Ok(text) => serde_json::from_str(&text).expect("expected JSON"),
            Err(e) => {
                failures.push(format!("{}: {e}", expected_path.display()));
                continue;
            }
        };
        if actual != expected {
            failures.push(format!(
                "{} differs from {}:\n{rendered}",
                input_path.display(),
                expected_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
