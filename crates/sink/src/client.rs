//! The HTTP side: SEI's ingestion endpoint and what its answers mean for a batch.

use std::time::{Duration, SystemTime};

use nowstream_runtime::{SeiConfig, SinkConfig};
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use crate::SinkError;
use crate::backoff::parse_retry_after;
use crate::delivery::{Answer, Transport};
use crate::record::Target;
use crate::request::IngestRequest;

/// Longest error text from SEI kept for logs and DLQ headers.
const MAX_DETAIL_CHARS: usize = 500;

/// A client of one SEI tenant's ingestion API.
///
/// The API key lives only inside the `Authorization` header value, which is marked
/// sensitive so that neither reqwest nor this type's `Debug` shows it.
#[derive(Clone)]
pub struct SeiClient {
    http: reqwest::Client,
    base: Url,
    tenant: String,
    authorization: HeaderValue,
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
            Ok(response) => classify(response).await,
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
                    detail: with_causes(&error),
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

/// An error and its causes: reqwest's own message omits the cause ("connection refused").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// 400 codes of the contract that blame the request as a whole, not a record: the sink and
/// SEI disagree on the contract, which neither splitting nor the DLQ can fix.
const BATCH_LEVEL_400: [&str; 3] = ["bad_batch", "bad_body", "missing_idempotency_key"];

/// The contract's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    record_index: Option<usize>,
}

async fn classify(response: Response) -> Answer {
    let status = response.status();
    if status.is_success() {
        return Answer::Accepted;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    // A body that cannot be read is no reason to lose the status.
    let text = response.text().await.unwrap_or_default();
    answer(status, retry_after, &text)
}

/// What a non-2xx answer means for the batch.
fn answer(status: StatusCode, retry_after: Option<Duration>, text: &str) -> Answer {
    let body: ErrorBody = serde_json::from_str(text).unwrap_or_default();
    let detail = describe(status, &body, text);
    match status {
        StatusCode::BAD_REQUEST
            if body
                .error
                .as_deref()
                .is_some_and(|code| BATCH_LEVEL_400.contains(&code)) =>
        {
            Answer::Refused {
                status: status.as_u16(),
                detail,
            }
        }
        StatusCode::BAD_REQUEST => Answer::Rejected {
            detail,
            record_index: body.record_index,
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
        status => Answer::Refused {
            status: status.as_u16(),
            detail,
        },
    }
}

/// `403 forbidden: <message>`, or the start of a non-contract body.
fn describe(status: StatusCode, body: &ErrorBody, text: &str) -> String {
    let message = match (&body.error, &body.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) => message.clone(),
        (Some(code), None) => code.clone(),
        (None, None) => text.trim().to_owned(),
    };
    let message: String = message.chars().take(MAX_DETAIL_CHARS).collect();
    if message.is_empty() {
        format!("{status}")
    } else {
        format!("{} {message}", status.as_u16())
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

    #[test]
    fn each_status_leads_to_what_the_contract_says() {
        let retry = |status: u16| answer(StatusCode::from_u16(status).unwrap(), None, "");
        assert!(matches!(retry(503), Answer::Retry { status, .. } if status == "503"));
        assert!(matches!(retry(500), Answer::Retry { .. }));
        assert!(matches!(retry(408), Answer::Retry { .. }));
        assert!(matches!(retry(413), Answer::TooLarge { .. }));
        assert!(matches!(retry(401), Answer::Refused { status: 401, .. }));
        assert!(matches!(retry(403), Answer::Refused { status: 403, .. }));
        assert!(matches!(retry(404), Answer::Refused { status: 404, .. }));
        assert_eq!(
            answer(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(7)),
                ""
            ),
            Answer::Retry {
                status: "429".into(),
                retry_after: Some(Duration::from_secs(7)),
                detail: "429 Too Many Requests".into(),
            }
        );
    }

    #[test]
    fn a_bad_record_is_rejected_with_its_index_but_a_bad_envelope_is_refused() {
        let bad_record = r#"{"error":"bad_record","message":"upserts[3]: bad","record_index":3}"#;
        assert_eq!(
            answer(StatusCode::BAD_REQUEST, None, bad_record),
            Answer::Rejected {
                detail: "400 bad_record: upserts[3]: bad".into(),
                record_index: Some(3),
            }
        );
        let bad_batch = r#"{"error":"bad_batch","message":"not a batch"}"#;
        assert!(matches!(
            answer(StatusCode::BAD_REQUEST, None, bad_batch),
            Answer::Refused { status: 400, .. }
        ));
        assert!(matches!(
            answer(StatusCode::BAD_REQUEST, None, "<html>proxy says no</html>"),
            Answer::Rejected {
                record_index: None,
                ..
            }
        ));
    }

    #[test]
    fn details_prefer_the_contracts_error_fields() {
        let body = ErrorBody {
            error: Some("bad_record".into()),
            message: Some("upserts[2], field `x`: bad".into()),
            record_index: Some(2),
        };
        assert_eq!(
            describe(StatusCode::BAD_REQUEST, &body, "ignored"),
            "400 bad_record: upserts[2], field `x`: bad"
        );
        assert_eq!(
            describe(StatusCode::BAD_GATEWAY, &ErrorBody::default(), " <html> "),
            "502 <html>"
        );
    }
}
