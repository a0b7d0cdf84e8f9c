//! The normalizer's Prometheus metrics, recorded in one place so names and labels stay
//! consistent (and documented in `docs/normalizer.md`).

use std::time::Duration;

/// Raw records read, by source table.
pub const RECORDS_IN: &str = "nowstream_normalizer_records_in_total";
/// Entity records (or tombstones) acknowledged by Kafka, by entity and op.
pub const RECORDS_OUT: &str = "nowstream_normalizer_records_out_total";
/// Records dead-lettered (DLQ record acknowledged), by reason code.
pub const DEAD_LETTERS: &str = "nowstream_normalizer_dead_letters_total";
/// Seconds from reading a raw record to Kafka acknowledging its output.
pub const PROCESSING_SECONDS: &str = "nowstream_normalizer_processing_seconds";
/// Messages behind the high watermark, per raw topic partition.
pub const CONSUMER_LAG: &str = "nowstream_normalizer_consumer_lag";
/// Records read whose output is not acknowledged yet.
pub const IN_FLIGHT: &str = "nowstream_normalizer_in_flight";
/// Transactions (with `exactly_once`), by outcome `committed` or `aborted`.
pub const TRANSACTIONS: &str = "nowstream_normalizer_transactions_total";
/// Times the stage dropped its Kafka clients and started over from the committed offsets.
pub const RESTARTS: &str = "nowstream_normalizer_restarts_total";

/// Every metric the stage records, for documentation and dashboards.
pub const NAMES: [&str; 8] = [
    RECORDS_IN,
    RECORDS_OUT,
    DEAD_LETTERS,
    PROCESSING_SECONDS,
    CONSUMER_LAG,
    IN_FLIGHT,
    TRANSACTIONS,
    RESTARTS,
];

/// Registers help texts (once, at start-up).
pub fn describe() {
    metrics::describe_counter!(RECORDS_IN, "Raw records read, by source table.");
    metrics::describe_counter!(
        RECORDS_OUT,
        "Entity records acknowledged by Kafka, by entity and op (upsert, delete)."
    );
    metrics::describe_counter!(DEAD_LETTERS, "Records dead-lettered, by reason code.");
    metrics::describe_histogram!(
        PROCESSING_SECONDS,
        metrics::Unit::Seconds,
        "Time from reading a raw record to Kafka acknowledging its output."
    );
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "Messages between the position and the high watermark, per raw topic partition."
    );
    metrics::describe_gauge!(
        IN_FLIGHT,
        "Records read whose output is not acknowledged yet."
    );
    metrics::describe_counter!(
        TRANSACTIONS,
        "Transactions with exactly_once, by outcome (committed, aborted)."
    );
    metrics::describe_counter!(
        RESTARTS,
        "Times the stage started over from the committed offsets after a Kafka failure."
    );
}

pub fn record_in(table: &str) {
    metrics::counter!(RECORDS_IN, "table" => table.to_owned()).increment(1);
}

pub fn record_out(entity: &'static str, op: &'static str, took: Duration) {
    metrics::counter!(RECORDS_OUT, "entity" => entity, "op" => op).increment(1);
    metrics::histogram!(PROCESSING_SECONDS).record(took.as_secs_f64());
}

pub fn dead_lettered(reason: &str, took: Duration) {
    metrics::counter!(DEAD_LETTERS, "reason" => reason.to_owned()).increment(1);
    metrics::histogram!(PROCESSING_SECONDS).record(took.as_secs_f64());
}

pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag as f64);
}

pub fn in_flight(count: usize) {
    metrics::gauge!(IN_FLIGHT).set(count as f64);
}

pub fn transaction(outcome: &'static str) {
    metrics::counter!(TRANSACTIONS, "outcome" => outcome).increment(1);
}

pub fn restarted() {
    metrics::counter!(RESTARTS).increment(1);
}
