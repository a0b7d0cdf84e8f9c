//! Shared set-up of the fetcher's tests: a simulator, an Apache Kafka broker, a config pointing the
//! fetcher at both, the binary as a process and a reader that collects what reached the raw
//! topics — the fetcher's parts on top of nowstream-testkit's process, config and reader.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nowstream_model::{AvroRecord, RawRecord, RecordOp};
use nowstream_runtime::{Config, Format, KafkaConfig};
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_INTEGRATION_PASSWORD, DEFAULT_INTEGRATION_USER, GeneratorConfig,
    RunningSim, SimConfig, Simulator,
};
use nowstream_testkit::{
    ConfigFile, Integration, Isolation, KafkaBroker, StageProcess, TopicReader, unique,
};

/// The tables whose records the fetcher publishes, in entity order.
pub const RAW_TABLES: [&str; 4] = nowstream_model::Entity::SOURCE_TABLES;

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

    /// The configuration file as written for the binary.
    pub fn file(&self) -> ConfigFile {
        let log_format = if self.json_logs { "json" } else { "text" };
        let mut integration = Integration::new(&self.sim_url);
        integration.allow_http = true;
        integration.auth = self.auth.clone();
        integration.extra = self.integration.clone();
        let mut file = ConfigFile::new(&self.bootstrap_servers, &self.prefix)
            .kafka_property("session.timeout.ms", 6000)
            .kafka_property("heartbeat.interval.ms", 1000)
            .integration(integration)
            .telemetry(&format!("log_format = \"{log_format}\""))
            .section(
                "fetcher",
                &format!(
                    "poll_interval = \"{poll_interval}\"\noverlap = \"2s\"\n\
                     coordination_partitions = {partitions}\nraw_topic_partitions = 3\n\
                     group_id = \"{group}\"\n{fetcher}",
                    poll_interval = self.poll_interval,
                    partitions = self.coordination_partitions,
                    group = self.group,
                    fetcher = self.fetcher,
                ),
            );
        file.kafka_property_lines = self.kafka_properties.clone();
        file
    }

    pub fn text(&self) -> String {
        self.file().text()
    }

    pub fn config(&self) -> Config {
        Config::parse(&self.text(), Format::Toml).expect("test config is valid")
    }

    /// Writes the configuration to `dir/<name>` and returns the path, for the binary.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        self.file().write(dir, name)
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
    reader: TopicReader,
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
        let reader =
            TopicReader::subscribe(&kafka.bootstrap_servers, &topics, Isolation::ReadCommitted)
                .expect("reader subscribes");
        Self {
            reader,
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
            // "Unknown topic" until the fetcher has created its topics is waited out.
            let Some(message) = self
                .reader
                .next(remaining.min(Duration::from_secs(1)))
                .await
            else {
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

/// The `nowstream-fetcher` binary on `config` with `RUST_LOG=rust_log`, as a child process.
pub fn spawn_fetcher(config: &Path, rust_log: &str) -> StageProcess {
    StageProcess::command(env!("CARGO_BIN_EXE_nowstream-fetcher"), config)
        .env("RUST_LOG", rust_log)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .spawn()
        .expect("the fetcher binary starts")
}

/// The `unit` a log event is about and its message, for events that have both.
pub fn unit_event(event: &serde_json::Value) -> Option<(&str, &str)> {
    Some((
        event.get("unit")?.as_str()?,
        event.get("message")?.as_str()?,
    ))
}

/// The work units of the default test integration (`4711`), as the fetcher logs them.
pub const ALL_UNITS: [&str; 5] = [
    "4711:incident",
    "4711:change_request",
    "4711:sys_user",
    "4711:sys_dictionary",
    "4711:sys_audit_delete",
];

pub fn all_units() -> BTreeSet<String> {
    ALL_UNITS.iter().map(|unit| (*unit).to_owned()).collect()
}

/// The units a process runs now, from its log: a unit starts with "starting backfill" or
/// "resuming from checkpoint" and stops with "unit moved to another replica".
pub fn owned_units(process: &StageProcess) -> BTreeSet<String> {
    let mut owned = BTreeSet::new();
    for event in process.events() {
        match unit_event(&event) {
            Some((unit, "starting backfill" | "resuming from checkpoint")) => {
                owned.insert(unit.to_owned());
            }
            Some((unit, message)) if message.starts_with("unit moved to another replica") => {
                owned.remove(unit);
            }
            _ => {}
        }
    }
    owned
}

/// Units `process` started (again) after its first `skip` log lines.
pub fn started_after(process: &StageProcess, skip: usize) -> BTreeSet<String> {
    process
        .lines()
        .iter()
        .skip(skip)
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| match unit_event(&event) {
            Some((unit, "starting backfill" | "resuming from checkpoint")) => Some(unit.to_owned()),
            _ => None,
        })
        .collect()
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
