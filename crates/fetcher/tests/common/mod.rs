//! Shared set-up of the fetcher's tests: a simulator, a tansu broker, a config pointing the
//! fetcher at both, and a reader that collects what reached the raw topics.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nowstream_bus::AckConsumer;
use nowstream_model::{AvroRecord, RawRecord, RecordOp};
use nowstream_runtime::{Config, Format};
use nowstream_servicenow_sim::{GeneratorConfig, RunningSim, SimConfig, Simulator};
use nowstream_testkit::{TansuBroker, unique};

pub const RAW_TABLES: [&str; 4] = ["incident", "change_request", "sys_user", "sys_dictionary"];

pub async fn start_sim(incidents: usize, change_requests: usize, users: usize, same_second: usize) -> RunningSim {
    let mut config = SimConfig::default();
    config.data = GeneratorConfig {
        incidents,
        change_requests,
        users,
        same_second,
        ..GeneratorConfig::default()
    };
    Simulator::start(config).await.expect("simulator starts")
}

/// Config text for one integration `4711` on `sim`, a unique topic prefix and fast polling.
pub fn config_text(broker: &TansuBroker, sim: &RunningSim, prefix: &str, extra: &str) -> String {
    format!(
        r#"
[kafka]
bootstrap_servers = "{servers}"
topic_prefix = "{prefix}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[[integrations]]
id = "4711"
url = "{url}"
allow_http = true
[integrations.auth]
type = "basic"
username = "nowstream.integration"
password = "integration-password"

[fetcher]
poll_interval = "1s"
overlap = "2s"
coordination_partitions = 6
raw_topic_partitions = 3
group_id = "{group}"
{extra}
"#,
        servers = broker.bootstrap_servers(),
        url = sim.base_url(),
        group = unique("fetchers"),
    )
}

pub fn config(broker: &TansuBroker, sim: &RunningSim, prefix: &str, extra: &str) -> Config {
    Config::parse(&config_text(broker, sim, prefix, extra), Format::Toml).expect("test config is valid")
}

/// The sys_ids the simulator holds for `table` right now.
pub fn sim_ids(sim: &RunningSim, table: &str) -> HashSet<String> {
    sim.snapshot(table)
        .expect("snapshot")
        .into_iter()
        .filter_map(|record| record.get("sys_id").cloned())
        .collect()
}

/// What the raw topics hold, as (table, sys_id) → the last record read for it.
#[derive(Debug, Default)]
pub struct RawSeen {
    pub latest: HashMap<(String, String), RawRecord>,
    pub messages: usize,
}

impl RawSeen {
    pub fn ids(&self, table: &str, op: RecordOp) -> HashSet<String> {
        self.latest
            .iter()
            .filter(|((t, _), record)| t == table && record.op == op)
            .map(|((_, id), _)| id.clone())
            .collect()
    }
}

/// Reads the raw topics under `prefix` from the beginning.
pub struct RawReader {
    consumer: AckConsumer,
    pub seen: RawSeen,
}

impl RawReader {
    pub fn new(broker: &TansuBroker, prefix: &str) -> Self {
        let topics: Vec<String> = RAW_TABLES
            .iter()
            .map(|table| format!("{prefix}servicenow.raw.{table}"))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let consumer = AckConsumer::subscribe_with(
            &broker.kafka_config(),
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

    /// Reads until `done` holds or `timeout` passes; returns whether `done` held.
    pub async fn read_until(&mut self, timeout: Duration, done: impl Fn(&RawSeen) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return false;
            }
            let Ok(message) = tokio::time::timeout(remaining.min(Duration::from_secs(1)), self.consumer.recv()).await
            else {
                continue;
            };
            let message = message.expect("reader receives");
            let record = RawRecord::decode(message.payload.as_deref().expect("raw records have values"))
                .expect("raw record decodes");
            let key = String::from_utf8(message.key.clone().unwrap_or_default()).expect("utf-8 key");
            assert_eq!(key, format!("{}:{}", record.integration_id, record.sys_id), "key matches record");
            self.seen.messages += 1;
            self.seen
                .latest
                .insert((record.table.clone(), record.sys_id.clone()), record);
        }
        true
    }
}
