//! One HTTP exchange with the instance: the shared connection pool, the per-instance
//! concurrency limit, and the translation of network failures into retryable causes.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::SecretString;
use tokio::sync::Semaphore;

use nowstream_model::error_chain;

use super::config::{ClientConfig, proxy_secret};
use super::error::ClientError;
use super::redact::Redactor;
use super::retry::{Backoff, RetryPolicy, RetryReason, Transient};

/// Longest time spent establishing a connection, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, or its first `max_response_bytes` when `over_limit`.
    pub body: Vec<u8>,
    /// The body is larger than `max_response_bytes`: reading stopped there.
    pub over_limit: bool,
}

/// How an attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Trying again cannot help.
    Fatal(ClientError),
    /// Worth another attempt after a wait.
    Transient(Transient),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        Failure::Fatal(err)
    }
}

impl From<Transient> for Failure {
    fn from(transient: Transient) -> Self {
        Failure::Transient(transient)
    }
}

/// The pieces every request to one instance shares.
#[derive(Debug)]
pub(crate) struct Transport {
    pub http: reqwest::Client,
    /// Bounds requests in flight; a permit is held from sending until the body is read,
    /// never while sleeping between retries.
    limiter: Semaphore,
    pub retry: RetryPolicy,
    pub redactor: Redactor,
    /// Largest body read (see `ClientConfig::max_response_bytes`).
    pub max_response_bytes: u64,
}

impl Transport {
    /// Validates `config` and builds the HTTP client. `extra_secrets` are scrubbed from error
    /// text along with the configured ones.
    pub(crate) fn new(
        config: &ClientConfig,
        extra_secrets: Vec<SecretString>,
    ) -> Result<Self, ClientError> {
        config.validate()?;
        let mut secrets = config.auth.secrets();
        secrets.extend(proxy_secret(config.proxy.as_ref()));
        secrets.extend(extra_secrets);
        let redactor = Redactor::new(secrets);

        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(!config.allow_http)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(config.user_agent.clone())
            // An API call that redirects is going to a login page or another host; following
            // it would hide the real problem behind an HTML body, so 3xx is reported as is.
            .redirect(reqwest::redirect::Policy::none());
        for path in &config.extra_ca_certificates {
            let pem = std::fs::read(path).map_err(|e| ClientError::Build {
                reason: format!("cannot read CA certificate file {}: {e}", path.display()),
            })?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::Build {
                    reason: format!(
                        "CA certificate file {} is not PEM: {}",
                        path.display(),
                        error_chain(&e)
                    ),
                })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder = match &config.proxy {
            Some(proxy) => {
                let proxy =
                    reqwest::Proxy::all(proxy.as_str()).map_err(|e| ClientError::Build {
                        reason: format!("bad proxy: {}", redactor.clean(&error_chain(&e))),
                    })?;
                builder.proxy(proxy)
            }
            None => builder.no_proxy(),
        };
        let http = builder.build().map_err(|e| ClientError::Build {
            reason: redactor.clean(&error_chain(&e)),
        })?;
        Ok(Transport {
            http,
            limiter: Semaphore::new(config.max_concurrency),
            retry: RetryPolicy {
                backoff: Backoff {
                    initial: config.initial_backoff,
                    max: config.max_backoff,
                },
                max_retries: config.max_retries,
                max_hinted_wait: config.max_rate_limit_wait,
                observer: config.retry_observer.clone(),
            },
            redactor,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Sends one request under the concurrency limit and reads the body, in chunks and at most
    /// `max_response_bytes` of it: a body announced or found larger is not read further, so
    /// one huge response cannot exhaust memory.
    pub(crate) async fn exchange(&self, request: RequestBuilder) -> Result<Exchange, Failure> {
        let _permit = self
            .limiter
            .acquire()
            .await
            .map_err(|_| ClientError::Closed)?;
        let response = request
            .send()
            .await
            .map_err(|e| self.network_failure(e, false))?;
        let status = response.status();
        let headers = response.headers().clone();
        let limit = usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX);
        if response
            .content_length()
            .is_some_and(|length| length > self.max_response_bytes)
        {
            return Ok(Exchange {
                status,
                headers,
                body: Vec::new(),
                over_limit: true,
            });
        }
        let mut response = response;
        // Sized from Content-Length when the server sends one (checked against the limit
        // above): a page grown by doubling would briefly hold up to three times its size.
        let announced = response
            .content_length()
            .and_then(|length| usize::try_from(length).ok())
            .unwrap_or(0);
        let mut body = Vec::with_capacity(announced.min(limit));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.network_failure(e, true))?
        {
            if body.len().saturating_add(chunk.len()) > limit {
                let room = limit.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..room]);
                return Ok(Exchange {
                    status,
                    headers,
                    body,
                    over_limit: true,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Exchange {
            status,
            headers,
            body,
            over_limit: false,
        })
    }

    fn network_failure(&self, err: reqwest::Error, reading_body: bool) -> Failure {
        let err = err.without_url();
        let detail = self.redactor.clean(&error_chain(&err));
        if err.is_builder() {
            return Failure::Fatal(ClientError::InvalidArgument {
                what: "request",
                reason: detail,
            });
        }
        let reason = if err.is_timeout() {
            RetryReason::Timeout
        } else if reading_body || err.is_body() || err.is_decode() {
            RetryReason::TruncatedBody
        } else {
            RetryReason::Connection
        };
        Failure::Transient(Transient::new(reason, detail))
    }
}
