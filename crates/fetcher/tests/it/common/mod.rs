//! Shared set-up of the fetcher's tests: a simulator, an Apache Kafka broker, a config pointing the
//! fetcher at both, and a reader that collects what reached the raw topics.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nowstream_bus::AckConsumer;
use nowstream_model::{AvroRecord, RawRecord, RecordOp};
use nowstream_runtime::{Config, Format, KafkaConfig};
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_INTEGRATION_PASSWORD, DEFAULT_INTEGRATION_USER, GeneratorConfig,
    RunningSim, SimConfig, Simulator,
};
use nowstream_testkit::{KafkaBroker, unique};

pub const RAW_TABLES: [&str; 4] = ["incident", "change_request", "sys_user", "sys_dictionary"];

/// A simulator configuration with the given amount of generated data and defaults otherwise.
pub fn sim_config(
    incidents: usize,
    change_requests: usize,
    users: usize,
    same_second: usize,
) -> SimConfig {
    SimConfig {
        data: GeneratorConfig {
            incidents,
            change_requests,
            users,
            same_second,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    }
}

pub async fn start_sim(
    incidents: usize,
    change_requests: usize,
    users: usize,
    same_second: usize,
) -> RunningSim {
    Simulator::start(sim_config(incidents, change_requests, users, same_second))
        .await
        .expect("simulator starts")
}

/// `[integrations.auth]` for basic auth as the simulator's integration user.
pub fn basic_auth(password: &str) -> String {
    format!(
        r#"type = "basic"
username = "{DEFAULT_INTEGRATION_USER}"
password = "{password}""#
    )
}

/// `[integrations.auth]` for OAuth with the simulator's client; `grant` lines add the grant
/// and whatever it needs (`grant = "password"`, `username = …`).
pub fn oauth_auth(client_secret: &str, grant: &str) -> String {
    format!(
        r#"type = "oauth"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret = "{client_secret}"
{grant}"#
    )
}

/// One fetcher configuration against a broker and a simulator; every part can be adjusted
/// before it is rendered.
#[derive(Debug, Clone)]
pub struct Setup {
    pub bootstrap_servers: String,
    pub sim_url: String,
    pub prefix: String,
    pub group: String,
    /// Lines of `[integrations.auth]`.
    pub auth: String,
    /// Extra lines of the `[[integrations]]` entry (`exclude_fields = …`).
    pub integration: String,
    /// Extra lines of `[fetcher]` (after the test defaults, which they may not repeat).
    pub fetcher: String,
    /// `poll_interval` of `[fetcher]`.
    pub poll_interval: String,
    /// `coordination_partitions` of `[fetcher]`.
    pub coordination_partitions: u32,
    /// One JSON object per log line instead of text.
    pub json_logs: bool,
    /// Extra lines of `[kafka.properties]`.
    pub kafka_properties: String,
}

impl Setup {
    /// Integration `4711` on `sim` with basic auth, a unique group, polling every second.
    pub fn new(broker: &KafkaBroker, sim: &RunningSim, prefix: &str) -> Self {
        Self::on(&broker.bootstrap_servers(), sim, prefix)
    }

    /// The same against any Kafka-protocol cluster (e.g. librdkafka's mock cluster).
    pub fn on(bootstrap_servers: &str, sim: &RunningSim, prefix: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            sim_url: sim.base_url().to_owned(),
            prefix: prefix.to_owned(),
            group: unique("fetchers"),
            auth: basic_auth(DEFAULT_INTEGRATION_PASSWORD),
            integration: String::new(),
            fetcher: String::new(),
            poll_interval: "1s".to_owned(),
            coordination_partitions: 6,
            json_logs: false,
            kafka_properties: String::new(),
        }
    }

    pub fn text(&self) -> String {
        let log_format = if self.json_logs { "json" } else { "text" };
        format!(
            r#"
[kafka]
bootstrap_servers = "{servers}"
topic_prefix = "{prefix}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
{kafka_properties}

[telemetry]
log_format = "{log_format}"

[http]
listen = "127.0.0.1:0"

[[integrations]]
id = "4711"
url = "{url}"
allow_http = true
{integration}
[integrations.auth]
{auth}

[fetcher]
poll_interval = "{poll_interval}"
overlap = "2s"
coordination_partitions = {partitions}
raw_topic_partitions = 3
group_id = "{group}"
{fetcher}
"#,
            servers = self.bootstrap_servers,
            prefix = self.prefix,
            url = self.sim_url,
            integration = self.integration,
            auth = self.auth,
            poll_interval = self.poll_interval,
            partitions = self.coordination_partitions,
            group = self.group,
            fetcher = self.fetcher,
            kafka_properties = self.kafka_properties,
        )
    }

    pub fn config(&self) -> Config {
        Config::parse(&self.text(), Format::Toml).expect("test config is valid")
    }

    /// Writes the configuration to `dir/<name>` and returns the path, for the binary.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        // Parsing first turns a broken test config into a clear failure here rather than a
        // start-up error in a child process.
        self.config();
        let path = dir.join(name);
        std::fs::write(&path, self.text()).expect("config file is written");
        path
    }
}

/// Config text for one integration `4711` on `sim`, a unique topic prefix and fast polling.
pub fn config_text(broker: &KafkaBroker, sim: &RunningSim, prefix: &str, extra: &str) -> String {
    let mut setup = Setup::new(broker, sim, prefix);
    setup.fetcher = extra.to_owned();
    setup.text()
}

pub fn config(broker: &KafkaBroker, sim: &RunningSim, prefix: &str, extra: &str) -> Config {
    Config::parse(&config_text(broker, sim, prefix, extra), Format::Toml)
        .expect("test config is valid")
}

/// The sys_ids the simulator holds for `table` right now.
pub fn sim_ids(sim: &RunningSim, table: &str) -> HashSet<String> {
    sim.snapshot(table)
        .expect("snapshot")
        .into_iter()
        .filter_map(|record| record.get("sys_id").cloned())
        .collect()
}

/// The tables a backfill copies record by record.
pub const BACKFILLED_TABLES: [&str; 3] = ["incident", "change_request", "sys_user"];

/// Per backfilled table, the sys_ids the simulator holds right now: what the raw topics must
/// end up holding.
pub fn sim_records(sim: &RunningSim) -> Vec<(&'static str, HashSet<String>)> {
    BACKFILLED_TABLES
        .into_iter()
        .map(|table| (table, sim_ids(sim, table)))
        .collect()
}

/// What the raw topics hold, as (table, sys_id) → the last record read for it.
#[derive(Debug, Default)]
pub struct RawSeen {
    pub latest: HashMap<(String, String), RawRecord>,
    pub messages: usize,
    /// Every (integration, table, sys_id) that arrived as an upsert.
    pub upserts: HashSet<(String, String, String)>,
}

impl RawSeen {
    pub fn ids(&self, table: &str, op: RecordOp) -> HashSet<String> {
        self.latest
            .iter()
            .filter(|((t, _), record)| t == table && record.op == op)
            .map(|((_, id), _)| id.clone())
            .collect()
    }

    /// The sys_ids of `table` that arrived as upserts for `integration`.
    pub fn upserted_for(&self, integration: &str, table: &str) -> HashSet<String> {
        self.upserts
            .iter()
            .filter(|(i, t, _)| i == integration && t == table)
            .map(|(_, _, id)| id.clone())
            .collect()
    }
}

/// Reads the raw topics under `prefix` from the beginning.
pub struct RawReader {
    consumer: AckConsumer,
    pub seen: RawSeen,
}

impl RawReader {
    pub fn new(broker: &KafkaBroker, prefix: &str) -> Self {
        Self::on(&broker.kafka_config(), prefix)
    }

    /// The same against any Kafka-protocol cluster.
    pub fn on(kafka: &KafkaConfig, prefix: &str) -> Self {
        let topics: Vec<String> = RAW_TABLES
            .iter()
            .map(|table| format!("{prefix}servicenow.raw.{table}"))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let consumer = AckConsumer::subscribe_with(
            kafka,
            &unique("reader"),
            &topics,
            &[("topic.metadata.refresh.interval.ms", "1000")],
        )
        .expect("reader subscribes");
        Self {
            consumer,
            seen: RawSeen::default(),
        }
    }

    /// Reads until every sys_id of `expected` arrived as an upsert or `timeout` passes;
    /// returns whether all arrived.
    pub async fn read_all_of(
        &mut self,
        expected: &[(&str, HashSet<String>)],
        timeout: Duration,
    ) -> bool {
        self.read_until(timeout, |seen| {
            expected
                .iter()
                .all(|(table, ids)| ids.is_subset(&seen.ids(table, RecordOp::Upsert)))
        })
        .await
    }

    /// Reads like [`Self::read_all_of`], then fails naming, per table, how many of `expected`
    /// never arrived and one of them.
    pub async fn assert_all_of(&mut self, expected: &[(&str, HashSet<String>)], timeout: Duration) {
        let complete = self.read_all_of(expected, timeout).await;
        for (table, ids) in expected {
            let published = self.seen.ids(table, RecordOp::Upsert);
            let missing: Vec<&String> = ids.difference(&published).collect();
            assert!(
                missing.is_empty(),
                "{} of {} {table} records never reached the raw topic, e.g. {:?}",
                missing.len(),
                ids.len(),
                missing.first()
            );
        }
        assert!(complete);
    }

    /// Reads until `done` holds or `timeout` passes; returns whether `done` held.
    pub async fn read_until(&mut self, timeout: Duration, done: impl Fn(&RawSeen) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return false;
            }
            let Ok(message) =
                tokio::time::timeout(remaining.min(Duration::from_secs(1)), self.consumer.recv())
                    .await
            else {
                continue;
            };
            // "Unknown topic" is expected until the fetcher has created its topics.
            let Ok(message) = message else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let record =
                RawRecord::decode(message.payload.as_deref().expect("raw records have values"))
                    .expect("raw record decodes");
            let key =
                String::from_utf8(message.key.clone().unwrap_or_default()).expect("utf-8 key");
            assert_eq!(
                key,
                format!("{}:{}", record.integration_id, record.sys_id),
                "key matches record"
            );
            self.seen.messages += 1;
            if record.op == RecordOp::Upsert {
                self.seen.upserts.insert((
                    record.integration_id.clone(),
                    record.table.clone(),
                    record.sys_id.clone(),
                ));
            }
            self.seen
                .latest
                .insert((record.table.clone(), record.sys_id.clone()), record);
        }
        true
    }
}

/// The `nowstream-fetcher` binary running as a child process, its stdout and stderr collected
/// line by line. Killed (SIGKILL) when dropped.
pub struct FetcherProcess {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl FetcherProcess {
    /// Starts the binary on `config` with `RUST_LOG=rust_log`.
    pub fn spawn(config: &Path, rust_log: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nowstream-fetcher"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", rust_log)
            .env_remove("NOWSTREAM_CONFIG")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the fetcher binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        collect_lines(stdout, output.clone());
        collect_lines(stderr, output.clone());
        Self { child, output }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or an OOM kill would end it; waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod: the fetcher finishes its pages and leaves the group.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                // Let the reader threads drain what the process wrote last.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("child status").is_none()
    }

    /// Everything written to stdout and stderr so far, one entry per line.
    pub fn lines(&self) -> Vec<String> {
        self.output.lock().expect("output lock").clone()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// The lines that are JSON log events (with `log_format = "json"`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// Waits up to `timeout` for a JSON log event `found` accepts; returns it.
    pub async fn wait_for_event(
        &self,
        timeout: Duration,
        found: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events().into_iter().find(|event| found(event)) {
                return Some(event);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for FetcherProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn collect_lines(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().expect("output lock").push(line);
        }
    });
}

/// The `unit` a log event is about and its message, for events that have both.
pub fn unit_event(event: &serde_json::Value) -> Option<(&str, &str)> {
    Some((
        event.get("unit")?.as_str()?,
        event.get("message")?.as_str()?,
    ))
}

/// Table API requests the simulator answered so far (any table, any status).
pub fn table_api_requests(sim: &RunningSim) -> u64 {
    sim.stats()
        .by_path
        .iter()
        .filter(|(path, _)| path.starts_with("/api/now/table/"))
        .map(|(_, statuses)| statuses.values().sum::<u64>())
        .sum()
}
