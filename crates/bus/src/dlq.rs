//! Dead-letter queue: where a record that cannot be processed goes, so the stream goes on.

use chrono::Utc;

use crate::{BusError, ConsumedMessage, Delivered, OutRecord, Producer};

/// Header names on every DLQ record. Consumers of the DLQ rely on them: part of the contract.
pub mod headers {
    pub const STAGE: &str = "nowstream.stage";
    pub const REASON: &str = "nowstream.reason";
    pub const DETAIL: &str = "nowstream.detail";
    pub const SOURCE_TOPIC: &str = "nowstream.source.topic";
    pub const SOURCE_PARTITION: &str = "nowstream.source.partition";
    pub const SOURCE_OFFSET: &str = "nowstream.source.offset";
    pub const FAILED_AT: &str = "nowstream.failed_at";
    /// What the value holds: [`content::SCRUBBED`] or [`content::REFERENCE`]. Set by writers
    /// that may not copy the input as it is ([`DlqWriter::send_scrubbed`]).
    pub const CONTENT: &str = "nowstream.content";
    /// The producer's `message.max.bytes` that the output did not fit under (with room to
    /// spare for headers).
    pub const LIMIT: &str = "nowstream.limit";
    /// Top-level payload fields left out so the dead letter itself fits: names only,
    /// comma-separated.
    pub const CUT_FIELDS: &str = "nowstream.cut_fields";
    /// ServiceNow table of the dead-lettered row (fetcher).
    pub const TABLE: &str = "nowstream.table";
    /// sys_id of the dead-lettered row, when it has one (fetcher).
    pub const SYS_ID: &str = "nowstream.sys_id";
    /// Integration the row came from (fetcher).
    pub const INTEGRATION: &str = "nowstream.integration";
    /// Size in bytes of what could not be written or read (the record Kafka would refuse,
    /// the response over the limit), decimal.
    pub const SIZE: &str = "nowstream.size";
    /// `true` when the value is cut short to fit Kafka's record limit: the value is then the
    /// first bytes of the original (cut at a UTF-8 character boundary), never the whole.
    pub const TRUNCATED: &str = "nowstream.truncated";
}

/// Values of [`headers::CONTENT`].
pub mod content {
    /// The value is the failed record with its integration's excluded fields removed.
    pub const SCRUBBED: &str = "scrubbed";
    /// The value is null: the record could not be scrubbed (not decodable, or its
    /// integration's exclusion policy is unknown), so the headers are only a reference to it
    /// (source topic, partition, offset; the key; the reason).
    pub const REFERENCE: &str = "reference";
}

/// A dead letter that is not a consumed message: a row the fetcher read from ServiceNow and
/// could not publish. Its headers use the same vocabulary as [`DlqWriter::send`], with the
/// row's table and sys_id instead of a source topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub stage: String,
    pub reason: DlqReason,
    pub integration: String,
    pub table: String,
    /// Empty when the row has none.
    pub sys_id: String,
    /// Size in bytes of what failed, when size is the problem.
    pub size: Option<usize>,
    /// Whether the value written is cut short (see [`headers::TRUNCATED`]).
    pub truncated: bool,
}

impl DeadLetter {
    /// The record headers, in the DLQ vocabulary.
    pub fn headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = vec![
            (headers::STAGE, self.stage.clone().into_bytes()),
            (headers::REASON, self.reason.code.clone().into_bytes()),
            (headers::DETAIL, self.reason.detail.clone().into_bytes()),
            (headers::INTEGRATION, self.integration.clone().into_bytes()),
            (headers::TABLE, self.table.clone().into_bytes()),
            (headers::SYS_ID, self.sys_id.clone().into_bytes()),
            (headers::FAILED_AT, Utc::now().to_rfc3339().into_bytes()),
            (headers::TRUNCATED, self.truncated.to_string().into_bytes()),
        ];
        if let Some(size) = self.size {
            out.push((headers::SIZE, size.to_string().into_bytes()));
        }
        out
    }
}

/// The longest prefix of `payload` of at most `max` bytes that does not split a UTF-8
/// character (a JSON payload cut short stays valid UTF-8, so it can still be read as text).
pub fn cut_to_fit(payload: &[u8], max: usize) -> &[u8] {
    if payload.len() <= max {
        return payload;
    }
    let mut end = max;
    // A continuation byte (10xxxxxx) is never the start of a character.
    while end > 0 && (payload[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    &payload[..end]
}

/// Why a record was dead-lettered: a short machine-readable code plus a human detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqReason {
    /// Stable code, e.g. `payload_not_json`, `missing_sys_id`, `rejected_by_sei`.
    pub code: String,
    /// What exactly was wrong and where (never a secret).
    pub detail: String,
}

impl DlqReason {
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

/// Writes poison records to the DLQ topic under their original key.
///
/// [`send`](Self::send) copies the input's bytes and headers as they are: only for inputs
/// that cannot hold an excluded value (the sink's inputs are normalized entities).
/// [`send_scrubbed`](Self::send_scrubbed) writes a value the caller made safe, and none of
/// the input's headers.
#[derive(Debug, Clone)]
pub struct DlqWriter {
    producer: Producer,
    topic: String,
    stage: String,
}

impl DlqWriter {
    pub fn new(producer: Producer, topic: impl Into<String>, stage: impl Into<String>) -> Self {
        Self {
            producer,
            topic: topic.into(),
            stage: stage.into(),
        }
    }

    /// Dead-letters a consumed message and waits for the broker's acknowledgement, so the caller
    /// may acknowledge the input only once the record is safely parked.
    pub async fn send(
        &self,
        message: &ConsumedMessage,
        reason: &DlqReason,
    ) -> Result<Delivered, BusError> {
        self.write(message, message.payload.as_deref(), reason, &[], true)
            .await
    }

    /// Dead-letters a consumed message with `value` in place of its payload (the caller's
    /// scrubbed copy, or `None` for a reference only) and `extra` headers after the standard
    /// ones. None of the input's own headers is copied: whatever a producer attached could
    /// hold a value that must not reach the DLQ. Waits for the broker's acknowledgement.
    pub async fn send_scrubbed(
        &self,
        message: &ConsumedMessage,
        value: Option<&[u8]>,
        reason: &DlqReason,
        extra: &[(&str, &[u8])],
    ) -> Result<Delivered, BusError> {
        self.write(message, value, reason, extra, false).await
    }

    async fn write(
        &self,
        message: &ConsumedMessage,
        value: Option<&[u8]>,
        reason: &DlqReason,
        extra: &[(&str, &[u8])],
        keep_input_headers: bool,
    ) -> Result<Delivered, BusError> {
        let partition = message.partition.to_string();
        let offset = message.offset.to_string();
        let failed_at = Utc::now().to_rfc3339();
        let mut headers: Vec<(&str, &[u8])> = vec![
            (headers::STAGE, self.stage.as_bytes()),
            (headers::REASON, reason.code.as_bytes()),
            (headers::DETAIL, reason.detail.as_bytes()),
            (headers::SOURCE_TOPIC, message.topic.as_bytes()),
            (headers::SOURCE_PARTITION, partition.as_bytes()),
            (headers::SOURCE_OFFSET, offset.as_bytes()),
            (headers::FAILED_AT, failed_at.as_bytes()),
        ];
        headers.extend_from_slice(extra);
        if keep_input_headers {
            // After ours, so nothing the producer attached is lost.
            headers.extend(
                message
                    .headers
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_slice())),
            );
        }
        let key = message.key.as_deref().unwrap_or_default();
        let record = OutRecord::new(&self.topic, key, value).with_headers(&headers);
        self.producer.send(record).await
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_never_splits_a_utf8_character() {
        let text = "aé🚀b".as_bytes();
        assert_eq!(cut_to_fit(text, 100), text);
        assert_eq!(cut_to_fit(text, 2), b"a");
        assert_eq!(cut_to_fit(text, 3), "aé".as_bytes());
        assert_eq!(cut_to_fit(text, 6), "aé".as_bytes());
        assert_eq!(cut_to_fit(text, 7), "aé🚀".as_bytes());
        assert_eq!(cut_to_fit(text, 0), b"");
    }

    #[test]
    fn dead_letter_headers_name_table_sys_id_size_and_cut() {
        let letter = DeadLetter {
            stage: "fetcher".into(),
            reason: DlqReason::new("too_large", "2000000 bytes"),
            integration: "4711".into(),
            table: "incident".into(),
            sys_id: "abc".into(),
            size: Some(2_000_000),
            truncated: true,
        };
        let headers = letter.headers();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| String::from_utf8(value.clone()).unwrap())
        };
        assert_eq!(get(headers::REASON).as_deref(), Some("too_large"));
        assert_eq!(get(headers::TABLE).as_deref(), Some("incident"));
        assert_eq!(get(headers::SYS_ID).as_deref(), Some("abc"));
        assert_eq!(get(headers::SIZE).as_deref(), Some("2000000"));
        assert_eq!(get(headers::TRUNCATED).as_deref(), Some("true"));
    }
}
