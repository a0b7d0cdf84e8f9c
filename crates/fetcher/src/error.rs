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
    #[error("coordination group {group}: {reason}")]
    Coordination { group: String, reason: String },
}
