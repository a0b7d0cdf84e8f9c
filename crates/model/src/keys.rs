//! Kafka message keys. One key per ServiceNow record (or per fetcher cursor) sends all its
//! versions to one partition, which keeps their order through every stage and lets
//! compaction keep only the newest.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// Separates the two parts of a key.
pub const KEY_SEPARATOR: char = ':';

/// A key that cannot be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A part is empty.
    #[error("key part {part} is empty")]
    EmptyPart {
        /// Which part (`integration_id`, `sys_id`, `table`).
        part: &'static str,
    },
    /// A part contains the separator, which would make the key ambiguous.
    #[error("key part {part} `{value}` contains the separator ':'")]
    SeparatorInPart {
        /// Which part.
        part: &'static str,
        /// The value given.
        value: String,
    },
    /// The key has no separator, or more than one.
    #[error("key `{key}` is not <{first}>:<{second}>")]
    Malformed {
        /// The key.
        key: String,
        /// Name of the first part.
        first: &'static str,
        /// Name of the second part.
        second: &'static str,
    },
    /// The key bytes are not UTF-8.
    #[error("key is not UTF-8: {source}")]
    NotUtf8 {
        /// Where decoding failed.
        #[source]
        source: std::str::Utf8Error,
    },
}

/// What the second part of an [`IntegrationKey`] holds; the name appears in errors.
pub trait KeyPart {
    /// Name of the part (`sys_id`, `table`).
    const NAME: &'static str;
}

/// Marker: the second part is a record's sys_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SysIdPart;

impl KeyPart for SysIdPart {
    const NAME: &'static str = "sys_id";
}

/// Marker: the second part is a ServiceNow table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TablePart;

impl KeyPart for TablePart {
    const NAME: &'static str = "table";
}

/// `<integration_id>:<part>`: every key we write has this shape, and only the meaning of
/// the second part differs, so one type serves all with a marker naming that part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntegrationKey<P> {
    integration_id: String,
    part: String,
    kind: PhantomData<P>,
}

/// Key of raw and entity topics: `<integration_id>:<sys_id>`.
pub type RecordKey = IntegrationKey<SysIdPart>;

/// Key of the checkpoint topic: `<integration_id>:<table>`.
pub type CheckpointKey = IntegrationKey<TablePart>;

impl<P: KeyPart> IntegrationKey<P> {
    /// A key from its parts; neither may be empty or contain `:`.
    pub fn new(integration_id: &str, part: &str) -> Result<Self, KeyError> {
        check_part("integration_id", integration_id)?;
        check_part(P::NAME, part)?;
        Ok(Self {
            integration_id: integration_id.to_owned(),
            part: part.to_owned(),
            kind: PhantomData,
        })
    }

    /// Parses a Kafka key as received.
    pub fn from_bytes(key: &[u8]) -> Result<Self, KeyError> {
        std::str::from_utf8(key)
            .map_err(|source| KeyError::NotUtf8 { source })?
            .parse()
    }

    /// The SEI integration.
    pub fn integration_id(&self) -> &str {
        &self.integration_id
    }
}

impl RecordKey {
    /// A key from parts that already formed a valid key once (an entity's parts, copied
    /// from the raw record the normalizer keyed); crate-private so outside parts always go
    /// through [`new`](Self::new).
    pub(crate) fn from_checked_parts(integration_id: &str, sys_id: &str) -> Self {
        Self {
            integration_id: integration_id.to_owned(),
            part: sys_id.to_owned(),
            kind: PhantomData,
        }
    }

    /// The record's sys_id.
    pub fn sys_id(&self) -> &str {
        &self.part
    }
}

impl CheckpointKey {
    /// The ServiceNow table.
    pub fn table(&self) -> &str {
        &self.part
    }
}

impl<P> fmt::Display for IntegrationKey<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{KEY_SEPARATOR}{}", self.integration_id, self.part)
    }
}

impl<P: KeyPart> FromStr for IntegrationKey<P> {
    type Err = KeyError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let (integration_id, part) = split_key(key, "integration_id", P::NAME)?;
        Self::new(integration_id, part)
    }
}

/// `<integration_id>:<sys_id>`, the key of raw and entity topics.
pub fn record_key(integration_id: &str, sys_id: &str) -> Result<String, KeyError> {
    RecordKey::new(integration_id, sys_id).map(|key| key.to_string())
}

/// Parses `<integration_id>:<sys_id>`.
pub fn parse_record_key(key: &str) -> Result<RecordKey, KeyError> {
    key.parse()
}

/// `<integration_id>:<table>`, the key of the checkpoint topic.
pub fn checkpoint_key(integration_id: &str, table: &str) -> Result<String, KeyError> {
    CheckpointKey::new(integration_id, table).map(|key| key.to_string())
}

/// Parses `<integration_id>:<table>`.
pub fn parse_checkpoint_key(key: &str) -> Result<CheckpointKey, KeyError> {
    key.parse()
}

fn check_part(part: &'static str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::EmptyPart { part });
    }
    if value.contains(KEY_SEPARATOR) {
        return Err(KeyError::SeparatorInPart {
            part,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn split_key<'k>(
    key: &'k str,
    first: &'static str,
    second: &'static str,
) -> Result<(&'k str, &'k str), KeyError> {
    let malformed = || KeyError::Malformed {
        key: key.to_owned(),
        first,
        second,
    };
    let (head, tail) = key.split_once(KEY_SEPARATOR).ok_or_else(malformed)?;
    if tail.contains(KEY_SEPARATOR) {
        return Err(malformed());
    }
    Ok((head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS_ID: &str = "46d44a23a9fe19810012d100cca80666";

    #[test]
    fn record_keys_round_trip_through_text_and_bytes() {
        let key = record_key("42", SYS_ID).unwrap();
        assert_eq!(key, format!("42:{SYS_ID}"));
        let parsed = parse_record_key(&key).unwrap();
        assert_eq!((parsed.integration_id(), parsed.sys_id()), ("42", SYS_ID));
        assert_eq!(RecordKey::from_bytes(key.as_bytes()).unwrap(), parsed);
    }

    #[test]
    fn checkpoint_keys_round_trip() {
        let key = checkpoint_key("42", "sys_user").unwrap();
        assert_eq!(key, "42:sys_user");
        let parsed = parse_checkpoint_key(&key).unwrap();
        assert_eq!(
            (parsed.integration_id(), parsed.table()),
            ("42", "sys_user")
        );
    }

    #[test]
    fn parts_that_would_make_a_key_ambiguous_are_refused() {
        assert_eq!(
            record_key("a:b", SYS_ID),
            Err(KeyError::SeparatorInPart {
                part: "integration_id",
                value: "a:b".into()
            })
        );
        assert_eq!(
            record_key("42", ""),
            Err(KeyError::EmptyPart { part: "sys_id" })
        );
        assert_eq!(
            checkpoint_key("", "incident"),
            Err(KeyError::EmptyPart {
                part: "integration_id"
            })
        );
    }

    #[test]
    fn malformed_keys_are_named_in_the_error() {
        let error = parse_record_key("no-separator").unwrap_err();
        assert_eq!(
            error.to_string(),
            "key `no-separator` is not <integration_id>:<sys_id>"
        );
        assert!(matches!(
            parse_record_key("a:b:c"),
            Err(KeyError::Malformed { .. })
        ));
        assert_eq!(
            parse_checkpoint_key(":incident"),
            Err(KeyError::EmptyPart {
                part: "integration_id"
            })
        );
        assert!(matches!(
            RecordKey::from_bytes(&[0xff, b':', b'x']),
            Err(KeyError::NotUtf8 { .. })
        ));
    }
}
