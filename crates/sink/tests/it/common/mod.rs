//! Shared set-up of the sink's acceptance tests: an Apache Kafka broker, an in-process sei-local,
//! generated entity records with the state SEI must end in, and helpers to run the sink
//! in-process or as its binary — the sink's parts on top of nowstream-testkit's process, config
//! and reader.
//!
//! `benches/sink.rs` includes this module too and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use nowstream_bus::{OutRecord, Producer, TopicSpec, ensure_topics};
use nowstream_model::{
    AvroRecord, ChangeRequest, Choice, Entity, FieldDefinition, Incident, Reference, TopicNames,
    User, Version,
};
use nowstream_runtime::{Config, Health, KafkaConfig};
use nowstream_sei_local::{RunningSeiLocal, SeiLocal, SeiLocalConfig};
use nowstream_sink::SinkError;
use nowstream_testkit::{
    ConfigFile, Integration, Isolation, KafkaBroker, ProcessError, StageProcess, TopicMessage,
    TopicReader, unique,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TENANT: &str = "acme";
pub const API_KEY: &str = "acme-secret-key-1234";
pub const INTEGRATION: &str = "sn1";
/// Partitions of the entity topics in tests: a few, so ordering across partitions matters.
pub const PARTITIONS: i32 = 3;

/// A broker, a sei-local and a topic prefix of their own.
pub struct Env {
    pub broker: &'static KafkaBroker,
    pub sei: RunningSeiLocal,
    pub prefix: String,
}

impl Env {
    pub async fn start() -> Result<Self> {
        Self::start_with(SeiLocalConfig::for_tenant(TENANT, API_KEY)).await
    }

    pub async fn start_with(sei: SeiLocalConfig) -> Result<Self> {
        let broker = KafkaBroker::shared()?;
        let sei = SeiLocal::start(sei).await?;
        let prefix = format!("{}.", unique("t"));
        let env = Self {
            broker,
            sei,
            prefix,
        };
        let topics = env.topics();
        let specs: Vec<TopicSpec> = Entity::ALL
            .iter()
            .map(|entity| topics.entity(*entity))
            .chain([topics.dlq()])
            .map(|name| TopicSpec::new(name, PARTITIONS))
            .collect();
        ensure_topics(&env.kafka(), &specs).await?;
        Ok(env)
    }

    pub fn topics(&self) -> TopicNames {
        TopicNames::new(self.prefix.clone()).expect("test prefix is a legal topic prefix")
    }

    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            topic_prefix: self.prefix.clone(),
            ..self.broker.kafka_config()
        }
    }

    /// The sink's configuration file: this broker and sei-local, `api_key`, and extra
    /// `[sink]` keys (TOML lines).
    pub fn config_file(&self, api_key: &str, group: &str, sink: &str) -> ConfigFile {
        let mut integration = Integration::new("https://example.service-now.com");
        integration.id = INTEGRATION.to_owned();
        ConfigFile::new(&self.broker.bootstrap_servers(), &self.prefix)
            .sei(self.sei.base_url(), TENANT, api_key)
            .integration(integration)
            .telemetry("log_format = \"json\"\nlog_level = \"info\"")
            .section(
                "sink",
                &format!(
                    "group_id = \"{group}\"\ntopic_partitions = {PARTITIONS}\n{}",
                    with_test_defaults(sink)
                ),
            )
    }

    pub fn config_toml(&self, api_key: &str, group: &str, sink: &str) -> String {
        self.config_file(api_key, group, sink).text()
    }

    pub fn config(&self, api_key: &str, group: &str, sink: &str) -> Config {
        self.config_file(api_key, group, sink).config()
    }

    /// Committed offset of every entity partition of `group` (`None`: nothing committed).
    pub fn committed(&self, group: &str) -> Result<Vec<Option<i64>>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("group.id", group)
            .create()?;
        let mut partitions = TopicPartitionList::new();
        for entity in Entity::ALL {
            for partition in 0..PARTITIONS {
                partitions.add_partition(&self.topics().entity(entity), partition);
            }
        }
        let committed = consumer.committed_offsets(partitions, Duration::from_secs(10))?;
        Ok(committed
            .elements()
            .iter()
            .map(|element| match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            })
            .collect())
    }

    /// High watermark of every entity partition, in the order of [`Env::committed`].
    pub fn high_watermarks(&self) -> Result<Vec<Option<i64>>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .create()?;
        let mut highs = Vec::new();
        for entity in Entity::ALL {
            for partition in 0..PARTITIONS {
                let (_, high) = consumer.fetch_watermarks(
                    &self.topics().entity(entity),
                    partition,
                    Duration::from_secs(10),
                )?;
                highs.push(Some(high));
            }
        }
        Ok(highs)
    }

    pub fn dlq_is_empty(&self) -> Result<bool> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .create()?;
        for partition in 0..PARTITIONS {
            let (_, high) = consumer.fetch_watermarks(
                &self.topics().dlq(),
                partition,
                Duration::from_secs(10),
            )?;
            if high > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Fails with what differs when sei-local's state is not `expected`.
    pub fn check_state(&self, expected: &Expected) -> Result<()> {
        check_state(&self.sei, expected)
    }

    /// Waits until sei-local holds exactly `expected`.
    pub async fn wait_for_state(&self, expected: &Expected, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.check_state(expected) {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context(format!("sei-local state after {timeout:?}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// `[sink]` lines, plus quicker-than-production defaults for the keys they leave out.
fn with_test_defaults(sink: &str) -> String {
    let defaults = [
        ("linger", "\"100ms\""),
        ("retry_initial_backoff", "\"50ms\""),
        ("retry_max_backoff", "\"2s\""),
        ("shutdown_grace", "\"20s\""),
        ("lag_interval", "\"1s\""),
    ];
    let mut lines: Vec<String> = sink.lines().map(str::to_owned).collect();
    for (key, value) in defaults {
        let given = sink
            .lines()
            .any(|line| line.split('=').next().map(str::trim) == Some(key));
        if !given {
            lines.push(format!("{key} = {value}"));
        }
    }
    lines.join("\n")
}

/// One record to produce.
#[derive(Debug, Clone)]
pub struct Produced {
    pub entity: Entity,
    pub sys_id: String,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
}

/// What sei-local must hold per (entity, sys_id) in the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    Live(Version),
    Deleted,
}

pub type Expected = BTreeMap<(Entity, String), Final>;

/// Generated records and the state they lead to.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub records: Vec<Produced>,
    pub expected: Expected,
}

pub fn at(base_seconds: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_704_067_200 + base_seconds, 0).expect("valid time")
}

/// Exactly `total` records over all four entities: keys get one to three versions, every
/// tenth key ends in a tombstone, every fifth key has its versions back to back (so they
/// share a batch) while the others are spread over rounds (so they do not).
pub fn dataset(total: usize) -> Dataset {
    let mut rounds: [Vec<Produced>; 4] = Default::default();
    let mut expected = Expected::new();
    let mut count = 0;
    let mut index = 0usize;
    while count < total {
        let entity = Entity::ALL[index % 4];
        let sys_id = format!("{index:032x}");
        let mut versions = 1 + index % 3;
        let mut tombstone = index % 10 == 7;
        let remaining = total - count;
        if versions + usize::from(tombstone) > remaining {
            versions = remaining;
            tombstone = false;
        }
        let together = index % 5 == 0;
        for version in 1..=versions {
            let (value, record_version) = entity_value(entity, &sys_id, index, version);
            let round = if together { 0 } else { version - 1 };
            rounds[round].push(Produced {
                entity,
                sys_id: sys_id.clone(),
                value: Some(value),
            });
            expected.insert((entity, sys_id.clone()), Final::Live(record_version));
        }
        if tombstone {
            let round = if together { 0 } else { 3 };
            rounds[round].push(Produced {
                entity,
                sys_id: sys_id.clone(),
                value: None,
            });
            expected.insert((entity, sys_id.clone()), Final::Deleted);
        }
        count += versions + usize::from(tombstone);
        index += 1;
    }
    Dataset {
        records: rounds.into_iter().flatten().collect(),
        expected,
    }
}

fn choice(value: &str, label: &str) -> Option<Choice> {
    Some(Choice {
        value: Some(value.into()),
        label: Some(label.into()),
    })
}

fn reference(sys_id: &str, name: &str) -> Option<Reference> {
    Some(Reference {
        sys_id: sys_id.into(),
        display_value: Some(name.into()),
    })
}

/// Version `version` of record `index`, encoded, with its version.
pub fn entity_value(
    entity: Entity,
    sys_id: &str,
    index: usize,
    version: usize,
) -> (Vec<u8>, Version) {
    let updated = at(index as i64 + 60 * version as i64);
    let mod_count = Some(version as i64);
    let record_version = Version::new(updated, mod_count);
    let encoded = match entity {
        Entity::Incident => {
            let mut incident = incident(sys_id, updated, mod_count);
            incident.short_description = Some(format!("Incident {index} v{version}"));
            incident.encode()
        }
        Entity::ChangeRequest => ChangeRequest {
            integration_id: INTEGRATION.into(),
            sys_id: sys_id.into(),
            sys_updated_on: updated,
            sys_mod_count: mod_count,
            number: Some(format!("CHG{index:07}")),
            short_description: Some(format!("Change {index} v{version}")),
            description: None,
            comments: None,
            work_notes: None,
            priority: choice("3", "3 - Moderate"),
            urgency: choice("2", "2 - Medium"),
            impact: choice("2", "2 - Medium"),
            state: choice("3", "Closed"),
            r#type: choice("normal", "Normal"),
            scope: None,
            close_code: None,
            sys_created_on: Some(at(index as i64)),
            start_date: None,
            end_date: None,
            closed_at: None,
            parent: None,
            assigned_to: reference("5137153cc611227c000bbd1bd8cd2005", "Fred Luddy"),
            created_by: None,
            closed_by: None,
            business_service: None,
            business_service_department: None,
            requested_by_department: None,
            excluded_fields: Vec::new(),
            custom_fields: BTreeMap::new(),
        }
        .encode(),
        Entity::User => User {
            integration_id: INTEGRATION.into(),
            sys_id: sys_id.into(),
            sys_updated_on: updated,
            sys_mod_count: mod_count,
            user_name: Some(format!("user.{index}")),
            name: Some(format!("User {index} v{version}")),
            email: None,
            employee_number: Some(format!("{:06}", 100_000 + index)),
            title: Some("SRE".into()),
            active: Some(true),
            department: reference("221f79b7c6112284005d646b76ab978c", "IT"),
            manager: None,
            sys_created_on: Some(at(index as i64)),
            excluded_fields: Vec::new(),
            custom_fields: BTreeMap::new(),
        }
        .encode(),
        Entity::FieldDefinition => FieldDefinition {
            integration_id: INTEGRATION.into(),
            sys_id: sys_id.into(),
            sys_updated_on: updated,
            sys_mod_count: mod_count,
            table: "incident".into(),
            element: Some(format!("u_field_{index}")),
            column_label: Some(format!("Field {index} v{version}")),
            internal_type: Some("string".into()),
            reference: None,
            mandatory: Some(false),
            active: Some(true),
            max_length: Some(40),
            excluded_fields: Vec::new(),
            custom_fields: BTreeMap::new(),
        }
        .encode(),
    };
    (encoded.expect("test entities encode"), record_version)
}

/// A plain resolved incident.
pub fn incident(sys_id: &str, updated: DateTime<Utc>, mod_count: Option<i64>) -> Incident {
    let opened = updated - TimeDelta::hours(5);
    let resolved = updated - TimeDelta::hours(1);
    Incident {
        integration_id: INTEGRATION.into(),
        sys_id: sys_id.into(),
        sys_updated_on: updated,
        sys_mod_count: mod_count,
        number: Some(format!("INC{}", &sys_id[sys_id.len().saturating_sub(7)..])),
        short_description: Some("Checkout fails".into()),
        description: None,
        comments: None,
        work_notes: None,
        priority: choice("2", "2 - High"),
        urgency: choice("2", "2 - Medium"),
        impact: choice("1", "1 - High"),
        severity: None,
        state: choice("6", "Resolved"),
        escalation: None,
        category: choice("software", "Software"),
        close_code: None,
        sys_created_on: Some(opened),
        opened_at: Some(opened),
        resolved_at: Some(resolved),
        closed_at: None,
        sla_due: None,
        time_to_restore_ms: Incident::derive_time_to_restore_ms(Some(opened), Some(resolved)),
        parent: None,
        assigned_to: reference("5137153cc611227c000bbd1bd8cd2005", "Fred Luddy"),
        created_by: None,
        resolved_by: None,
        business_service: reference("26da329f0a0a0bb400f69d8159bc753d", "Payments"),
        business_service_department: None,
        caused_by: reference("c83c5e5347c12200e0ef563dbb9a7190", "CHG0030002"),
        excluded_fields: Vec::new(),
        custom_fields: BTreeMap::new(),
    }
}

/// Produces `records` in order (idempotent producer: per-key order is kept).
pub async fn produce(kafka: &KafkaConfig, topics: &TopicNames, records: &[Produced]) -> Result<()> {
    let producer = Producer::new(kafka)?;
    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        let topic = topics.entity(record.entity);
        let key = format!("{INTEGRATION}:{}", record.sys_id);
        pending.push(
            producer
                .enqueue(OutRecord::new(
                    &topic,
                    key.as_bytes(),
                    record.value.as_deref(),
                ))
                .await?,
        );
    }
    for delivery in pending {
        delivery.acknowledged().await?;
    }
    Ok(())
}

/// Compares sei-local's records (tombstones included) with `expected`.
pub fn check_state(sei: &RunningSeiLocal, expected: &Expected) -> Result<()> {
    let mut problems = Vec::new();
    let mut rows = 0usize;
    for entity in Entity::ALL {
        let stored = sei.records(TENANT, INTEGRATION, entity)?;
        rows += stored.len();
        let mut held: BTreeMap<String, _> = stored
            .into_iter()
            .map(|record| (record.sys_id.clone(), record))
            .collect();
        let wanted = expected
            .range((entity, String::new())..)
            .take_while(|((of, _), _)| *of == entity);
        for ((_, sys_id), want) in wanted {
            let Some(record) = held.remove(sys_id) else {
                if problems.len() < 5 {
                    problems.push(format!("{entity} {sys_id}: missing, want {want:?}"));
                }
                continue;
            };
            let ok = match want {
                Final::Live(version) => !record.is_deleted() && record.version == Some(*version),
                Final::Deleted => record.is_deleted(),
            };
            if !ok && problems.len() < 5 {
                problems.push(format!(
                    "{entity} {sys_id}: holds {:?} deleted={}, want {want:?}",
                    record.version,
                    record.is_deleted()
                ));
            }
        }
        if !held.is_empty() {
            problems.push(format!("{entity}: {} unexpected records", held.len()));
        }
    }
    if rows != expected.len() {
        problems.push(format!("{rows} rows held, {} expected", expected.len()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

/// The sink running in this process.
pub struct InProcessSink {
    pub health: Health,
    token: CancellationToken,
    handle: JoinHandle<Result<(), SinkError>>,
}

impl InProcessSink {
    pub fn start(config: Config) -> Self {
        let health = Health::new();
        let token = CancellationToken::new();
        let handle = tokio::spawn(nowstream_sink::run(config, health.clone(), token.clone()));
        Self {
            health,
            token,
            handle,
        }
    }

    /// Asks for a clean stop and returns what `run` returned.
    pub async fn stop(self) -> Result<()> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .context("sink did not stop within 60s")??
            .context("sink run failed")
    }
}

/// Reads the first `count` messages of a topic (from the start) with a throw-away group.
pub async fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<TopicMessage>> {
    let reader =
        TopicReader::subscribe(&kafka.bootstrap_servers, &[topic], Isolation::ReadCommitted)?;
    Ok(reader.read_count(count, timeout).await?)
}

/// The sink's binary started with a config file; its log (JSON lines) also goes to `log`.
pub fn spawn_sink(config: &Path, log: &Path) -> Result<StageProcess, ProcessError> {
    StageProcess::command(env!("CARGO_BIN_EXE_nowstream-sink"), config)
        .env_remove("RUST_LOG")
        .log_file(log)
        .spawn()
}
