//! Shared set-up of the stage's tests: an Apache Kafka broker, raw records written the way the fetcher
//! writes them, a config for the stage, the binary as a child process, and a reader that
//! collects what reached the entity topics and the DLQ — the normalizer's parts on top of
//! nowstream-testkit's process, config, reader and fixtures.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use nowstream_bus::{OutRecord, PendingDelivery, Producer, TopicSpec, ensure_topics};
use nowstream_model::{
    AvroRecord, ChangeRequest, Entity, FieldDefinition, Incident, RawRecord, RecordOp, TopicNames,
    User, Version, Versioned,
};
use nowstream_runtime::{Config, KafkaConfig};
use nowstream_testkit::fixtures::{INTEGRATION_ID, field, raw_record, record_key, servicenow_time};
use nowstream_testkit::{
    ConfigFile, Integration, Isolation, KafkaBroker, StageProcess, TopicMessage, TopicReader,
    basic_auth, unique,
};
use serde_json::json;

/// Raw partitions in these tests: enough for two replicas to split.
pub const RAW_PARTITIONS: i32 = 4;

/// One test deployment: a broker, a topic prefix and a consumer group of its own.
#[derive(Debug, Clone)]
pub struct Setup {
    pub bootstrap_servers: String,
    pub prefix: String,
    pub group: String,
    /// `exclude_fields` of integration `4711`, as TOML array items.
    pub exclude_fields: Vec<String>,
    /// Extra lines of `[normalizer]`.
    pub normalizer: String,
    /// `http.listen`.
    pub listen: String,
    /// `session.timeout.ms`: short, so the broker forgets a killed replica quickly.
    pub session_timeout_ms: u32,
    /// Extra lines of `[kafka.properties]`.
    pub kafka_properties: String,
}

impl Setup {
    pub fn new(broker: &KafkaBroker) -> Self {
        Self::on(broker.bootstrap_servers())
    }

    /// A setup on any bootstrap servers (e.g. librdkafka's mock cluster).
    pub fn on(bootstrap_servers: String) -> Self {
        Self {
            bootstrap_servers,
            prefix: format!("{}.", unique("n")),
            group: unique("normalizer"),
            exclude_fields: Vec::new(),
            normalizer: String::new(),
            listen: "127.0.0.1:0".to_owned(),
            session_timeout_ms: 6_000,
            kafka_properties: String::new(),
        }
    }

    /// The configuration file as written for the binary.
    pub fn file(&self) -> ConfigFile {
        let mut integration = Integration::new("https://acme.service-now.com");
        integration.exclude_fields = self.exclude_fields.clone();
        integration.auth = basic_auth("reader", "integration-password");
        let mut file = ConfigFile::new(&self.bootstrap_servers, &self.prefix)
            .kafka_property("session.timeout.ms", self.session_timeout_ms)
            .kafka_property("heartbeat.interval.ms", self.session_timeout_ms / 4)
            .kafka_property("auto.commit.interval.ms", 500)
            .integration(integration)
            .section(
                "fetcher",
                &format!("raw_topic_partitions = {RAW_PARTITIONS}"),
            )
            .section(
                "normalizer",
                &format!(
                    "group_id = \"{group}\"\ntopic_partitions = 3\nlag_interval = \"1s\"\n\
                     shutdown_grace = \"10s\"\n{normalizer}",
                    group = self.group,
                    normalizer = self.normalizer,
                ),
            );
        file.kafka_property_lines = format!(
            "{}\n\"topic.metadata.refresh.interval.ms\" = \"1000\"",
            self.kafka_properties
        );
        file.listen = self.listen.clone();
        file
    }

    pub fn config(&self) -> Config {
        self.file().config()
    }

    pub fn kafka(&self) -> KafkaConfig {
        self.config().kafka
    }

    pub fn topics(&self) -> TopicNames {
        TopicNames::new(self.prefix.clone()).expect("prefix is valid")
    }

    /// Writes the configuration to `dir/<name>` and returns the path, for the binary.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        self.file().write(dir, name)
    }

    /// Creates the raw topics the way the fetcher does.
    pub async fn create_raw_topics(&self) {
        let topics = self.topics();
        let specs: Vec<TopicSpec> = Entity::ALL
            .iter()
            .map(|entity| {
                TopicSpec::compacted(
                    topics.raw(entity.source_table()).expect("raw topic"),
                    RAW_PARTITIONS,
                )
            })
            .collect();
        ensure_topics(&self.kafka(), &specs)
            .await
            .expect("raw topics are created");
    }
}

/// A raw record of integration `4711` as the fetcher would publish it.
pub fn raw(entity: Entity, sys_id: &str, mod_count: i64, op: RecordOp) -> RawRecord {
    let updated =
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(mod_count);
    let payload = match op {
        RecordOp::Delete => None,
        RecordOp::Upsert => Some(payload(entity, sys_id, mod_count, updated).to_string()),
    };
    RawRecord {
        fetched_at: Utc::now(),
        ..raw_record(
            entity.source_table(),
            sys_id,
            updated,
            mod_count,
            op,
            payload,
        )
    }
}

/// A `sysparm_display_value=all` payload for `entity` with a short description to exclude.
pub fn payload(
    entity: Entity,
    sys_id: &str,
    mod_count: i64,
    updated: DateTime<Utc>,
) -> serde_json::Value {
    let time = servicenow_time(updated);
    let mut payload = json!({
        "sys_id": field(sys_id),
        "sys_updated_on": field(&time),
        "sys_mod_count": field(&mod_count.to_string()),
        "sys_created_on": field("2023-12-31 23:00:00"),
    });
    let fields = payload.as_object_mut().expect("object");
    match entity {
        Entity::Incident | Entity::ChangeRequest => {
            fields.insert("number".into(), field(&format!("N-{sys_id}")));
            fields.insert(
                "short_description".into(),
                field(&format!("summary of {sys_id} v{mod_count}")),
            );
            fields.insert("u_team".into(), field("blue"));
        }
        Entity::User => {
            fields.insert("user_name".into(), field(&format!("user.{sys_id}")));
            fields.insert("name".into(), field("Ada Lovelace"));
        }
        Entity::FieldDefinition => {
            fields.insert("name".into(), field("incident"));
            fields.insert("element".into(), field(&format!("u_{sys_id}")));
        }
    }
    payload
}

/// The Kafka key of a raw or entity record of integration `4711`.
pub fn key(sys_id: &str) -> String {
    record_key(INTEGRATION_ID, sys_id)
}

/// Writes raw records with the project's producer, pipelined, and waits for every ack.
pub struct RawWriter {
    producer: Producer,
    topics: TopicNames,
}

impl RawWriter {
    pub fn new(setup: &Setup) -> Self {
        Self {
            producer: Producer::new(&setup.kafka()).expect("producer"),
            topics: setup.topics(),
        }
    }

    /// Writes `records` (table from each record) and waits for all acknowledgements.
    pub async fn write(&self, records: &[RawRecord]) {
        let encoded: Vec<(String, String, Vec<u8>)> = records
            .iter()
            .map(|record| {
                let topic = self.topics.raw(&record.table).expect("raw topic");
                (
                    topic,
                    key(&record.sys_id),
                    record.encode().expect("raw record encodes"),
                )
            })
            .collect();
        let items: Vec<(&str, &str, &[u8])> = encoded
            .iter()
            .map(|(topic, key, value)| (topic.as_str(), key.as_str(), value.as_slice()))
            .collect();
        self.write_bytes(&items).await;
    }

    /// Writes arbitrary values (poison records) and waits for all acknowledgements.
    pub async fn write_bytes(&self, items: &[(&str, &str, &[u8])]) {
        let mut pending: Vec<PendingDelivery> = Vec::with_capacity(items.len());
        for (topic, key, value) in items {
            pending.push(
                self.producer
                    .enqueue(OutRecord::new(topic, key.as_bytes(), Some(value)))
                    .await
                    .expect("enqueued"),
            );
        }
        for delivery in pending {
            delivery
                .acknowledged()
                .await
                .expect("raw record acknowledged");
        }
    }
}

/// One message of an entity topic or the DLQ.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }
}

/// Reads the entity topics and the DLQ of a setup from the beginning, in a group of its own.
pub struct OutputReader {
    reader: TopicReader,
    topics: TopicNames,
    /// (entity topic, key) → the last value read (None: tombstone).
    pub latest: HashMap<(String, String), Option<Vec<u8>>>,
    /// Every message read from entity topics, in order per partition.
    pub messages: usize,
    pub dead_letters: Vec<Seen>,
}

impl OutputReader {
    pub fn new(setup: &Setup) -> Self {
        let topics = setup.topics();
        let names: Vec<String> = Entity::ALL
            .iter()
            .map(|entity| topics.entity(*entity))
            .chain([topics.dlq()])
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let reader =
            TopicReader::subscribe(&setup.bootstrap_servers, &names, Isolation::ReadCommitted)
                .expect("reader subscribes");
        Self {
            reader,
            topics,
            latest: HashMap::new(),
            messages: 0,
            dead_letters: Vec::new(),
        }
    }

    /// Reads until `done` holds or `timeout` passes; returns whether `done` held. `done` is
    /// checked between bursts of reading, not per message, so it may be costly.
    pub async fn read_until(&mut self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            let burst = Instant::now() + Duration::from_millis(500);
            while Instant::now() < burst {
                // Unknown-topic errors until the stage created its topics are waited out.
                match self.reader.next(Duration::from_millis(200)).await {
                    Some(message) => self.take(message),
                    // Idle: check `done` now.
                    None => break,
                }
            }
        }
    }

    fn take(&mut self, message: TopicMessage) {
        let key = message.key_text();
        if message.topic == self.topics.dlq() {
            self.dead_letters.push(Seen {
                topic: message.topic,
                key,
                value: message.payload,
                headers: message.headers,
            });
        } else {
            self.messages += 1;
            self.latest.insert((message.topic, key), message.payload);
        }
    }

    /// The last value read under `key` on `entity`'s topic: `Some(None)` for a tombstone.
    pub fn get(&self, entity: Entity, key: &str) -> Option<&Option<Vec<u8>>> {
        self.latest
            .get(&(self.topics.entity(entity), key.to_owned()))
    }
}

/// The version an encoded entity carries.
pub fn version_of(entity: Entity, value: &[u8]) -> Version {
    match entity {
        Entity::Incident => Incident::decode(value).expect("incident").version(),
        Entity::ChangeRequest => ChangeRequest::decode(value).expect("change").version(),
        Entity::User => User::decode(value).expect("user").version(),
        Entity::FieldDefinition => FieldDefinition::decode(value)
            .expect("definition")
            .version(),
    }
}

/// What the output must hold in the end for a set of inputs: per (entity, key), the newest
/// version, or `None` when the newest is a deletion.
pub fn expected_end_state(inputs: &[RawRecord]) -> HashMap<(Entity, String), Option<Version>> {
    let mut newest: HashMap<(Entity, String), &RawRecord> = HashMap::new();
    for record in inputs {
        let entity = Entity::from_source_table(&record.table).expect("known table");
        let slot = newest
            .entry((entity, key(&record.sys_id)))
            .or_insert(record);
        if record.version() > slot.version() {
            *slot = record;
        }
    }
    newest
        .into_iter()
        .map(|(id, record)| {
            let version = (record.op == RecordOp::Upsert).then(|| record.version());
            (id, version)
        })
        .collect()
}

/// How many (entity, key) pairs of `expected` the reader does not hold in that state yet.
pub fn missing(
    reader: &OutputReader,
    expected: &HashMap<(Entity, String), Option<Version>>,
) -> usize {
    expected
        .iter()
        .filter(
            |((entity, key), version)| match (reader.get(*entity, key), version) {
                (Some(Some(value)), Some(version)) => version_of(*entity, value) != *version,
                (Some(None), None) => false,
                _ => true,
            },
        )
        .count()
}

/// A free loopback port for `http.listen`, so a test can scrape `/metrics`.
pub fn free_listen_addr() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("local addr").to_string()
}

/// The value of a counter in `/metrics` at `addr`, summed over its labels; `None` when the
/// endpoint does not answer.
pub fn scrape_counter(addr: &str, name: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(
        body.lines()
            .filter(|line| line.starts_with(name) && !line.starts_with('#'))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// The `nowstream-normalizer` binary on `config` with `args`, as a child process; `STAGE_LOG`
/// sets its `RUST_LOG`.
pub fn spawn_normalizer(config: &Path, args: &[&str]) -> StageProcess {
    StageProcess::command(env!("CARGO_BIN_EXE_nowstream-normalizer"), config)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("STAGE_LOG")
                .as_deref()
                .unwrap_or("warn,nowstream_normalizer=info"),
        )
        .spawn()
        .expect("the normalizer binary starts")
}
