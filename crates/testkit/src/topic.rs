//! [`TopicReader`]: what reached a set of topics, read from their beginning in a group of its
//! own, the way a downstream consumer would see it.
//!
//! The isolation level is part of what a test proves: `read_committed` sees a transaction's
//! records only once it committed (exactly-once proofs), `read_uncommitted` sees aborted ones
//! too (librdkafka's mock cluster, which has no isolation).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};

use crate::unique;

/// How long to keep reading after an error, e.g. "unknown topic" until a stage created its
/// topics.
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// Which records a reader sees of transactions (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only committed transactions' records (librdkafka's default).
    ReadCommitted,
    /// Aborted and open transactions' records too.
    ReadUncommitted,
}

impl Isolation {
    fn property(self) -> &'static str {
        match self {
            Self::ReadCommitted => "read_committed",
            Self::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// One record read, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TopicMessage {
    /// The key as text (empty when there is none).
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }

    /// The first header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }
}

/// Why a [`TopicReader`] could not be created or did not read what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot subscribe a reader to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error("read {read} of {wanted} messages from {topics:?} within {timeout:?}")]
    TooFew {
        topics: Vec<String>,
        read: usize,
        wanted: usize,
        timeout: Duration,
    },
}

/// Reads topics from their beginning in a unique consumer group that commits nothing.
pub struct TopicReader {
    consumer: StreamConsumer,
    topics: Vec<String>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl TopicReader {
    /// Subscribes to `topics` on `bootstrap_servers`; topics that do not exist yet are picked up
    /// within a second of their creation.
    pub fn subscribe(
        bootstrap_servers: &str,
        topics: &[&str],
        isolation: Isolation,
    ) -> Result<Self, ReadError> {
        Self::subscribe_with(bootstrap_servers, topics, isolation, &[])
    }

    /// Like [`Self::subscribe`] with extra consumer properties applied last.
    pub fn subscribe_with(
        bootstrap_servers: &str,
        topics: &[&str],
        isolation: Isolation,
        overrides: &[(&str, &str)],
    ) -> Result<Self, ReadError> {
        let names: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
        let failed = |source| ReadError::Subscribe {
            topics: names.clone(),
            source,
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap_servers)
            .set("group.id", unique("reader"))
            .set("isolation.level", isolation.property())
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("topic.metadata.refresh.interval.ms", "1000");
        for (key, value) in overrides {
            config.set(*key, *value);
        }
        let consumer: StreamConsumer = config.create().map_err(failed)?;
        consumer.subscribe(topics).map_err(failed)?;
        Ok(Self {
            consumer,
            topics: names,
        })
    }

    /// The next record arriving within `wait`; `None` when none did. Errors (an unknown topic
    /// until a stage created it) are waited out.
    pub async fn next(&self, wait: Duration) -> Option<TopicMessage> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(message)) => return Some(owned(&message)),
                Ok(Err(_)) => tokio::time::sleep(ERROR_PAUSE.min(left)).await,
                Err(_) => return None,
            }
        }
    }

    /// Every record arriving within `window`.
    pub async fn read_for(&self, window: Duration) -> Vec<TopicMessage> {
        let until = Instant::now() + window;
        let mut messages = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(message) => messages.push(message),
                None => break,
            }
        }
        messages
    }

    /// Records until none arrived for `quiet`: the topics' content once writers stopped.
    pub async fn read_until_quiet(&self, quiet: Duration) -> Vec<TopicMessage> {
        let mut messages = Vec::new();
        while let Some(message) = self.next(quiet).await {
            messages.push(message);
        }
        messages
    }

    /// Exactly the first `count` records, or an error saying how many arrived within `timeout`.
    pub async fn read_count(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<TopicMessage>, ReadError> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(message) => messages.push(message),
                None => {
                    return Err(ReadError::TooFew {
                        topics: self.topics.clone(),
                        read: messages.len(),
                        wanted: count,
                        timeout,
                    });
                }
            }
        }
        Ok(messages)
    }
}

fn owned(message: &impl Message) -> TopicMessage {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_owned(),
                        header.value.unwrap_or_default().to_vec(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    TopicMessage {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}
