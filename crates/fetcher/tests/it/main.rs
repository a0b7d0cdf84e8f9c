//! The fetcher's integration tests, one test binary: each module is one concern (backfill,
//! failover, OAuth, exactly-once…); `common` holds the fetcher's set-up on top of
//! nowstream-testkit (simulator, broker, config, the binary as a process, a raw-topic reader).
//!
//! One binary links librdkafka, the simulator and the stage once instead of once per file; the
//! tests share one Apache Kafka broker (`KafkaBroker::shared`) with unique topics and groups.

mod common;

mod backfill;
mod coordination_and_checkpoints;
mod dead_letters;
mod exactly_once;
mod exactly_once_refusals;
mod exclude_at_source;
mod failover;
mod faults;
mod filters;
mod kill_and_resume;
mod mapped_fields;
mod no_secrets_in_logs;
mod oauth_backfill;
mod oauth_login;
mod oauth_rotation;
mod overlap;
mod preflight;
mod reconcile;
mod replicas;
mod sliced_backfill;
mod unit_isolation;
mod wrong_credentials;
