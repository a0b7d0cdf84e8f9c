//! One consumed entity message, turned into what SEI will be told about it.
//!
//! The key (`<integration_id>:<sys_id>`) decides where the record goes and which sys_id a
//! tombstone deletes; the value, decoded with the contract's Avro schemas, becomes the entity
//! JSON of the ingestion API. A message that cannot be read this way is dead-lettered with a
//! reason, never dropped and never allowed to stop the stream.

use std::fmt;

use chrono::{DateTime, Utc};
use nowstream_bus::{ConsumedMessage, DlqReason, Position};
use nowstream_model::{Entity, EntityRecord, RecordKey, TopicNames, Versioned};

/// Where a record is delivered: one SEI ingestion endpoint. Batches never mix targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The SEI integration (first part of the key).
    pub integration_id: String,
    /// The entity kind (from the topic).
    pub entity: Entity,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.integration_id, self.entity.api_path())
    }
}

/// What a record asks SEI to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Store this entity JSON (newest version wins in SEI).
    Upsert {
        /// The entity as the ingestion API's JSON, field names as in the Avro schema.
        json: String,
        /// When ServiceNow last changed the record (UTC), from the entity itself: the start of
        /// the time `nowstream_sink_freshness_seconds` measures.
        sys_updated_on: DateTime<Utc>,
    },
    /// A tombstone: delete the record with the key's sys_id. It carries no time (a tombstone
    /// has no value), so deletions are not observed by the freshness histogram.
    Delete,
}

/// A consumed message as the sink reads it. Implemented by [`ConsumedMessage`]; the batching
/// and delivery logic is generic over it so it can be tested without a broker.
pub trait Input: fmt::Debug + Send + Sync + 'static {
    /// Topic it was read from.
    fn topic(&self) -> &str;
    /// Partition it was read from.
    fn partition(&self) -> i32;
    /// Its offset.
    fn offset(&self) -> i64;
    /// Its key, if any.
    fn key(&self) -> Option<&[u8]>;
    /// Its value; `None` for a tombstone.
    fn payload(&self) -> Option<&[u8]>;

    /// `topic/partition@offset`, for logs and error details.
    fn position(&self) -> Position<'_> {
        Position::new(self.topic(), self.partition(), self.offset())
    }
}

impl Input for ConsumedMessage {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> i32 {
        self.partition
    }

    fn offset(&self) -> i64 {
        self.offset
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }
}

/// A decoded message, ready to be batched.
#[derive(Debug, Clone)]
pub struct Member<M = ConsumedMessage> {
    /// Where it goes.
    pub target: Target,
    /// The record's sys_id, from the key.
    pub sys_id: String,
    /// Upsert or delete.
    pub operation: Operation,
    /// The message as consumed: it is acknowledged once SEI took the record, and its
    /// original bytes go to the DLQ if SEI refuses it.
    pub message: M,
}

impl<M> Member<M> {
    /// Bytes this record adds to a request body (before compression).
    pub fn body_bytes(&self) -> usize {
        match &self.operation {
            Operation::Upsert { json, .. } => json.len() + 1,
            // The quoted sys_id and a comma.
            Operation::Delete => self.sys_id.len() + 3,
        }
    }
}

/// DLQ reason codes of messages the sink cannot read.
pub mod reasons {
    /// The value is not a single-object encoded entity of the topic's schema.
    pub const UNDECODABLE: &str = "undecodable";
    /// The key is missing or not `<integration_id>:<sys_id>`.
    pub const BAD_KEY: &str = "bad_key";
    /// The value names another integration or sys_id than the key it was published under.
    pub const KEY_VALUE_MISMATCH: &str = "key_value_mismatch";
    /// The message came from a topic that is no entity topic of this deployment.
    pub const UNKNOWN_TOPIC: &str = "unknown_topic";
    /// SEI answered 400 (or 413 for a single record): the record itself is bad.
    pub const REJECTED_BY_SEI: &str = "rejected_by_sei";
}

/// A message that cannot be delivered, with the reason it is dead-lettered under.
#[derive(Debug)]
pub struct Unreadable<M = ConsumedMessage> {
    /// The message, untouched.
    pub message: M,
    /// Why.
    pub reason: DlqReason,
}

/// Reads one consumed message of an entity topic.
pub fn decode<M: Input>(topics: &TopicNames, message: M) -> Result<Member<M>, Box<Unreadable<M>>> {
    let unreadable = |message: M, code: &str, detail: String| {
        Err(Box::new(Unreadable {
            message,
            reason: DlqReason::new(code, detail),
        }))
    };
    let Some(entity) = topics.entity_of(message.topic()) else {
        let detail = format!("topic {} is not an entity topic", message.topic());
        return unreadable(message, reasons::UNKNOWN_TOPIC, detail);
    };
    let key = match message.key().map(RecordKey::from_bytes) {
        Some(Ok(key)) => key,
        Some(Err(error)) => {
            let detail = format!("{}: {error}", message.position());
            return unreadable(message, reasons::BAD_KEY, detail);
        }
        None => {
            let detail = format!("{}: message has no key", message.position());
            return unreadable(message, reasons::BAD_KEY, detail);
        }
    };
    let operation = match message.payload() {
        None => Operation::Delete,
        Some(bytes) => match entity_json(entity, bytes) {
            Ok((identity, json, sys_updated_on)) if identity.matches(&key) => Operation::Upsert {
                json,
                sys_updated_on,
            },
            Ok((identity, _, _)) => {
                let detail = format!(
                    "{}: value is {}:{} but the key is {key}",
                    message.position(),
                    identity.integration_id,
                    identity.sys_id
                );
                return unreadable(message, reasons::KEY_VALUE_MISMATCH, detail);
            }
            Err(detail) => {
                let detail = format!("{}: {detail}", message.position());
                return unreadable(message, reasons::UNDECODABLE, detail);
            }
        },
    };
    Ok(Member {
        target: Target {
            integration_id: key.integration_id().to_owned(),
            entity,
        },
        sys_id: key.sys_id().to_owned(),
        operation,
        message,
    })
}

/// Who a decoded value says it is.
struct Identity {
    integration_id: String,
    sys_id: String,
}

impl Identity {
    fn matches(&self, key: &RecordKey) -> bool {
        self.integration_id == key.integration_id() && self.sys_id == key.sys_id()
    }
}

/// Decodes the Avro value as the topic's entity and writes it as ingestion JSON; also returns
/// who the value says it is and when ServiceNow last changed it.
fn entity_json(entity: Entity, bytes: &[u8]) -> Result<(Identity, String, DateTime<Utc>), String> {
    let record = EntityRecord::decode(entity, bytes).map_err(|error| error.to_string())?;
    let json = serde_json::to_string(&record)
        .map_err(|error| format!("cannot write the entity as JSON: {error}"))?;
    let identity = Identity {
        integration_id: record.integration_id().to_owned(),
        sys_id: record.sys_id().to_owned(),
    };
    Ok((identity, json, record.version().sys_updated_on))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use chrono::{DateTime, Utc};
    use nowstream_model::{AvroRecord, User};

    pub(crate) fn user(integration_id: &str, sys_id: &str, seconds: i64) -> User {
        User {
            integration_id: integration_id.into(),
            sys_id: sys_id.into(),
            sys_updated_on: DateTime::<Utc>::from_timestamp(seconds, 0).unwrap(),
            sys_mod_count: Some(seconds),
            user_name: Some(format!("user-{sys_id}")),
            name: None,
            email: None,
            employee_number: None,
            title: None,
            active: Some(true),
            department: None,
            manager: None,
            sys_created_on: None,
            excluded_fields: Vec::new(),
            custom_fields: BTreeMap::new(),
        }
    }

    /// A consumed message without a broker behind it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct TestMessage {
        pub topic: String,
        pub offset: i64,
        pub key: Option<Vec<u8>>,
        pub payload: Option<Vec<u8>>,
    }

    impl Input for TestMessage {
        fn topic(&self) -> &str {
            &self.topic
        }

        fn partition(&self) -> i32 {
            0
        }

        fn offset(&self) -> i64 {
            self.offset
        }

        fn key(&self) -> Option<&[u8]> {
            self.key.as_deref()
        }

        fn payload(&self) -> Option<&[u8]> {
            self.payload.as_deref()
        }
    }

    pub(crate) fn message(
        topic: &str,
        offset: i64,
        key: Option<&str>,
        payload: Option<Vec<u8>>,
    ) -> TestMessage {
        TestMessage {
            topic: topic.into(),
            offset,
            key: key.map(|key| key.as_bytes().to_vec()),
            payload,
        }
    }

    #[test]
    fn an_upsert_becomes_entity_json_for_its_integration() {
        let topics = TopicNames::default();
        let bytes = user("sn1", "abc", 10).encode().unwrap();
        let member = decode(
            &topics,
            message("sei.servicenow.user", 0, Some("sn1:abc"), Some(bytes)),
        )
        .unwrap();
        assert_eq!(
            member.target,
            Target {
                integration_id: "sn1".into(),
                entity: Entity::User
            }
        );
        let Operation::Upsert {
            json,
            sys_updated_on,
        } = &member.operation
        else {
            panic!("expected an upsert");
        };
        assert_eq!(sys_updated_on.timestamp(), 10, "the entity's own time");
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["user_name"], "user-abc");
        assert_eq!(value["sys_updated_on"], "1970-01-01T00:00:10Z");
    }

    #[test]
    fn a_tombstone_becomes_a_delete_of_the_keys_sys_id() {
        let member = decode(
            &TopicNames::default(),
            message("sei.servicenow.incident", 3, Some("sn1:def"), None),
        )
        .unwrap();
        assert_eq!(member.operation, Operation::Delete);
        assert_eq!(member.sys_id, "def");
        assert_eq!(member.target.entity, Entity::Incident);
    }

    #[test]
    fn bad_avro_is_undecodable_and_names_where_it_was_read() {
        let error = decode(
            &TopicNames::default(),
            message(
                "sei.servicenow.user",
                7,
                Some("sn1:abc"),
                Some(b"{\"json\":true}".to_vec()),
            ),
        )
        .unwrap_err();
        assert_eq!(error.reason.code, reasons::UNDECODABLE);
        assert!(
            error.reason.detail.contains("sei.servicenow.user/0@7"),
            "{}",
            error.reason.detail
        );
    }

    #[test]
    fn a_value_of_another_entity_is_undecodable() {
        let bytes = user("sn1", "abc", 10).encode().unwrap();
        let error = decode(
            &TopicNames::default(),
            message("sei.servicenow.incident", 0, Some("sn1:abc"), Some(bytes)),
        )
        .unwrap_err();
        assert_eq!(error.reason.code, reasons::UNDECODABLE);
    }

    #[test]
    fn keys_that_are_missing_or_malformed_are_bad_keys() {
        let topics = TopicNames::default();
        for key in [None, Some("no-separator")] {
            let error = decode(&topics, message("sei.servicenow.user", 0, key, None)).unwrap_err();
            assert_eq!(error.reason.code, reasons::BAD_KEY, "{key:?}");
        }
    }

    #[test]
    fn a_value_published_under_another_key_is_refused() {
        let bytes = user("sn1", "abc", 10).encode().unwrap();
        let error = decode(
            &TopicNames::default(),
            message("sei.servicenow.user", 0, Some("sn1:xyz"), Some(bytes)),
        )
        .unwrap_err();
        assert_eq!(error.reason.code, reasons::KEY_VALUE_MISMATCH);
    }

    #[test]
    fn topics_outside_the_prefix_are_unknown() {
        let topics = TopicNames::new("prod.").unwrap();
        let error = decode(
            &topics,
            message("sei.servicenow.user", 0, Some("sn1:abc"), None),
        )
        .unwrap_err();
        assert_eq!(error.reason.code, reasons::UNKNOWN_TOPIC);
    }
}
