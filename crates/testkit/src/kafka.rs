//! [`KafkaBroker`] (one node) and [`KafkaCluster`] (three nodes, replication factor 3).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use nowstream_runtime::KafkaConfig;

use crate::install::KafkaInstall;
use crate::node::{BrokerError, Node, NodeAddrs, Replication};

/// How long a JVM gets to come up; generous because both cores may be busy with other tests.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a controlled shutdown may take before the node is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A single-node Apache Kafka (KRaft, combined broker and controller) with every internal topic
/// at one replica, started on free loopback ports with storage formatted for this run and a
/// random cluster id. Killed when dropped; its data survives [`KafkaBroker::restart`].
#[derive(Debug)]
pub struct KafkaBroker {
    nodes: Nodes,
}

impl KafkaBroker {
    /// Starts a broker of this test's own; use it when the test stops or kills the broker.
    pub fn start() -> Result<Self, BrokerError> {
        Ok(Self {
            nodes: Nodes::start(
                1,
                Replication {
                    factor: 1,
                    min_insync: 1,
                },
            )?,
        })
    }

    /// The broker shared by every test of this test process, started by the first caller.
    /// Tests that share it use unique topics, groups and transactional ids
    /// ([`crate::unique`]) and never stop it. A watchdog ends it with the process.
    pub fn shared() -> Result<&'static KafkaBroker, BrokerError> {
        static SHARED: OnceLock<Result<KafkaBroker, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| KafkaBroker::start().map_err(|error| error.to_string()))
            .as_ref()
            .map_err(|error| BrokerError::Shared(error.clone()))
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes.bootstrap_servers()
    }

    /// A `[kafka]` config section pointing at this broker.
    pub fn kafka_config(&self) -> KafkaConfig {
        self.nodes.kafka_config()
    }

    /// Kills the broker (SIGKILL: no clean shutdown, like a crash).
    pub fn kill(&mut self) {
        self.nodes.nodes[0].kill();
    }

    /// Stops the broker cleanly (SIGTERM); a later [`KafkaBroker::restart`] brings it back.
    pub fn stop(&mut self) {
        self.nodes.nodes[0].stop(STOP_GRACE);
    }

    /// Kills the broker if it runs, then starts it again on the same ports and log directory.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.kill();
        self.nodes.start_node(0)
    }

    pub fn is_running(&self) -> bool {
        self.nodes.nodes[0].is_running()
    }
}

/// Three Apache Kafka nodes, each broker and controller (a three-voter quorum), with replication
/// factor 3 and `min.insync.replicas` 2 as defaults and for the internal topics: one node can be
/// stopped or killed and the cluster goes on.
#[derive(Debug)]
pub struct KafkaCluster {
    nodes: Nodes,
}

impl KafkaCluster {
    pub const SIZE: usize = 3;

    pub fn start() -> Result<Self, BrokerError> {
        Ok(Self {
            nodes: Nodes::start(
                Self::SIZE,
                Replication {
                    factor: 3,
                    min_insync: 2,
                },
            )?,
        })
    }

    /// Every node's address, comma-separated, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes.bootstrap_servers()
    }

    pub fn kafka_config(&self) -> KafkaConfig {
        self.nodes.kafka_config()
    }

    /// The broker id (`node.id`) of node `index` (0-based).
    pub fn node_id(&self, index: usize) -> i32 {
        self.nodes.nodes[index].id() as i32
    }

    /// SIGKILL node `index`: its partitions lose a replica, its leaderships move.
    pub fn kill(&mut self, index: usize) {
        self.nodes.nodes[index].kill();
    }

    /// Controlled shutdown of node `index`.
    pub fn stop(&mut self, index: usize) {
        self.nodes.nodes[index].stop(STOP_GRACE);
    }

    /// Starts node `index` again (after a kill or stop) and waits until it is back in the
    /// cluster's metadata.
    pub fn restart(&mut self, index: usize) -> Result<(), BrokerError> {
        self.nodes.nodes[index].kill();
        self.nodes.start_node(index)
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.nodes.nodes[index].is_running()
    }
}

/// The nodes of one harness and the directory that holds their storage.
#[derive(Debug)]
struct Nodes {
    // Declared before `root`, so the processes die before their directory is removed.
    nodes: Vec<Node>,
    // Held for its `Drop`: removes every node's storage once the harness is gone.
    _root: tempfile::TempDir,
}

impl Nodes {
    fn start(count: usize, replication: Replication) -> Result<Self, BrokerError> {
        let install = KafkaInstall::locate()?;
        let root = tempfile::Builder::new()
            .prefix("nowstream-kafka-")
            .tempdir()
            .map_err(|source| BrokerError::DataDir {
                path: std::env::temp_dir().display().to_string(),
                source,
            })?;
        let addrs = (1..=count as u32)
            .map(NodeAddrs::allocate)
            .collect::<Result<Vec<_>, _>>()?;
        let cluster_id = random_cluster_id();
        let nodes = addrs
            .iter()
            .map(|node| {
                Node::prepare(
                    &install,
                    root.path(),
                    *node,
                    &addrs,
                    replication,
                    &cluster_id,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut harness = Self { nodes, _root: root };
        for node in &mut harness.nodes {
            node.spawn()?;
        }
        harness.wait_until_ready(0)?;
        Ok(harness)
    }

    fn start_node(&mut self, index: usize) -> Result<(), BrokerError> {
        self.nodes[index].spawn()?;
        self.wait_until_ready(index)
    }

    fn bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.broker_addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.bootstrap_servers(),
            ..KafkaConfig::default()
        }
    }

    /// Until every running node is a registered broker in the cluster's metadata, as seen
    /// through node `via` (the node just started, so its own listener is proven too).
    fn wait_until_ready(&mut self, via: usize) -> Result<(), BrokerError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let expected: Vec<i32> = self
            .nodes
            .iter()
            .filter(|node| node.is_running())
            .map(|node| node.id() as i32)
            .collect();
        let bootstrap = self.nodes[via].broker_addr().to_string();
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            for node in &mut self.nodes {
                node.check_alive()?;
            }
            seen = registered_brokers(&bootstrap);
            if expected.iter().all(|id| seen.contains(id)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(BrokerError::NotReady {
            bootstrap,
            timeout: STARTUP_TIMEOUT,
            waiting_for: format!("brokers {expected:?} registered, metadata shows {seen:?}"),
            node: self.nodes[via].id(),
            log_tail: self.nodes[via].log_tail(),
        })
    }
}

/// The broker ids a metadata request through `bootstrap` reports; empty when it does not answer.
fn registered_brokers(bootstrap: &str) -> Vec<i32> {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create();
    let Ok(consumer) = consumer else {
        return Vec::new();
    };
    consumer
        .fetch_metadata(None, Duration::from_secs(2))
        .map(|metadata| {
            metadata
                .brokers()
                .iter()
                .map(|broker| broker.id())
                .collect()
        })
        .unwrap_or_default()
}

/// A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's own format).
/// Like Kafka's `Uuid.randomUuid`, never one that starts with `-`: command lines would read it
/// as an option.
fn random_cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_kafka_shaped_and_never_read_as_an_option() {
        for _ in 0..2_000 {
            let id = random_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'), "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
        }
    }
}
