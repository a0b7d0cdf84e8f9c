//! Reading what the Table API sends back: paging headers and error objects.

use reqwest::header::{HeaderMap, LINK};
use serde_json::Value;

use crate::table::{ErrorBody, ErrorResponse};

/// `X-Total-Count`: rows matching the query, counted *before* row ACLs filter the page.
pub(crate) fn total_count(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-total-count")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the `Link` header offers a `rel="next"` page; `None` without a `Link` header.
pub(crate) fn has_next_link(headers: &HeaderMap) -> Option<bool> {
    let mut values = headers.get_all(LINK).iter().peekable();
    values.peek()?;
    Some(values.any(|value| {
        value
            .to_str()
            .is_ok_and(|text| link_relations(text).iter().any(|rel| rel == "next"))
    }))
}

/// Every relation type named in an RFC 8288 `Link` header value, lower-cased.
///
/// Targets are skipped as opaque `<…>` spans, so commas or semicolons inside URLs do not
/// confuse the split; quoted parameter values may contain commas too.
pub(crate) fn link_relations(value: &str) -> Vec<String> {
    let mut relations = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let after_target = &rest[open + close + 1..];
        let params_end = top_level_comma(after_target).unwrap_or(after_target.len());
        for param in after_target[..params_end].split(';') {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("rel") {
                let value = value.trim().trim_matches('"');
                relations.extend(value.split_ascii_whitespace().map(str::to_ascii_lowercase));
            }
        }
        rest = &after_target[params_end..];
    }
    relations
}

fn top_level_comma(text: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The `{"error": {...}, "status": "failure"}` object in a JSON body, if there is one.
/// ServiceNow sends it with error statuses, and also appends it to a 200 list response
/// whose transaction was cancelled halfway.
pub(crate) fn error_object(body: &Value) -> Option<ErrorBody> {
    let error = body.get("error")?;
    match serde_json::from_value::<ErrorBody>(error.clone()) {
        Ok(parsed) => Some(parsed),
        // An `error` that is not ServiceNow's shape (e.g. OAuth's string) still is an error.
        Err(_) => Some(ErrorBody {
            message: match error {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            detail: None,
        }),
    }
}

/// "Transaction cancelled: maximum execution time exceeded": the query ran past the
/// instance's REST transaction quota. A smaller page usually gets through.
pub(crate) fn is_transaction_cancelled(error: &ErrorBody) -> bool {
    const MARKER: &str = "maximum execution time exceeded";
    let mentions = |text: &str| text.to_ascii_lowercase().contains(MARKER);
    mentions(&error.message) || error.detail.as_deref().is_some_and(mentions)
}

/// A one-line account of an error body for error messages: ServiceNow's `message: detail`,
/// OAuth's `error: error_description`, else the start of the body as text. Callers scrub
/// secrets from the result.
pub(crate) fn error_text(body: &[u8]) -> String {
    if let Ok(response) = serde_json::from_slice::<ErrorResponse>(body) {
        return describe(&response.error);
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let field = |name: &str| value.get(name).and_then(Value::as_str);
        if let Some(error) = field("error") {
            return match field("error_description") {
                Some(description) => format!("{error}: {description}"),
                None => error.to_owned(),
            };
        }
        if let Some(error) = error_object(&value) {
            return describe(&error);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    }
}

/// `message: detail`, or the message alone.
pub(crate) fn describe(error: &ErrorBody) -> String {
    match error.detail.as_deref().filter(|d| !d.is_empty()) {
        Some(detail) => format!("{}: {detail}", error.message),
        None => error.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use serde_json::json;

    use super::*;

    #[test]
    fn link_relations_are_found_even_with_commas_in_urls() {
        let value = "<https://x/api/now/table/incident?sysparm_fields=a,b&sysparm_offset=0>;rel=\"first\",\
                     <https://x/api/now/table/incident?sysparm_fields=a,b&sysparm_offset=100>; rel=\"next\", \
                     <https://x/y>; title=\"a, b\"; rel=\"last prev\"";
        assert_eq!(link_relations(value), ["first", "next", "last", "prev"]);
    }

    #[test]
    fn next_link_presence_is_reported_only_with_a_link_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(has_next_link(&headers), None);
        headers.insert(LINK, HeaderValue::from_static("<https://x/a>;rel=\"last\""));
        assert_eq!(has_next_link(&headers), Some(false));
        headers.append(LINK, HeaderValue::from_static("<https://x/b>;rel=next"));
        assert_eq!(has_next_link(&headers), Some(true));
    }

    #[test]
    fn total_count_reads_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(total_count(&headers), None);
        headers.insert("X-Total-Count", HeaderValue::from_static("2500"));
        assert_eq!(total_count(&headers), Some(2500));
    }

    #[test]
    fn a_cancelled_transaction_is_recognised_in_message_or_detail() {
        let body = json!({
            "result": [],
            "error": {"message": "Transaction cancelled: maximum execution time exceeded", "detail": null},
            "status": "failure"
        });
        let error = error_object(&body).unwrap();
        assert!(is_transaction_cancelled(&error));
        let other = ErrorBody {
            message: "Invalid table x".to_owned(),
            detail: None,
        };
        assert!(!is_transaction_cancelled(&other));
    }

    #[test]
    fn error_text_handles_servicenow_oauth_and_html_bodies() {
        assert_eq!(
            error_text(br#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#),
            "User Not Authenticated: Required to provide Auth information"
        );
        assert_eq!(
            error_text(br#"{"error_description":"access_denied","error":"server_error"}"#),
            "server_error: access_denied"
        );
        assert_eq!(
            error_text(b"<html>\n  <body>Instance hibernating</body></html>"),
            "<html> <body>Instance hibernating</body></html>"
        );
        assert_eq!(error_text(b""), "(empty body)");
    }
}
