//! The sink's integration tests, one test binary: each module is one concern (bulk load, dead
//! letters, failover, SEI faults…); `common` holds the sink's set-up on top of nowstream-testkit
//! (a broker, an in-process sei-local, generated entities, the binary as a process).
//!
//! One binary links librdkafka, SQLite and the stage once instead of once per file; the tests
//! share one Apache Kafka broker (`KafkaBroker::shared`) with unique topics and groups.

mod common;

mod bulk_load;
mod dead_letters;
mod failover;
mod foreign_bad_request;
mod freshness;
mod kill_and_restart;
mod record_versions;
mod sei_faults;
mod wrong_api_key;
