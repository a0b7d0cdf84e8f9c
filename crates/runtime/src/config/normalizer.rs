//! The `[normalizer]` section: how raw records are consumed, normalized and published.

use std::time::Duration;

use serde::Deserialize;

use super::error::Problem;
use super::stage_section::SectionRules;

/// Settings of the normalizer stage. Every field has a default, so the section may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizerConfig {
    /// Consumer group of the normalizer; replicas in one group share the raw topics'
    /// partitions. A replay runs under its own group derived from this one
    /// (`<group_id>-replay-<unix time>`), so it never moves the running stage's offsets.
    pub group_id: String,
    /// `group.instance.id` of this replica's consumer (static membership, KIP-345). Give
    /// each replica a stable, distinct value (its pod name through
    /// `NOWSTREAM__NORMALIZER__GROUP_INSTANCE_ID`): a replica restarted within `session.timeout.ms`
    /// then gets its partitions back at once, without a rebalance. The price: a replica that
    /// stops does not leave the group, so its partitions wait for the session timeout before
    /// another replica takes them (see docs/architecture.md, "Failover"). Absent: dynamic
    /// membership.
    pub group_instance_id: Option<String>,
    /// Records read but whose output Kafka has not acknowledged yet. Reading stops at this
    /// many: backpressure that bounds memory when the broker is slow. Ignored with
    /// `exactly_once`, where `transaction_max_records` bounds the work in flight.
    pub max_in_flight: usize,
    /// Partitions of the entity topics and the DLQ topic when the normalizer has to create
    /// them. Existing topics are left as they are, but must have at least this many.
    pub topic_partitions: i32,
    /// Replication factor of the topics the normalizer creates.
    pub replication_factor: i32,
    /// Publish each batch of outputs and its input offsets in one Kafka transaction
    /// (consume-transform-produce), so readers with `isolation.level=read_committed` see each
    /// output exactly once. Needs a broker with transactions; without it, at-least-once
    /// delivery plus keyed, versioned upserts downstream give the same end state.
    pub exactly_once: bool,
    /// `transactional.id` of this replica's producer with `exactly_once`. Give each replica
    /// a stable, distinct value (e.g. its pod name through
    /// `NOWSTREAM__NORMALIZER__TRANSACTIONAL_ID`): a restarted replica then aborts its
    /// predecessor's open transaction at once instead of leaving read_committed readers
    /// waiting for `transaction.timeout.ms`. Absent: `<group_id>-<random uuid>` per start.
    pub transactional_id: Option<String>,
    /// With `exactly_once`, a transaction is committed once it holds this many inputs.
    pub transaction_max_records: usize,
    /// With `exactly_once`, a transaction that is not full is committed this long after its
    /// first input was read, so a quiet stream is still published promptly.
    #[serde(with = "humantime_serde")]
    pub transaction_linger: Duration,
    /// How often consumer lag (high watermark minus position, per partition) is measured.
    #[serde(with = "humantime_serde")]
    pub lag_interval: Duration,
    /// On SIGTERM, how long in-flight outputs may take to be acknowledged before the stage
    /// gives up on them (their inputs are not committed, so the next run normalizes them
    /// again).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for NormalizerConfig {
    fn default() -> Self {
        Self {
            group_id: "nowstream-normalizer".to_owned(),
            group_instance_id: None,
            max_in_flight: 2_000,
            topic_partitions: 6,
            replication_factor: 1,
            exactly_once: false,
            transactional_id: None,
            transaction_max_records: 1000,
            transaction_linger: Duration::from_millis(100),
            lag_interval: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl NormalizerConfig {
    /// The rules that span fields of this section, each broken one named by its key path.
    /// The normalizer checks them at start-up.
    pub fn problems(&self) -> Vec<Problem> {
        let mut rules = SectionRules::new(
            "normalizer",
            &self.group_id,
            self.group_instance_id.as_deref(),
        );
        rules.require(
            self.max_in_flight >= 1,
            "max_in_flight",
            "must be at least 1",
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
        rules.require(
            self.transactional_id
                .as_deref()
                .is_none_or(|id| !id.trim().is_empty()),
            "transactional_id",
            "must not be empty when set; leave it out for a random one",
        );
        rules.require(
            self.transaction_max_records >= 1,
            "transaction_max_records",
            "must be at least 1",
        );
        rules.require(
            !self.lag_interval.is_zero(),
            "lag_interval",
            "must be longer than zero",
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
        assert_eq!(NormalizerConfig::default().problems(), Vec::new());
    }

    #[test]
    fn the_example_file_shows_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nowstream.toml");
        let config = crate::ConfigLoader::new().file(&path).load().unwrap();
        assert_eq!(config.normalizer, NormalizerConfig::default());
    }

    #[test]
    fn broken_rules_are_named_by_their_key_path() {
        let config = NormalizerConfig {
            max_in_flight: 0,
            transactional_id: Some(" ".into()),
            ..NormalizerConfig::default()
        };
        let paths = paths(config.problems());
        assert_eq!(
            paths,
            vec!["normalizer.max_in_flight", "normalizer.transactional_id"]
        );
    }

    #[test]
    fn a_blank_group_instance_id_is_refused() {
        let config = NormalizerConfig {
            group_instance_id: Some(" ".into()),
            ..NormalizerConfig::default()
        };
        let paths = paths(config.problems());
        assert_eq!(paths, vec!["normalizer.group_instance_id"]);
    }

    /// The Helm chart's `kafka.staticMembership` sets the pod's name this way.
    #[test]
    fn the_group_instance_id_comes_from_the_environment() {
        let config = crate::ConfigLoader::new()
            .text(
                "[kafka]\nbootstrap_servers = \"k:9092\"\n[[integrations]]\nid = \"1\"\nurl = \"https://a.service-now.com\"\n[integrations.auth]\ntype = \"basic\"\nusername = \"u\"\npassword = \"p\"\n",
                crate::Format::Toml,
            )
            .env_vars([
                ("NOWSTREAM__NORMALIZER__GROUP_INSTANCE_ID", "nowstream-normalizer-6f9c-x2k4"),
                ("NOWSTREAM__SINK__GROUP_INSTANCE_ID", "nowstream-sink-77b4-q9z1"),
                ("NOWSTREAM__FETCHER__GROUP_INSTANCE_ID", "nowstream-fetcher-5d8e-m3p7"),
            ])
            .load()
            .unwrap();
        assert_eq!(
            config.normalizer.group_instance_id.as_deref(),
            Some("nowstream-normalizer-6f9c-x2k4")
        );
        assert_eq!(
            config.sink.group_instance_id.as_deref(),
            Some("nowstream-sink-77b4-q9z1")
        );
        assert_eq!(
            config.fetcher.group_instance_id.as_deref(),
            Some("nowstream-fetcher-5d8e-m3p7")
        );
    }

    #[test]
    fn durations_read_as_human_readable_text() {
        let config: NormalizerConfig = crate::Config::parse(
            "[kafka]\nbootstrap_servers = \"k:9092\"\n[[integrations]]\nid = \"1\"\nurl = \"https://a.service-now.com\"\n[integrations.auth]\ntype = \"basic\"\nusername = \"u\"\npassword = \"p\"\n[normalizer]\ntransaction_linger = \"250ms\"\nexactly_once = true\n",
            crate::Format::Toml,
        )
        .unwrap()
        .normalizer;
        assert_eq!(config.transaction_linger, Duration::from_millis(250));
        assert!(config.exactly_once);
    }
}
