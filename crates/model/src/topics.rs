//! Kafka topic names. Every name can get a prefix (e.g. `staging.`) so several
//! deployments can share one cluster; the prefix is taken literally, separator included.

pub use crate::entity::Entity;

/// Raw topics: this plus the ServiceNow table name.
pub const RAW_TOPIC_STEM: &str = "servicenow.raw.";
/// The fetcher's compacted checkpoint topic.
pub const CHECKPOINTS_TOPIC: &str = "servicenow.fetcher.checkpoints";
/// Dead letters of the normalizer and the sink.
pub const DLQ_TOPIC: &str = "sei.servicenow.dlq";
/// Dead letters of the fetcher: ServiceNow rows it could not publish to a raw topic (cannot be
/// keyed or versioned, too large for Kafka, a response too large to read).
pub const FETCHER_DLQ_TOPIC: &str = "servicenow.fetcher.dlq";

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_LEN: usize = 249;

/// A prefix or table name that would make an illegal Kafka topic name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// A character Kafka does not allow (only ASCII letters, digits, `.`, `_`, `-`).
    #[error(
        "topic {what} `{value}` contains `{character}`; Kafka allows only ASCII letters, digits, '.', '_' and '-'"
    )]
    IllegalCharacter {
        /// `prefix` or `table`.
        what: &'static str,
        /// The value given.
        value: String,
        /// The first illegal character.
        character: char,
    },
    /// The table name is empty.
    #[error("topic table name is empty")]
    EmptyTable,
    /// The full name would exceed Kafka's limit.
    #[error("topic name `{name}` is {len} characters; Kafka allows at most {MAX_TOPIC_LEN}")]
    TooLong {
        /// The full name.
        name: String,
        /// Its length.
        len: usize,
    },
}

/// Topic names of one deployment: the defaults with its prefix in front.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    /// Names with `prefix` in front (empty for the defaults). Checked here, once, so that
    /// the fixed names can be built without errors later.
    pub fn new(prefix: impl Into<String>) -> Result<Self, TopicNameError> {
        let prefix = prefix.into();
        check_characters("prefix", &prefix)?;
        let longest_fixed = Entity::ALL
            .iter()
            .map(|entity| entity.topic_name())
            .chain([CHECKPOINTS_TOPIC, DLQ_TOPIC, FETCHER_DLQ_TOPIC])
            .max_by_key(|name| name.len())
            .unwrap_or(DLQ_TOPIC);
        check_length(format!("{prefix}{longest_fixed}"))?;
        Ok(Self { prefix })
    }

    /// The prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>servicenow.raw.<table>`.
    pub fn raw(&self, table: &str) -> Result<String, TopicNameError> {
        if table.is_empty() {
            return Err(TopicNameError::EmptyTable);
        }
        check_characters("table", table)?;
        check_length(format!("{}{RAW_TOPIC_STEM}{table}", self.prefix))
    }

    /// `<prefix>servicenow.fetcher.checkpoints`.
    pub fn checkpoints(&self) -> String {
        format!("{}{CHECKPOINTS_TOPIC}", self.prefix)
    }

    /// `<prefix>sei.servicenow.<entity>`.
    pub fn entity(&self, entity: Entity) -> String {
        format!("{}{}", self.prefix, entity.topic_name())
    }

    /// `<prefix>sei.servicenow.dlq`.
    pub fn dlq(&self) -> String {
        format!("{}{DLQ_TOPIC}", self.prefix)
    }

    /// `<prefix>servicenow.fetcher.dlq`.
    pub fn fetcher_dlq(&self) -> String {
        format!("{}{FETCHER_DLQ_TOPIC}", self.prefix)
    }

    /// The table of a raw topic of this deployment, e.g. `incident` for
    /// `<prefix>servicenow.raw.incident`; `None` for any other topic.
    pub fn raw_table<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(RAW_TOPIC_STEM)
            .filter(|table| !table.is_empty())
    }

    /// The entity of an entity topic of this deployment; `None` for any other topic.
    pub fn entity_of(&self, topic: &str) -> Option<Entity> {
        let unprefixed = topic.strip_prefix(self.prefix.as_str())?;
        Entity::ALL
            .into_iter()
            .find(|entity| entity.topic_name() == unprefixed)
    }
}

fn check_characters(what: &'static str, value: &str) -> Result<(), TopicNameError> {
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(character) => Err(TopicNameError::IllegalCharacter {
            what,
            value: value.to_owned(),
            character,
        }),
        None => Ok(()),
    }
}

fn check_length(name: String) -> Result<String, TopicNameError> {
    let len = name.len();
    if len > MAX_TOPIC_LEN {
        Err(TopicNameError::TooLong { name, len })
    } else {
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_match_the_design() {
        let names = TopicNames::default();
        assert_eq!(names.raw("incident").unwrap(), "servicenow.raw.incident");
        assert_eq!(names.checkpoints(), "servicenow.fetcher.checkpoints");
        assert_eq!(names.entity(Entity::User), "sei.servicenow.user");
        assert_eq!(names.dlq(), "sei.servicenow.dlq");
        assert_eq!(names.fetcher_dlq(), "servicenow.fetcher.dlq");
    }

    #[test]
    fn the_prefix_goes_in_front_of_every_name() {
        let names = TopicNames::new("staging.").unwrap();
        assert_eq!(
            names.raw("sys_user").unwrap(),
            "staging.servicenow.raw.sys_user"
        );
        assert_eq!(
            names.checkpoints(),
            "staging.servicenow.fetcher.checkpoints"
        );
        assert_eq!(
            names.entity(Entity::FieldDefinition),
            "staging.sei.servicenow.field_definition"
        );
        assert_eq!(names.dlq(), "staging.sei.servicenow.dlq");
        assert_eq!(names.fetcher_dlq(), "staging.servicenow.fetcher.dlq");
    }

    #[test]
    fn topics_parse_back_only_under_the_same_prefix() {
        let names = TopicNames::new("a-").unwrap();
        assert_eq!(
            names.raw_table("a-servicenow.raw.incident"),
            Some("incident")
        );
        assert_eq!(names.raw_table("servicenow.raw.incident"), None);
        assert_eq!(names.raw_table("a-servicenow.raw."), None);
        assert_eq!(
            names.entity_of("a-sei.servicenow.change_request"),
            Some(Entity::ChangeRequest)
        );
        assert_eq!(names.entity_of("a-sei.servicenow.dlq"), None);
    }

    #[test]
    fn illegal_prefixes_and_tables_are_refused_with_the_culprit() {
        let error = TopicNames::new("my prefix").unwrap_err();
        assert!(error.to_string().contains("` `"), "{error}");
        assert!(matches!(
            TopicNames::default().raw("inc/ident"),
            Err(TopicNameError::IllegalCharacter {
                what: "table",
                character: '/',
                ..
            })
        ));
        assert_eq!(
            TopicNames::default().raw(""),
            Err(TopicNameError::EmptyTable)
        );
    }

    #[test]
    fn names_longer_than_kafka_allows_are_refused() {
        assert!(matches!(
            TopicNames::new("p".repeat(230)),
            Err(TopicNameError::TooLong { .. })
        ));
        let names = TopicNames::new("p".repeat(200)).unwrap();
        assert!(matches!(
            names.raw(&"t".repeat(40)),
            Err(TopicNameError::TooLong { .. })
        ));
    }
}
