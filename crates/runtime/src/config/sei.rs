//! The `[sei]` section: where the sink delivers entities.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::secret::{GivenTwice, value_or_file};

/// The SEI ingestion endpoint the sink posts batches to.
///
/// Optional in the file because SEI's own `satellite.yml` usually provides it (see
/// [`Config::satellite_file`](crate::Config::satellite_file)); stages that do not
/// talk to SEI (fetcher, normalizer) run without it.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SeiKeys")]
pub struct SeiConfig {
    /// Base URL of SEI's API, e.g. `https://app.harness.io/gateway/sei/api`; the sink
    /// appends `/v1/ingest/servicenow/…`. [`Config::validate`](crate::Config::validate)
    /// checks that it parses.
    pub url: String,
    /// SEI tenant (account) the data belongs to; sent as `X-Tenant`.
    pub tenant: String,
    /// SEI API key, sent as `Authorization: Apikey …` (from `api_key` or `api_key_file`;
    /// empty in a process whose stage does not read the SEI secret, see
    /// [`SecretScope`](crate::config::SecretScope)).
    pub api_key: SecretString,
}

/// The keys of `[sei]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeiKeys {
    /// Base URL of SEI's API.
    url: String,
    /// SEI tenant (account).
    tenant: String,
    /// SEI API key.
    #[serde(default)]
    api_key: Option<SecretString>,
    /// A file holding the API key instead (a mounted Secret); read only by the sink.
    #[serde(default)]
    api_key_file: Option<PathBuf>,
}

impl TryFrom<SeiKeys> for SeiConfig {
    type Error = GivenTwice;

    fn try_from(keys: SeiKeys) -> Result<Self, Self::Error> {
        let api_key = value_or_file("api_key", keys.api_key, keys.api_key_file.as_ref())?;
        Ok(Self {
            url: keys.url,
            tenant: keys.tenant,
            api_key: api_key.unwrap_or_default(),
        })
    }
}
