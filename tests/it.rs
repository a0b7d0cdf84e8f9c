//! Tests of the whole product, one test binary: each module is one concern — the deployment
//! files (`deploy`), the documented consumers in Python and Java (`consume_python`,
//! `consume_java`), the stage binaries together over Apache Kafka (`e2e`) and while a broker
//! dies (`broker_loss`), and the crate layering over `cargo metadata` (`dependency_rules`). `stack` runs the three stages as processes with the simulator as
//! ServiceNow and sei-local as SEI.
//!
//! One binary links librdkafka, SQLite and the harness once instead of once per file; the tests
//! that share a broker use `KafkaBroker::shared` with unique topics and groups, the broker-loss
//! tests start brokers of their own.
//!
//! `pipeline` is the pipeline benchmark's code (`benches/pipeline.rs`); `pipeline_bench` runs it
//! with tiny figures.

mod pipeline;
mod stack;

mod broker_loss;
mod consume_java;
mod consume_python;
mod dependency_rules;
mod deploy;
mod e2e;
mod pipeline_bench;
