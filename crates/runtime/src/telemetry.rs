//! Process-wide logging through `tracing`.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// The environment variable that replaces `telemetry.log_level` when set.
pub const RUST_LOG: &str = "RUST_LOG";

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The filter directives are malformed.
    #[error("{origin}: not a tracing filter: {source}")]
    Filter {
        /// `RUST_LOG` or `telemetry.log_level`.
        origin: &'static str,
        /// The parser's complaint.
        source: tracing_subscriber::filter::ParseError,
    },
    /// `RUST_LOG` is set but not valid UTF-8.
    #[error("RUST_LOG is not valid UTF-8")]
    RustLogNotUnicode,
}

/// Installs the global subscriber: text or JSON lines on stdout, filtered by
/// `RUST_LOG` if set, else by `telemetry.log_level`.
///
/// Calling it again (as tests do) keeps the first subscriber and returns `Ok`: the
/// global subscriber can be set only once per process.
pub fn init(config: &TelemetryConfig) -> Result<(), TelemetryError> {
    let rust_log = match std::env::var(RUST_LOG) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err(TelemetryError::RustLogNotUnicode),
    };
    let filter = env_filter(&config.log_level, rust_log.as_deref())?;
    let ansi = std::io::stdout().is_terminal();
    if subscriber(config.log_format, filter, ansi, std::io::stdout)
        .try_init()
        .is_err()
    {
        tracing::debug!("a global tracing subscriber is already installed; keeping it");
    }
    Ok(())
}

/// The filter in force: `RUST_LOG` (when non-empty) lets an operator turn up logging
/// without editing the mounted config file.
pub fn env_filter(log_level: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let (directives, origin) = match rust_log {
        Some(value) if !value.trim().is_empty() => (value, RUST_LOG),
        _ => (log_level, "telemetry.log_level"),
    };
    EnvFilter::builder()
        .parse(directives)
        .map_err(|source| TelemetryError::Filter { origin, source })
}

/// The subscriber [`init`] installs, writing to `writer`; public so a test can capture
/// what a component logs in the production format. `ansi` colours text output, which
/// helps at a terminal and garbles log collectors.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn rust_log_replaces_the_configured_level() {
        let filter = env_filter("info", Some("debug")).unwrap();
        assert_eq!(filter.to_string(), "debug");
    }

    #[test]
    fn an_empty_rust_log_leaves_the_configured_level() {
        let filter = env_filter("warn", Some("  ")).unwrap();
        assert_eq!(filter.to_string(), "warn");
    }

    #[test]
    fn a_malformed_level_names_its_origin() {
        let err = env_filter("info,[=", None).unwrap_err();
        assert!(err.to_string().starts_with("telemetry.log_level"), "{err}");
        let err = env_filter("info", Some("info,[=")).unwrap_err();
        assert!(err.to_string().starts_with("RUST_LOG"), "{err}");
    }

    #[test]
    fn json_format_writes_one_object_per_event_with_fields_flattened() {
        let out = Captured::default();
        let filter = env_filter("info", None).unwrap();
        let subscriber = subscriber(LogFormat::Json, filter, false, out.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(integration_id = "4711", "fetched page");
            tracing::debug!("filtered out");
        });
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(event["integration_id"], "4711");
        assert_eq!(event["message"], "fetched page");
        assert_eq!(event["level"], "INFO");
    }

    #[test]
    fn text_format_writes_plain_lines() {
        let out = Captured::default();
        let filter = env_filter("info", None).unwrap();
        let subscriber = subscriber(LogFormat::Text, filter, false, out.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(table = "incident", "short page");
        });
        let text = out.text();
        assert!(
            text.contains("short page") && text.contains("table=\"incident\""),
            "{text}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
    }

    #[test]
    fn init_twice_keeps_the_first_subscriber_and_succeeds() {
        let config = TelemetryConfig::default();
        init(&config).unwrap();
        init(&config).unwrap();
    }
}
