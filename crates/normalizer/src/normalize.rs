//! One consumed raw message in, one output record (or a DLQ reason) out: the stage's
//! per-record decision, free of Kafka I/O so it can be tested on its own.
//!
//! Besides the mapping's own reasons ([`MapError::code`]), a message can be dead-lettered
//! for what only the stage can see; these codes are stable too:
//!
//! | code | meaning |
//! |---|---|
//! | `undecodable_avro` | the value is not a `RawRecord` in Avro single-object encoding |
//! | `null_value` | the message has no value (a tombstone on a raw topic; the fetcher never writes one) |
//! | `unknown_integration` | the record's `integration_id` is not in `integrations` |
//! | `entity_encoding_failed` | the entity could not be Avro-encoded (a bug: the Rust type and its schema disagree) |
//! | `too_large` | the encoded entity is larger than the producer's `message.max.bytes` |
//!
//! [`Normalizer::decide`] turns either into a [`Decision`]: publish the output, or park a
//! [`DeadLetter`] that carries no excluded value (see [`crate::dead_letter`]).

use std::collections::HashMap;

use nowstream_bus::DlqReason;
use nowstream_bus::producer::DEFAULT_MESSAGE_MAX_BYTES;
use nowstream_model::{AvroRecord, Entity, ModelError, RawRecord, TopicNames};
use nowstream_runtime::IntegrationConfig;

pub use crate::dead_letter::TOO_LARGE;
use crate::dead_letter::{DeadLetter, FRAMING_ALLOWANCE, dead_letter};
use crate::{ExclusionPolicy, MapError, Mapped, PolicyError, map_record};

/// The DLQ codes the stage adds to the mapping's [`MapError::CODES`].
pub const STAGE_CODES: [&str; 5] = [
    UNDECODABLE_AVRO,
    NULL_VALUE,
    UNKNOWN_INTEGRATION,
    ENTITY_ENCODING_FAILED,
    TOO_LARGE,
];

/// The value is not a `RawRecord` in Avro single-object encoding.
pub const UNDECODABLE_AVRO: &str = "undecodable_avro";
/// The message has no value.
pub const NULL_VALUE: &str = "null_value";
/// The record's integration is not configured, so its exclusion policy is unknown: publishing
/// it could leak fields that integration excludes.
pub const UNKNOWN_INTEGRATION: &str = "unknown_integration";
/// The entity could not be encoded.
pub const ENTITY_ENCODING_FAILED: &str = "entity_encoding_failed";

/// What to publish for one raw record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The entity topic, prefix included.
    pub topic: String,
    /// `<integration_id>:<sys_id>`.
    pub key: String,
    /// The encoded entity; `None` for a tombstone (the record was deleted).
    pub value: Option<Vec<u8>>,
    /// Which entity, for metrics.
    pub entity: Entity,
}

impl Output {
    /// `upsert` or `delete`, for metrics.
    pub fn op(&self) -> &'static str {
        if self.value.is_some() {
            "upsert"
        } else {
            "delete"
        }
    }
}

/// What the stage does with one raw message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish this entity or tombstone.
    Publish(Output),
    /// Park this letter in the DLQ instead.
    DeadLetter(DeadLetter),
}

/// A configured `exclude_fields` list that cannot be honoured; the stage refuses to start,
/// since running without it would leak the fields it names.
#[derive(Debug, thiserror::Error)]
#[error("integrations[{index}] (id {integration_id}): exclude_fields: {source}")]
pub struct InvalidPolicy {
    /// Position of the integration in the configuration.
    pub index: usize,
    /// Its id.
    pub integration_id: String,
    /// What is wrong with the list.
    #[source]
    pub source: PolicyError,
}

/// The per-record transformation with everything it needs: topic names and one exclusion
/// policy per integration.
#[derive(Debug, Clone)]
pub struct Normalizer {
    topics: TopicNames,
    policies: HashMap<String, ExclusionPolicy>,
    /// The producer's `message.max.bytes`: an output larger than this is dead-lettered
    /// (`too_large`) instead of being refused by the producer at every try.
    max_message_bytes: usize,
}

impl Normalizer {
    /// Builds every integration's exclusion policy; any list that cannot be honoured is an
    /// error naming the integration and the entry.
    pub fn new(
        topics: TopicNames,
        integrations: &[IntegrationConfig],
    ) -> Result<Self, InvalidPolicy> {
        let mut policies = HashMap::with_capacity(integrations.len());
        for (index, integration) in integrations.iter().enumerate() {
            let policy = ExclusionPolicy::new(&integration.exclude_fields).map_err(|source| {
                InvalidPolicy {
                    index,
                    integration_id: integration.id.clone(),
                    source,
                }
            })?;
            policies.insert(integration.id.clone(), policy);
        }
        Ok(Self {
            topics,
            policies,
            max_message_bytes: DEFAULT_MESSAGE_MAX_BYTES,
        })
    }

    /// The same normalizer for a producer whose `message.max.bytes` is `limit`
    /// ([`nowstream_bus::max_message_bytes`]).
    pub fn with_max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// The producer limit outputs and dead letters are sized against.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Decides what becomes of one raw message (`key` and `value` as consumed): its output, or
    /// a dead letter that holds none of the integration's excluded values. An output that
    /// would not fit under [`max_message_bytes`](Self::max_message_bytes) is dead-lettered
    /// as [`TOO_LARGE`], so the stream goes on.
    pub fn decide(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Decision {
        let key_len = key.map_or(0, <[u8]>::len);
        match self.normalize(value) {
            Ok(output) => {
                let size = output.key.len() + output.value.as_ref().map_or(0, Vec::len);
                // Room to spare for framing, and for the headers of the sink's dead letter
                // of this entity (the same bytes plus headers), which must fit as well.
                if size + FRAMING_ALLOWANCE <= self.max_message_bytes {
                    return Decision::Publish(output);
                }
                Decision::DeadLetter(self.too_large(key_len, value, &output))
            }
            Err(reason) => Decision::DeadLetter(self.dead_letter(key_len, value, reason)),
        }
    }

    /// The dead letter of an output the producer refused for its size; used by
    /// [`decide`](Self::decide), and by the stage when the producer refuses one anyway.
    pub fn too_large(&self, key_len: usize, value: Option<&[u8]>, output: &Output) -> DeadLetter {
        let size = output.key.len() + output.value.as_ref().map_or(0, Vec::len);
        let reason = DlqReason::new(
            TOO_LARGE,
            format!(
                "the {} record {} is {size} bytes encoded, more than the producer's \
                 message.max.bytes ({}) allows with {FRAMING_ALLOWANCE} bytes kept for headers",
                output.entity, output.key, self.max_message_bytes
            ),
        );
        let mut letter = self.dead_letter(key_len, value, reason);
        letter.too_large = Some((size, self.max_message_bytes));
        letter
    }

    /// The dead letter of a raw message that cannot be published for `reason`: scrubbed
    /// with its integration's policy and sized to fit, or only a reference.
    pub fn dead_letter(
        &self,
        key_len: usize,
        value: Option<&[u8]>,
        reason: DlqReason,
    ) -> DeadLetter {
        let budget = self
            .max_message_bytes
            .saturating_sub(key_len + reason.code.len() + reason.detail.len() + FRAMING_ALLOWANCE);
        dead_letter(value, &self.policies, reason, budget)
    }

    /// The topic names in use.
    pub fn topics(&self) -> &TopicNames {
        &self.topics
    }

    /// Normalizes one message value; `Err` says why it goes to the DLQ instead.
    pub fn normalize(&self, value: Option<&[u8]>) -> Result<Output, DlqReason> {
        let bytes = value.ok_or_else(|| {
            DlqReason::new(
                NULL_VALUE,
                "the message has no value; raw topics carry a RawRecord in every message",
            )
        })?;
        let raw = RawRecord::decode(bytes).map_err(|error| {
            DlqReason::new(
                UNDECODABLE_AVRO,
                format!(
                    "the value is not a RawRecord in Avro single-object encoding: {}",
                    undecodable_detail(&error)
                ),
            )
        })?;
        let policy = self.policies.get(&raw.integration_id).ok_or_else(|| {
            DlqReason::new(
                UNKNOWN_INTEGRATION,
                format!(
                    "{} record {}: integration {:?} is not configured, so its exclusion policy \
                     is unknown; add it to integrations and replay",
                    raw.table, raw.sys_id, raw.integration_id
                ),
            )
        })?;
        let mapped = map_record(&raw, policy)
            .map_err(|error: MapError| DlqReason::new(error.code(), error.to_string()))?;
        let value = mapped.encode_value().map_err(|error| {
            DlqReason::new(
                ENTITY_ENCODING_FAILED,
                format!(
                    "{} record {}: the {} entity cannot be encoded: {error}",
                    raw.table,
                    raw.sys_id,
                    mapped.entity()
                ),
            )
        })?;
        let entity = mapped.entity();
        let key = match &mapped {
            Mapped::Upsert(record) => record.key(),
            Mapped::Delete { key, .. } => key.clone(),
        };
        Ok(Output {
            topic: self.topics.entity(entity),
            key,
            value,
            entity,
        })
    }
}

/// Why a value did not decode, without quoting it: the Avro decoder's own complaint about a
/// body can quote the value it choked on, which may come from an excluded field.
fn undecodable_detail(error: &ModelError) -> String {
    match error {
        ModelError::Body { fingerprint, .. } => {
            format!("the body does not match the RawRecord schema version {fingerprint}")
        }
        ModelError::Value { .. } => "the body does not fit the RawRecord type".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use nowstream_model::{Incident, RecordOp};
    use nowstream_runtime::{AuthConfig, BasicAuth};
    use secrecy::SecretString;

    use super::*;

    fn integration(id: &str, exclude: &[&str]) -> IntegrationConfig {
        IntegrationConfig {
            id: id.into(),
            url: "https://acme.service-now.com".into(),
            auth: AuthConfig::Basic(BasicAuth {
                username: "reader".into(),
                password: SecretString::from("secret"),
            }),
            exclude_fields: exclude.iter().map(|field| (*field).to_owned()).collect(),
            allow_http: false,
            exclude_at_source: false,
            metadata: Default::default(),
        }
    }

    fn raw(integration_id: &str, op: RecordOp, payload: Option<&str>) -> Vec<u8> {
        RawRecord {
            integration_id: integration_id.into(),
            table: "incident".into(),
            sys_id: "abc".into(),
            sys_updated_on: Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap(),
            sys_mod_count: Some(3),
            op,
            fetched_at: Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 10).unwrap(),
            instance_url: "https://acme.service-now.com".into(),
            payload: payload.map(str::to_owned),
        }
        .encode()
        .unwrap()
    }

    fn normalizer() -> Normalizer {
        Normalizer::new(
            TopicNames::new("t.").unwrap(),
            &[
                integration("42", &["short_description"]),
                integration("43", &[]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn an_upsert_becomes_an_entity_under_the_record_key_with_that_integrations_policy() {
        let payload = r#"{"number": "INC1", "short_description": "secret summary"}"#;
        let output = normalizer()
            .normalize(Some(&raw("42", RecordOp::Upsert, Some(payload))))
            .unwrap();
        assert_eq!(output.topic, "t.sei.servicenow.incident");
        assert_eq!(output.key, "42:abc");
        assert_eq!(output.op(), "upsert");
        let incident = Incident::decode(output.value.as_deref().unwrap()).unwrap();
        assert_eq!(incident.number.as_deref(), Some("INC1"));
        assert_eq!(incident.short_description, None);

        let other = normalizer()
            .normalize(Some(&raw("43", RecordOp::Upsert, Some(payload))))
            .unwrap();
        let incident = Incident::decode(other.value.as_deref().unwrap()).unwrap();
        assert_eq!(
            incident.short_description.as_deref(),
            Some("secret summary")
        );
    }

    #[test]
    fn a_delete_becomes_a_tombstone() {
        let output = normalizer()
            .normalize(Some(&raw("42", RecordOp::Delete, None)))
            .unwrap();
        assert_eq!(output.key, "42:abc");
        assert_eq!(output.value, None);
        assert_eq!(output.op(), "delete");
    }

    #[test]
    fn stage_level_problems_get_their_own_codes() {
        let normalizer = normalizer();
        let reason = |value: Option<&[u8]>| normalizer.normalize(value).unwrap_err();
        assert_eq!(reason(None).code, NULL_VALUE);
        assert_eq!(reason(Some(b"{\"json\": true}")).code, UNDECODABLE_AVRO);
        let unknown = reason(Some(&raw("99", RecordOp::Upsert, Some("{}"))));
        assert_eq!(unknown.code, UNKNOWN_INTEGRATION);
        assert!(unknown.detail.contains("\"99\""), "{}", unknown.detail);
        let mapping = reason(Some(&raw("42", RecordOp::Upsert, Some("[1]"))));
        assert_eq!(mapping.code, "payload_not_object");
    }

    #[test]
    fn an_exclusion_list_that_cannot_be_honoured_names_the_integration() {
        let error = Normalizer::new(
            TopicNames::default(),
            &[integration("42", &[]), integration("43", &["sys_id"])],
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("integrations[1] (id 43)"), "{message}");
    }
}
