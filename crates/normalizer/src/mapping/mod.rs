//! Raw record → SEI entity, and the one entry point, [`map_record`].
//!
//! Which ServiceNow field feeds which entity field ([`field_sources`]) is listed in the
//! model (`nowstream_model::field_sources`), because the fetcher asks ServiceNow for the same
//! fields; each entity module here holds the code that reads them, and a test checks the two
//! agree. The list is what `docs/normalizer-mapping.md` documents and what
//! `excluded_fields` is computed from.

mod change_request;
mod field_definition;
mod incident;
mod user;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
pub use nowstream_model::field_sources::{
    DerivedField, FieldSource, SourceKind, derived_fields, field_sources,
};
use nowstream_model::table_api::{RecordFields, RecordParseError};
use nowstream_model::{CustomField, Entity, ExclusionPolicy, RawRecord, RecordKey, RecordOp};
#[cfg(test)]
use serde_json::Value;

use crate::error::MapError;
use crate::fields::Fields;
use crate::record::{EntityRecord, Mapped};

/// What `excluded_fields` holds for every record of `entity` under `policy`, sorted:
/// the entity fields whose source the policy excludes, the derived fields computed from an
/// excluded field (or named by the policy themselves), and the excluded custom (`u_*`)
/// field names.
///
/// It depends on the policy alone, never on the record: a consumer that finds a field
/// listed knows its null means "withheld", whether or not the record had a value, and the
/// list reveals nothing about the record.
pub fn excluded_fields(entity: Entity, policy: &ExclusionPolicy) -> Vec<String> {
    policy.excluded_entity_fields(entity).to_vec()
}

/// Maps one raw record to its SEI entity, or to a tombstone for a deletion.
///
/// Excluded fields are left out while the payload is parsed, before anything reads it (see
/// [`ExclusionPolicy`]). The entity's identity and version come from the raw record
/// (`integration_id`, `sys_id`, `sys_updated_on`, and `sys_mod_count`, which falls back to
/// the payload's when the raw record has none), so the entity has exactly the version and
/// key of the raw record it came from.
pub fn map_record(raw: &RawRecord, policy: &ExclusionPolicy) -> Result<Mapped, MapError> {
    let Some(entity) = Entity::from_source_table(&raw.table) else {
        return Err(MapError::UnknownTable {
            table: raw.table.clone(),
            sys_id: raw.sys_id.clone(),
        });
    };
    match raw.op {
        RecordOp::Delete => {
            if raw.sys_id.is_empty() {
                return Err(MapError::MissingSysId {
                    table: raw.table.clone(),
                });
            }
            let key = record_key(raw, &raw.sys_id)?;
            Ok(Mapped::Delete { entity, key })
        }
        RecordOp::Upsert => map_upsert(raw, entity, policy).map(Mapped::Upsert),
    }
}

/// The parts every entity shares, read once before the entity-specific fields.
#[derive(Debug)]
struct Common {
    integration_id: String,
    sys_id: String,
    sys_updated_on: DateTime<Utc>,
    sys_mod_count: Option<i64>,
    excluded_fields: Vec<String>,
    custom_fields: BTreeMap<String, CustomField>,
}

fn map_upsert(
    raw: &RawRecord,
    entity: Entity,
    policy: &ExclusionPolicy,
) -> Result<EntityRecord, MapError> {
    let payload = payload_of(raw)?;
    // Excluded keys are skipped while parsing, before anything reads the payload: nothing
    // below can see an excluded field.
    let record =
        RecordFields::parse(payload, |key| !policy.excludes(key)).map_err(|error| match error {
            RecordParseError::Json(error) => MapError::PayloadNotJson {
                table: raw.table.clone(),
                sys_id: raw.sys_id.clone(),
                reason: error.to_string(),
            },
            RecordParseError::NotObject { found } => MapError::PayloadNotObject {
                table: raw.table.clone(),
                sys_id: raw.sys_id.clone(),
                found,
            },
        })?;
    map_fields(raw, entity, policy, &record)
}

fn payload_of(raw: &RawRecord) -> Result<&str, MapError> {
    raw.payload
        .as_deref()
        .ok_or_else(|| MapError::MissingPayload {
            table: raw.table.clone(),
            sys_id: raw.sys_id.clone(),
        })
}

/// The entity from the payload's fields (excluded ones already left out).
fn map_fields(
    raw: &RawRecord,
    entity: Entity,
    policy: &ExclusionPolicy,
    record: &RecordFields<'_>,
) -> Result<EntityRecord, MapError> {
    let sys_id = resolve_sys_id(raw, record)?;
    record_key(raw, &sys_id)?;
    let fields = Fields::new(&raw.table, &sys_id, record);
    let sys_mod_count = match raw.sys_mod_count {
        Some(count) => Some(count),
        None => fields.integer("sys_mod_count", "an integer update counter")?,
    };
    let common = Common {
        integration_id: raw.integration_id.clone(),
        sys_id: sys_id.clone(),
        sys_updated_on: raw.sys_updated_on,
        sys_mod_count,
        excluded_fields: excluded_fields(entity, policy),
        custom_fields: fields.custom_fields()?,
    };
    Ok(match entity {
        Entity::Incident => incident::map(&fields, common)?.into(),
        Entity::ChangeRequest => change_request::map(&fields, common)?.into(),
        Entity::User => user::map(&fields, common)?.into(),
        Entity::FieldDefinition => field_definition::map(&fields, common)?.into(),
    })
}

/// The mapping as it was before the payload was read without a `Value` tree: parse into
/// `serde_json::Value`, strip with [`ExclusionPolicy::strip`], read each field from the
/// tree. The reference the tests hold [`map_record`] to.
#[cfg(test)]
pub(crate) fn map_record_via_value_tree(
    raw: &RawRecord,
    policy: &ExclusionPolicy,
) -> Result<Mapped, MapError> {
    let Some(entity) = Entity::from_source_table(&raw.table) else {
        return map_record(raw, policy);
    };
    if raw.op == RecordOp::Delete {
        return map_record(raw, policy);
    }
    let payload = payload_of(raw)?;
    let mut payload: Value =
        serde_json::from_str(payload).map_err(|error| MapError::PayloadNotJson {
            table: raw.table.clone(),
            sys_id: raw.sys_id.clone(),
            reason: error.to_string(),
        })?;
    policy.strip(&mut payload);
    let Value::Object(map) = payload else {
        return Err(MapError::PayloadNotObject {
            table: raw.table.clone(),
            sys_id: raw.sys_id.clone(),
            found: json_kind(&payload),
        });
    };
    map_fields(raw, entity, policy, &RecordFields::from_map(&map)).map(Mapped::Upsert)
}

/// The record's sys_id: the raw record's, else the payload's; both must agree when both
/// are given.
fn resolve_sys_id(raw: &RawRecord, record: &RecordFields<'_>) -> Result<String, MapError> {
    let from_payload = Fields::new(&raw.table, &raw.sys_id, record).text("sys_id")?;
    match (raw.sys_id.as_str(), from_payload) {
        ("", None) => Err(MapError::MissingSysId {
            table: raw.table.clone(),
        }),
        ("", Some(payload_sys_id)) => Ok(payload_sys_id),
        (sys_id, Some(payload_sys_id)) if payload_sys_id != sys_id => {
            Err(MapError::SysIdMismatch {
                table: raw.table.clone(),
                sys_id: sys_id.to_owned(),
                payload_sys_id,
            })
        }
        (sys_id, _) => Ok(sys_id.to_owned()),
    }
}

/// `<integration_id>:<sys_id>`, checked to be a valid key.
fn record_key(raw: &RawRecord, sys_id: &str) -> Result<String, MapError> {
    RecordKey::new(&raw.integration_id, sys_id)
        .map(|key| key.to_string())
        .map_err(|source| MapError::InvalidKey {
            table: raw.table.clone(),
            sys_id: sys_id.to_owned(),
            source,
        })
}

#[cfg(test)]
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod equivalence_tests;
#[cfg(test)]
mod tests;
