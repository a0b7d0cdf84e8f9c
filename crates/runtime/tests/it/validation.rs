//! Cross-field rules, and secrets kept out of everything printable.

use nowstream_runtime::{Config, ConfigError, Format, Problem, ValidationErrors};

fn problems(text: &str) -> Vec<Problem> {
    match Config::parse(text, Format::Toml) {
        Err(ConfigError::Validation(errors)) => errors.problems().to_vec(),
        Err(other) => panic!("expected validation problems, got {other}"),
        Ok(config) => panic!("expected validation problems, got {config:?}"),
    }
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

const BROKEN: &str = r#"
[kafka]
bootstrap_servers = ""

[sei]
url = "not a url"
tenant = "acme"
api_key = "sei-key-SECRET-1"

[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
password = "basic-SECRET-2"

[[integrations]]
id = "4711"
url = "http://plain.service-now.com"
[integrations.auth]
type = "oauth"
client_id = "client"
client_secret = "oauth-SECRET-3"
grant = "password"

[[integrations]]
id = ""
url = "https://user:url-SECRET-4@x.service-now.com"
[integrations.auth]
type = "oauth"
client_id = "client"
client_secret = "oauth-SECRET-5"
grant = "refresh_token"
token_url = "ftp://x.service-now.com/oauth_token.do"
"#;

const SECRETS: [&str; 5] = [
    "sei-key-SECRET-1",
    "basic-SECRET-2",
    "oauth-SECRET-3",
    "url-SECRET-4",
    "oauth-SECRET-5",
];

#[test]
fn every_broken_rule_is_reported_at_once_with_its_path() {
    let found = problems(BROKEN);
    assert_eq!(
        paths(&found),
        [
            "kafka.bootstrap_servers",
            "sei.url",
            "integrations[1].id",
            "integrations[1].url",
            "integrations[1].auth.username",
            "integrations[1].auth.password",
            "integrations[2].id",
            "integrations[2].url",
            "integrations[2].auth.refresh_token_file",
            "integrations[2].auth.token_url",
        ],
        "{found:#?}"
    );
    assert!(
        found[2].message.contains("integrations[0].id"),
        "{}",
        found[2]
    );
}

#[test]
fn plain_http_is_accepted_when_the_integration_allows_it() {
    let text = r#"
[kafka]
bootstrap_servers = "b:9092"
[[integrations]]
id = "sim"
url = "http://127.0.0.1:8080"
allow_http = true
[integrations.auth]
type = "basic"
username = "u"
password = "p"
"#;
    let config = Config::parse(text, Format::Toml).unwrap();
    assert!(config.integrations[0].allow_http);
}

#[test]
fn at_least_one_integration_is_required() {
    let found = problems("[kafka]\nbootstrap_servers = \"b:9092\"\n");
    assert_eq!(paths(&found), ["integrations"]);
}

#[test]
fn a_malformed_log_level_is_a_problem() {
    let text = r#"
[kafka]
bootstrap_servers = "b:9092"
[telemetry]
log_level = "info,[="
[[integrations]]
id = "1"
url = "https://one.service-now.com"
[integrations.auth]
type = "basic"
username = "u"
password = "p"
"#;
    assert_eq!(paths(&problems(text)), ["telemetry.log_level"]);
}

#[test]
fn secrets_never_appear_in_validation_errors() {
    let error = Config::parse(BROKEN, Format::Toml).unwrap_err();
    let rendered = format!("{error}\n{error:?}");
    for secret in SECRETS {
        assert!(!rendered.contains(secret), "{secret} leaked: {rendered}");
    }
}

#[test]
fn secrets_never_appear_in_debug_output_of_a_loaded_config() {
    let valid = BROKEN
        .replace("bootstrap_servers = \"\"", "bootstrap_servers = \"b:9092\"")
        .replace("not a url", "https://sei.example")
        .replace(
            "id = \"4711\"\nurl = \"http://",
            "id = \"4712\"\nurl = \"https://",
        )
        .replace("grant = \"password\"", "grant = \"client_credentials\"")
        .replace("id = \"\"", "id = \"4713\"")
        .replace("user:url-SECRET-4@", "")
        .replace(
            "grant = \"refresh_token\"",
            "grant = \"client_credentials\"",
        )
        .replace("ftp://", "https://")
        + "\n[kafka.properties]\n\"sasl.password\" = \"kafka-SECRET-6\"\n";
    let config = Config::parse(&valid, Format::Toml).unwrap();
    let debug = format!("{config:?}");
    for secret in SECRETS.iter().chain(&["kafka-SECRET-6"]) {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    assert!(debug.contains("REDACTED"));
}

#[test]
fn secrets_from_the_environment_never_appear_in_loader_debug_output() {
    let loader = nowstream_runtime::ConfigLoader::new()
        .text("[sei]\napi_key = \"text-SECRET-7\"", Format::Toml)
        .env_vars([("NOWSTREAM__SEI__API_KEY", "env-SECRET-8")]);
    let debug = format!("{loader:?}");
    assert!(!debug.contains("text-SECRET-7"), "{debug}");
    assert!(!debug.contains("env-SECRET-8"), "{debug}");
}

#[test]
fn validation_errors_render_as_a_list() {
    let errors: ValidationErrors = match Config::parse(BROKEN, Format::Toml) {
        Err(ConfigError::Validation(errors)) => errors,
        other => panic!("{other:?}"),
    };
    let rendered = errors.to_string();
    assert!(
        rendered.starts_with("invalid configuration (10 problems):"),
        "{rendered}"
    );
    assert!(
        rendered.contains("\n  - integrations[1].url: must use https"),
        "{rendered}"
    );
}

#[test]
fn stage_sections_are_checked_with_the_rest_of_the_config() {
    let text = r#"
[kafka]
bootstrap_servers = "b:9092"
[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
password = "pw"
[sink]
batch_max_records = 0
[normalizer]
group_id = " "
"#;
    let found = problems(text);
    let found = paths(&found);
    assert!(found.contains(&"sink.batch_max_records"), "{found:?}");
    assert!(found.contains(&"normalizer.group_id"), "{found:?}");
}

const WITH_METADATA: &str = r#"
[kafka]
bootstrap_servers = "b:9092"

[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
password = "pw"

[[integrations]]
id = "4712"
url = "https://acme-eu.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
password = "pw"
[integrations.metadata]
incident_query = "category=network^NQpriority=1"
change_request_query = "type!=emergency"
timezone = "Europe/Berlin"
"#;

#[test]
fn the_metadata_keys_are_read_per_integration_from_the_config_file() {
    let config = Config::parse(WITH_METADATA, Format::Toml).unwrap();
    assert_eq!(config.integrations[0].metadata.filters().count(), 0);
    let metadata = &config.integrations[1].metadata;
    assert_eq!(
        metadata.query_for("incident"),
        Some("category=network^NQpriority=1")
    );
    assert_eq!(
        metadata.query_for("change_request"),
        Some("type!=emergency")
    );
    assert_eq!(metadata.timezone.as_deref(), Some("Europe/Berlin"));
}

#[test]
fn an_unknown_metadata_key_is_refused() {
    let typo = WITH_METADATA.replace("timezone =", "time_zone =");
    let rendered = Config::parse(&typo, Format::Toml).unwrap_err().to_string();
    assert!(rendered.contains("time_zone"), "{rendered}");
}

#[test]
fn a_query_that_does_not_parse_or_orders_is_named_by_its_key() {
    let broken = WITH_METADATA
        .replace(
            "category=network^NQpriority=1",
            "category=network^ORDERBYnumber",
        )
        .replace("type!=emergency", "typeBETWEEN1@3");
    let found = problems(&broken);
    assert_eq!(
        paths(&found),
        [
            "integrations[1].metadata.incident_query",
            "integrations[1].metadata.change_request_query"
        ],
        "{found:?}"
    );
    assert!(found[0].message.contains("ORDERBY"), "{found:?}");
    assert!(found[1].message.contains("BETWEEN"), "{found:?}");
}

#[test]
fn a_blank_query_filters_nothing() {
    let blank = WITH_METADATA.replace("type!=emergency", "  ");
    let config = Config::parse(&blank, Format::Toml).unwrap();
    assert_eq!(
        config.integrations[1].metadata.query_for("change_request"),
        None
    );
}
