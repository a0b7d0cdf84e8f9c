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

/// Writes poison records to the DLQ topic with the original key and bytes untouched.
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
        // Keep the original headers after ours, so nothing the producer attached is lost.
        headers.extend(
            message
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_slice())),
        );
        let key = message.key.as_deref().unwrap_or_default();
        let record =
            OutRecord::new(&self.topic, key, message.payload.as_deref()).with_headers(&headers);
        self.producer.send(record).await
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}
