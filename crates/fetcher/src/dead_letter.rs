//! The fetcher's dead letters: rows read from ServiceNow that cannot go to a raw topic.
//!
//! Three kinds of row end up here instead of stalling their unit or vanishing:
//!
//! - rows that cannot be keyed or versioned (a non-numeric `sys_mod_count`, an audit row
//!   without `tablename` or `documentkey`, …): the reason is [`RecordError::code`];
//! - records larger than the producer accepts (`message.max.bytes`): reason [`TOO_LARGE`];
//!   librdkafka refuses them on every try, so publishing them would loop forever;
//! - records whose Table API response alone is over `fetcher.max_response_bytes`: reason
//!   [`RESPONSE_TOO_LARGE`]; only their sys_id and `sys_updated_on` could be read.
//!
//! A dead letter goes to `servicenow.fetcher.dlq` in the same page write as the page's
//! records and before the checkpoint (inside the transaction in exactly-once mode), so the
//! checkpoint never moves past a row that is neither published nor dead-lettered.
//!
//! The value is the row's JSON as ServiceNow returned it, with the integration's
//! `exclude_fields` removed (whether or not it excludes at the source: the DLQ is read by
//! people, and excluded values never reach it), cut short to fit Kafka's record limit; the
//! headers say why, which row, how big, and whether the value was cut
//! ([`nowstream_bus::dlq::headers`]).

use serde_json::{Map, Value};

use nowstream_bus::{DeadLetter, DlqReason, OutRecord, cut_to_fit, record_size};
use nowstream_model::ExclusionPolicy;
use nowstream_model::keys::record_key;
use nowstream_model::table_api::stored_value;

use crate::metrics;
use crate::raw::RecordError;
use crate::writer::{Encoded, Lettered};

/// The `nowstream.stage` of the fetcher's dead letters.
pub const STAGE: &str = "fetcher";
/// Reason of a record larger than the producer's `message.max.bytes`.
pub const TOO_LARGE: &str = "too_large";
/// Reason of a record whose Table API response alone is over `fetcher.max_response_bytes`.
pub const RESPONSE_TOO_LARGE: &str = "response_too_large";

/// Bytes kept free under `message.max.bytes` for librdkafka's own framing, so a record that
/// passes [`DeadLetters::oversize`] is never refused for a few bytes.
pub const RECORD_MARGIN: usize = 1024;

/// Where the fetcher's dead letters go and how large a record may be.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    topic: String,
    max_record_bytes: usize,
}

/// The integration a dead-lettered row belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub integration_id: &'a str,
    /// The integration's `exclude_fields`, removed from every dead letter.
    pub excluded: &'a ExclusionPolicy,
}

impl DeadLetters {
    /// Dead letters on `topic`, for a producer that accepts records up to `max_record_bytes`
    /// (key, value and headers).
    pub fn new(topic: impl Into<String>, max_record_bytes: usize) -> Self {
        Self {
            topic: topic.into(),
            max_record_bytes,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The size Kafka would count for `record`, when it is too large to produce.
    pub fn oversize(&self, record: &Encoded) -> Option<usize> {
        let size = record_size(&OutRecord::new(
            &record.topic,
            record.key.as_bytes(),
            Some(&record.value),
        ));
        (size.saturating_add(RECORD_MARGIN) > self.max_record_bytes).then_some(size)
    }

    /// The dead letter of a row that cannot be keyed or versioned.
    pub fn unconvertible(
        &self,
        source: Source<'_>,
        error: &RecordError,
        row: &Map<String, Value>,
    ) -> Letter {
        self.letter(
            source,
            &error.table,
            &stored_value(row, "sys_id").unwrap_or_default(),
            DlqReason::new(error.code, error.to_string()),
            None,
            row,
        )
    }

    /// The dead letter of a record of `size` bytes, more than the producer accepts.
    pub fn too_large(
        &self,
        source: Source<'_>,
        table: &str,
        sys_id: &str,
        size: usize,
        row: &Map<String, Value>,
    ) -> Letter {
        let detail = format!(
            "{table} record {sys_id} is {size} bytes as a Kafka record; the producer accepts at \
             most {} (message.max.bytes, less {RECORD_MARGIN} bytes of margin)",
            self.max_record_bytes
        );
        self.letter(
            source,
            table,
            sys_id,
            DlqReason::new(TOO_LARGE, detail),
            Some(size),
            row,
        )
    }

    /// The dead letter of a record whose response alone exceeded `limit` bytes: only its
    /// keys (`row`: sys_id, sys_updated_on) could be read.
    pub fn response_too_large(
        &self,
        source: Source<'_>,
        table: &str,
        sys_id: &str,
        limit: u64,
        row: &Map<String, Value>,
    ) -> Letter {
        let detail = format!(
            "the Table API response with {table} record {sys_id} alone is over \
             fetcher.max_response_bytes ({limit} bytes); only its keys were read"
        );
        let size = usize::try_from(limit).unwrap_or(usize::MAX);
        self.letter(
            source,
            table,
            sys_id,
            DlqReason::new(RESPONSE_TOO_LARGE, detail),
            Some(size),
            row,
        )
    }

    fn letter(
        &self,
        source: Source<'_>,
        table: &str,
        sys_id: &str,
        reason: DlqReason,
        size: Option<usize>,
        row: &Map<String, Value>,
    ) -> Letter {
        let mut value = Value::Object(row.clone());
        source.excluded.strip(&mut value);
        // A map of JSON values always serialises.
        let payload = serde_json::to_vec(&value).unwrap_or_default();
        let key = record_key(source.integration_id, sys_id)
            .unwrap_or_else(|_| source.integration_id.to_owned());
        let mut letter = DeadLetter {
            stage: STAGE.to_owned(),
            reason,
            integration: source.integration_id.to_owned(),
            table: table.to_owned(),
            sys_id: sys_id.to_owned(),
            size,
            truncated: false,
        };
        let room = self
            .max_record_bytes
            .saturating_sub(RECORD_MARGIN)
            .saturating_sub(key.len())
            .saturating_sub(header_bytes(&letter.headers()));
        let value = cut_to_fit(&payload, room);
        letter.truncated = value.len() < payload.len();
        if letter.truncated && letter.size.is_none() {
            letter.size = Some(payload.len());
        }
        Letter {
            lettered: Lettered {
                record: Encoded {
                    topic: self.topic.clone(),
                    key,
                    value: value.to_vec(),
                },
                headers: letter.headers(),
            },
            letter,
        }
    }
}

/// A dead letter ready to write, with what it is about.
#[derive(Debug, Clone)]
pub struct Letter {
    pub lettered: Lettered,
    pub letter: DeadLetter,
}

impl Letter {
    /// Counts and logs the dead letter; call once the DLQ acknowledged it.
    pub fn report(&self, unit: &str) {
        let letter = &self.letter;
        metrics::dead_lettered(&letter.integration, &letter.table, &letter.reason.code);
        tracing::error!(
            unit,
            table = %letter.table,
            sys_id = %letter.sys_id,
            reason = %letter.reason.code,
            detail = %letter.reason.detail,
            truncated = letter.truncated,
            "row dead-lettered to the fetcher DLQ; the unit goes on past it"
        );
    }
}

fn header_bytes(headers: &[(&'static str, Vec<u8>)]) -> usize {
    const HEADER_FRAMING: usize = 10;
    headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + HEADER_FRAMING)
        .sum()
}

#[cfg(test)]
mod tests {
    use nowstream_bus::dlq::headers;
    use serde_json::json;

    use super::*;

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn header<'a>(letter: &'a Letter, name: &str) -> &'a str {
        letter
            .lettered
            .headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| std::str::from_utf8(value).unwrap())
            .unwrap_or_default()
    }

    #[test]
    fn a_dead_letter_never_carries_an_excluded_value() {
        let policy = ExclusionPolicy::new(&["description".to_owned()]).unwrap();
        let source = Source {
            integration_id: "4711",
            excluded: &policy,
        };
        let row = row(json!({
            "sys_id": {"value": "abc"},
            "sys_mod_count": {"value": "many"},
            "description": {"value": "SECRET-VALUE", "display_value": "SECRET-VALUE"}
        }));
        let error = RecordError {
            code: "bad_sys_mod_count",
            table: "incident".into(),
            sys_id: "abc".into(),
            problem: "sys_mod_count \"many\" is not a number".into(),
        };
        let letter = DeadLetters::new("servicenow.fetcher.dlq", 1_000_000)
            .unconvertible(source, &error, &row);
        let value = String::from_utf8(letter.lettered.record.value.clone()).unwrap();
        assert!(!value.contains("SECRET-VALUE"), "{value}");
        assert!(value.contains("many"), "{value}");
        assert_eq!(letter.lettered.record.key, "4711:abc");
        assert_eq!(header(&letter, headers::REASON), "bad_sys_mod_count");
        assert_eq!(header(&letter, headers::TABLE), "incident");
        assert_eq!(header(&letter, headers::SYS_ID), "abc");
        assert_eq!(header(&letter, headers::TRUNCATED), "false");
    }

    #[test]
    fn an_oversized_record_is_cut_to_fit_and_says_so() {
        let policy = ExclusionPolicy::none();
        let source = Source {
            integration_id: "4711",
            excluded: &policy,
        };
        let letters = DeadLetters::new("servicenow.fetcher.dlq", 10_000);
        let row = row(json!({"sys_id": {"value": "abc"}, "work_notes": "é".repeat(20_000)}));
        let letter = letters.too_large(source, "incident", "abc", 40_123, &row);
        let record = &letter.lettered.record;
        let refs: Vec<(&str, &[u8])> = letter
            .lettered
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_slice()))
            .collect();
        let size = record_size(
            &OutRecord::new(&record.topic, record.key.as_bytes(), Some(&record.value))
                .with_headers(&refs),
        );
        assert!(size + RECORD_MARGIN <= 10_000, "{size}");
        assert!(std::str::from_utf8(&record.value).is_ok());
        assert_eq!(header(&letter, headers::REASON), TOO_LARGE);
        assert_eq!(header(&letter, headers::SIZE), "40123");
        assert_eq!(header(&letter, headers::TRUNCATED), "true");
    }
}
