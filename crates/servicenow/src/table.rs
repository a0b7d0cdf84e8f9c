//! JSON shapes of ServiceNow's Table API (`/api/now/table/{table}`).
//!
//! Records stay `serde_json::Map`s: the fetcher publishes them exactly as returned (the
//! raw topic is the source of truth), and custom `u_*` columns differ per instance, so a
//! fixed struct per table would drop data. Only the envelope and the per-field
//! `sysparm_display_value=all` shape are typed.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Format of date-time `value`s and of times in encoded queries: UTC, second resolution.
/// (Display values use the session user's zone and format and must never be parsed as times.)
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A ServiceNow time `value` that is not UTC `yyyy-MM-dd HH:mm:ss`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ServiceNow time {input:?} is not in the UTC format \"yyyy-MM-dd HH:mm:ss\": {reason}")]
pub struct TimeError {
    /// The text that failed to parse.
    pub input: String,
    /// What chrono objected to.
    pub reason: String,
}

/// Parses a date-time `value` (always UTC, whatever the user's zone).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, TimeError> {
    NaiveDateTime::parse_from_str(s, TIME_FORMAT)
        .map(|t| t.and_utc())
        .map_err(|e| TimeError {
            input: s.to_owned(),
            reason: e.to_string(),
        })
}

/// Formats a time the way ServiceNow stores and compares it; sub-second parts are dropped,
/// since ServiceNow keeps whole seconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format(TIME_FORMAT).to_string()
}

/// One field of a record fetched with `sysparm_display_value=all`:
/// `{"display_value": "...", "value": "...", "link": "..."}`.
///
/// `value` is the stored value (sys_id for references, choice value, UTC time);
/// `display_value` is what a user sees (label, name, local time). `link` is present only
/// for reference fields and points at the referenced record's Table API URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    pub value: String,
    pub display_value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl FieldValue {
    /// A non-reference field.
    pub fn plain(value: impl Into<String>, display_value: impl Into<String>) -> Self {
        FieldValue {
            value: value.into(),
            display_value: display_value.into(),
            link: None,
        }
    }

    /// A reference field pointing at `link`.
    pub fn reference(
        value: impl Into<String>,
        display_value: impl Into<String>,
        link: impl Into<String>,
    ) -> Self {
        FieldValue {
            value: value.into(),
            display_value: display_value.into(),
            link: Some(link.into()),
        }
    }
}

/// A list response: `GET /api/now/table/{table}` → `{"result": [ {record}, … ]}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TableResponse {
    pub result: Vec<Map<String, Value>>,
}

/// A single-record response: `GET /api/now/table/{table}/{sys_id}` → `{"result": {record}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SingleResponse {
    pub result: Map<String, Value>,
}

/// ServiceNow's error body:
/// `{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
    /// `"failure"` in every error ServiceNow sends.
    pub status: String,
}

impl ErrorResponse {
    /// The status ServiceNow puts in every error body.
    pub const FAILURE: &'static str = "failure";

    /// An error body as ServiceNow would send it.
    pub fn new(message: impl Into<String>, detail: Option<String>) -> Self {
        ErrorResponse {
            error: ErrorBody {
                message: message.into(),
                detail,
            },
            status: Self::FAILURE.to_owned(),
        }
    }
}

/// The `error` object of an [`ErrorResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    /// ServiceNow sends `null` or omits it for some errors.
    #[serde(default)]
    pub detail: Option<String>,
}

/// Names of the tables the project reads.
pub mod tables {
    /// Incidents (extends `task`).
    pub const INCIDENT: &str = "incident";
    /// Change requests (extends `task`).
    pub const CHANGE_REQUEST: &str = "change_request";
    /// Users.
    pub const SYS_USER: &str = "sys_user";
    /// Groups (assignment groups).
    pub const SYS_USER_GROUP: &str = "sys_user_group";
    /// Choice lists: labels of choice values.
    pub const SYS_CHOICE: &str = "sys_choice";
    /// Column definitions: where custom `u_*` fields are discovered.
    pub const SYS_DICTIONARY: &str = "sys_dictionary";
    /// Roles.
    pub const SYS_USER_ROLE: &str = "sys_user_role";
    /// Role grants; preflight checks the integration user's roles here.
    pub const SYS_USER_HAS_ROLE: &str = "sys_user_has_role";
    /// Audit of deleted records (`tablename`, `documentkey`): the source of deletions.
    pub const SYS_AUDIT_DELETE: &str = "sys_audit_delete";
    /// Base table of incidents and change requests.
    pub const TASK: &str = "task";
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    #[test]
    fn times_parse_as_utc_and_format_back_unchanged() {
        let text = "2024-03-05 07:08:09";
        let parsed = parse_time(text).unwrap();
        assert_eq!(parsed, Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap());
        assert_eq!(format_time(parsed), text);
    }

    #[test]
    fn formatting_drops_sub_second_parts() {
        let t = Utc.timestamp_millis_opt(1_700_000_000_999).unwrap();
        assert_eq!(format_time(t), "2023-11-14 22:13:20");
    }

    #[test]
    fn a_bad_time_error_names_the_input() {
        for bad in [
            "2024-03-05T07:08:09Z",
            "05/03/2024 07:08",
            "",
            "2024-13-01 00:00:00",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn field_values_have_servicenow_display_value_all_shape() {
        let plain = FieldValue::plain("2", "2 - High");
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"value": "2", "display_value": "2 - High"})
        );
        let reference = FieldValue::reference(
            "6816f79cc0a8016401c5a33be04be441",
            "Fred Luddy",
            "https://x.service-now.com/api/now/table/sys_user/6816f79cc0a8016401c5a33be04be441",
        );
        let json = json!({
            "display_value": "Fred Luddy",
            "link": "https://x.service-now.com/api/now/table/sys_user/6816f79cc0a8016401c5a33be04be441",
            "value": "6816f79cc0a8016401c5a33be04be441"
        });
        assert_eq!(serde_json::to_value(&reference).unwrap(), json);
        assert_eq!(
            serde_json::from_value::<FieldValue>(json).unwrap(),
            reference
        );
    }

    #[test]
    fn table_responses_keep_records_and_their_field_order() {
        let body = r#"{"result":[{"sys_id":{"value":"a","display_value":"a"},"number":{"value":"INC1","display_value":"INC1"}}]}"#;
        let response: TableResponse = serde_json::from_str(body).unwrap();
        assert_eq!(response.result.len(), 1);
        let keys: Vec<&String> = response.result[0].keys().collect();
        assert_eq!(keys, ["sys_id", "number"]);
        assert_eq!(serde_json::to_string(&response).unwrap(), body);
        let number: FieldValue =
            serde_json::from_value(response.result[0]["number"].clone()).unwrap();
        assert_eq!(number, FieldValue::plain("INC1", "INC1"));
    }

    #[test]
    fn single_responses_hold_one_record() {
        let response: SingleResponse =
            serde_json::from_str(r#"{"result":{"sys_id":"abc"}}"#).unwrap();
        assert_eq!(response.result["sys_id"], "abc");
    }

    #[test]
    fn error_responses_match_servicenow_shape() {
        let body = r#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#;
        let parsed: ErrorResponse = serde_json::from_str(body).unwrap();
        let built = ErrorResponse::new(
            "User Not Authenticated",
            Some("Required to provide Auth information".to_owned()),
        );
        assert_eq!(parsed, built);
        assert_eq!(serde_json::to_string(&built).unwrap(), body);
        let no_detail: ErrorResponse =
            serde_json::from_str(r#"{"error":{"message":"No Record found"},"status":"failure"}"#)
                .unwrap();
        assert_eq!(no_detail.error.detail, None);
    }
}
