//! The normalizer's integration tests, one test binary: each module is one concern (golden
//! mappings, bad records, failover, exactly-once…); `common` holds the stage's set-up on top of
//! nowstream-testkit (raw records written as the fetcher writes them, the binary as a process,
//! an entity-topic reader).
//!
//! One binary links librdkafka and the stage once instead of once per file; the tests share one
//! Apache Kafka broker (`KafkaBroker::shared`) with unique topics and groups.

mod common;

mod bad_records;
mod dead_letters;
mod docs;
mod exactly_once;
mod exactly_once_refusals;
mod exclusion_property;
mod failover;
mod golden;
mod kill_and_restart;
mod replay;
mod scaling;
mod times;
