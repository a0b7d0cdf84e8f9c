//! What mapping produces: an entity to upsert, or a tombstone.

use nowstream_model::keys::KEY_SEPARATOR;
use nowstream_model::{
    AvroRecord, ChangeRequest, Entity, FieldDefinition, Incident, ModelError, User, Version,
    Versioned,
};
use serde::Serialize;

/// An SEI entity, ready for its `sei.servicenow.<entity>` topic.
///
/// Serializes (untagged) as the entity JSON of the SEI ingestion API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EntityRecord {
    /// From the `incident` table.
    Incident(Incident),
    /// From the `change_request` table.
    ChangeRequest(ChangeRequest),
    /// From the `sys_user` table.
    User(User),
    /// From the `sys_dictionary` table.
    FieldDefinition(FieldDefinition),
}

impl EntityRecord {
    /// Which entity this is: names its topic.
    pub fn entity(&self) -> Entity {
        match self {
            Self::Incident(_) => Entity::Incident,
            Self::ChangeRequest(_) => Entity::ChangeRequest,
            Self::User(_) => Entity::User,
            Self::FieldDefinition(_) => Entity::FieldDefinition,
        }
    }

    /// The SEI integration the record belongs to.
    pub fn integration_id(&self) -> &str {
        match self {
            Self::Incident(record) => &record.integration_id,
            Self::ChangeRequest(record) => &record.integration_id,
            Self::User(record) => &record.integration_id,
            Self::FieldDefinition(record) => &record.integration_id,
        }
    }

    /// The record's sys_id.
    pub fn sys_id(&self) -> &str {
        match self {
            Self::Incident(record) => &record.sys_id,
            Self::ChangeRequest(record) => &record.sys_id,
            Self::User(record) => &record.sys_id,
            Self::FieldDefinition(record) => &record.sys_id,
        }
    }

    /// The Kafka key, `<integration_id>:<sys_id>`: the same key the raw record had, so all
    /// versions of a record stay in one partition. [`map_record`](crate::map_record) only
    /// returns records whose parts form a valid [`RecordKey`](nowstream_model::RecordKey).
    pub fn key(&self) -> String {
        format!("{}{KEY_SEPARATOR}{}", self.integration_id(), self.sys_id())
    }

    /// Names of the entity fields the exclusion policy withheld.
    pub fn excluded_fields(&self) -> &[String] {
        match self {
            Self::Incident(record) => &record.excluded_fields,
            Self::ChangeRequest(record) => &record.excluded_fields,
            Self::User(record) => &record.excluded_fields,
            Self::FieldDefinition(record) => &record.excluded_fields,
        }
    }

    /// The Kafka value: Avro single-object encoding with the entity's current schema.
    ///
    /// Fails only when a Rust type and its schema disagree (a bug, not bad input).
    pub fn encode(&self) -> Result<Vec<u8>, ModelError> {
        match self {
            Self::Incident(record) => record.encode(),
            Self::ChangeRequest(record) => record.encode(),
            Self::User(record) => record.encode(),
            Self::FieldDefinition(record) => record.encode(),
        }
    }
}

impl Versioned for EntityRecord {
    fn version(&self) -> Version {
        match self {
            Self::Incident(record) => record.version(),
            Self::ChangeRequest(record) => record.version(),
            Self::User(record) => record.version(),
            Self::FieldDefinition(record) => record.version(),
        }
    }
}

impl From<Incident> for EntityRecord {
    fn from(record: Incident) -> Self {
        Self::Incident(record)
    }
}

impl From<ChangeRequest> for EntityRecord {
    fn from(record: ChangeRequest) -> Self {
        Self::ChangeRequest(record)
    }
}

impl From<User> for EntityRecord {
    fn from(record: User) -> Self {
        Self::User(record)
    }
}

impl From<FieldDefinition> for EntityRecord {
    fn from(record: FieldDefinition) -> Self {
        Self::FieldDefinition(record)
    }
}

/// The outcome of mapping one raw record.
// Not boxed: a `Mapped` lives only from `map_record` to the producer, and nearly every one
// is an upsert, so boxing would cost an allocation per record to shrink the rare tombstone.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// The record exists: publish it.
    Upsert(EntityRecord),
    /// The record was deleted in ServiceNow: publish a tombstone (null value) under `key`.
    Delete {
        /// Whose topic gets the tombstone.
        entity: Entity,
        /// `<integration_id>:<sys_id>`, as for upserts.
        key: String,
    },
}

impl Mapped {
    /// Which entity topic the output goes to.
    pub fn entity(&self) -> Entity {
        match self {
            Self::Upsert(record) => record.entity(),
            Self::Delete { entity, .. } => *entity,
        }
    }

    /// The Kafka key of the output.
    pub fn key(&self) -> String {
        match self {
            Self::Upsert(record) => record.key(),
            Self::Delete { key, .. } => key.clone(),
        }
    }

    /// The Kafka value: the encoded entity, or `None` for a tombstone.
    pub fn encode_value(&self) -> Result<Option<Vec<u8>>, ModelError> {
        match self {
            Self::Upsert(record) => record.encode().map(Some),
            Self::Delete { .. } => Ok(None),
        }
    }
}
