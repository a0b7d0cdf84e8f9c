//! Turning config's merged value tree into typed structs, with errors that carry the
//! full key path and never a value.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::error::ConfigError;

/// Deserialises `tree` into `T`.
///
/// `origin_of` names the source of a failing key path (a file, an environment
/// variable): only the caller knows which sources were merged.
pub(crate) fn deserialize<T: DeserializeOwned>(
    tree: config::Value,
    origin_of: impl Fn(&str) -> String,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|error| {
        let mut key = key_path(error.path().iter());
        let complaint = describe(error.inner());
        // An unknown or missing key is reported at its parent; the key itself is what
        // the operator has to find and fix, so it belongs in the path.
        if let Some(leaf) = &complaint.leaf {
            if !key.ends_with(leaf.as_str()) {
                push_key(&mut key, leaf);
            }
        }
        let mut message = complaint.message;
        if key.ends_with(']') && message.contains("invalid type: nothing") {
            message.push_str(" (list entries must be numbered from 0 without gaps)");
        }
        if key.is_empty() {
            key.push_str("(top level)");
        }
        ConfigError::Invalid {
            origin: origin_of(&key),
            key,
            message,
        }
    })
}

/// Renders a path as `integrations[1].auth.password`.
pub(crate) fn key_path<'a>(segments: impl Iterator<Item = &'a Segment>) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut path, key),
            Segment::Enum { variant } => push_key(&mut path, variant),
            Segment::Unknown => {}
        }
    }
    path
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

struct Complaint {
    message: String,
    /// The unknown or missing key the message is about, when the path stops at its parent.
    leaf: Option<String>,
}

/// The complaint without the offending value.
fn describe(error: &config::ConfigError) -> Complaint {
    match error {
        config::ConfigError::At { error, .. } => describe(error),
        // config's own missing-field error carries a garbled path; the field name is
        // its last segment.
        config::ConfigError::NotFound(key) => Complaint {
            message: "missing required key".to_owned(),
            leaf: key.rsplit(['.', ']']).next().map(str::to_owned),
        },
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => Complaint {
            message: format!(
                "invalid type: {}, expected {expected}",
                unexpected_kind(&unexpected.to_string())
            ),
            leaf: None,
        },
        other => {
            let message = redact_values(&other.to_string());
            let leaf = ["unknown field `", "missing field `"]
                .iter()
                .find_map(|prefix| message.strip_prefix(prefix))
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned);
            Complaint { message, leaf }
        }
    }
}

/// `string "…"`, ``integer `5` ``, `unit value`: the kind without the value.
fn unexpected_kind(unexpected: &str) -> &str {
    let kind = [" `", " \""]
        .iter()
        .filter_map(|marker| unexpected.find(marker))
        .min()
        .map_or(unexpected, |end| &unexpected[..end]);
    match kind {
        "unit value" => "nothing",
        other => other,
    }
}

/// Strips the offending value from serde's `invalid type: …` and `invalid value: …`
/// messages and any other `string "…"`, so a secret typed under the wrong key is not
/// echoed back.
pub(crate) fn redact_values(message: &str) -> String {
    let mut message = message.to_owned();
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(start) = message.find(marker) {
            let from = start + marker.len();
            let to = message[from..]
                .find(", expected")
                .map_or(message.len(), |end| from + end);
            let kind = unexpected_kind(&message[from..to]).to_owned();
            message.replace_range(from..to, &kind);
        }
    }
    redact_strings(&message)
}

/// Replaces every `string "…"` (serde's rendering of an unexpected string) with
/// `a string`.
fn redact_strings(message: &str) -> String {
    const MARKER: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(MARKER) {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let quoted = &rest[start + MARKER.len()..];
        let mut escaped = false;
        let mut end = quoted.len();
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &quoted[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_are_replaced_and_the_rest_is_kept() {
        let message = r#"invalid type: string "hun\"ter2", expected a boolean"#;
        assert_eq!(
            redact_strings(message),
            "invalid type: a string, expected a boolean"
        );
    }

    #[test]
    fn invalid_type_messages_keep_the_kind_and_drop_the_value() {
        assert_eq!(
            redact_values("invalid type: integer `5`, expected struct KafkaConfig"),
            "invalid type: integer, expected struct KafkaConfig"
        );
        assert_eq!(
            redact_values(r#"invalid value: string "p4ss", expected a port"#),
            "invalid value: string, expected a port"
        );
    }

    #[test]
    fn messages_without_strings_are_unchanged() {
        assert_eq!(redact_strings("missing field `url`"), "missing field `url`");
    }
}
