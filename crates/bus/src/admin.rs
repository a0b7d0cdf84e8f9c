//! Makes sure the topics a stage needs exist before it produces or consumes.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use nowstream_runtime::KafkaConfig;

use crate::BusError;
use crate::client::client_config;

/// What a topic holds, which decides its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// Plain delete policy with the broker's retention (the fetcher's coordination topic).
    Log,
    /// `cleanup.policy=compact`: Kafka keeps the newest value per key, which is exactly what
    /// raw records, entities and checkpoints need. Tombstones stay readable for
    /// `kafka.tombstone_retention` (`delete.retention.ms`).
    Compacted,
    /// A dead-letter topic: delete policy, every record kept for `kafka.dlq_retention`
    /// (`retention.ms`), never compacted, so every failure stays visible.
    DeadLetters,
}

impl TopicKind {
    /// The `cleanup.policy` of the kind and the one retention config that defines it (key and
    /// duration): how long compacted tombstones, or dead letters, stay readable.
    fn retention(self, kafka: &KafkaConfig) -> (&'static str, Option<(&'static str, Duration)>) {
        match self {
            Self::Log => ("delete", None),
            Self::Compacted => (
                "compact",
                Some(("delete.retention.ms", kafka.tombstone_retention)),
            ),
            Self::DeadLetters => ("delete", Some(("retention.ms", kafka.dlq_retention))),
        }
    }
}

/// A topic as a stage expects it: name (already prefixed), partition count, replication and
/// what it holds. The topic configs follow from these and the `[kafka]` section
/// ([`topic_configs`]), so every stage creates a topic the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub kind: TopicKind,
    /// Topic configs that replace or add to those [`topic_configs`] derives.
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// A plain delete-policy topic.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: 1,
            kind: TopicKind::Log,
            configs: Vec::new(),
        }
    }

    /// A compacted topic: Kafka keeps the newest value per key, which is exactly what
    /// checkpoints and entity tables need.
    pub fn compacted(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            kind: TopicKind::Compacted,
            ..Self::new(name, partitions)
        }
    }

    /// A dead-letter topic, kept `kafka.dlq_retention`.
    pub fn dead_letters(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            kind: TopicKind::DeadLetters,
            ..Self::new(name, partitions)
        }
    }

    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.configs.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn with_replication_factor(mut self, replication_factor: i32) -> Self {
        self.replication_factor = replication_factor;
        self
    }
}

/// `min.insync.replicas` for a topic of `replication_factor` replicas: one fewer, at least 1.
///
/// With `acks=all` a write then survives the loss of any one broker after it was acknowledged,
/// while one broker down (a rolling restart) does not stop writes. Kafka's own default (1)
/// would acknowledge a write held by the leader alone, which the leader's loss then loses.
pub fn min_insync_replicas(replication_factor: i32) -> i32 {
    (replication_factor - 1).max(1)
}

/// The topic configs a topic is created with, from its kind, its replication and `kafka`:
///
/// | config | value |
/// |---|---|
/// | `cleanup.policy` | `compact` for [`TopicKind::Compacted`], `delete` otherwise |
/// | `min.insync.replicas` | [`min_insync_replicas`] of the replication factor |
/// | `max.message.bytes` | `kafka.max_message_bytes` (the producers' limit is 1 KiB below) |
/// | `delete.retention.ms` | compacted topics: `kafka.tombstone_retention` |
/// | `retention.ms` | dead-letter topics: `kafka.dlq_retention` |
///
/// The spec's own `configs` come last and replace a derived value of the same key.
pub fn topic_configs(kafka: &KafkaConfig, spec: &TopicSpec) -> Vec<(String, String)> {
    let (cleanup_policy, retention) = spec.kind.retention(kafka);
    let mut configs = vec![
        ("cleanup.policy".to_owned(), cleanup_policy.to_owned()),
        (
            "min.insync.replicas".to_owned(),
            min_insync_replicas(spec.replication_factor).to_string(),
        ),
        (
            "max.message.bytes".to_owned(),
            kafka.max_message_bytes.to_string(),
        ),
    ];
    if let Some((key, kept_for)) = retention {
        configs.push((key.to_owned(), kept_for.as_millis().to_string()));
    }
    for (key, value) in &spec.configs {
        match configs.iter_mut().find(|(existing, _)| existing == key) {
            Some(existing) => existing.1.clone_from(value),
            None => configs.push((key.clone(), value.clone())),
        }
    }
    configs
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A broker that does not answer CreateTopics at all should not hold start-up for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed create, how long to wait for the topics to show up anyway.
const EXISTING_TOPIC_WAIT: Duration = Duration::from_secs(5);

/// Creates every missing topic with [`topic_configs`]; topics that already exist are left as
/// they are (configs included: changing an existing topic is an operator's decision).
///
/// An existing topic with fewer partitions than asked for is reported, not altered: adding
/// partitions moves keys to other partitions and would break per-record order, so that is an
/// operator's decision.
pub async fn ensure_topics(kafka: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), BusError> {
    // Topics that exist already need no CreateTopics request: a restart then needs no
    // topic-creation rights, and a broker that does not serve CreateTopics is no obstacle.
    let existing = existing_topics(kafka).await?;
    let missing: Vec<TopicSpec> = specs
        .iter()
        .filter(|spec| !existing.contains(&spec.name))
        .cloned()
        .collect();
    let already_there: Vec<String> = specs
        .iter()
        .filter(|spec| existing.contains(&spec.name))
        .map(|spec| spec.name.clone())
        .collect();
    // Advisory only, so it runs beside start-up: a broker that does not serve DescribeConfigs
    // (librdkafka's mock cluster) would otherwise hold start-up for the request timeout.
    if !already_there.is_empty() {
        let kafka = kafka.clone();
        tokio::spawn(async move { warn_about_small_record_limits(&kafka, &already_there).await });
    }
    if missing.is_empty() {
        return check_partitions(kafka, specs, &[]).await;
    }
    let specs_to_check = specs;
    let specs = missing.as_slice();
    let admin: AdminClient<DefaultClientContext> = create_client(kafka, "admin client")?;
    let configs: Vec<Vec<(String, String)>> = specs
        .iter()
        .map(|spec| topic_configs(kafka, spec))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&configs)
        .map(|(spec, configs)| {
            configs.iter().fold(
                NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication_factor),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT));
    // Creating may be forbidden (ACLs, or topics managed by operators) while the topics exist;
    // that is fine. So a failed create is only a warning, and the metadata check below decides.
    let mut create_failures = Vec::new();
    match admin.create_topics(&new_topics, &options).await {
        Err(error) => create_failures.push(format!("create request failed: {error}")),
        Ok(results) => {
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => create_failures.push(format!("{topic}: {code}")),
                }
            }
        }
    }
    if !create_failures.is_empty() {
        tracing::warn!(
            failures = %create_failures.join("; "),
            "could not create topics; continuing if they already exist"
        );
    }
    check_partitions(kafka, specs_to_check, &create_failures).await
}

/// Existing topics whose `max.message.bytes` is below `kafka.max_message_bytes`, with their
/// limit: the broker would refuse some records the producers accept there (topics created
/// before the limit was raised, or by hand). A topic the broker does not describe is skipped.
pub async fn topics_below_record_limit(
    kafka: &KafkaConfig,
    topics: &[String],
) -> Result<Vec<(String, usize)>, BusError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> = create_client(kafka, "admin client")?;
    let resources: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|topic| ResourceSpecifier::Topic(topic))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .describe_configs(&resources, &options)
        .await
        .map_err(|error| BusError::Admin {
            topic: "*".into(),
            reason: format!("DescribeConfigs failed: {error}"),
        })?;
    Ok(topics
        .iter()
        .zip(results)
        .filter_map(|(topic, result)| {
            let limit: usize = result
                .ok()?
                .get("max.message.bytes")?
                .value
                .as_deref()?
                .parse()
                .ok()?;
            (limit < kafka.max_message_bytes).then(|| (topic.clone(), limit))
        })
        .collect())
}

/// Warns about every existing topic that is smaller than the records nowstream writes: ensuring
/// topics never alters one, so this is how an operator learns to (`kafka-configs.sh --alter`).
async fn warn_about_small_record_limits(kafka: &KafkaConfig, topics: &[String]) {
    match topics_below_record_limit(kafka, topics).await {
        Ok(small) => {
            for (topic, limit) in small {
                tracing::warn!(
                    %topic,
                    topic_max_message_bytes = limit,
                    kafka_max_message_bytes = kafka.max_message_bytes,
                    "existing topic allows smaller records than kafka.max_message_bytes: the broker \
                     will refuse larger ones; raise the topic's max.message.bytes or lower \
                     kafka.max_message_bytes"
                );
            }
        }
        Err(error) => {
            tracing::debug!(%error, "could not describe existing topics' record limits");
        }
    }
}

/// A plain client (admin or metadata) of `kafka`; `role` names it in the error.
fn create_client<C: FromClientConfig>(
    kafka: &KafkaConfig,
    role: &'static str,
) -> Result<C, BusError> {
    client_config(kafka)
        .create()
        .map_err(|source| BusError::Client {
            role,
            servers: kafka.bootstrap_servers.clone(),
            source: Box::new(source),
        })
}

/// Names of every topic the cluster reports now.
async fn existing_topics(
    kafka: &KafkaConfig,
) -> Result<std::collections::HashSet<String>, BusError> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = create_client(&kafka, "metadata client")?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|error| BusError::Admin {
                topic: "*".into(),
                reason: format!("metadata request failed: {error}"),
            })?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| topic.error().is_none() && !topic.partitions().is_empty())
            .map(|topic| topic.name().to_owned())
            .collect())
    })
    .await
    .map_err(|error| BusError::Admin {
        topic: "*".into(),
        reason: format!("metadata task failed: {error}"),
    })?
}

/// Verifies that every topic is visible in the metadata with at least the requested partitions.
async fn check_partitions(
    kafka: &KafkaConfig,
    specs: &[TopicSpec],
    create_failures: &[String],
) -> Result<(), BusError> {
    let kafka = kafka.clone();
    let specs = specs.to_vec();
    let create_failures = create_failures.join("; ");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = create_client(&kafka, "metadata client")?;
        for spec in &specs {
            let wait = if create_failures.is_empty() {
                ADMIN_TIMEOUT
            } else {
                EXISTING_TOPIC_WAIT
            };
            let partitions = wait_for_partitions(&consumer, &spec.name, wait).map_err(|error| {
                match (error, create_failures.is_empty()) {
                    (BusError::Admin { topic, reason }, false) => BusError::Admin {
                        topic,
                        reason: format!("{reason} (creating it failed: {create_failures})"),
                    },
                    (error, _) => error,
                }
            })?;
            if partitions < spec.partitions {
                return Err(BusError::Admin {
                    topic: spec.name.clone(),
                    reason: format!(
                        "exists with {partitions} partitions but {} are required; \
                         add partitions deliberately (it remaps keys) or use a new topic",
                        spec.partitions
                    ),
                });
            }
        }
        Ok(())
    })
    .await
    .map_err(|error| BusError::Admin {
        topic: "*".into(),
        reason: format!("metadata task failed: {error}"),
    })?
}

/// Newly created topics appear in metadata a little later on some brokers; poll briefly.
fn wait_for_partitions(
    consumer: &BaseConsumer,
    topic: &str,
    wait: Duration,
) -> Result<i32, BusError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|error| BusError::Admin {
                topic: topic.to_owned(),
                reason: format!("metadata request failed: {error}"),
            })?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|&count| count > 0);
        match found {
            Some(count) => return Ok(count),
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            None => {
                return Err(BusError::Admin {
                    topic: topic.to_owned(),
                    reason: "not visible in broker metadata after creation".into(),
                });
            }
        }
    }
}
