//! Test harness shared by every crate's integration tests. It is a dev-dependency only: no
//! product crate links it (`tests/dependency_rules.rs` checks that).
//!
//! - [`KafkaBroker`] runs Apache Kafka itself (a single KRaft node, combined broker and
//!   controller) as a child process, and [`KafkaCluster`] runs three of them with replication,
//!   so tests exercise the broker users run: its consumer groups, transactions, fencing and
//!   replication. There is no silent fallback: when Kafka is not installed the harness fails and
//!   names the install command.
//! - [`StageProcess`] runs a stage binary as its users run it, `--config <file>`, and collects
//!   its log; [`ConfigFile`] writes that file, pointing at a test broker, the simulator and
//!   sei-local.
//! - [`TopicReader`] reads what reached topics, `read_committed` or not.
//! - [`fixtures`] builds records as the stages exchange them.

mod config;
pub mod fixtures;
mod install;
mod kafka;
mod node;
mod process;
mod topic;

pub use config::{ConfigFile, Integration, Sei, basic_auth};
pub use install::{KAFKA_INSTALL_HINT, KAFKA_VERSION, KafkaInstall};
pub use kafka::{KafkaBroker, KafkaCluster};
pub use node::BrokerError;
pub use process::{ProcessError, StageCommand, StageProcess};
pub use topic::{Isolation, ReadError, TopicMessage, TopicReader};

/// A unique name for topics, groups and transactional ids, so tests never collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
