//! The SEI entity kinds, and every name each one goes by.

use std::fmt;
use std::str::FromStr;

use crate::contract::{self, ContractSchema};
use crate::table_api::tables;

/// One kind of SEI entity. Ties together the names one entity has in each place: its
/// Kafka topic, its SEI API path, its ServiceNow source table and its Avro schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// `incident`.
    Incident,
    /// `change_request`.
    ChangeRequest,
    /// `sys_user`.
    User,
    /// `sys_dictionary`.
    FieldDefinition,
}

/// A name that is no entity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown entity `{name}`; expected one of incident, change_request, user, field_definition (or their plurals in API paths)"
)]
pub struct UnknownEntity {
    /// The name given.
    pub name: String,
}

impl Entity {
    /// Every entity, in a stable order.
    pub const ALL: [Entity; 4] = [
        Entity::Incident,
        Entity::ChangeRequest,
        Entity::User,
        Entity::FieldDefinition,
    ];

    /// Singular snake_case name, used in topic names: `change_request`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Incident => "incident",
            Self::ChangeRequest => "change_request",
            Self::User => "user",
            Self::FieldDefinition => "field_definition",
        }
    }

    /// Plural path segment of the SEI API: `change_requests`.
    pub const fn api_path(self) -> &'static str {
        match self {
            Self::Incident => "incidents",
            Self::ChangeRequest => "change_requests",
            Self::User => "users",
            Self::FieldDefinition => "field_definitions",
        }
    }

    /// ServiceNow table the entity is fetched from: the one place an entity and its source
    /// table are paired (the fetcher's record tables and the normalizer's dispatch both come
    /// from here).
    pub const fn source_table(self) -> &'static str {
        match self {
            Self::Incident => tables::INCIDENT,
            Self::ChangeRequest => tables::CHANGE_REQUEST,
            Self::User => tables::SYS_USER,
            Self::FieldDefinition => tables::SYS_DICTIONARY,
        }
    }

    /// The source tables of every entity, in the order of [`ALL`](Self::ALL).
    pub const SOURCE_TABLES: [&'static str; 4] = [
        Entity::ALL[0].source_table(),
        Entity::ALL[1].source_table(),
        Entity::ALL[2].source_table(),
        Entity::ALL[3].source_table(),
    ];

    /// Entity topic name without prefix: `sei.servicenow.change_request`.
    pub const fn topic_name(self) -> &'static str {
        match self {
            Self::Incident => "sei.servicenow.incident",
            Self::ChangeRequest => "sei.servicenow.change_request",
            Self::User => "sei.servicenow.user",
            Self::FieldDefinition => "sei.servicenow.field_definition",
        }
    }

    /// The Avro schema of the entity's topic values.
    pub fn schema(self) -> &'static ContractSchema {
        match self {
            Self::Incident => &contract::INCIDENT,
            Self::ChangeRequest => &contract::CHANGE_REQUEST,
            Self::User => &contract::USER,
            Self::FieldDefinition => &contract::FIELD_DEFINITION,
        }
    }

    /// The entity named by an SEI API path segment (`incidents`, ...).
    pub fn from_api_path(segment: &str) -> Result<Self, UnknownEntity> {
        Self::ALL
            .into_iter()
            .find(|entity| entity.api_path() == segment)
            .ok_or_else(|| UnknownEntity {
                name: segment.to_owned(),
            })
    }

    /// The entity fetched from ServiceNow table `table`, if any.
    pub fn from_source_table(table: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|entity| entity.source_table() == table)
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses the singular name (`change_request`), as written in config files.
impl FromStr for Entity {
    type Err = UnknownEntity;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|entity| entity.name() == name)
            .ok_or_else(|| UnknownEntity {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_an_entity_parses_back_to_it() {
        for entity in Entity::ALL {
            assert_eq!(entity.name().parse::<Entity>(), Ok(entity));
            assert_eq!(Entity::from_api_path(entity.api_path()), Ok(entity));
            assert_eq!(
                Entity::from_source_table(entity.source_table()),
                Some(entity)
            );
            assert_eq!(entity.topic_name(), format!("sei.servicenow.{entity}"));
        }
    }

    #[test]
    fn source_tables_list_every_entity_table_in_entity_order() {
        let from_entities: Vec<&str> = Entity::ALL.iter().map(|e| e.source_table()).collect();
        assert_eq!(Entity::SOURCE_TABLES.to_vec(), from_entities);
        assert_eq!(
            Entity::SOURCE_TABLES,
            ["incident", "change_request", "sys_user", "sys_dictionary"]
        );
    }

    #[test]
    fn unknown_names_are_errors_that_quote_the_name() {
        let error = Entity::from_api_path("incident").unwrap_err();
        assert!(error.to_string().contains("`incident`"), "{error}");
        assert!("users".parse::<Entity>().is_err());
        assert_eq!(Entity::from_source_table("problem"), None);
    }

    #[test]
    fn each_entity_names_its_own_schema() {
        assert_eq!(
            Entity::Incident.schema().full_name(),
            "io.nowstream.sei.Incident"
        );
        assert_eq!(
            Entity::ChangeRequest.schema().full_name(),
            "io.nowstream.sei.ChangeRequest"
        );
        assert_eq!(Entity::User.schema().full_name(), "io.nowstream.sei.User");
        assert_eq!(
            Entity::FieldDefinition.schema().full_name(),
            "io.nowstream.sei.FieldDefinition"
        );
    }
}
