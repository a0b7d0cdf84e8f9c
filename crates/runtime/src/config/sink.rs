//! The `[sink]` section: how entities are batched, delivered to SEI and retried.

use std::time::Duration;

use serde::Deserialize;

use super::error::Problem;
use super::stage_section::SectionRules;

/// Settings of the sink stage. Every field has a default, so the section may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Consumer group of the sink; replicas in one group share the entity topics' partitions.
    pub group_id: String,
    /// `group.instance.id` of this replica's consumer (static membership, KIP-345). Give
    /// each replica a stable, distinct value (its pod name through
    /// `NOWSTREAM__SINK__GROUP_INSTANCE_ID`): a replica restarted within `session.timeout.ms`
    /// then gets its partitions back at once, without a rebalance. The price: a replica that
    /// stops does not leave the group, so its partitions wait for the session timeout before
    /// another replica takes them (see docs/architecture.md, "Failover"). Absent: dynamic
    /// membership.
    pub group_instance_id: Option<String>,
    /// A batch is sent once it holds this many records (one batch per integration and entity).
    pub batch_max_records: usize,
    /// A batch is sent before its entity JSON would pass this many bytes (uncompressed), so a
    /// request stays under SEI's body limit. A single larger record is sent on its own.
    pub batch_max_bytes: usize,
    /// A batch that is not full is sent this long after its first record arrived, so a quiet
    /// stream is still delivered promptly (e.g. `500ms`).
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Batches sent or waiting to be sent at once. Reading stops while this many are
    /// outstanding: backpressure instead of an unbounded buffer when SEI is slow.
    pub max_in_flight_batches: usize,
    /// Records read but not yet acknowledged (delivered or dead-lettered). Reading stops at
    /// this many, bounding memory. At least `batch_max_records`, or batches could never fill.
    pub max_unacked_messages: usize,
    /// Timeout of one ingestion request; a timed-out request is retried like a 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First pause after a 429, 5xx or timeout; doubled on each further failure of the batch.
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    /// Longest pause between two attempts, also for a larger `Retry-After`. There is no limit
    /// on attempts: a record that was read is never given up because SEI was unavailable.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Compress request bodies with gzip (`Content-Encoding: gzip`); entity JSON shrinks
    /// about tenfold.
    pub gzip: bool,
    /// How often consumer lag (high watermark minus position, per partition) is measured.
    #[serde(with = "humantime_serde")]
    pub lag_interval: Duration,
    /// On SIGTERM, how long in-flight batches may take to finish before the sink gives up on
    /// them (they are not committed, so the next run sends them again).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Partitions of the entity topics and the DLQ topic when the sink has to create them.
    /// Existing topics are left as they are, but must have at least this many partitions.
    pub topic_partitions: i32,
    /// Replication factor of the topics the sink creates.
    pub replication_factor: i32,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            group_id: "nowstream-sink".to_owned(),
            group_instance_id: None,
            batch_max_records: 500,
            batch_max_bytes: 4 * 1024 * 1024,
            linger: Duration::from_millis(500),
            max_in_flight_batches: 8,
            max_unacked_messages: 5_000,
            request_timeout: Duration::from_secs(30),
            retry_initial_backoff: Duration::from_millis(200),
            retry_max_backoff: Duration::from_secs(30),
            gzip: true,
            lag_interval: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
            topic_partitions: 6,
            replication_factor: 1,
        }
    }
}

impl SinkConfig {
    /// The rules that span fields of this section, each broken one named by its key path.
    /// The sink checks them at start-up.
    pub fn problems(&self) -> Vec<Problem> {
        let mut rules =
            SectionRules::new("sink", &self.group_id, self.group_instance_id.as_deref());
        rules.require(
            self.batch_max_records >= 1,
            "batch_max_records",
            "must be at least 1",
        );
        rules.require(
            self.batch_max_bytes >= 1,
            "batch_max_bytes",
            "must be at least 1",
        );
        rules.require(
            self.max_in_flight_batches >= 1,
            "max_in_flight_batches",
            "must be at least 1",
        );
        rules.require(
            self.max_unacked_messages >= self.batch_max_records,
            "max_unacked_messages",
            "must be at least batch_max_records, or a batch could never fill",
        );
        rules.require(
            !self.request_timeout.is_zero(),
            "request_timeout",
            "must be longer than zero",
        );
        rules.require(
            !self.retry_initial_backoff.is_zero(),
            "retry_initial_backoff",
            "must be longer than zero",
        );
        rules.require(
            self.retry_max_backoff >= self.retry_initial_backoff,
            "retry_max_backoff",
            "must be at least retry_initial_backoff",
        );
        rules.require(
            !self.lag_interval.is_zero(),
            "lag_interval",
            "must be longer than zero",
        );
        rules.require(
            self.topic_partitions >= 1,
            "topic_partitions",
            "must be at least 1",
        );
        rules.require(
            self.replication_factor >= 1,
            "replication_factor",
            "must be at least 1",
        );
        rules.into_problems()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::stage_section::paths;

    #[test]
    fn the_defaults_break_no_rule() {
        assert_eq!(SinkConfig::default().problems(), Vec::new());
    }

    #[test]
    fn the_example_file_shows_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nowstream.toml");
        let config = crate::ConfigLoader::new().file(&path).load().unwrap();
        assert_eq!(config.sink, SinkConfig::default());
    }

    #[test]
    fn a_blank_group_instance_id_is_refused() {
        let config = SinkConfig {
            group_instance_id: Some(" ".into()),
            ..SinkConfig::default()
        };
        let paths = paths(config.problems());
        assert_eq!(paths, vec!["sink.group_instance_id"]);
    }

    #[test]
    fn broken_rules_are_named_by_their_key_path() {
        let config = SinkConfig {
            batch_max_records: 1000,
            max_unacked_messages: 10,
            retry_max_backoff: Duration::from_millis(1),
            ..SinkConfig::default()
        };
        let paths = paths(config.problems());
        assert_eq!(
            paths,
            vec!["sink.max_unacked_messages", "sink.retry_max_backoff"]
        );
    }
}
