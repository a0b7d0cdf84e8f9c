//! Secrets given as files: every secret key `X` has a sibling `X_file` naming a file that holds
//! the value, and `kafka.property_files` does the same for librdkafka properties.
//!
//! Files are how orchestrators hand out secrets without putting them in the environment, where
//! every process of the container, `kubectl describe` and crash reporters can see them: a
//! Kubernetes Secret volume, a compose `secrets:` entry, a Vault agent's output. The value is the
//! file's content without one trailing line break (`echo secret > file` adds one; a Secret's
//! data has none), so a password may still begin or end with spaces.
//!
//! A process reads only the secret files of its own stage ([`SecretScope`]), so a deployment
//! mounts each stage only the secrets it uses: the normalizer never holds a ServiceNow password
//! or the SEI key. The other stages' secret keys may be absent, inline, or name files that are
//! not there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use super::Config;
use super::error::Problem;
use super::integration::AuthConfig;

/// Which secrets a process reads and checks: its stage's own, plus Kafka's, which every stage
/// needs to reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretScope {
    /// The ServiceNow credentials of `[[integrations]]` (the fetcher's).
    pub servicenow: bool,
    /// The SEI API key of `[sei]` (the sink's).
    pub sei: bool,
}

impl SecretScope {
    /// Every secret: tools and tests that handle the whole configuration.
    pub const ALL: Self = Self {
        servicenow: true,
        sei: true,
    };
    /// The fetcher reads ServiceNow.
    pub const FETCHER: Self = Self {
        servicenow: true,
        sei: false,
    };
    /// The normalizer talks to Kafka only.
    pub const NORMALIZER: Self = Self {
        servicenow: false,
        sei: false,
    };
    /// The sink writes to SEI.
    pub const SINK: Self = Self {
        servicenow: false,
        sei: true,
    };
}

impl Default for SecretScope {
    fn default() -> Self {
        Self::ALL
    }
}

/// A secret given twice, inline and as a file: which one was meant is a guess, so neither is
/// taken. Reported by serde at the enclosing section (`integrations[0].auth`); the message
/// names both keys.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{value_key}` and `{file_key}` are both set: give the secret or the file that holds it, not both"
)]
pub(crate) struct GivenTwice {
    value_key: String,
    file_key: String,
}

impl GivenTwice {
    pub(crate) fn new(value_key: impl Into<String>, file_key: impl Into<String>) -> Self {
        Self {
            value_key: value_key.into(),
            file_key: file_key.into(),
        }
    }
}

/// A secret key `key` and its `<key>_file` sibling after parsing: at most one may be set.
/// Returns the inline value, if any; the file is read later, in scope ([`SecretFiles`]).
pub(crate) fn value_or_file(
    key: &str,
    value: Option<SecretString>,
    file: Option<&PathBuf>,
) -> Result<Option<SecretString>, GivenTwice> {
    if value.is_some() && file.is_some() {
        return Err(GivenTwice::new(key, format!("{key}_file")));
    }
    Ok(value)
}

/// Reads the secret in `path` for key `key`: its content without one trailing line break. An
/// unreadable or empty file is a problem naming the key and the file, never the content.
pub(crate) fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, Problem> {
    let problem = |reason: String| {
        Problem::new(
            key,
            format!("cannot use secret file {}: {reason}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|error| problem(error.to_string()))?;
    let value = text
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(problem("it is empty".to_owned()));
    }
    Ok(SecretString::from(value.to_owned()))
}

/// The `*_file` keys of a merged configuration tree, read beside the typed [`Config`] (whose
/// structs accept these keys but keep only the values) so that each can be read or left
/// alone according to the [`SecretScope`]. Lenient: the typed pass reports every bad key.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SecretFiles {
    #[serde(default)]
    kafka: KafkaFiles,
    #[serde(default)]
    sei: Option<SeiFiles>,
    #[serde(default)]
    integrations: Vec<IntegrationFiles>,
}

#[derive(Debug, Default, Deserialize)]
struct KafkaFiles {
    #[serde(default)]
    property_files: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct SeiFiles {
    #[serde(default)]
    api_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct IntegrationFiles {
    #[serde(default)]
    auth: Option<AuthFiles>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthFiles {
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
}

impl SecretFiles {
    /// Reads the files `scope` covers into `config` and returns the problems of those that
    /// cannot be read (reported with [`Config::validate`]'s, all at once); `resolve` turns a
    /// relative path into the one to open (relative to the config file, as `satellite_file`
    /// is).
    pub(crate) fn read_into(
        self,
        config: &mut Config,
        scope: SecretScope,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut read = |key: &str, path: &Path| {
            read_secret_file(key, &resolve(path))
                .map_err(|problem| problems.push(problem))
                .ok()
        };
        for (name, path) in self.kafka.property_files {
            if let Some(value) = read(&format!("kafka.property_files.{name}"), &path) {
                config.kafka.properties.insert(name, value);
            }
        }
        if scope.sei {
            let path = self.sei.and_then(|sei| sei.api_key_file);
            if let (Some(sei), Some(path)) = (config.sei.as_mut(), path) {
                if let Some(value) = read("sei.api_key_file", &path) {
                    sei.api_key = value;
                }
            }
        }
        if scope.servicenow {
            for (index, files) in self.integrations.into_iter().enumerate() {
                let (Some(files), Some(integration)) =
                    (files.auth, config.integrations.get_mut(index))
                else {
                    continue;
                };
                let key = |field: &str| format!("integrations[{index}].auth.{field}");
                let mut read_key = |field: &str, path: Option<PathBuf>| {
                    path.and_then(|path| read(&key(field), &path))
                };
                match &mut integration.auth {
                    AuthConfig::Basic(basic) => {
                        if let Some(password) = read_key("password_file", files.password_file) {
                            basic.password = password;
                        }
                    }
                    AuthConfig::Oauth(oauth) => {
                        if let Some(secret) =
                            read_key("client_secret_file", files.client_secret_file)
                        {
                            oauth.client_secret = secret;
                        }
                        if let Some(password) = read_key("password_file", files.password_file) {
                            oauth.password = Some(password);
                        }
                    }
                }
            }
        }
        problems
    }
}
