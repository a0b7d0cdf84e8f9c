//! What mapping produces: an entity to upsert, or a tombstone.

pub use nowstream_model::EntityRecord;
use nowstream_model::{Entity, ModelError};

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
