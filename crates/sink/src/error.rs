//! Why the sink could not start or had to stop.
//!
//! Problems with single records (undecodable, rejected by SEI) are not errors here: those
//! records go to the DLQ and the stream goes on. Problems SEI reports about the whole
//! deployment (a refused API key) park the sink instead of ending it, so readiness can say so.

use nowstream_bus::BusError;
use nowstream_model::TopicNameError;
use nowstream_runtime::Problem;

/// A reason the sink cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// No `[sei]` section and no satellite file that supplies one.
    #[error(
        "the sink needs SEI's url, tenant and api_key: add a [sei] section or a satellite_file"
    )]
    MissingSei,
    /// Rules of the `[sink]` section are broken.
    #[error("invalid [sink] configuration: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig {
        /// Every broken rule, by key path.
        problems: Vec<Problem>,
    },
    /// `kafka.topic_prefix` would make illegal topic names.
    #[error("kafka.topic_prefix: {0}")]
    TopicPrefix(#[from] TopicNameError),
    /// `sei.url` cannot take the ingestion path (it is not a hierarchical http(s) URL).
    #[error("sei.url `{url}` cannot be extended with /v1/ingest/...: {reason}")]
    SeiUrl {
        /// The URL without any credentials in it.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `sei.api_key` has characters an HTTP header cannot carry (e.g. a line break).
    #[error(
        "sei.api_key contains characters an HTTP header cannot carry (a line break or control character?)"
    )]
    ApiKeyNotAHeader,
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client for SEI: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// Kafka refused a client, a subscription, an acknowledgement or a commit.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A delivery task panicked: a bug. Its records stay uncommitted and are sent again by
    /// the next run.
    #[error("a delivery task of the sink failed: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
}
