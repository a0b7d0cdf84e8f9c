//! Test harness shared by every crate's integration tests.
//!
//! [`TansuBroker`] runs a real Kafka-protocol broker (tansu) as a child process, so tests exercise
//! the same wire protocol, consumer-group and commit behaviour as production. There is no silent
//! fallback: when tansu is missing the harness fails and names the install command.

mod tansu;

pub use tansu::{BrokerError, TANSU_INSTALL_HINT, TansuBroker};

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
