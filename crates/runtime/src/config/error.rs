//! Errors of loading and checking the configuration.
//!
//! Every message names where the problem is (the file or environment variable, and
//! the key path such as `integrations[1].url`) and never repeats a value, because
//! any value might be a password that was put under the wrong key.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Loading the configuration failed; the message says where and what.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file (or SEI's satellite file) could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `config file` or `satellite file`.
        what: &'static str,
        /// The file as given (after resolving a relative satellite path).
        path: PathBuf,
        /// Why the operating system refused.
        source: io::Error,
    },
    /// The config file's extension does not say whether it is TOML or YAML.
    #[error("config file {path}: unsupported extension, expected .toml, .yaml or .yml")]
    UnsupportedFormat {
        /// The offending file.
        path: PathBuf,
    },
    /// The text is not valid TOML or YAML.
    #[error("{origin}: syntax error: {message}")]
    Syntax {
        /// Which file or text.
        origin: String,
        /// The parser's complaint with line and column; source lines are left out
        /// because they may hold a secret.
        message: String,
    },
    /// A key is unknown, missing, or has a value of the wrong type.
    #[error("{origin}: `{key}`: {message}")]
    Invalid {
        /// Where the value came from: a file, an environment variable, or text.
        origin: String,
        /// Full path of the key, e.g. `kafka.bootstrapp_servers` or `integrations[0].auth`.
        key: String,
        /// What is wrong with it, without its value.
        message: String,
    },
    /// A `NOWSTREAM__…` environment variable cannot be turned into a key path.
    #[error("environment variable {variable}: {reason}")]
    Environment {
        /// The variable's name.
        variable: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The configuration parsed but breaks rules that span fields.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
}

/// Every rule [`Config::validate`](crate::Config::validate) found broken, so an operator
/// fixes them in one round instead of one restart per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    problems: Vec<Problem>,
}

impl ValidationErrors {
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    /// The broken rules, in the order of the fields they concern.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.problems.len())?;
        if self.problems.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// One broken rule and the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path of the field, e.g. `integrations[1].url`.
    pub path: String,
    /// What is wrong, without the field's value.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
