//! Reading the configuration: one file (or text) plus `NOWSTREAM__…` environment
//! overrides, then SEI's satellite file, then [`Config::validate`].

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::Config;
use super::deserialize::deserialize;
use super::env::{ENV_PREFIX, EnvOverride, EnvSource};
use super::error::{ConfigError, Problem, ValidationErrors};
use super::satellite::Satellite;
use super::secret::{SecretFiles, SecretScope};

/// Names a directory of secret files, each named like the `NOWSTREAM__…` variable it stands
/// for (see [`ConfigLoader::secrets_dir`]).
pub const SECRETS_DIR_VARIABLE: &str = "NOWSTREAM_SECRETS_DIR";

/// Syntax of a config file or text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
}

impl Format {
    /// The format a file's extension names, if any; the extension is the only hint
    /// because the two syntaxes overlap enough to mis-parse silently.
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            _ => None,
        }
    }

    fn file_format(self) -> config::FileFormat {
        match self {
            Self::Toml => config::FileFormat::Toml,
            Self::Yaml => config::FileFormat::Yaml,
        }
    }
}

/// Assembles a [`Config`] from a file or text and environment overrides.
///
/// Most binaries want [`Config::load`] or [`Config::from_env`]; the loader exists so
/// tests can pass environment variables without touching the process environment.
#[derive(Debug, Default)]
pub struct ConfigLoader {
    base: Option<BaseSource>,
    overrides: Vec<EnvOverride>,
    env_error: Option<ConfigError>,
    secrets_dir: Option<PathBuf>,
    scope: SecretScope,
}

enum BaseSource {
    File(PathBuf),
    Text { text: SecretString, format: Format },
}

impl fmt::Debug for BaseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Text { format, .. } => f.debug_struct("Text").field("format", format).finish(),
        }
    }
}

impl ConfigLoader {
    /// A loader with no sources: loading it yields the defaults (and fails validation,
    /// since no integration is configured).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads this file; `.toml`, `.yaml` or `.yml` says its syntax. A relative
    /// `satellite_file` inside it is resolved against the file's directory.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.base = Some(BaseSource::File(path.into()));
        self
    }

    /// Reads this text instead of a file (tests, embedded defaults).
    pub fn text(mut self, text: impl Into<String>, format: Format) -> Self {
        self.base = Some(BaseSource::Text {
            text: SecretString::from(text.into()),
            format,
        });
        self
    }

    /// Applies the process's `NOWSTREAM__…` variables, and the secrets directory that
    /// `NOWSTREAM_SECRETS_DIR` names, if it is set.
    pub fn process_env(mut self) -> Self {
        if let Some(dir) = std::env::var_os(SECRETS_DIR_VARIABLE).filter(|dir| !dir.is_empty()) {
            self.secrets_dir = Some(PathBuf::from(dir));
        }
        let vars = std::env::vars_os();
        self.env_os(vars)
    }

    /// Reads secrets from the files in `dir`, each named like the `NOWSTREAM__…` variable
    /// that would set the secret: the file `NOWSTREAM__SEI__API_KEY` sets `sei.api_key_file`
    /// to itself, `NOWSTREAM__KAFKA__PROPERTIES__SASL_PASSWORD` sets
    /// `kafka.property_files.sasl.password`. A Kubernetes Secret whose keys are such names,
    /// mounted as a volume, thus configures every secret in it; entries not named
    /// `NOWSTREAM__…` (Kubernetes' own `..data`) are ignored.
    pub fn secrets_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.secrets_dir = Some(dir.into());
        self
    }

    /// Reads and checks only the secrets of `scope` (by default all): a stage's process
    /// passes its own, so a deployment need not give it the other stages' secrets.
    pub fn secret_scope(mut self, scope: SecretScope) -> Self {
        self.scope = scope;
        self
    }

    /// The overrides the files of the secrets directory stand for.
    fn secret_file_overrides(dir: &Path) -> Result<Vec<EnvOverride>, ConfigError> {
        let unreadable = |source| ConfigError::Read {
            what: "secrets directory",
            path: dir.to_path_buf(),
            source,
        };
        let mut overrides = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let property = format!("{ENV_PREFIX}KAFKA__PROPERTIES__");
            let variable = match name.strip_prefix(&property) {
                Some(property) => format!("{ENV_PREFIX}KAFKA__PROPERTY_FILES__{property}"),
                None => format!("{name}_FILE"),
            };
            let path = entry.path();
            let origin = format!("secret file {}", path.display());
            let value = path.to_string_lossy().into_owned();
            match EnvOverride::parse(&variable, value) {
                Ok(Some(mut entry)) => {
                    entry.origin = origin;
                    overrides.push(entry);
                }
                Ok(None) => {}
                Err(ConfigError::Environment { reason, .. }) => {
                    return Err(ConfigError::Environment {
                        variable: origin,
                        reason,
                    });
                }
                Err(other) => return Err(other),
            }
        }
        Ok(overrides)
    }

    /// Applies these variables as if they were the environment; names without the
    /// `NOWSTREAM__` prefix are ignored.
    pub fn env_vars<I, K, V>(self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env_os(
            vars.into_iter()
                .map(|(k, v)| (OsString::from(k.into()), OsString::from(v.into()))),
        )
    }

    fn env_os(mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        for (name, value) in vars {
            if self.env_error.is_some() {
                break;
            }
            let Some(name) = name.to_str().map(str::to_owned) else {
                if name.to_string_lossy().starts_with(ENV_PREFIX) {
                    self.env_error = Some(ConfigError::Environment {
                        variable: name.to_string_lossy().into_owned(),
                        reason: "name is not valid UTF-8".to_owned(),
                    });
                }
                continue;
            };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let Ok(value) = value.into_string() else {
                self.env_error = Some(ConfigError::Environment {
                    variable: name,
                    reason: "value is not valid UTF-8".to_owned(),
                });
                continue;
            };
            match EnvOverride::parse(&name, value) {
                Ok(Some(entry)) => self.overrides.push(entry),
                Ok(None) => {}
                Err(error) => self.env_error = Some(error),
            }
        }
        self
    }

    /// Merges the sources, reads the satellite file if one is named, and validates.
    pub fn load(self) -> Result<Config, ConfigError> {
        let scope = self.scope;
        let (config, mut problems) = self.assemble()?;
        if let Err(errors) = config.validate_for(scope) {
            // A secret whose file cannot be read is reported once, at its `_file` key, not
            // again as an empty secret.
            let unread: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
            problems.extend(
                errors
                    .problems()
                    .iter()
                    .filter(|p| !unread.contains(&format!("{}_file", p.path)))
                    .cloned(),
            );
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ValidationErrors::new(problems).into())
        }
    }

    /// Like [`load`](Self::load) without [`Config::validate`], for tools that inspect
    /// a configuration they know to be incomplete.
    /// Secret files that cannot be read are errors here too.
    pub fn load_unvalidated(self) -> Result<Config, ConfigError> {
        let (config, problems) = self.assemble()?;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ValidationErrors::new(problems).into())
        }
    }

    /// The configuration, and the problems of the secret files it names.
    fn assemble(mut self) -> Result<(Config, Vec<Problem>), ConfigError> {
        if let Some(error) = self.env_error.take() {
            return Err(error);
        }
        if let Some(dir) = &self.secrets_dir {
            let overrides = Self::secret_file_overrides(dir)?;
            self.overrides.extend(overrides);
        }
        // Sorted so that two spellings of the same key resolve the same way on
        // every start, whatever order the environment lists them in.
        self.overrides.sort_by(|a, b| a.variable.cmp(&b.variable));

        let mut builder = config::Config::builder();
        if let Some(base) = &self.base {
            let (text, format) = match base {
                BaseSource::File(path) => {
                    let format = Format::from_path(path)
                        .ok_or_else(|| ConfigError::UnsupportedFormat { path: path.clone() })?;
                    let text =
                        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                            what: "config file",
                            path: path.clone(),
                            source,
                        })?;
                    (text, format)
                }
                BaseSource::Text { text, format } => (text.expose_secret().to_owned(), *format),
            };
            builder = builder.add_source(config::File::from_str(&text, format.file_format()));
        }
        builder = builder.add_source(EnvSource::new(self.overrides.clone()));

        let merged = builder.build().map_err(|error| ConfigError::Syntax {
            origin: self.base_origin(),
            message: syntax_message(&error),
        })?;
        let mut config: Config = deserialize(merged.cache.clone(), |key| self.origin_of(key))?;
        // The typed pass accepted every `*_file` key; this one finds them again so that only
        // the scope's are read.
        let files: SecretFiles = deserialize(merged.cache, |key| self.origin_of(key))?;
        let problems = files.read_into(&mut config, self.scope, |path| self.resolve(path));

        if let Some(satellite_file) = &config.satellite_file {
            let path = self.resolve(satellite_file);
            let satellite = Satellite::read(&path)?;
            config.merge_satellite(satellite);
        }
        Ok((config, problems))
    }

    /// Names the source a failing key came from: the environment variable that set
    /// it (or something beneath it) if any did, else the file or text.
    fn origin_of(&self, key: &str) -> String {
        let touched = self.overrides.iter().rev().find(|entry| {
            entry.path == key
                || entry
                    .path
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        });
        match touched {
            Some(entry) => entry.origin.clone(),
            None => self.base_origin(),
        }
    }

    fn base_origin(&self) -> String {
        match &self.base {
            Some(BaseSource::File(path)) => format!("config file {}", path.display()),
            Some(BaseSource::Text { .. }) => "config text".to_owned(),
            None => format!("environment ({ENV_PREFIX}* variables)"),
        }
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        match &self.base {
            Some(BaseSource::File(file)) if path.is_relative() => file
                .parent()
                .map_or_else(|| path.to_path_buf(), |dir| dir.join(path)),
            _ => path.to_path_buf(),
        }
    }
}

/// The parser's complaint without the source excerpt the TOML parser adds: that
/// excerpt shows the offending line, which may be `password = "…`.
pub(crate) fn syntax_message(error: &config::ConfigError) -> String {
    let full = match error {
        config::ConfigError::FileParse { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    let kept: Vec<&str> = full
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_excerpt_line(line))
        .collect();
    super::deserialize::redact_values(&kept.join("; "))
}

/// `3 | password = "…` or `  |     ^` in the TOML parser's rendering.
fn is_excerpt_line(line: &str) -> bool {
    let after_number = line.trim_start_matches(|c: char| c.is_ascii_digit());
    after_number.trim_start().starts_with('|')
}
