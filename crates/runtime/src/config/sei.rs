//! The `[sei]` section: where the sink delivers entities.

use secrecy::SecretString;
use serde::Deserialize;

/// The SEI ingestion endpoint the sink posts batches to.
///
/// Optional in the file because SEI's own `satellite.yml` usually provides it (see
/// [`Config::satellite_file`](crate::Config::satellite_file)); stages that do not
/// talk to SEI (fetcher, normalizer) run without it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeiConfig {
    /// Base URL of SEI's API, e.g. `https://app.harness.io/gateway/sei/api`; the sink
    /// appends `/v1/ingest/servicenow/…`. [`Config::validate`](crate::Config::validate)
    /// checks that it parses.
    pub url: String,
    /// SEI tenant (account) the data belongs to; sent as `X-Tenant`.
    pub tenant: String,
    /// SEI API key, sent as `Authorization: Apikey …`.
    pub api_key: SecretString,
}
