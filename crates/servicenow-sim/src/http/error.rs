//! ServiceNow's error responses: `{"error":{"message","detail"},"status":"failure"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nowstream_servicenow::table::{ErrorBody, ErrorResponse};

use crate::store::StoreError;

/// Message ServiceNow sends when a list query runs past the transaction quota.
pub const TRANSACTION_CANCELLED: &str = "Transaction cancelled: maximum execution time exceeded";
/// Detail sent with [`TRANSACTION_CANCELLED`].
pub const TRANSACTION_CANCELLED_DETAIL: &str = "Transaction cancelled: maximum execution time exceeded Check logs for error trace or enable glide.rest.debug property to verify REST request processing";

/// The error body as a value.
pub fn error_body(message: &str, detail: Option<&str>) -> ErrorResponse {
    ErrorResponse {
        error: ErrorBody {
            message: message.to_owned(),
            detail: detail.map(str::to_owned),
        },
        status: "failure".to_owned(),
    }
}

/// An error response in ServiceNow's shape.
pub fn sn_error(status: StatusCode, message: &str, detail: Option<&str>) -> Response {
    (status, Json(error_body(message, detail))).into_response()
}

/// 401 for a missing or rejected `Authorization`.
pub fn not_authenticated() -> Response {
    let mut response = sn_error(
        StatusCode::UNAUTHORIZED,
        "User Not Authenticated",
        Some("Required to provide Auth information"),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("BASIC realm=\"Service-now\""),
    );
    response
}

/// 400 for a table the instance does not have.
pub fn invalid_table(table: &str) -> Response {
    sn_error(
        StatusCode::BAD_REQUEST,
        &format!("Invalid table {table}"),
        None,
    )
}

/// 404 for a record that does not exist.
pub fn no_record() -> Response {
    sn_error(
        StatusCode::NOT_FOUND,
        "No Record found",
        Some("Record doesn't exist or ACL restricts the record retrieval"),
    )
}

/// 403 for a table the user's ACLs do not let it read.
pub fn read_denied() -> Response {
    sn_error(
        StatusCode::FORBIDDEN,
        "Insufficient rights to query records",
        Some("Field(s) present in the query do not have permission to be read"),
    )
}

/// 400 for a request body that is not a JSON object.
pub fn bad_payload(detail: &str) -> Response {
    sn_error(
        StatusCode::BAD_REQUEST,
        "Exception while reading request",
        Some(detail),
    )
}

/// The response for a failed store operation.
pub fn store_error(err: &StoreError) -> Response {
    match err {
        StoreError::UnknownTable { table } => invalid_table(table),
        StoreError::NotFound { .. } => no_record(),
        StoreError::ReadOnly { .. } => sn_error(
            StatusCode::FORBIDDEN,
            "Operation Failed",
            Some("ACL Exception Insert Failed due to security constraints"),
        ),
        StoreError::Duplicate { .. }
        | StoreError::BadSysId { .. }
        | StoreError::NotAnObject { .. } => sn_error(
            StatusCode::BAD_REQUEST,
            "Operation Failed",
            Some(&err.to_string()),
        ),
    }
}
