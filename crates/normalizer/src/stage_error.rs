//! Why the normalizer stage could not start, or had to stop.
//!
//! Problems with single records are not errors here: those records go to the DLQ and the
//! stream goes on. Kafka failures while running (an output not acknowledged, a transaction
//! refused) are errors of one *session*: the stage drops its clients and starts over from the
//! committed offsets, so they only end the process when they happen during start-up.

use nowstream_bus::{BusError, TransactionError};
use nowstream_model::TopicNameError;
use nowstream_runtime::Problem;

use crate::normalize::InvalidPolicy;

/// A reason the normalizer cannot run (or a replay cannot finish).
#[derive(Debug, thiserror::Error)]
pub enum NormalizerError {
    /// Rules of the `[normalizer]` section are broken.
    #[error("invalid [normalizer] configuration: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig {
        /// Every broken rule, by key path.
        problems: Vec<Problem>,
    },
    /// An integration's `exclude_fields` cannot be honoured.
    #[error(transparent)]
    Policy(#[from] InvalidPolicy),
    /// `kafka.topic_prefix` would make illegal topic names.
    #[error("kafka.topic_prefix: {0}")]
    TopicPrefix(#[from] TopicNameError),
    /// Kafka refused a client, a subscription, a delivery, an acknowledgement or a commit.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A step of a Kafka transaction failed (`exactly_once`); librdkafka's error is the
    /// source.
    #[error(transparent)]
    Transaction(TransactionError),
    /// Another producer initialised this replica's `transactional.id` (`exactly_once`): two
    /// replicas share one id, or this one was replaced while it was paused. Not transient: a
    /// new session would initialise the id again and fence the other replica in turn.
    #[error(
        "transaction of producer {transactional_id}: fenced: another normalizer initialised the \
         same transactional.id; this replica's open transaction was aborted and it stops \
         (give every replica its own normalizer.transactional_id) ({reason})"
    )]
    Fenced {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// librdkafka's explanation.
        reason: String,
    },
    /// Asking the broker about topics, offsets or the group failed.
    #[error("cannot {action}: {reason}")]
    Broker {
        /// What the stage was asking, e.g. `read the end offsets of the raw topics`.
        action: &'static str,
        /// librdkafka's explanation.
        reason: String,
    },
    /// A task of the stage panicked: a bug. Its inputs stay uncommitted and are normalized
    /// again by the next run.
    #[error("a task of the normalizer failed: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
}

impl NormalizerError {
    /// Whether starting over with fresh Kafka clients can help: true for failures of the
    /// broker conversation, false for configuration problems and bugs.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            // librdkafka refused the client configuration: no retry changes that.
            Self::Bus(BusError::Client { .. }) => false,
            // Likewise for the transactional producer's configuration.
            Self::Transaction(TransactionError::Client { .. }) => false,
            Self::Bus(_) | Self::Transaction(_) | Self::Broker { .. } => true,
            Self::InvalidConfig { .. }
            | Self::Policy(_)
            | Self::TopicPrefix(_)
            | Self::Fenced { .. }
            | Self::TaskFailed(_) => false,
        }
    }
}

impl From<TransactionError> for NormalizerError {
    /// A fenced producer becomes [`NormalizerError::Fenced`], which ends the stage; every other
    /// transaction failure ends a session, and a new one starts over.
    fn from(error: TransactionError) -> Self {
        match error {
            TransactionError::Fenced {
                transactional_id,
                reason,
            } => Self::Fenced {
                transactional_id,
                reason,
            },
            other => Self::Transaction(other),
        }
    }
}
