//! One Apache Kafka KRaft node (broker and controller in one JVM) as a child process.
//!
//! Its storage is formatted once per harness, in a temporary directory that outlives restarts,
//! so a node killed with SIGKILL and started again recovers from its own log like a crashed
//! broker does.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::install::{KAFKA_INSTALL_HINT, KafkaInstall};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("Apache Kafka is not installed (looked at {looked_at}); {hint}", hint = KAFKA_INSTALL_HINT)]
    NotInstalled { looked_at: String },
    #[error(
        "Apache Kafka needs Java 17 or newer: set JAVA_HOME or put `java` on PATH \
         (Debian: openjdk-17-jre-headless)"
    )]
    NoJava,
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] std::io::Error),
    #[error("cannot prepare the broker's directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("formatting the storage of Kafka node {node} failed ({status}):\n{output}")]
    Format {
        node: u32,
        status: String,
        output: String,
    },
    #[error("Kafka node {node} exited during start-up ({status}); its log ends with:\n{log_tail}")]
    Exited {
        node: u32,
        status: String,
        log_tail: String,
    },
    #[error(
        "Kafka on {bootstrap} was not ready within {timeout:?} ({waiting_for}); \
         the log of node {node} ends with:\n{log_tail}"
    )]
    NotReady {
        bootstrap: String,
        timeout: Duration,
        waiting_for: String,
        node: u32,
        log_tail: String,
    },
    #[error("the shared Kafka broker of this test process failed to start: {0}")]
    Shared(String),
}

/// Replication settings every node of one harness shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replication {
    pub factor: u32,
    pub min_insync: u32,
}

/// Ports of one node; fixed for the node's life so a restarted node keeps its address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeAddrs {
    pub id: u32,
    pub broker: SocketAddr,
    pub controller: SocketAddr,
}

impl NodeAddrs {
    pub fn allocate(id: u32) -> Result<Self, BrokerError> {
        Ok(Self {
            id,
            broker: free_port()?,
            controller: free_port()?,
        })
    }
}

/// A Kafka node. Killed when dropped.
#[derive(Debug)]
pub(crate) struct Node {
    install: KafkaInstall,
    addrs: NodeAddrs,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    /// Writes the node's configuration and formats its storage; does not start it.
    pub fn prepare(
        install: &KafkaInstall,
        root: &Path,
        addrs: NodeAddrs,
        voters: &[NodeAddrs],
        replication: Replication,
        cluster_id: &str,
    ) -> Result<Self, BrokerError> {
        let dir = root.join(format!("node-{}", addrs.id));
        std::fs::create_dir_all(dir.join("data")).map_err(|source| BrokerError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let properties = server_properties(addrs, voters, replication, &dir.join("data"));
        let properties_path = dir.join("server.properties");
        std::fs::write(&properties_path, properties).map_err(|source| BrokerError::DataDir {
            path: properties_path.display().to_string(),
            source,
        })?;
        let node = Self {
            install: install.clone(),
            addrs,
            dir,
            child: None,
            starts: 0,
        };
        node.format(cluster_id)?;
        Ok(node)
    }

    pub fn id(&self) -> u32 {
        self.addrs.id
    }

    pub fn broker_addr(&self) -> SocketAddr {
        self.addrs.broker
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn properties_path(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn jvm(&self, heap: &str) -> Command {
        let mut command = Command::new(&self.install.java);
        command
            .arg(format!("-Xmx{heap}"))
            .arg("-Xms64m")
            // One core per test thread is all a test broker gets: the serial collector keeps
            // it from spreading GC threads over both cores.
            .arg("-XX:+UseSerialGC")
            .arg("-XX:-UsePerfData")
            .arg("-Djava.awt.headless=true")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.install.log_config().display()
            ))
            .arg("-cp")
            .arg(self.install.class_path())
            .stdin(Stdio::null());
        command
    }

    fn format(&self, cluster_id: &str) -> Result<(), BrokerError> {
        let output = self
            .jvm("256m")
            .arg("kafka.tools.StorageTool")
            .arg("format")
            .args(["--cluster-id", cluster_id])
            .arg("--config")
            .arg(self.properties_path())
            .arg("--ignore-formatted")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| BrokerError::Spawn {
                binary: self.install.java.display().to_string(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(BrokerError::Format {
            node: self.addrs.id,
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("kafka-{}.log", self.starts))
    }

    /// Starts the JVM; readiness is the caller's to wait for (a cluster waits for all nodes).
    pub fn spawn(&mut self) -> Result<(), BrokerError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.starts += 1;
        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path).map_err(|source| BrokerError::DataDir {
            path: log_path.display().to_string(),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| BrokerError::DataDir {
            path: log_path.display().to_string(),
            source,
        })?;
        let heap = std::env::var("NOWSTREAM_KAFKA_HEAP").unwrap_or_else(|_| "512m".into());
        let child = self
            .jvm(&heap)
            .arg("kafka.Kafka")
            .arg(self.properties_path())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| BrokerError::Spawn {
                binary: self.install.java.display().to_string(),
                source,
            })?;
        watch_over(child.id());
        self.child = Some(child);
        Ok(())
    }

    /// An error when the node's process already ended.
    pub fn check_alive(&mut self) -> Result<(), BrokerError> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.child = None;
            return Err(BrokerError::Exited {
                node: self.addrs.id,
                status: status.to_string(),
                log_tail: self.log_tail(),
            });
        }
        Ok(())
    }

    /// SIGKILL: no clean shutdown, like a crash or an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the controlled shutdown (leadership moved, logs flushed); SIGKILL
    /// after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last lines of the node's current log: the directory is temporary, so errors carry
    /// the text itself.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path())
            .unwrap_or_else(|error| format!("(unreadable: {error})"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn server_properties(
    addrs: NodeAddrs,
    voters: &[NodeAddrs],
    replication: Replication,
    data: &Path,
) -> String {
    let voters = voters
        .iter()
        .map(|voter| format!("{}@{}", voter.id, voter.controller))
        .collect::<Vec<_>>()
        .join(",");
    let factor = replication.factor;
    let min_insync = replication.min_insync;
    let mut text = String::new();
    let _ = write!(
        text,
        "\
process.roles=broker,controller
node.id={id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{broker},CONTROLLER://{controller}
advertised.listeners=PLAINTEXT://{broker}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor={factor}
min.insync.replicas={min_insync}
offsets.topic.replication.factor={factor}
offsets.topic.num.partitions=5
transaction.state.log.replication.factor={factor}
transaction.state.log.min.isr={min_insync}
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor={factor}
share.coordinator.state.topic.min.isr={min_insync}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
",
        id = addrs.id,
        broker = addrs.broker,
        controller = addrs.controller,
        data = data.display(),
    );
    text
}

fn free_port() -> Result<SocketAddr, BrokerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(BrokerError::Port)?;
    listener.local_addr().map_err(BrokerError::Port)
}

/// A broker must not outlive its test process, even one killed by a timeout or one whose broker
/// lives in a `static` (never dropped): a small shell loop kills the JVM once the test process
/// is gone, and ends by itself when the JVM does.
fn watch_over(broker_pid: u32) {
    let script = "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; do sleep 1; done; \
                  kill -9 \"$2\" 2>/dev/null";
    let spawned = Command::new("sh")
        .args(["-c", script, "nowstream-kafka-watchdog"])
        .arg(std::process::id().to_string())
        .arg(broker_pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        // Reaped on a thread of its own, so no zombie stays behind.
        Ok(mut watchdog) => {
            std::thread::spawn(move || watchdog.wait());
        }
        Err(error) => tracing::warn!(%error, broker_pid, "no watchdog for the Kafka broker: it may outlive the test"),
    }
}
