//! What a sei-local instance is told at start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::faults::FaultRule;

/// Largest request body accepted by default, before and after gzip decoding: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How many `Idempotency-Key`s are remembered by default.
pub const DEFAULT_IDEMPOTENCY_KEYS_KEPT: usize = 10_000;

/// Everything sei-local needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeiLocalConfig {
    /// Address to listen on; port 0 lets the OS pick (what tests want).
    pub listen: SocketAddr,
    /// The API key of each tenant (tenant → key). A request must present the key of the
    /// tenant it names in `X-Tenant`; a key of another tenant gets 403, any other 401.
    pub api_keys: BTreeMap<String, SecretString>,
    /// Where records are kept: a SQLite file (survives restarts) or memory.
    pub database: DatabaseLocation,
    /// Largest request body accepted, both as sent and after gzip decoding (so a small
    /// compressed body cannot expand without bound); larger bodies get 413.
    pub max_body_bytes: usize,
    /// How many recent `Idempotency-Key`s (with their responses) are remembered; older
    /// ones are forgotten, after which a replay is simply applied again (harmless).
    pub idempotency_keys_kept: usize,
    /// Faults active from the start; `POST /admin/faults` replaces them at run time.
    pub faults: Vec<FaultRule>,
}

impl Default for SeiLocalConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_keys: BTreeMap::new(),
            database: DatabaseLocation::Memory,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            idempotency_keys_kept: DEFAULT_IDEMPOTENCY_KEYS_KEPT,
            faults: Vec::new(),
        }
    }
}

impl SeiLocalConfig {
    /// The defaults with one tenant and its key: the usual test set-up.
    pub fn for_tenant(tenant: &str, api_key: &str) -> Self {
        Self::default().with_api_key(tenant, api_key)
    }

    /// Adds (or replaces) the key of `tenant`.
    pub fn with_api_key(mut self, tenant: &str, api_key: &str) -> Self {
        self.api_keys
            .insert(tenant.to_owned(), SecretString::from(api_key.to_owned()));
        self
    }

    /// Checks that span fields, run once at start-up. Errors name the field, never a key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty() {
            return Err(ConfigError::new(
                "api_keys",
                "no tenant is configured, so every request would be refused",
            ));
        }
        for (tenant, key) in &self.api_keys {
            if tenant.trim().is_empty() || tenant.trim() != tenant {
                return Err(ConfigError::new(
                    "api_keys",
                    format!("tenant name `{tenant}` is empty or has surrounding whitespace"),
                ));
            }
            let key = key.expose_secret();
            if key.is_empty() || key.chars().any(char::is_whitespace) {
                // The key itself is never echoed, only whose it is.
                return Err(ConfigError::new(
                    format!("api_keys.{tenant}"),
                    "the key is empty or contains whitespace (it travels as `Authorization: Apikey <key>`)",
                ));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", "must be at least 1"));
        }
        if self.idempotency_keys_kept == 0 {
            return Err(ConfigError::new(
                "idempotency_keys_kept",
                "must be at least 1, or Idempotency-Key replays could not be answered",
            ));
        }
        for (index, rule) in self.faults.iter().enumerate() {
            crate::faults::validate(rule)
                .map_err(|reason| ConfigError::new(format!("faults[{index}]"), reason))?;
        }
        Ok(())
    }
}

/// Where the SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(from = "String")]
pub enum DatabaseLocation {
    /// A private in-memory database: gone when the server stops.
    #[default]
    Memory,
    /// A database file, created when missing.
    File(PathBuf),
}

impl From<String> for DatabaseLocation {
    /// `:memory:` (SQLite's own spelling) means memory; anything else is a file path.
    fn from(value: String) -> Self {
        if value == ":memory:" {
            Self::Memory
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

impl From<&str> for DatabaseLocation {
    fn from(value: &str) -> Self {
        Self::from(value.to_owned())
    }
}

impl fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str(":memory:"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sei-local configuration at `{field}`: {reason}")]
pub struct ConfigError {
    /// The offending field, dotted.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_tenants_is_refused() {
        let error = SeiLocalConfig::default().validate().unwrap_err();
        assert_eq!(error.field, "api_keys");
    }

    #[test]
    fn a_bad_key_is_reported_by_tenant_without_echoing_it() {
        let config = SeiLocalConfig::for_tenant("acme", "open sesame");
        let error = config.validate().unwrap_err();
        assert_eq!(error.field, "api_keys.acme");
        assert!(!error.to_string().contains("sesame"), "{error}");
    }

    #[test]
    fn debug_output_hides_api_keys() {
        let config = SeiLocalConfig::for_tenant("acme", "hunter2");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn memory_is_spelled_as_sqlite_spells_it() {
        assert_eq!(DatabaseLocation::from(":memory:"), DatabaseLocation::Memory);
        assert_eq!(
            DatabaseLocation::from("sei.db"),
            DatabaseLocation::File(PathBuf::from("sei.db"))
        );
    }

    #[test]
    fn config_files_with_unknown_keys_are_refused() {
        let error = serde_json::from_str::<SeiLocalConfig>(r#"{"api_key": {}}"#).unwrap_err();
        assert!(error.to_string().contains("api_key"), "{error}");
    }
}
