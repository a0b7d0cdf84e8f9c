//! The compatibility rule of the public contract.
//!
//! Customers consume the topics with their own readers, upgraded on their own schedule,
//! so every change must be *fully* compatible with each released version: the current
//! schema reads data written with the released one (backward), readers of the released
//! schema read data written with the current one (forward), and every field added since
//! the release has a default.

use std::collections::BTreeMap;

use apache_avro::Schema;
use apache_avro::error::CompatibilityError;
use apache_avro::schema::{RecordSchema, UnionSchema};
use apache_avro::schema_compatibility::SchemaCompatibility;

/// A way in which a schema change breaks the contract.
#[derive(Debug, thiserror::Error)]
pub enum CompatibilityViolation {
    /// A field that the released schema lacks has no default, so records written with
    /// the released schema cannot fill it.
    #[error("record {record}: field `{field}` was added without a default")]
    FieldAddedWithoutDefault {
        /// Full name of the record.
        record: String,
        /// The new field.
        field: String,
    },
    /// The current schema cannot read data written with the released one.
    #[error("the current schema cannot read data written with the released one: {source}")]
    CurrentCannotReadReleased {
        /// Avro's verdict.
        #[source]
        source: CompatibilityError,
    },
    /// Readers still on the released schema cannot read data written with the current one.
    #[error(
        "readers of the released schema cannot read data written with the current one: {source}"
    )]
    ReleasedCannotReadCurrent {
        /// Avro's verdict.
        #[source]
        source: CompatibilityError,
    },
}

/// Checks that `current` may replace `released` under the contract's rule.
pub fn check(released: &Schema, current: &Schema) -> Result<(), CompatibilityViolation> {
    let released_records = records_by_name(released);
    for (name, record) in records_by_name(current) {
        let Some(old) = released_records.get(&name) else {
            // A record type that is new as a whole is reached through a new field, which
            // itself needs a default; its own fields have nothing to be compatible with.
            continue;
        };
        if let Some(field) = record
            .fields
            .iter()
            .find(|field| field.default.is_none() && !old.lookup.contains_key(&field.name))
        {
            return Err(CompatibilityViolation::FieldAddedWithoutDefault {
                record: name,
                field: field.name.clone(),
            });
        }
    }
    SchemaCompatibility::can_read(released, current)
        .map_err(|source| CompatibilityViolation::CurrentCannotReadReleased { source })?;
    SchemaCompatibility::can_read(current, released)
        .map_err(|source| CompatibilityViolation::ReleasedCannotReadCurrent { source })?;
    Ok(())
}

/// Every record defined anywhere in `schema`, by full name.
fn records_by_name(schema: &Schema) -> BTreeMap<String, &RecordSchema> {
    let mut records = BTreeMap::new();
    collect_records(schema, &mut records);
    records
}

fn collect_records<'s>(schema: &'s Schema, records: &mut BTreeMap<String, &'s RecordSchema>) {
    match schema {
        Schema::Record(record) => {
            records.insert(record.name.fullname(None), record);
            for field in &record.fields {
                collect_records(&field.schema, records);
            }
        }
        Schema::Union(union) => collect_union(union, records),
        Schema::Array(array) => collect_records(&array.items, records),
        Schema::Map(map) => collect_records(&map.types, records),
        // References point at a record defined elsewhere in the same schema; primitives
        // and enums hold no fields.
        _ => {}
    }
}

fn collect_union<'s>(union: &'s UnionSchema, records: &mut BTreeMap<String, &'s RecordSchema>) {
    for variant in union.variants() {
        collect_records(variant, records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Schema {
        Schema::parse_str(json).unwrap()
    }

    const V1: &str = r#"{"type":"record","name":"R","namespace":"t","fields":[
        {"name":"a","type":"string"},
        {"name":"inner","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"long"}]}}
    ]}"#;

    #[test]
    fn a_nested_field_added_without_default_is_named() {
        let current = parse(
            r#"{"type":"record","name":"R","namespace":"t","fields":[
            {"name":"a","type":"string"},
            {"name":"inner","type":{"type":"record","name":"Inner","fields":[
                {"name":"x","type":"long"},{"name":"y","type":"string"}]}}
        ]}"#,
        );
        let violation = check(&parse(V1), &current).unwrap_err();
        assert_eq!(
            violation.to_string(),
            "record t.Inner: field `y` was added without a default"
        );
    }

    #[test]
    fn an_unchanged_schema_is_compatible_with_itself() {
        check(&parse(V1), &parse(V1)).unwrap();
    }
}
