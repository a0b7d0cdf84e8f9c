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
    /// Size in bytes (key and value) of the output that did not fit (reason `too_large`).
    pub const SIZE: &str = "nowstream.size";
    /// The producer's `message.max.bytes` that the output did not fit under (with room to
    /// spare for headers).
    pub const LIMIT: &str = "nowstream.limit";
    /// Top-level payload fields left out so the dead letter itself fits: names only,
    /// comma-separated.
    pub const CUT_FIELDS: &str = "nowstream.cut_fields";
    /// The table of the record, when the dead letter knows it.
    pub const TABLE: &str = "nowstream.table";
    /// The sys_id of the record, when the dead letter knows it.
    pub const SYS_ID: &str = "nowstream.sys_id";
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
