//! Rules that span fields, checked once at start-up.
//!
//! Messages name the field path and never its value: a URL may carry credentials and
//! any string may be a secret typed under the wrong key.

use std::collections::HashMap;

use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;
use url::Url;

use super::Config;
use super::error::{Problem, ValidationErrors};
use super::integration::{AuthConfig, IntegrationConfig, OAuthConfig, OAuthGrant};
use super::kafka::RECORD_BATCH_FRAMING;
use super::secret::SecretScope;

/// The smallest `kafka.max_message_bytes`: room for a dead letter's headers and a useful value.
const MIN_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The largest: librdkafka's ceiling for `message.max.bytes`.
const MAX_MAX_MESSAGE_BYTES: usize = 1_000_000_000;

impl Config {
    /// Checks every cross-field rule and reports all broken ones together.
    ///
    /// Call it after [`merge_satellite`](Self::merge_satellite): the loaders do, because
    /// the satellite file may supply the integrations and the SEI target.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.validate_for(SecretScope::ALL)
    }

    /// Like [`validate`](Self::validate), but requires only the secrets of `scope`: the
    /// others are not read in this process (see [`SecretScope`]), so their absence is fine.
    pub fn validate_for(&self, scope: SecretScope) -> Result<(), ValidationErrors> {
        let mut problems = Vec::new();
        self.check_kafka(&mut problems);
        self.check_sei(scope, &mut problems);
        self.check_integrations(scope, &mut problems);
        self.check_telemetry(&mut problems);
        // Stage sections check themselves, so a bad value stops every process at start-up,
        // not only the stage that reads it.
        problems.extend(self.fetcher.problems());
        problems.extend(self.normalizer.problems());
        problems.extend(self.sink.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors::new(problems))
        }
    }

    fn check_kafka(&self, problems: &mut Vec<Problem>) {
        let servers = &self.kafka.bootstrap_servers;
        if servers.trim().is_empty() {
            problems.push(Problem::new(
                "kafka.bootstrap_servers",
                "must list at least one host:port",
            ));
        } else if servers.split(',').any(|server| server.trim().is_empty()) {
            problems.push(Problem::new(
                "kafka.bootstrap_servers",
                "has an empty entry between commas",
            ));
        }
        if self.kafka.properties.contains_key("bootstrap.servers") {
            problems.push(Problem::new(
                "kafka.properties.bootstrap.servers",
                "set kafka.bootstrap_servers instead, so there is one place for it",
            ));
        }
        self.check_topic_settings(problems);
    }

    /// Topic limits that Kafka or librdkafka would refuse, or that would let a producer
    /// accept records its topics refuse.
    fn check_topic_settings(&self, problems: &mut Vec<Problem>) {
        let kafka = &self.kafka;
        if !(MIN_MAX_MESSAGE_BYTES..=MAX_MAX_MESSAGE_BYTES).contains(&kafka.max_message_bytes) {
            problems.push(Problem::new(
                "kafka.max_message_bytes",
                format!(
                    "must be between {MIN_MAX_MESSAGE_BYTES} and {MAX_MAX_MESSAGE_BYTES} bytes"
                ),
            ));
        }
        let producer_limit = kafka
            .properties
            .get("message.max.bytes")
            .and_then(|value| value.expose_secret().trim().parse::<usize>().ok());
        if producer_limit.is_some_and(|limit| limit > kafka.producer_max_message_bytes()) {
            problems.push(Problem::new(
                "kafka.properties.message.max.bytes",
                format!(
                    "must be at most kafka.max_message_bytes less {RECORD_BATCH_FRAMING} bytes of \
                     batch framing ({}), or the topics refuse records the producer accepts; \
                     raise kafka.max_message_bytes instead",
                    kafka.producer_max_message_bytes()
                ),
            ));
        }
        for (key, retention) in [
            ("kafka.tombstone_retention", kafka.tombstone_retention),
            ("kafka.dlq_retention", kafka.dlq_retention),
        ] {
            if retention.as_millis() < 1 {
                problems.push(Problem::new(key, "must be at least 1ms"));
            }
        }
    }

    fn check_sei(&self, scope: SecretScope, problems: &mut Vec<Problem>) {
        let Some(sei) = &self.sei else {
            return;
        };
        match Url::parse(&sei.url) {
            Err(error) => problems.push(Problem::new("sei.url", format!("not a URL: {error}"))),
            Ok(url) if !matches!(url.scheme(), "https" | "http") => {
                problems.push(Problem::new("sei.url", "must be an http(s) URL"));
            }
            Ok(_) => {}
        }
        if sei.tenant.trim().is_empty() {
            problems.push(Problem::new("sei.tenant", "must not be empty"));
        }
        if scope.sei && sei.api_key.expose_secret().is_empty() {
            problems.push(Problem::new(
                "sei.api_key",
                "must not be empty (set api_key or api_key_file)",
            ));
        }
    }

    fn check_integrations(&self, scope: SecretScope, problems: &mut Vec<Problem>) {
        if self.integrations.is_empty() {
            problems.push(Problem::new(
                "integrations",
                "at least one ServiceNow integration is required (in the config or in satellite_file)",
            ));
        }
        let mut first_index_of_id: HashMap<&str, usize> = HashMap::new();
        for (index, integration) in self.integrations.iter().enumerate() {
            let at = |field: &str| format!("integrations[{index}].{field}");
            let id = integration.id.as_str();
            if id.trim().is_empty() {
                problems.push(Problem::new(at("id"), "must not be empty"));
            } else if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                problems.push(Problem::new(
                    at("id"),
                    "may contain only letters, digits, '-', '_' and '.', because it becomes \
                     part of Kafka keys (<id>:<sys_id>) and SEI URLs",
                ));
            } else if let Some(first) = first_index_of_id.get(id) {
                problems.push(Problem::new(
                    at("id"),
                    format!("duplicates integrations[{first}].id"),
                ));
            } else {
                first_index_of_id.insert(id, index);
            }
            check_instance_url(&at("url"), &integration.url, integration, problems);
            match &integration.auth {
                AuthConfig::Basic(basic) => {
                    if basic.username.trim().is_empty() {
                        problems.push(Problem::new(at("auth.username"), "must not be empty"));
                    }
                    if scope.servicenow && basic.password.expose_secret().is_empty() {
                        problems.push(Problem::new(
                            at("auth.password"),
                            "must not be empty (set password or password_file)",
                        ));
                    }
                }
                AuthConfig::Oauth(oauth) => {
                    check_oauth(&at("auth"), oauth, integration, scope, problems);
                }
            }
            for (key, message) in integration.metadata.problems() {
                problems.push(Problem::new(
                    integration.metadata.key_path(index, key),
                    message,
                ));
            }
            for (field_index, field) in integration.exclude_fields.iter().enumerate() {
                if field.trim().is_empty() {
                    problems.push(Problem::new(
                        at(&format!("exclude_fields[{field_index}]")),
                        "must not be empty",
                    ));
                }
            }
        }
    }

    fn check_telemetry(&self, problems: &mut Vec<Problem>) {
        if let Err(error) = EnvFilter::builder().parse(&self.telemetry.log_level) {
            problems.push(Problem::new(
                "telemetry.log_level",
                format!("not a tracing filter: {error}"),
            ));
        }
    }
}

/// Instance and token URLs: parseable, with a host, and `https` unless the integration
/// explicitly allows plain HTTP (credentials would travel in clear text).
fn check_instance_url(
    path: &str,
    raw: &str,
    integration: &IntegrationConfig,
    problems: &mut Vec<Problem>,
) {
    let url = match Url::parse(raw) {
        Ok(url) => url,
        Err(error) => {
            problems.push(Problem::new(path, format!("not a URL: {error}")));
            return;
        }
    };
    match url.scheme() {
        "https" => {}
        "http" if integration.allow_http => {}
        "http" => problems.push(Problem::new(
            path,
            "must use https (set allow_http = true only for local test instances)",
        )),
        _ => problems.push(Problem::new(path, "must be an https URL")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push(Problem::new(path, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.push(Problem::new(
            path,
            "must not contain credentials; put them under auth",
        ));
    }
}

fn check_oauth(
    auth: &str,
    oauth: &OAuthConfig,
    integration: &IntegrationConfig,
    scope: SecretScope,
    problems: &mut Vec<Problem>,
) {
    let at = |field: &str| format!("{auth}.{field}");
    if oauth.client_id.trim().is_empty() {
        problems.push(Problem::new(at("client_id"), "must not be empty"));
    }
    if scope.servicenow && oauth.client_secret.expose_secret().is_empty() {
        problems.push(Problem::new(
            at("client_secret"),
            "must not be empty (set client_secret or client_secret_file)",
        ));
    }
    match oauth.grant {
        OAuthGrant::Password => {
            if oauth
                .username
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
            {
                problems.push(Problem::new(
                    at("username"),
                    "required by grant = \"password\"",
                ));
            }
            if scope.servicenow
                && oauth
                    .password
                    .as_ref()
                    .is_none_or(|p| p.expose_secret().is_empty())
            {
                problems.push(Problem::new(
                    at("password"),
                    "required by grant = \"password\" (set password or password_file)",
                ));
            }
        }
        OAuthGrant::RefreshToken | OAuthGrant::AuthorizationCode => {
            if oauth.refresh_token_file.is_none() {
                problems.push(Problem::new(
                    at("refresh_token_file"),
                    "required by grant = \"refresh_token\" and \"authorization_code\": it holds the refresh token",
                ));
            }
        }
        OAuthGrant::ClientCredentials => {}
    }
    if let Some(token_url) = &oauth.token_url {
        check_instance_url(&at("token_url"), token_url, integration, problems);
    }
}
