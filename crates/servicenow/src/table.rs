//! JSON shapes of ServiceNow's Table API (`/api/now/table/{table}`).
//!
//! Records are not typed per table: the fetcher publishes them exactly as returned (the raw
//! topic is the source of truth), and custom `u_*` columns differ per instance, so a fixed
//! struct per table would drop data. The client keeps them as their JSON text
//! ([`crate::row::Row`]); the envelope types below describe the wire shapes, with
//! `serde_json::Map` records. Only the envelope is typed here; the per-field
//! `sysparm_display_value=all` shape, the time format and the table names are the record
//! shape every crate shares, in [`nowstream_model::table_api`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

#[cfg(test)]
mod tests {
    use nowstream_model::table_api::FieldValue;

    use super::*;

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
