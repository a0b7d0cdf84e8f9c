//! Test harness shared by every crate's integration tests.
//!
//! [`KafkaBroker`] runs Apache Kafka itself (a single KRaft node, combined broker and controller)
//! as a child process, and [`KafkaCluster`] runs three of them with replication, so tests exercise
//! the broker users run: its consumer groups, transactions, fencing and replication. There is no
//! silent fallback: when Kafka is not installed the harness fails and names the install command.

mod install;
mod kafka;
mod node;

pub use install::{KAFKA_INSTALL_HINT, KAFKA_VERSION, KafkaInstall};
pub use kafka::{KafkaBroker, KafkaCluster};
pub use node::BrokerError;

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
