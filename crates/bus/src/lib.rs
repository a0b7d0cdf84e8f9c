//! Kafka plumbing shared by every nowstream stage.
//!
//! Correctness of the whole pipeline rests on two rules that live here so no stage can get them
//! wrong on its own:
//!
//! * a producer is idempotent (`enable.idempotence=true`, `acks=all`), so broker retries never
//!   duplicate or reorder a partition's records;
//! * a consumer stores an input offset only when the caller acknowledged that message **and every
//!   earlier message of the same partition** ([`AckConsumer`]), so a crash at any instant replays
//!   unacknowledged input instead of skipping it.

mod acks;
pub mod admin;
pub mod client;
pub mod consumer;
pub mod dlq;
mod error;
pub mod lag;
pub mod message_size;
pub mod position;
pub mod producer;
pub mod transactional;

pub use admin::{
    TopicKind, TopicSpec, ensure_topics, min_insync_replicas, topic_configs,
    topics_below_record_limit,
};
pub use client::{client_config, static_membership};
pub use consumer::{AckConsumer, AckToken, ConsumedMessage};
pub use dlq::{DeadLetter, DlqReason, DlqWriter, cut_to_fit};
pub use error::BusError;
pub use lag::spawn_lag_gauge;
pub use message_size::consumer_config;
pub use position::Position;
pub use producer::{
    DEFAULT_MESSAGE_MAX_BYTES, Delivered, OutRecord, PendingDelivery, Producer, max_message_bytes,
    record_size,
};
pub use transactional::{
    TRANSACTION_TIMEOUT, Transaction, TransactionError, TransactionalProducer,
};
