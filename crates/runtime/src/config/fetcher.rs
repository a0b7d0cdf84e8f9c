//! The `[fetcher]` section: how ServiceNow is polled and how replicas share the work.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::Problem;
use super::stage_section::SectionRules;

/// The smallest `page_size`: the page the fetcher halves down to when ServiceNow cancels a
/// request for taking too long (the ServiceNow client's `min_page_size`).
const MIN_PAGE_SIZE: u32 = 10;

/// The most slices a backfill is split into: past that, planning requests and open keyset
/// windows cost more than another slice gains within any sensible `max_concurrency`.
const MAX_BACKFILL_SLICES: usize = 64;

/// Settings of the fetcher stage. Every field has a default, so the section may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetcherConfig {
    /// Pause between two polls of a unit once its backfill is done (e.g. `60s`, `5m`).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Each poll starts this far before the unit's checkpoint, to catch records that ServiceNow
    /// committed late with an earlier `sys_updated_on` (long transactions, business rules and
    /// async work that commit minutes after they stamped the record, clock skew between the
    /// instance's nodes). Versions already published are not published again.
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
    /// Where a unit without checkpoint starts (RFC 3339). Absent: all history.
    pub backfill_since: Option<DateTime<Utc>>,
    /// Records per Table API request. Halved automatically (down to 10) when ServiceNow
    /// cancels a request for "maximum execution time exceeded".
    pub page_size: u32,
    /// Concurrent requests per ServiceNow instance, over all of its units.
    pub max_concurrency: usize,
    /// Slices a table's first backfill is split into (ranges of `sys_created_on`, each a keyset
    /// scan with its own checkpoint, run concurrently within `max_concurrency`). Absent: as
    /// many as `max_concurrency`. `1`: one stream per table, as before slicing existed. A
    /// table with fewer rows than slices × `page_size` gets fewer slices.
    pub backfill_slices: Option<usize>,
    /// Largest Table API response body read, in bytes (default 64 MiB: a 1000-row page of
    /// `display_value=all` records with long journals). Reading stops past it, so a huge
    /// response cannot exhaust memory; the page is asked again with half the rows, and a
    /// single record over it is dead-lettered by sys_id (reason `response_too_large`).
    pub max_response_bytes: u64,
    /// Timeout of one Table API request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries of one request after 429, 5xx, timeouts and broken bodies, before the unit
    /// reports the error and starts over from its checkpoint.
    pub max_retries: u32,
    /// First pause before a failed unit (ServiceNow refused it with 401/403, its run failed
    /// or panicked) starts again; it doubles, with jitter, at each failure in a row.
    #[serde(with = "humantime_serde")]
    pub unit_backoff_min: Duration,
    /// Longest pause between two tries of a failed unit: how long a fixed role or ACL can take
    /// to be noticed.
    #[serde(with = "humantime_serde")]
    pub unit_backoff_max: Duration,
    /// Write each page's records and the unit's checkpoint in one Kafka transaction. Needs a
    /// broker with transactions; without it, correctness comes from keyed upserts downstream.
    pub exactly_once: bool,
    /// Consumer group through which replicas share the units.
    pub group_id: String,
    /// `group.instance.id` of this replica's coordination consumer (static membership, KIP-345). Give
    /// each replica a stable, distinct value (its pod name through
    /// `NOWSTREAM__FETCHER__GROUP_INSTANCE_ID`): a replica restarted within `session.timeout.ms`
    /// then gets its partitions back at once, without a rebalance. The price: a replica that
    /// stops does not leave the group, so its partitions wait for the session timeout before
    /// another replica takes them (see docs/architecture.md, "Failover"). Absent: dynamic
    /// membership.
    pub group_instance_id: Option<String>,
    /// Partitions of the coordination topic: the most replicas that can get work.
    pub coordination_partitions: i32,
    /// Partitions of each `servicenow.raw.<table>` topic when the fetcher creates it.
    pub raw_topic_partitions: i32,
    /// Replication factor of the topics the fetcher creates.
    pub replication_factor: i32,
    /// HTTPS proxy for ServiceNow requests, e.g. `http://proxy.corp:3128`. Absent: the
    /// `HTTPS_PROXY` environment variable, if set.
    pub https_proxy: Option<String>,
    /// How deletions are found: `auto` reads `sys_audit_delete` and switches an integration
    /// to reconciliation when its user may not read it (HTTP 403, the usual case with SEI's
    /// documented roles); `reconcile` always reconciles and never reads `sys_audit_delete`.
    pub deletion_detection: DeletionDetection,
    /// How often reconciliation lists each table's sys_ids (`sysparm_fields=sys_id`) and
    /// publishes deletes for the records that were published and are gone. Each round costs
    /// one keys-only scan per table and one read of its raw topic.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Most sys_ids reconciliation holds in memory per table (16 bytes each): a table with
    /// more rows is reconciled in sys_id ranges, each with its own scan and raw-topic read.
    pub reconcile_max_keys: usize,
    /// On SIGTERM (or when the replica loses its units), how long units may take to finish
    /// the page they are on (publish it and write its checkpoint) before the fetcher stops
    /// waiting for them. A unit cut off mid-page fetches that page again on restart: records
    /// are published again, never lost.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

/// Where the fetcher learns about deleted records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionDetection {
    /// `sys_audit_delete`, falling back to reconciliation on HTTP 403.
    #[default]
    Auto,
    /// Reconciliation only.
    Reconcile,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(60),
            overlap: Duration::from_secs(5 * 60),
            backfill_since: None,
            page_size: 1000,
            max_concurrency: 4,
            backfill_slices: None,
            max_response_bytes: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            max_retries: 8,
            unit_backoff_min: Duration::from_secs(5),
            unit_backoff_max: Duration::from_secs(10 * 60),
            exactly_once: false,
            group_id: "nowstream-fetcher".to_owned(),
            group_instance_id: None,
            coordination_partitions: 12,
            raw_topic_partitions: 6,
            replication_factor: 1,
            https_proxy: None,
            deletion_detection: DeletionDetection::Auto,
            reconcile_interval: Duration::from_secs(3600),
            reconcile_max_keys: 4_000_000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl FetcherConfig {
    /// How many slices a table's first backfill is split into at most
    /// ([`FetcherConfig::backfill_slices`], else `max_concurrency`).
    pub fn backfill_slice_count(&self) -> usize {
        self.backfill_slices
            .unwrap_or(self.max_concurrency)
            .clamp(1, MAX_BACKFILL_SLICES)
    }

    /// The rules that span fields of this section, each broken one named by its key path.
    /// The fetcher checks them at start-up, before it builds a client or joins its group.
    pub fn problems(&self) -> Vec<Problem> {
        let mut rules =
            SectionRules::new("fetcher", &self.group_id, self.group_instance_id.as_deref());
        rules.require(
            !self.poll_interval.is_zero(),
            "poll_interval",
            "must be longer than zero",
        );
        rules.require(
            self.page_size >= MIN_PAGE_SIZE,
            "page_size",
            "must be at least 10, the smallest page the fetcher halves to",
        );
        rules.require(
            self.max_concurrency >= 1,
            "max_concurrency",
            "must be at least 1",
        );
        rules.require(
            self.backfill_slices
                .is_none_or(|slices| (1..=MAX_BACKFILL_SLICES).contains(&slices)),
            "backfill_slices",
            "must be between 1 and 64",
        );
        rules.require(
            self.max_response_bytes >= 1,
            "max_response_bytes",
            "must be at least 1",
        );
        rules.require(
            !self.request_timeout.is_zero(),
            "request_timeout",
            "must be longer than zero",
        );
        rules.require(
            self.unit_backoff_max >= self.unit_backoff_min,
            "unit_backoff_max",
            "must be at least unit_backoff_min",
        );
        rules.require(
            self.coordination_partitions >= 1,
            "coordination_partitions",
            "must be at least 1",
        );
        rules.require(
            self.raw_topic_partitions >= 1,
            "raw_topic_partitions",
            "must be at least 1",
        );
        rules.require(
            self.replication_factor >= 1,
            "replication_factor",
            "must be at least 1",
        );
        rules.require(
            self.reconcile_max_keys >= 1,
            "reconcile_max_keys",
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
        assert_eq!(FetcherConfig::default().problems(), Vec::new());
    }

    #[test]
    fn the_example_file_shows_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nowstream.toml");
        let config = crate::ConfigLoader::new().file(&path).load().unwrap();
        assert_eq!(config.fetcher, FetcherConfig::default());
    }

    #[test]
    fn broken_rules_are_named_by_their_key_path() {
        let config = FetcherConfig {
            page_size: 5,
            unit_backoff_min: Duration::from_secs(60),
            unit_backoff_max: Duration::from_secs(5),
            coordination_partitions: 0,
            ..FetcherConfig::default()
        };
        let paths = paths(config.problems());
        assert_eq!(
            paths,
            vec![
                "fetcher.page_size",
                "fetcher.unit_backoff_max",
                "fetcher.coordination_partitions"
            ]
        );
    }

    #[test]
    fn a_blank_group_instance_id_is_refused() {
        let config = FetcherConfig {
            group_instance_id: Some(" ".into()),
            ..FetcherConfig::default()
        };
        let paths = paths(config.problems());
        assert_eq!(paths, vec!["fetcher.group_instance_id"]);
    }

    #[test]
    fn the_shutdown_grace_reads_as_human_readable_text() {
        let config = crate::Config::parse(
            "[kafka]\nbootstrap_servers = \"k:9092\"\n[[integrations]]\nid = \"1\"\nurl = \"https://a.service-now.com\"\n[integrations.auth]\ntype = \"basic\"\nusername = \"u\"\npassword = \"p\"\n[fetcher]\nshutdown_grace = \"45s\"\n",
            crate::Format::Toml,
        )
        .unwrap();
        assert_eq!(config.fetcher.shutdown_grace, Duration::from_secs(45));
    }
}
