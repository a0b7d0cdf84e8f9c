use nowstream_bus::BusError;
use nowstream_model::ModelError;

/// Why the fetcher (or one of its units) stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
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
    #[error("Kafka transaction {transactional_id}: {step} failed: {reason}")]
    Transaction {
        transactional_id: String,
        step: String,
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
