//! `NOWSTREAM__SECTION__KEY` environment overrides.
//!
//! The config crate's own `Environment` source turns `__` into `.` and cannot address
//! list entries or keys that contain dots, so `integrations[0].auth.password` and the
//! librdkafka property `sasl.password` could not be set from the environment. This
//! source maps the variables itself and hands config ready-made key paths.

use config::{Map, Source, Value, ValueKind};
use secrecy::{ExposeSecret, SecretString};

use super::error::ConfigError;

/// Every override variable starts with this; the same `__` also separates key segments.
pub const ENV_PREFIX: &str = "NOWSTREAM__";
const SEPARATOR: &str = "__";

/// One `NOWSTREAM__…` variable turned into a key path.
#[derive(Debug, Clone)]
pub(crate) struct EnvOverride {
    /// The variable's name, reported when the value is rejected.
    pub(crate) variable: String,
    /// Where the override came from, for error messages: the variable, or the secret file a
    /// secrets directory turned into one.
    pub(crate) origin: String,
    /// The key path in the same form error messages use, e.g. `integrations[0].url`.
    pub(crate) path: String,
    /// Path of the value (or, for a Kafka property, of the property table) in the
    /// syntax of config's path expressions.
    expression: String,
    /// The librdkafka property name when the variable sets `kafka.properties.*`; kept
    /// apart because config would split its dots into nested keys.
    property: Option<String>,
    value: SecretString,
}

impl EnvOverride {
    /// Reads one variable; `Ok(None)` when it does not start with [`ENV_PREFIX`].
    pub(crate) fn parse(variable: &str, value: String) -> Result<Option<Self>, ConfigError> {
        let Some(rest) = variable.strip_prefix(ENV_PREFIX) else {
            return Ok(None);
        };
        let invalid = |reason: &str| ConfigError::Environment {
            variable: variable.to_owned(),
            reason: reason.to_owned(),
        };
        let segments: Vec<String> = rest.split(SEPARATOR).map(str::to_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(invalid(
                "empty key segment: separate keys with exactly two underscores",
            ));
        }
        let is_key = |s: &String| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !segments.iter().all(is_key) {
            return Err(invalid(
                "key segments may contain only letters, digits, '_' and '-'",
            ));
        }

        let (structural, property) = match segments.as_slice() {
            [kafka, properties, name @ ..]
                if kafka == "kafka"
                    && (properties == "properties" || properties == "property_files") =>
            {
                if name.is_empty() {
                    return Err(invalid(
                        "name the librdkafka property, e.g. NOWSTREAM__KAFKA__PROPERTIES__SASL_PASSWORD",
                    ));
                }
                (&segments[..2], Some(name.join(".").replace('_', ".")))
            }
            _ => (&segments[..], None),
        };

        let mut expression = String::new();
        let mut path = String::new();
        for (position, segment) in structural.iter().enumerate() {
            let is_index = position > 0 && segment.chars().all(|c| c.is_ascii_digit());
            if is_index {
                let index: usize = segment
                    .parse()
                    .map_err(|_| invalid("list index is too large"))?;
                expression.push_str(&format!("[{index}]"));
                path.push_str(&format!("[{index}]"));
            } else {
                if position > 0 {
                    expression.push('.');
                    path.push('.');
                }
                expression.push_str(segment);
                path.push_str(segment);
            }
        }
        if let Some(name) = &property {
            path.push('.');
            path.push_str(name);
        }

        Ok(Some(Self {
            variable: variable.to_owned(),
            origin: format!("environment variable {variable}"),
            path,
            expression,
            property,
            value: SecretString::from(value),
        }))
    }
}

/// The overrides as a config source, applied after the file so they win.
#[derive(Debug, Clone)]
pub(crate) struct EnvSource {
    overrides: Vec<EnvOverride>,
}

impl EnvSource {
    pub(crate) fn new(overrides: Vec<EnvOverride>) -> Self {
        Self { overrides }
    }
}

impl Source for EnvSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        let mut collected: Map<String, Value> = Map::new();
        for entry in &self.overrides {
            let origin = Some(&entry.variable);
            let value = Value::new(origin, entry.value.expose_secret().to_owned());
            match &entry.property {
                None => {
                    collected.insert(entry.expression.clone(), value);
                }
                Some(name) => {
                    let table = collected
                        .entry(entry.expression.clone())
                        .or_insert_with(|| Value::new(origin, Map::<String, Value>::new()));
                    if !matches!(table.kind, ValueKind::Table(_)) {
                        *table = Value::new(origin, Map::<String, Value>::new());
                    }
                    if let ValueKind::Table(properties) = &mut table.kind {
                        properties.insert(name.clone(), value);
                    }
                }
            }
        }
        Ok(collected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(variable: &str) -> EnvOverride {
        EnvOverride::parse(variable, "v".to_owned())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn section_and_key_become_a_dotted_path() {
        let o = parsed("NOWSTREAM__KAFKA__BOOTSTRAP_SERVERS");
        assert_eq!(o.path, "kafka.bootstrap_servers");
        assert_eq!(o.expression, "kafka.bootstrap_servers");
    }

    #[test]
    fn numeric_segments_address_list_entries() {
        let o = parsed("NOWSTREAM__INTEGRATIONS__1__AUTH__PASSWORD");
        assert_eq!(o.path, "integrations[1].auth.password");
        assert_eq!(o.expression, "integrations[1].auth.password");
    }

    #[test]
    fn kafka_property_underscores_become_dots() {
        let o = parsed("NOWSTREAM__KAFKA__PROPERTIES__SASL_PASSWORD");
        assert_eq!(o.path, "kafka.properties.sasl.password");
        assert_eq!(o.expression, "kafka.properties");
        assert_eq!(o.property.as_deref(), Some("sasl.password"));
    }

    #[test]
    fn kafka_property_file_underscores_become_dots_too() {
        let o = parsed("NOWSTREAM__KAFKA__PROPERTY_FILES__SSL_KEY_PASSWORD");
        assert_eq!(o.path, "kafka.property_files.ssl.key.password");
        assert_eq!(o.expression, "kafka.property_files");
        assert_eq!(o.property.as_deref(), Some("ssl.key.password"));
    }

    #[test]
    fn variables_without_the_prefix_are_ignored() {
        assert!(
            EnvOverride::parse("NOWSTREAM_KAFKA", String::new())
                .unwrap()
                .is_none()
        );
        assert!(EnvOverride::parse("PATH", String::new()).unwrap().is_none());
    }

    #[test]
    fn empty_segments_are_rejected_with_the_variable_name() {
        let err = EnvOverride::parse("NOWSTREAM__KAFKA____X", String::new()).unwrap_err();
        assert!(err.to_string().contains("NOWSTREAM__KAFKA____X"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_value() {
        let o = EnvOverride::parse("NOWSTREAM__SEI__API_KEY", "hunter2".to_owned())
            .unwrap()
            .unwrap();
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
