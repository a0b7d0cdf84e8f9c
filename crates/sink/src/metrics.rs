//! The sink's Prometheus metrics, recorded in one place so names and labels stay consistent.
//! Labels carry entity names, statuses and reason codes only: never record data or secrets.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nowstream_model::Entity;

/// Records SEI acknowledged (2xx), by entity and op (`upsert`, `delete`).
pub const RECORDS_SENT: &str = "nowstream_sink_records_sent_total";
/// Requests SEI acknowledged (2xx), by entity.
pub const BATCHES: &str = "nowstream_sink_batches_total";
/// Records left out of a request because a later record of the same sys_id in the batch
/// superseded them, by entity.
pub const SUPERSEDED: &str = "nowstream_sink_records_superseded_total";
/// Attempts that will be retried, by entity and status (`429`, `503`, …, `timeout`, `connection`).
pub const RETRIES: &str = "nowstream_sink_retries_total";
/// Batches split because SEI refused them whole, by entity and status (`400`, `413`).
pub const SPLITS: &str = "nowstream_sink_batch_splits_total";
/// Answers that stopped delivery (401, 403, a 400 that names no record, …), by entity,
/// status and reason.
pub const REFUSALS: &str = "nowstream_sink_refusals_total";
/// 1 while the sink is parked after a refusal (reading and sending stopped), else 0.
pub const PARKED: &str = "nowstream_sink_parked";
/// Records written to the DLQ, by reason.
pub const DEAD_LETTERS: &str = "nowstream_sink_dlq_records_total";
/// Duration of ingestion requests, by entity.
pub const REQUEST_DURATION: &str = "nowstream_sink_request_duration_seconds";
/// Time from a record's `sys_updated_on` in ServiceNow to SEI's acknowledgement of the request
/// that carried it, by entity. Rendered with buckets from 50 ms to 1 day (the name ends in
/// `nowstream_runtime::prometheus::AGE_SUFFIX`).
pub const FRESHNESS: &str = "nowstream_sink_freshness_seconds";
/// High watermark minus the consumer's position, by topic and partition.
pub const CONSUMER_LAG: &str = "nowstream_sink_consumer_lag";
/// Batches being delivered or waiting for a delivery slot.
pub const OUTSTANDING_BATCHES: &str = "nowstream_sink_outstanding_batches";
/// Records read and not yet acknowledged (delivered or dead-lettered).
pub const UNACKED_RECORDS: &str = "nowstream_sink_unacked_records";

/// Registers help texts (once, at start-up).
pub fn describe() {
    metrics::describe_counter!(RECORDS_SENT, "Records SEI acknowledged, by entity and op.");
    metrics::describe_counter!(BATCHES, "Ingestion requests SEI acknowledged, by entity.");
    metrics::describe_counter!(
        SUPERSEDED,
        "Records not sent because a later record of the same sys_id in the batch replaced them."
    );
    metrics::describe_counter!(
        RETRIES,
        "Ingestion attempts that failed and will be retried, by entity and status."
    );
    metrics::describe_counter!(
        SPLITS,
        "Batches split because SEI refused them whole (400: find the bad record; 413: too large)."
    );
    metrics::describe_counter!(
        REFUSALS,
        "SEI answers that parked the sink (401, 403, a 400 naming no record, ...), by entity, \
         status and reason."
    );
    metrics::describe_gauge!(
        PARKED,
        "1 while the sink is parked after SEI refused a batch, else 0."
    );
    metrics::describe_counter!(DEAD_LETTERS, "Records written to the DLQ, by reason.");
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Duration of ingestion requests to SEI, by entity."
    );
    metrics::describe_histogram!(
        FRESHNESS,
        metrics::Unit::Seconds,
        "Time from a record's sys_updated_on in ServiceNow to SEI's acknowledgement of the \
         request that carried it, by entity (upserts only: tombstones carry no time)."
    );
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "Records not yet read: high watermark minus position, by topic and partition."
    );
    metrics::describe_gauge!(
        OUTSTANDING_BATCHES,
        "Batches being delivered or waiting for a delivery slot."
    );
    metrics::describe_gauge!(
        UNACKED_RECORDS,
        "Records read and not yet delivered or dead-lettered."
    );
}

/// A request was acknowledged.
pub fn batch_delivered(entity: Entity, upserts: usize, deletes: usize, superseded: usize) {
    let name = entity.name();
    metrics::counter!(BATCHES, "entity" => name).increment(1);
    metrics::counter!(RECORDS_SENT, "entity" => name, "op" => "upsert").increment(upserts as u64);
    metrics::counter!(RECORDS_SENT, "entity" => name, "op" => "delete").increment(deletes as u64);
    if superseded > 0 {
        metrics::counter!(SUPERSEDED, "entity" => name).increment(superseded as u64);
    }
}

/// An attempt failed and will be retried.
pub fn retry(entity: Entity, status: &str) {
    metrics::counter!(RETRIES, "entity" => entity.name(), "status" => status.to_owned())
        .increment(1);
}

/// A batch was split.
pub fn split(entity: Entity, status: u16) {
    metrics::counter!(SPLITS, "entity" => entity.name(), "status" => status.to_string())
        .increment(1);
}

/// SEI refused a request; `reason` is one of a fixed set of labels.
pub fn refused(entity: Entity, status: u16, reason: &'static str) {
    metrics::counter!(
        REFUSALS,
        "entity" => entity.name(),
        "status" => status.to_string(),
        "reason" => reason
    )
    .increment(1);
}

/// Whether the sink is parked.
pub fn parked(parked: bool) {
    metrics::gauge!(PARKED).set(if parked { 1.0 } else { 0.0 });
}

/// A record was dead-lettered.
pub fn dead_lettered(reason: &str) {
    metrics::counter!(DEAD_LETTERS, "reason" => reason.to_owned()).increment(1);
}

/// A request got an answer (or failed) after `elapsed`.
pub fn request_duration(entity: Entity, elapsed: Duration) {
    metrics::histogram!(REQUEST_DURATION, "entity" => entity.name()).record(elapsed.as_secs_f64());
}

/// SEI acknowledged upserts last changed in ServiceNow at `changed` (one entry per record).
///
/// A time ahead of `acknowledged_at` (clocks of ServiceNow and the sink's host apart) counts
/// as 0 rather than a negative age, which would hide in the first bucket and lower the sum.
pub fn freshness(
    entity: Entity,
    acknowledged_at: DateTime<Utc>,
    changed: impl Iterator<Item = DateTime<Utc>>,
) {
    let histogram = metrics::histogram!(FRESHNESS, "entity" => entity.name());
    for changed in changed {
        let age = (acknowledged_at - changed).num_milliseconds().max(0);
        histogram.record(age as f64 / 1000.0);
    }
}

/// Lag of one partition.
pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag as f64);
}

/// Current backpressure figures.
pub fn pressure(outstanding_batches: usize, unacked_records: usize) {
    metrics::gauge!(OUTSTANDING_BATCHES).set(outstanding_batches as f64);
    metrics::gauge!(UNACKED_RECORDS).set(unacked_records as f64);
}
