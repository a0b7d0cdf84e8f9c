use nowstream_bus::{BusError, TransactionError};
use nowstream_model::{ModelError, TopicNameError};
use nowstream_runtime::Problem;

/// Why the fetcher (or one of its units) stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Rules of the `[fetcher]` section are broken.
    #[error("invalid [fetcher] configuration: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig {
        /// Every broken rule, by key path.
        problems: Vec<Problem>,
    },
    /// `kafka.topic_prefix` would make illegal topic names. Not an integration's fault: it
    /// concerns every topic the fetcher writes.
    #[error("kafka.topic_prefix: {0}")]
    TopicPrefix(#[from] TopicNameError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: ModelError,
    },
    #[error("checkpoint topic {topic}: {reason}")]
    Checkpoints { topic: String, reason: String },
    #[error("integration {integration_id}: {reason}")]
    Integration {
        integration_id: String,
        reason: String,
    },
    /// A step of a Kafka transaction failed (`exactly_once`); librdkafka's error is the
    /// source.
    #[error(transparent)]
    Transaction(TransactionError),
    /// Another producer initialised the same `transactional.id`: another replica took this
    /// unit over while this one still believed it owned it (paused, or cut off, for longer than
    /// the session timeout). Nothing this replica writes can commit any more.
    #[error(
        "Kafka transaction {transactional_id}: fenced: another fetcher replica initialised the \
         same transactional.id and owns the unit now; this replica's open transaction was \
         aborted and it stops ({reason})"
    )]
    Fenced {
        transactional_id: String,
        reason: String,
    },
    #[error("ServiceNow integration {integration_id}, table {table}: {source}")]
    ServiceNow {
        integration_id: String,
        table: String,
        #[source]
        source: Box<nowstream_servicenow::client::ClientError>,
    },
    #[error("coordination group {group}: {reason}")]
    Coordination { group: String, reason: String },
    #[error("deletion reconciliation, {what}: {reason}")]
    Reconciliation { what: String, reason: String },
}

impl From<TransactionError> for FetchError {
    /// A fenced producer becomes [`FetchError::Fenced`], which stops the replica; every other
    /// transaction failure is one the unit retries from its checkpoint.
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
