//! One ingestion batch: parsing, per-record validation, and what applying it did.
//!
//! A batch is all or nothing: the first bad record rejects the whole batch with a 400
//! naming its index (and field), because the sink splits a refused batch to find the bad
//! records and dead-letters only those. Checks go beyond "it deserializes": unknown
//! fields, a record of another integration, and a field that is both listed in
//! `excluded_fields` and carries a value are all refused, since each means the sender
//! broke the contract.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use nowstream_model::{ChangeRequest, Entity, FieldDefinition, Incident, User, Version, Versioned};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What applying an accepted batch did (the body of a 200).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResult {
    /// Upserts stored because they were newer than what was held.
    pub upserted: u64,
    /// Deletes applied (a tombstone written or already there).
    pub deleted: u64,
    /// Upserts ignored because an equal or newer version, or a tombstone, was held.
    pub stale: u64,
}

/// A parsed, valid batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Upserts in the order sent.
    pub upserts: Vec<ValidRecord>,
    /// sys_ids of deleted records, in the order sent.
    pub deletes: Vec<String>,
}

/// One upsert that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRecord {
    /// The record's sys_id.
    pub sys_id: String,
    /// Its version.
    pub version: Version,
    /// The entity JSON as the model type writes it: every field present, in schema order.
    pub body: Value,
    /// What the MTTR report needs, for incidents.
    pub incident: Option<IncidentFacts>,
}

/// The parts of an incident the MTTR report reads, taken out once at ingestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentFacts {
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// `time_to_restore_ms` when sent, else `resolved_at - opened_at` when both are known.
    pub restore_ms: Option<i64>,
    /// The priority's stored value (`"1"`…), not its label.
    pub priority: Option<String>,
}

/// Why a batch is refused. Messages never quote record values (records carry user data),
/// only field names and what kind of value was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body is not a JSON object with `upserts` and `deletes` arrays.
    #[error("the body is not a batch: {reason}")]
    NotABatch {
        /// What is wrong, with the JSON path when known.
        reason: String,
    },
    /// An upsert is bad.
    #[error("upserts[{index}]{}: {reason}", field_suffix(.field))]
    BadRecord {
        /// Zero-based index in `upserts`.
        index: usize,
        /// The offending field, dotted, when known.
        field: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A delete is not a non-empty sys_id string.
    #[error("deletes[{index}]: {reason}")]
    BadDelete {
        /// Zero-based index in `deletes`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

fn field_suffix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|field| format!(", field `{field}`"))
        .unwrap_or_default()
}

/// The envelope, before its records are looked at.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    upserts: Vec<Value>,
    deletes: Vec<Value>,
}

/// A problem with one record, before it is given its index.
struct RecordProblem {
    field: Option<String>,
    reason: String,
}

impl RecordProblem {
    fn at(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            reason: reason.into(),
        }
    }
}

impl Batch {
    /// Parses and checks a batch of `entity` records sent for `integration_id`.
    pub fn parse(body: &[u8], entity: Entity, integration_id: &str) -> Result<Self, BatchError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let envelope: Envelope =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let path = error.path().to_string();
                let reason = without_values(&error.into_inner().to_string());
                BatchError::NotABatch {
                    reason: if path == "." {
                        reason
                    } else {
                        format!("at `{path}`: {reason}")
                    },
                }
            })?;
        let upserts = envelope
            .upserts
            .iter()
            .enumerate()
            .map(|(index, value)| {
                check_record(value, entity, integration_id).map_err(|problem| {
                    BatchError::BadRecord {
                        index,
                        field: problem.field,
                        reason: problem.reason,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let deletes = envelope
            .deletes
            .into_iter()
            .enumerate()
            .map(|(index, value)| match value {
                Value::String(sys_id) if !sys_id.trim().is_empty() => Ok(sys_id),
                Value::String(_) => Err(BatchError::BadDelete {
                    index,
                    reason: "empty sys_id".to_owned(),
                }),
                other => Err(BatchError::BadDelete {
                    index,
                    reason: format!("expected a sys_id string, found {}", kind_of(&other)),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { upserts, deletes })
    }
}

fn check_record(
    value: &Value,
    entity: Entity,
    integration_id: &str,
) -> Result<ValidRecord, RecordProblem> {
    let Value::Object(original) = value else {
        return Err(RecordProblem {
            field: None,
            reason: format!("expected a JSON object, found {}", kind_of(value)),
        });
    };
    let (version, body, incident) = match entity {
        Entity::Incident => {
            let incident: Incident = typed(value)?;
            let facts = incident_facts(&incident)?;
            let body = canonical(&incident)?;
            (incident.version(), body, Some(facts))
        }
        Entity::ChangeRequest => {
            let record: ChangeRequest = typed(value)?;
            (record.version(), canonical(&record)?, None)
        }
        Entity::User => {
            let record: User = typed(value)?;
            (record.version(), canonical(&record)?, None)
        }
        Entity::FieldDefinition => {
            let record: FieldDefinition = typed(value)?;
            (record.version(), canonical(&record)?, None)
        }
    };
    // The store keeps times as fixed-width text; a year past 9999 would not read back.
    if !(0..=9999).contains(&version.sys_updated_on.year()) {
        return Err(RecordProblem::at(
            "sys_updated_on",
            "year outside 0000..=9999",
        ));
    }
    let Value::Object(fields) = &body else {
        return Err(RecordProblem {
            field: None,
            reason: "the record does not serialize to an object".to_owned(),
        });
    };
    if let Some(unknown) = first_unknown_field(original, fields, "") {
        return Err(RecordProblem::at(
            unknown,
            format!("not a field of {}", entity.schema().full_name()),
        ));
    }
    let sent_integration = fields.get("integration_id").and_then(Value::as_str);
    if sent_integration != Some(integration_id) {
        return Err(RecordProblem::at(
            "integration_id",
            format!(
                "the record belongs to another integration than `{integration_id}` in the path"
            ),
        ));
    }
    let sys_id = fields
        .get("sys_id")
        .and_then(Value::as_str)
        .filter(|sys_id| !sys_id.trim().is_empty())
        .ok_or_else(|| RecordProblem::at("sys_id", "empty sys_id"))?
        .to_owned();
    check_exclusions(fields)?;
    Ok(ValidRecord {
        sys_id,
        version,
        body,
        incident,
    })
}

fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, RecordProblem> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let reason = without_values(&error.into_inner().to_string());
        let field = if path == "." {
            missing_field_name(&reason)
        } else {
            Some(path)
        };
        RecordProblem { field, reason }
    })
}

fn canonical<T: Serialize>(record: &T) -> Result<Value, RecordProblem> {
    serde_json::to_value(record).map_err(|error| RecordProblem {
        field: None,
        reason: format!("the record cannot be written back as JSON: {error}"),
    })
}

/// Finds a key the sender put in that the model type does not know, walking nested
/// objects (a `Choice` with a stray key is as wrong as a stray top-level field).
fn first_unknown_field(
    original: &Map<String, Value>,
    known: &Map<String, Value>,
    prefix: &str,
) -> Option<String> {
    for (key, value) in original {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (value, known.get(key)) {
            (_, None) => return Some(path),
            (Value::Object(inner), Some(Value::Object(inner_known))) => {
                if let Some(found) = first_unknown_field(inner, inner_known, &path) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

/// A field named in `excluded_fields` must not carry a value: the exclusion policy removes
/// values, and SEI must never receive them.
fn check_exclusions(fields: &Map<String, Value>) -> Result<(), RecordProblem> {
    let excluded = fields
        .get("excluded_fields")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let custom = fields.get("custom_fields").and_then(Value::as_object);
    for name in excluded.iter().filter_map(Value::as_str) {
        if fields.get(name).is_some_and(|value| !value.is_null()) {
            return Err(RecordProblem::at(
                name,
                "listed in excluded_fields but carries a value",
            ));
        }
        if custom.is_some_and(|custom| custom.contains_key(name)) {
            return Err(RecordProblem::at(
                format!("custom_fields.{name}"),
                "listed in excluded_fields but carries a value",
            ));
        }
    }
    Ok(())
}

fn incident_facts(incident: &Incident) -> Result<IncidentFacts, RecordProblem> {
    if let Some(resolved_at) = incident.resolved_at {
        // Stored as fixed-width text to be ordered; a year past 9999 would not sort.
        if !(0..=9999).contains(&resolved_at.year()) {
            return Err(RecordProblem::at("resolved_at", "year outside 0000..=9999"));
        }
    }
    let restore_ms = match incident.time_to_restore_ms {
        Some(ms) if ms < 0 => {
            return Err(RecordProblem::at(
                "time_to_restore_ms",
                "negative time to restore",
            ));
        }
        Some(ms) => Some(ms),
        None => Incident::derive_time_to_restore_ms(incident.opened_at, incident.resolved_at),
    };
    Ok(IncidentFacts {
        resolved_at: incident.resolved_at,
        restore_ms,
        priority: incident
            .priority
            .as_ref()
            .and_then(|priority| priority.value.clone())
            .filter(|value| !value.is_empty()),
    })
}

/// serde's "invalid type: string \"…\", expected …" quotes the value; records carry user
/// data, so only the kind of problem and what was expected are kept.
fn without_values(message: &str) -> String {
    for problem in ["invalid type", "invalid value"] {
        if let Some(rest) = message
            .strip_prefix(problem)
            .and_then(|rest| rest.strip_prefix(": "))
        {
            return match rest.rfind(", expected ") {
                Some(at) => format!("{problem}{}", &rest[at..]),
                None => problem.to_owned(),
            };
        }
    }
    message.to_owned()
}

/// `missing field `sys_id`` → `sys_id`.
fn missing_field_name(reason: &str) -> Option<String> {
    let name = reason.strip_prefix("missing field `")?;
    Some(name.split('`').next()?.to_owned())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Fixed-width RFC 3339 (nanoseconds, `Z`), so text order is time order in SQLite.
pub fn sortable_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn incident(sys_id: &str) -> Value {
        json!({
            "integration_id": "sn1",
            "sys_id": sys_id,
            "sys_updated_on": "2024-03-01T10:00:00Z",
            "sys_mod_count": 3,
            "priority": {"value": "2", "label": "2 - High"},
            "opened_at": "2024-03-01T08:00:00Z",
            "resolved_at": "2024-03-01T09:30:00Z",
        })
    }

    fn parse(upserts: Vec<Value>) -> Result<Batch, BatchError> {
        let body = json!({"upserts": upserts, "deletes": []}).to_string();
        Batch::parse(body.as_bytes(), Entity::Incident, "sn1")
    }

    fn bad_record(error: BatchError) -> (usize, Option<String>, String) {
        match error {
            BatchError::BadRecord {
                index,
                field,
                reason,
            } => (index, field, reason),
            other => panic!("expected a bad record, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_incident_yields_its_version_and_mttr_facts() {
        let batch = parse(vec![incident("a")]).unwrap();
        let record = &batch.upserts[0];
        assert_eq!(record.sys_id, "a");
        assert_eq!(record.version.sys_mod_count, Some(3));
        let facts = record.incident.as_ref().unwrap();
        assert_eq!(facts.restore_ms, Some(90 * 60 * 1000));
        assert_eq!(facts.priority.as_deref(), Some("2"));
        // The stored body carries every field of the schema, absent ones as null.
        assert_eq!(record.body["closed_at"], Value::Null);
    }

    #[test]
    fn time_to_restore_ms_wins_over_the_timestamps() {
        let mut record = incident("a");
        record["time_to_restore_ms"] = json!(1000);
        let batch = parse(vec![record]).unwrap();
        assert_eq!(
            batch.upserts[0].incident.as_ref().unwrap().restore_ms,
            Some(1000)
        );
    }

    #[test]
    fn a_wrongly_typed_field_names_index_and_path_but_not_the_value() {
        let mut bad = incident("b");
        bad["priority"]["value"] = json!(["top secret customer text"]);
        let error = parse(vec![incident("a"), bad]).unwrap_err();
        let message = error.to_string();
        let (index, field, _) = bad_record(error);
        assert_eq!(index, 1);
        assert_eq!(field.as_deref(), Some("priority.value"));
        assert!(!message.contains("top secret"), "{message}");
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let mut bad = incident("a");
        bad.as_object_mut().unwrap().remove("sys_updated_on");
        let (_, field, _) = bad_record(parse(vec![bad]).unwrap_err());
        assert_eq!(field.as_deref(), Some("sys_updated_on"));
    }

    #[test]
    fn unknown_fields_are_refused_at_any_depth() {
        let mut top = incident("a");
        top["caller_id"] = json!("x");
        assert_eq!(
            bad_record(parse(vec![top]).unwrap_err()).1.as_deref(),
            Some("caller_id")
        );
        let mut nested = incident("a");
        nested["priority"]["display"] = json!("x");
        assert_eq!(
            bad_record(parse(vec![nested]).unwrap_err()).1.as_deref(),
            Some("priority.display")
        );
    }

    #[test]
    fn a_record_of_another_integration_is_refused() {
        let mut other = incident("a");
        other["integration_id"] = json!("sn2");
        assert_eq!(
            bad_record(parse(vec![other]).unwrap_err()).1.as_deref(),
            Some("integration_id")
        );
    }

    #[test]
    fn an_excluded_field_that_carries_a_value_is_refused() {
        let mut leaky = incident("a");
        leaky["excluded_fields"] = json!(["priority"]);
        assert_eq!(
            bad_record(parse(vec![leaky]).unwrap_err()).1.as_deref(),
            Some("priority")
        );
        let mut leaky_custom = incident("a");
        leaky_custom["excluded_fields"] = json!(["u_secret"]);
        leaky_custom["custom_fields"] = json!({"u_secret": {"value": "x", "display_value": "x"}});
        assert_eq!(
            bad_record(parse(vec![leaky_custom]).unwrap_err())
                .1
                .as_deref(),
            Some("custom_fields.u_secret")
        );
        let mut honest = incident("a");
        honest["excluded_fields"] = json!(["description"]);
        assert!(parse(vec![honest]).is_ok());
    }

    #[test]
    fn a_negative_time_to_restore_is_refused() {
        let mut bad = incident("a");
        bad["time_to_restore_ms"] = json!(-5);
        assert_eq!(
            bad_record(parse(vec![bad]).unwrap_err()).1.as_deref(),
            Some("time_to_restore_ms")
        );
    }

    #[test]
    fn deletes_must_be_sys_id_strings() {
        let body = json!({"upserts": [], "deletes": ["a", 7]}).to_string();
        let error = Batch::parse(body.as_bytes(), Entity::User, "sn1").unwrap_err();
        assert!(
            matches!(error, BatchError::BadDelete { index: 1, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn an_envelope_without_deletes_or_with_typos_is_not_a_batch() {
        for body in [
            r#"{"upserts": []}"#,
            r#"{"upserts": [], "deletes": [], "delete": []}"#,
            "[]",
            "{",
        ] {
            let error = Batch::parse(body.as_bytes(), Entity::User, "sn1").unwrap_err();
            assert!(
                matches!(error, BatchError::NotABatch { .. }),
                "{body}: {error:?}"
            );
        }
    }

    #[test]
    fn serde_messages_lose_the_quoted_value() {
        assert_eq!(
            without_values("invalid type: string \"alice, expected bob\", expected i64"),
            "invalid type, expected i64"
        );
        assert_eq!(without_values("missing field `x`"), "missing field `x`");
    }

    #[test]
    fn sortable_times_have_one_width() {
        let a = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let b = DateTime::parse_from_rfc3339("2024-01-01T00:00:00.5Z")
            .unwrap()
            .to_utc();
        assert_eq!(sortable_time(a).len(), sortable_time(b).len());
        assert!(sortable_time(a) < sortable_time(b));
    }
}
