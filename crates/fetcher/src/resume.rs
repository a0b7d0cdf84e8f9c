//! With `exactly_once`, what a resumed unit already published inside its overlap window.
//!
//! Each poll re-reads `fetcher.overlap` before the checkpoint to catch late commits in
//! ServiceNow. A running unit remembers the versions it published there; a restarted one has
//! forgotten them and would publish them again. In at-least-once mode that duplicate is
//! harmless, but `exactly_once` promises each version once to `read_committed` readers. So a
//! unit resuming from a checkpoint first reads its raw topics (committed records only, up to
//! their current end) and remembers the versions it finds inside the window.
//!
//! Reading a whole compacted raw topic costs one pass over it per unit start; that is the price
//! of the guarantee, and why it is done only with `exactly_once`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::message::Message;

use nowstream_model::{AvroRecord, RawRecord, RecordOp, TopicNames};
use nowstream_runtime::KafkaConfig;

use crate::FetchError;
use crate::checkpoints::read_committed_to_end;
use crate::units::{DELETION_TABLES, UnitKind, WorkUnit};

/// How long a raw topic may make no progress while it is read (see
/// [`read_committed_to_end`]): longer than the writers' transaction timeout.
const STALL_TIMEOUT: Duration = Duration::from_secs(90);

/// The unit's records on the raw topics with `sys_updated_on` at or after `since`, as
/// committed now.
pub async fn published_since(
    kafka: &KafkaConfig,
    topics: &TopicNames,
    unit: &WorkUnit,
    since: DateTime<Utc>,
) -> Result<Vec<RawRecord>, FetchError> {
    let (tables, op): (Vec<&str>, RecordOp) = match unit.kind {
        UnitKind::Records(table) => (vec![table], RecordOp::Upsert),
        UnitKind::Deletions => (DELETION_TABLES.to_vec(), RecordOp::Delete),
    };
    let mut names = Vec::with_capacity(tables.len());
    for table in tables {
        names.push(topics.raw(table).map_err(|error| FetchError::Integration {
            integration_id: unit.integration_id.clone(),
            reason: format!("no raw topic for table {table}: {error}"),
        })?);
    }
    let kafka = kafka.clone();
    let prefix = format!("{}:", unit.integration_id);
    let integration_id = unit.integration_id.clone();
    tokio::task::spawn_blocking(move || {
        let mut found = Vec::new();
        for topic in &names {
            read_committed_to_end(&kafka, topic, STALL_TIMEOUT, |message| {
                let ours = message
                    .key()
                    .is_some_and(|key| key.starts_with(prefix.as_bytes()));
                let Some(bytes) = message.payload().filter(|_| ours) else {
                    return;
                };
                if let Ok(record) = RawRecord::decode(bytes)
                    && record.integration_id == integration_id
                    && record.op == op
                    && record.sys_updated_on >= since
                {
                    found.push(record);
                }
            })?;
        }
        Ok(found)
    })
    .await
    .map_err(|error| FetchError::Checkpoints {
        topic: "raw topics".into(),
        reason: format!("reader task failed: {error}"),
    })?
}
