//! The HTTP side: the receiver's ingestion endpoint and what its answers mean for a batch.

use std::time::{Duration, SystemTime};

use nowstream_model::error_chain;
use nowstream_runtime::{SeiConfig, SinkConfig};
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::SinkError;
use crate::backoff::parse_retry_after;
use crate::delivery::{Answer, NamedRecord, RefusalReason, Transport};
use crate::record::Target;
use crate::request::IngestRequest;

/// Longest error text from SEI kept for logs and DLQ headers.
const MAX_DETAIL_CHARS: usize = 500;

/// A client of one tenant's ingestion endpoint on the receiver.
///
/// The API key lives only inside the `Authorization` header value, which is marked
/// sensitive so that neither reqwest nor this type's `Debug` shows it.
#[derive(Clone)]
pub struct SeiClient {
    http: reqwest::Client,
    base: Url,
    tenant: String,
    authorization: HeaderValue,
    /// Only to mask it in error texts that echo it.
    api_key: SecretString,
}

impl std::fmt::Debug for SeiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeiClient")
            .field("url", &self.display_url())
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl SeiClient {
    /// A client for `sei`, with the sink's request timeout.
    pub fn new(sei: &SeiConfig, sink: &SinkConfig) -> Result<Self, SinkError> {
        let mut base = Url::parse(&sei.url).map_err(|error| SinkError::SeiUrl {
            url: "(unparseable)".into(),
            reason: error.to_string(),
        })?;
        if base.path_segments_mut().is_err() || base.host_str().is_none() {
            return Err(SinkError::SeiUrl {
                url: without_credentials(&base),
                reason: "not a hierarchical http(s) URL with a host".into(),
            });
        }
        if !matches!(base.scheme(), "http" | "https") {
            return Err(SinkError::SeiUrl {
                url: without_credentials(&base),
                reason: "must be http or https".into(),
            });
        }
        if !base.username().is_empty() || base.password().is_some() {
            // Kept out so that no URL the sink logs or reports can carry a secret.
            return Err(SinkError::SeiUrl {
                url: without_credentials(&base),
                reason: "must not contain credentials; the API key goes in sei.api_key".into(),
            });
        }
        // Keep the base free of a query or fragment: only path segments are appended.
        base.set_query(None);
        base.set_fragment(None);
        let mut authorization =
            HeaderValue::from_str(&format!("Apikey {}", sei.api_key.expose_secret()))
                .map_err(|_| SinkError::ApiKeyNotAHeader)?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(sink.request_timeout)
            .connect_timeout(sink.request_timeout)
            .build()
            .map_err(SinkError::HttpClient)?;
        Ok(Self {
            http,
            base,
            tenant: sei.tenant.clone(),
            authorization,
            api_key: sei.api_key.clone(),
        })
    }

    /// The base URL without user info: safe for logs.
    pub fn display_url(&self) -> String {
        without_credentials(&self.base)
    }

    /// The tenant the client writes to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// `{base}/v1/ingest/servicenow/{integration_id}/{entity}`, each segment escaped.
    pub fn ingest_url(&self, target: &Target) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend([
                "v1",
                "ingest",
                "servicenow",
                target.integration_id.as_str(),
                target.entity.api_path(),
            ]);
        }
        url
    }

    async fn post(&self, target: &Target, request: &IngestRequest) -> Answer {
        let mut builder = self
            .http
            .post(self.ingest_url(target))
            .header(AUTHORIZATION, self.authorization.clone())
            .header("X-Tenant", &self.tenant)
            .header("Idempotency-Key", &request.idempotency_key)
            .header(CONTENT_TYPE, "application/json")
            .body(request.body.clone());
        if request.gzip {
            builder = builder.header(CONTENT_ENCODING, "gzip");
        }
        match builder.send().await {
            Ok(response) => classify(response, self.api_key.expose_secret()).await,
            Err(error) => {
                let status = if error.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                };
                Answer::Retry {
                    status: status.into(),
                    retry_after: None,
                    // Names the URL, which holds no credentials (they travel in a header).
                    detail: error_chain(&error),
                }
            }
        }
    }
}

impl Transport for SeiClient {
    async fn ingest(&self, target: &Target, request: &IngestRequest) -> Answer {
        self.post(target, request).await
    }
}

/// The contract's error code of a 400 that blames one record (named by `record_index`, or by
/// `field` = `deletes[<n>]` for a delete).
const BAD_RECORD: &str = "bad_record";

/// Characters of a body that is not the contract's error kept for the log and `/readyz`:
/// enough to recognise a proxy's or WAF's page, not enough to flood the log.
const MAX_FOREIGN_BODY_CHARS: usize = 200;

/// The contract's `Error` schema: `error` and `message` are required.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
    #[serde(default)]
    record_index: Option<usize>,
    #[serde(default)]
    field: Option<String>,
}

impl ErrorBody {
    /// The body as the contract's error, when it is one: JSON content and the required
    /// fields. Anything else (an HTML page from a proxy, a gateway's own JSON) is not SEI
    /// talking about the batch.
    fn parse(content_type: Option<&str>, text: &str) -> Option<Self> {
        let is_json = content_type.is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json")
        });
        if !is_json {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// The record this error blames, if it names one the contract's way.
    fn named_record(&self) -> Option<NamedRecord> {
        if self.error != BAD_RECORD {
            return None;
        }
        if let Some(index) = self.record_index {
            return Some(NamedRecord::Upsert(index));
        }
        let index = self
            .field
            .as_deref()?
            .strip_prefix("deletes[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        Some(NamedRecord::Delete(index))
    }
}

async fn classify(response: Response, api_key: &str) -> Answer {
    let status = response.status();
    if status.is_success() {
        return Answer::Accepted;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // A body that cannot be read is no reason to lose the status.
    let text = response.text().await.unwrap_or_default();
    redacted(
        answer(status, content_type.as_deref(), retry_after, &text),
        api_key,
    )
}

/// What a non-2xx answer means for the batch.
///
/// Only a 400 in the contract's error shape that names a record is a bad record. Any other
/// 400 (not JSON, a proxy's or WAF's page, an unknown code, a contract error naming no
/// record) is not about one record: splitting would dead-letter good records one by one, so
/// it refuses the batch instead, like 401 and 403.
fn answer(
    status: StatusCode,
    content_type: Option<&str>,
    retry_after: Option<Duration>,
    text: &str,
) -> Answer {
    let body = ErrorBody::parse(content_type, text);
    let detail = describe(status, content_type, body.as_ref(), text);
    match status {
        StatusCode::BAD_REQUEST => match body.as_ref() {
            Some(body) => match body.named_record() {
                Some(record) => Answer::Rejected { detail, record },
                None => Answer::Refused {
                    status: status.as_u16(),
                    detail,
                    reason: RefusalReason::ContractBadRequest,
                },
            },
            None => Answer::Refused {
                status: status.as_u16(),
                detail,
                reason: RefusalReason::ForeignBadRequest,
            },
        },
        StatusCode::PAYLOAD_TOO_LARGE => Answer::TooLarge { detail },
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Answer::Retry {
            status: status.as_u16().to_string(),
            retry_after,
            detail,
        },
        status if status.is_server_error() => Answer::Retry {
            status: status.as_u16().to_string(),
            retry_after,
            detail,
        },
        StatusCode::UNAUTHORIZED => Answer::Refused {
            status: status.as_u16(),
            detail,
            reason: RefusalReason::Unauthorized,
        },
        StatusCode::FORBIDDEN => Answer::Refused {
            status: status.as_u16(),
            detail,
            reason: RefusalReason::Forbidden,
        },
        status => Answer::Refused {
            status: status.as_u16(),
            detail,
            reason: RefusalReason::UnexpectedStatus,
        },
    }
}

/// `403 forbidden: <message>`; for a body that is not the contract's error, its content type
/// and first characters (escaped), so an operator can tell a proxy's page from SEI.
fn describe(
    status: StatusCode,
    content_type: Option<&str>,
    body: Option<&ErrorBody>,
    text: &str,
) -> String {
    let message = match body {
        Some(body) => format!("{}: {}", body.error, body.message),
        None => {
            let start: String = text.trim().chars().take(MAX_FOREIGN_BODY_CHARS).collect();
            let more = if text.trim().chars().count() > MAX_FOREIGN_BODY_CHARS {
                "…"
            } else {
                ""
            };
            let content_type = content_type.unwrap_or("no content type");
            if start.is_empty() {
                format!("(not the contract's error: {content_type}, empty body)")
            } else {
                format!("(not the contract's error: {content_type}, body starts {start:?}{more})")
            }
        }
    };
    let message: String = message.chars().take(MAX_DETAIL_CHARS).collect();
    format!("{} {message}", status.as_u16())
}

/// The answer with every copy of the API key in its text masked: a gateway's error page
/// may echo request headers, and details go to logs, `/readyz` and DLQ headers.
fn redacted(answer: Answer, api_key: &str) -> Answer {
    if api_key.is_empty() {
        return answer;
    }
    let mask = |detail: String| detail.replace(api_key, "[redacted]");
    match answer {
        Answer::Accepted => Answer::Accepted,
        Answer::Retry {
            status,
            retry_after,
            detail,
        } => Answer::Retry {
            status,
            retry_after,
            detail: mask(detail),
        },
        Answer::TooLarge { detail } => Answer::TooLarge {
            detail: mask(detail),
        },
        Answer::Rejected { detail, record } => Answer::Rejected {
            detail: mask(detail),
            record,
        },
        Answer::Refused {
            status,
            detail,
            reason,
        } => Answer::Refused {
            status,
            detail: mask(detail),
            reason,
        },
    }
}

fn without_credentials(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use nowstream_model::Entity;
    use secrecy::SecretString;

    use super::*;

    fn sei(url: &str) -> SeiConfig {
        SeiConfig {
            url: url.into(),
            tenant: "acme".into(),
            api_key: SecretString::from("hunter2".to_owned()),
        }
    }

    #[test]
    fn the_ingest_url_extends_the_base_path_and_escapes_segments() {
        let client = SeiClient::new(
            &sei("https://app.example/gateway/sei/api/"),
            &SinkConfig::default(),
        )
        .unwrap();
        let url = client.ingest_url(&Target {
            integration_id: "sn 1".into(),
            entity: Entity::ChangeRequest,
        });
        assert_eq!(
            url.as_str(),
            "https://app.example/gateway/sei/api/v1/ingest/servicenow/sn%201/change_requests"
        );
    }

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let client =
            SeiClient::new(&sei("https://app.example/api"), &SinkConfig::default()).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("https://app.example/api"), "{shown}");
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_echoing_them() {
        let error = SeiClient::new(
            &sei("https://user:pw@app.example/api"),
            &SinkConfig::default(),
        )
        .unwrap_err();
        let shown = error.to_string();
        assert!(matches!(error, SinkError::SeiUrl { .. }), "{shown}");
        assert!(!shown.contains("pw"), "{shown}");
    }

    #[test]
    fn an_api_key_that_cannot_be_a_header_is_refused_without_echoing_it() {
        let mut config = sei("https://app.example/api");
        config.api_key = SecretString::from("line\nsecretpart".to_owned());
        let error = SeiClient::new(&config, &SinkConfig::default()).unwrap_err();
        assert!(matches!(error, SinkError::ApiKeyNotAHeader), "{error}");
        assert!(!error.to_string().contains("secretpart"), "{error}");
    }

    #[test]
    fn urls_that_cannot_take_a_path_are_refused() {
        let error =
            SeiClient::new(&sei("mailto:sei@example.com"), &SinkConfig::default()).unwrap_err();
        assert!(matches!(error, SinkError::SeiUrl { .. }), "{error}");
    }

    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn each_status_leads_to_what_the_contract_says() {
        let retry = |status: u16| answer(StatusCode::from_u16(status).unwrap(), None, None, "");
        assert!(matches!(retry(503), Answer::Retry { status, .. } if status == "503"));
        assert!(matches!(retry(500), Answer::Retry { .. }));
        assert!(matches!(retry(408), Answer::Retry { .. }));
        assert!(matches!(retry(413), Answer::TooLarge { .. }));
        assert!(matches!(
            retry(401),
            Answer::Refused {
                status: 401,
                reason: RefusalReason::Unauthorized,
                ..
            }
        ));
        assert!(matches!(
            retry(403),
            Answer::Refused {
                status: 403,
                reason: RefusalReason::Forbidden,
                ..
            }
        ));
        assert!(matches!(
            retry(404),
            Answer::Refused {
                status: 404,
                reason: RefusalReason::UnexpectedStatus,
                ..
            }
        ));
        assert_eq!(
            answer(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some(Duration::from_secs(7)),
                ""
            ),
            Answer::Retry {
                status: "429".into(),
                retry_after: Some(Duration::from_secs(7)),
                detail: "429 (not the contract's error: no content type, empty body)".into(),
            }
        );
    }

    #[test]
    fn only_a_contract_error_that_names_a_record_rejects_a_record() {
        let bad_record = r#"{"error":"bad_record","message":"upserts[3]: bad","record_index":3}"#;
        assert_eq!(
            answer(StatusCode::BAD_REQUEST, JSON, None, bad_record),
            Answer::Rejected {
                detail: "400 bad_record: upserts[3]: bad".into(),
                record: NamedRecord::Upsert(3),
            }
        );
        let bad_delete =
            r#"{"error":"bad_record","message":"deletes[2]: empty","field":"deletes[2]"}"#;
        assert!(matches!(
            answer(StatusCode::BAD_REQUEST, JSON, None, bad_delete),
            Answer::Rejected {
                record: NamedRecord::Delete(2),
                ..
            }
        ));
    }

    #[test]
    fn every_other_400_refuses_the_batch_instead_of_splitting_it() {
        let contract = |text: &str| answer(StatusCode::BAD_REQUEST, JSON, None, text);
        for text in [
            r#"{"error":"bad_batch","message":"not a batch"}"#,
            r#"{"error":"missing_idempotency_key","message":"missing"}"#,
            r#"{"error":"something_new","message":"?","record_index":1}"#,
            r#"{"error":"bad_record","message":"no index"}"#,
        ] {
            assert!(
                matches!(
                    contract(text),
                    Answer::Refused {
                        status: 400,
                        reason: RefusalReason::ContractBadRequest,
                        ..
                    }
                ),
                "{text}"
            );
        }
        let foreign = |content_type: Option<&str>, text: &str| {
            answer(StatusCode::BAD_REQUEST, content_type, None, text)
        };
        for (content_type, text) in [
            (
                Some("text/html"),
                "<html><body>Request blocked</body></html>",
            ),
            (None, ""),
            (JSON, "{\"message\":\"gateway says no\"}"),
            (JSON, "not json"),
            (
                Some("text/plain"),
                r#"{"error":"bad_record","message":"x","record_index":0}"#,
            ),
        ] {
            assert!(
                matches!(
                    foreign(content_type, text),
                    Answer::Refused {
                        status: 400,
                        reason: RefusalReason::ForeignBadRequest,
                        ..
                    }
                ),
                "{content_type:?} {text}"
            );
        }
    }

    #[test]
    fn a_foreign_body_is_described_by_its_content_type_and_first_characters() {
        let page = format!("<html>\n<title>Blocked</title>{}</html>", "x".repeat(500));
        let Answer::Refused { detail, .. } = answer(
            StatusCode::BAD_REQUEST,
            Some("text/html; charset=utf-8"),
            None,
            &page,
        ) else {
            panic!("refused");
        };
        assert!(
            detail.starts_with(
                "400 (not the contract's error: text/html; charset=utf-8, body starts \"<html>\\n<title>Blocked"
            ),
            "{detail}"
        );
        assert!(detail.ends_with("…)"), "{detail}");
        assert!(detail.len() < 400, "{detail}");
    }

    #[test]
    fn the_api_key_is_masked_in_any_error_text() {
        let echo = "<pre>Authorization: Apikey hunter2</pre>";
        let answer = redacted(
            answer(StatusCode::BAD_REQUEST, Some("text/html"), None, echo),
            "hunter2",
        );
        let Answer::Refused { detail, .. } = answer else {
            panic!("refused");
        };
        assert!(!detail.contains("hunter2"), "{detail}");
        assert!(detail.contains("[redacted]"), "{detail}");
    }

    #[test]
    fn details_prefer_the_contracts_error_fields() {
        let body = ErrorBody {
            error: "bad_record".into(),
            message: "upserts[2], field `x`: bad".into(),
            record_index: Some(2),
            field: None,
        };
        assert_eq!(
            describe(StatusCode::BAD_REQUEST, JSON, Some(&body), "ignored"),
            "400 bad_record: upserts[2], field `x`: bad"
        );
    }
}
