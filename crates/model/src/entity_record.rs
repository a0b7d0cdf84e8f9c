//! [`EntityRecord`]: any one SEI entity, so code that handles all four alike (the
//! normalizer producing them, the sink decoding them) dispatches on the entity kind in one
//! place.

use serde::Serialize;

use crate::keys::RecordKey;
use crate::{
    AvroRecord, ChangeRequest, Entity, FieldDefinition, Incident, ModelError, User, Version,
    Versioned,
};

/// An SEI entity, ready for its `sei.servicenow.<entity>` topic.
///
/// Serializes (untagged) as the entity JSON of nowstream's ingestion contract.
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
    /// versions of a record stay in one partition. The parts are not checked again here: the
    /// normalizer builds an entity only after its parts formed a valid [`RecordKey`], and a
    /// decoded entity's key is compared with the key it came under.
    pub fn key(&self) -> String {
        RecordKey::from_checked_parts(self.integration_id(), self.sys_id()).to_string()
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

    /// Decodes a Kafka value of `entity`'s topic (Avro single-object encoding).
    pub fn decode(entity: Entity, bytes: &[u8]) -> Result<Self, ModelError> {
        Ok(match entity {
            Entity::Incident => Incident::decode(bytes)?.into(),
            Entity::ChangeRequest => ChangeRequest::decode(bytes)?.into(),
            Entity::User => User::decode(bytes)?.into(),
            Entity::FieldDefinition => FieldDefinition::decode(bytes)?.into(),
        })
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;

    use super::*;

    fn user() -> User {
        User {
            integration_id: "42".into(),
            sys_id: "abc".into(),
            sys_updated_on: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            sys_mod_count: Some(3),
            user_name: Some("fred".into()),
            name: None,
            email: None,
            employee_number: None,
            title: None,
            active: Some(true),
            department: None,
            manager: None,
            sys_created_on: None,
            excluded_fields: vec!["email".into()],
            custom_fields: BTreeMap::new(),
        }
    }

    #[test]
    fn an_entity_record_round_trips_through_its_topics_encoding() {
        let record = EntityRecord::from(user());
        let bytes = record.encode().unwrap();
        assert_eq!(EntityRecord::decode(Entity::User, &bytes).unwrap(), record);
        assert!(EntityRecord::decode(Entity::Incident, &bytes).is_err());
    }

    #[test]
    fn an_entity_record_names_its_entity_key_and_version_and_serializes_as_the_entity() {
        let record = EntityRecord::from(user());
        assert_eq!(record.entity(), Entity::User);
        assert_eq!(record.key(), "42:abc");
        assert_eq!(record.excluded_fields(), ["email"]);
        assert_eq!(record.version(), user().version());
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            serde_json::to_value(user()).unwrap()
        );
    }
}
