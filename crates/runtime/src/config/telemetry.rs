//! The `[telemetry]` section: how the process logs.

use serde::Deserialize;

/// Logging settings applied by [`telemetry::init`](crate::telemetry::init).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` for people at a terminal, `json` for log collectors (one object per line).
    #[serde(default)]
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info` or `info,nowstream_fetcher=debug`.
    /// `RUST_LOG`, when set, replaces it, so an operator can turn up logging without
    /// editing the mounted config file.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::default(),
            log_level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".to_owned()
}

/// Shape of each log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable single lines.
    #[default]
    Text,
    /// One JSON object per line with the event's fields flattened in.
    Json,
}
