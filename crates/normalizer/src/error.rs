//! Why a raw record could not be mapped: one variant per kind of bad record, each with a
//! stable [`MapError::code`] for the DLQ `nowstream.reason` header and a message (the
//! `nowstream.detail` header) that names the table, the sys_id when known, and the field.
//!
//! Messages may quote a field's value (a time that does not parse, a count that is not a
//! number). They can never quote an excluded field: the exclusion policy removes excluded
//! fields from the payload before any field is read.

use nowstream_model::KeyError;

/// Longest excerpt of a bad value quoted in an error message; keeps DLQ headers small even
/// when the bad value is a whole document.
const MAX_QUOTED_CHARS: usize = 80;

/// A raw record that cannot become an SEI entity. The record goes to the DLQ with
/// [`code`](Self::code) as its reason.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The payload is not JSON at all (truncated, or not what the fetcher publishes).
    #[error("{table} record {sys_id}: payload is not JSON: {reason}")]
    PayloadNotJson {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id, as the raw record gives it.
        sys_id: String,
        /// The JSON parser's complaint (a position, never payload content).
        reason: String,
    },
    /// The payload is JSON but not an object of fields (an array, a string, ...).
    #[error("{table} record {sys_id}: payload is a JSON {found}, not an object of fields")]
    PayloadNotObject {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id, as the raw record gives it.
        sys_id: String,
        /// What kind of JSON value it is.
        found: &'static str,
    },
    /// Neither the raw record nor its payload carries a sys_id: the record has no identity.
    #[error("{table} record without a sys_id: neither the raw record nor its payload has one")]
    MissingSysId {
        /// ServiceNow table of the record.
        table: String,
    },
    /// The payload's `sys_id` is not the raw record's: the fetcher paired the wrong payload.
    #[error("{table} record {sys_id}: payload sys_id {payload_sys_id:?} differs from the record's")]
    SysIdMismatch {
        /// ServiceNow table of the record.
        table: String,
        /// The raw record's sys_id.
        sys_id: String,
        /// The payload's sys_id.
        payload_sys_id: String,
    },
    /// The table maps to no SEI entity.
    #[error(
        "{table} record {sys_id}: table {table:?} maps to no SEI entity (expected incident, change_request, sys_user or sys_dictionary)"
    )]
    UnknownTable {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id, as the raw record gives it.
        sys_id: String,
    },
    /// An UPSERT without a payload: there is nothing to map.
    #[error("{table} record {sys_id}: UPSERT without a payload")]
    MissingPayload {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id.
        sys_id: String,
    },
    /// A date-time field's stored `value` is not UTC `yyyy-MM-dd HH:mm:ss`.
    #[error(
        "{table} record {sys_id}: field {field} value {value:?} is not a UTC \"yyyy-MM-dd HH:mm:ss\" time: {reason}"
    )]
    UnparseableTime {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id.
        sys_id: String,
        /// The field (ServiceNow element name).
        field: String,
        /// The value found (an excerpt when long).
        value: String,
        /// What the parser objected to. (Not the parser's error itself: that quotes the
        /// whole value, which may be long.)
        reason: String,
    },
    /// A boolean or number field holds something else.
    #[error("{table} record {sys_id}: field {field} value {value:?} is not {expected}")]
    InvalidValue {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id.
        sys_id: String,
        /// The field (ServiceNow element name).
        field: String,
        /// The value found (an excerpt when long).
        value: String,
        /// What the field must hold, e.g. `a boolean ("true" or "false")`.
        expected: &'static str,
    },
    /// A field is neither a plain value nor a `{"value", "display_value"}` object.
    #[error(
        "{table} record {sys_id}: field {field} is {found}; expected a string or a {{\"value\", \"display_value\"}} object"
    )]
    UnexpectedShape {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id.
        sys_id: String,
        /// The field (ServiceNow element name).
        field: String,
        /// What was found instead, e.g. `a JSON array`.
        found: &'static str,
    },
    /// A field the entity cannot do without is empty, absent, or was removed by the
    /// exclusion policy (only `sys_dictionary.name`, the table a definition belongs to).
    #[error(
        "{table} record {sys_id}: required field {field} is empty, absent, or removed by the exclusion policy"
    )]
    MissingField {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id.
        sys_id: String,
        /// The field (ServiceNow element name).
        field: &'static str,
    },
    /// integration_id and sys_id do not form a Kafka key (empty, or containing `:`).
    #[error("{table} record {sys_id:?}: cannot form the record key: {source}")]
    InvalidKey {
        /// ServiceNow table of the record.
        table: String,
        /// The record's sys_id.
        sys_id: String,
        /// What is wrong with the key.
        #[source]
        source: KeyError,
    },
}

impl MapError {
    /// Every code [`code`](Self::code) can return, for documentation and dashboards.
    pub const CODES: [&'static str; 11] = [
        "payload_not_json",
        "payload_not_object",
        "missing_sys_id",
        "sys_id_mismatch",
        "unknown_table",
        "missing_payload",
        "unparseable_time",
        "invalid_field_value",
        "unexpected_field_shape",
        "missing_required_field",
        "invalid_record_key",
    ];

    /// Stable, machine-readable reason for the DLQ `nowstream.reason` header. Codes never
    /// change meaning; alerting and replay tooling key on them.
    pub fn code(&self) -> &'static str {
        match self {
            Self::PayloadNotJson { .. } => "payload_not_json",
            Self::PayloadNotObject { .. } => "payload_not_object",
            Self::MissingSysId { .. } => "missing_sys_id",
            Self::SysIdMismatch { .. } => "sys_id_mismatch",
            Self::UnknownTable { .. } => "unknown_table",
            Self::MissingPayload { .. } => "missing_payload",
            Self::UnparseableTime { .. } => "unparseable_time",
            Self::InvalidValue { .. } => "invalid_field_value",
            Self::UnexpectedShape { .. } => "unexpected_field_shape",
            Self::MissingField { .. } => "missing_required_field",
            Self::InvalidKey { .. } => "invalid_record_key",
        }
    }
}

/// At most [`MAX_QUOTED_CHARS`] characters of `value`, marked when cut.
pub(crate) fn excerpt(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}…", &value[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_in_messages_and_short_ones_kept_whole() {
        assert_eq!(excerpt("2024-13-01"), "2024-13-01");
        let long = "é".repeat(200);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
