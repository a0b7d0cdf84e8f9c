//! Loading the product configuration from files, text and the environment.

use std::path::{Path, PathBuf};

use nowstream_runtime::{
    AuthConfig, Config, ConfigError, ConfigLoader, Format, LogFormat, OAuthGrant,
};
use secrecy::ExposeSecret;

const MINIMAL_TOML: &str = r#"
[kafka]
bootstrap_servers = "file-broker:9092"
topic_prefix = "file."

[[integrations]]
id = "4711"
url = "https://acme.service-now.com"

[integrations.auth]
type = "basic"
username = "reader"
password = "from-file"
"#;

const MINIMAL_YAML: &str = r#"
kafka:
  bootstrap_servers: file-broker:9092
  topic_prefix: file.
integrations:
  - id: "4711"
    url: https://acme.service-now.com
    auth:
      type: basic
      username: reader
      password: from-file
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn basic_password(config: &Config, index: usize) -> String {
    match &config.integrations[index].auth {
        AuthConfig::Basic(basic) => basic.password.expose_secret().to_owned(),
        other => panic!("expected basic auth, got {other:?}"),
    }
}

fn invalid_key(error: ConfigError) -> (String, String, String) {
    match error {
        ConfigError::Invalid {
            origin,
            key,
            message,
        } => (origin, key, message),
        other => panic!("expected an invalid-key error, got {other}"),
    }
}

#[test]
fn toml_file_values_are_overridden_by_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "nowstream.toml", MINIMAL_TOML);
    let config = ConfigLoader::new()
        .file(&path)
        .env_vars([
            ("NOWSTREAM__KAFKA__BOOTSTRAP_SERVERS", "env-broker:9092"),
            ("NOWSTREAM__INTEGRATIONS__0__AUTH__PASSWORD", "from-env"),
            ("NOWSTREAM__TELEMETRY__LOG_FORMAT", "json"),
            ("UNRELATED", "ignored"),
        ])
        .load()
        .unwrap();
    assert_eq!(config.kafka.bootstrap_servers, "env-broker:9092");
    assert_eq!(
        config.kafka.topic_prefix, "file.",
        "untouched keys keep the file's value"
    );
    assert_eq!(basic_password(&config, 0), "from-env");
    assert_eq!(
        config.integrations[0].id, "4711",
        "the list entry is amended, not replaced"
    );
    assert_eq!(config.telemetry.log_format, LogFormat::Json);
}

#[test]
fn yaml_file_values_are_overridden_by_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "nowstream.yaml", MINIMAL_YAML);
    let config = ConfigLoader::new()
        .file(&path)
        .env_vars([
            ("NOWSTREAM__KAFKA__BOOTSTRAP_SERVERS", "env-broker:9092"),
            ("NOWSTREAM__INTEGRATIONS__0__ALLOW_HTTP", "true"),
            ("NOWSTREAM__HTTP__LISTEN", "127.0.0.1:9191"),
        ])
        .load()
        .unwrap();
    assert_eq!(config.kafka.bootstrap_servers, "env-broker:9092");
    assert_eq!(config.kafka.topic_prefix, "file.");
    assert_eq!(basic_password(&config, 0), "from-file");
    assert!(config.integrations[0].allow_http);
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9191");
}

#[test]
fn yml_extension_is_read_as_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "nowstream.yml", MINIMAL_YAML);
    let config = ConfigLoader::new().file(&path).load().unwrap();
    assert_eq!(config.kafka.bootstrap_servers, "file-broker:9092");
}

#[test]
fn kafka_properties_are_set_from_the_environment_with_dotted_names() {
    let config = ConfigLoader::new()
        .text(MINIMAL_TOML, Format::Toml)
        .env_vars([
            ("NOWSTREAM__KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret"),
            (
                "NOWSTREAM__KAFKA__PROPERTIES__SECURITY_PROTOCOL",
                "SASL_SSL",
            ),
        ])
        .load()
        .unwrap();
    let properties = &config.kafka.properties;
    assert_eq!(properties["sasl.password"].expose_secret(), "s3cret");
    assert_eq!(properties["security.protocol"].expose_secret(), "SASL_SSL");
}

#[test]
fn environment_alone_can_configure_everything() {
    let config = ConfigLoader::new()
        .env_vars([
            ("NOWSTREAM__KAFKA__BOOTSTRAP_SERVERS", "broker:9092"),
            ("NOWSTREAM__INTEGRATIONS__0__ID", "4711"),
            (
                "NOWSTREAM__INTEGRATIONS__0__URL",
                "https://acme.service-now.com",
            ),
            ("NOWSTREAM__INTEGRATIONS__0__AUTH__TYPE", "oauth"),
            ("NOWSTREAM__INTEGRATIONS__0__AUTH__CLIENT_ID", "client"),
            ("NOWSTREAM__INTEGRATIONS__0__AUTH__CLIENT_SECRET", "secret"),
            (
                "NOWSTREAM__INTEGRATIONS__0__AUTH__GRANT",
                "client_credentials",
            ),
            ("NOWSTREAM__INTEGRATIONS__0__EXCLUDE_FIELDS__0", "caller_id"),
            ("NOWSTREAM__INTEGRATIONS__0__EXCLUDE_FIELDS__1", "u_notes"),
            ("NOWSTREAM__SEI__URL", "https://sei.example"),
            ("NOWSTREAM__SEI__TENANT", "acme"),
            ("NOWSTREAM__SEI__API_KEY", "key"),
        ])
        .load()
        .unwrap();
    let integration = &config.integrations[0];
    assert_eq!(integration.exclude_fields, ["caller_id", "u_notes"]);
    match &integration.auth {
        AuthConfig::Oauth(oauth) => assert_eq!(oauth.grant, OAuthGrant::ClientCredentials),
        other => panic!("expected oauth, got {other:?}"),
    }
    assert_eq!(config.sei.as_ref().unwrap().tenant, "acme");
}

#[test]
fn unknown_key_in_the_file_is_named_with_its_full_path_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL_TOML.replace("bootstrap_servers", "bootstrapp_servers");
    let path = write(dir.path(), "nowstream.toml", &text);
    let error = ConfigLoader::new().file(&path).load().unwrap_err();
    let rendered = error.to_string();
    let (origin, key, _) = invalid_key(error);
    assert_eq!(key, "kafka.bootstrapp_servers");
    assert!(origin.contains(&path.display().to_string()), "{rendered}");
    assert!(rendered.contains("kafka.bootstrapp_servers"), "{rendered}");
}

#[test]
fn unknown_key_in_a_list_entry_is_named_with_its_index() {
    let text = MINIMAL_TOML.replace("allow_http", "x").replace(
        "url = \"https://acme.service-now.com\"",
        "url = \"https://acme.service-now.com\"\nallow_htp = true",
    );
    let (_, key, _) = invalid_key(Config::parse(&text, Format::Toml).unwrap_err());
    assert_eq!(key, "integrations[0].allow_htp");
}

#[test]
fn unknown_key_inside_the_auth_section_is_named() {
    let text = MINIMAL_TOML.replace("password = ", "pasword = ");
    let (_, key, message) = invalid_key(Config::parse(&text, Format::Toml).unwrap_err());
    assert!(key.starts_with("integrations[0].auth"), "{key}");
    assert!(
        key.ends_with("pasword") || message.contains("pasword"),
        "{key}: {message}"
    );
}

#[test]
fn unknown_key_from_the_environment_names_the_variable() {
    let error = ConfigLoader::new()
        .text(MINIMAL_TOML, Format::Toml)
        .env_vars([("NOWSTREAM__KAFKA__BOOTSTRAPP_SERVERS", "broker:9092")])
        .load()
        .unwrap_err();
    let (origin, key, _) = invalid_key(error);
    assert_eq!(key, "kafka.bootstrapp_servers");
    assert!(
        origin.contains("NOWSTREAM__KAFKA__BOOTSTRAPP_SERVERS"),
        "{origin}"
    );
}

#[test]
fn unknown_section_from_the_environment_is_rejected() {
    let error = ConfigLoader::new()
        .text(MINIMAL_TOML, Format::Toml)
        .env_vars([("NOWSTREAM__FETCHR__BATCH", "10")])
        .load()
        .unwrap_err();
    let (origin, key, _) = invalid_key(error);
    assert_eq!(key, "fetchr");
    assert!(origin.contains("NOWSTREAM__FETCHR__BATCH"), "{origin}");
}

#[test]
fn wrong_type_names_the_key_without_echoing_the_value() {
    let text = MINIMAL_TOML.replace(
        "url = \"https://acme.service-now.com\"",
        "url = \"https://acme.service-now.com\"\nallow_http = \"hunter2\"",
    );
    let error = Config::parse(&text, Format::Toml).unwrap_err();
    let rendered = error.to_string();
    assert!(!rendered.contains("hunter2"), "{rendered}");
    let (_, key, _) = invalid_key(error);
    assert_eq!(key, "integrations[0].allow_http");
}

#[test]
fn syntax_errors_name_the_file_and_position_but_not_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[sei]\nurl = \"https://sei.example\"\napi_key = \"hunter2\n";
    let path = write(dir.path(), "broken.toml", text);
    let error = ConfigLoader::new().file(&path).load().unwrap_err();
    let rendered = error.to_string();
    assert!(matches!(error, ConfigError::Syntax { .. }), "{rendered}");
    assert!(rendered.contains("broken.toml"), "{rendered}");
    assert!(rendered.contains("line 3"), "{rendered}");
    assert!(!rendered.contains("hunter2"), "{rendered}");
}

#[test]
fn a_missing_file_is_reported_with_its_path() {
    let error = Config::load("/nonexistent/nowstream.toml").unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error.to_string().contains("/nonexistent/nowstream.toml"),
        "{error}"
    );
}

#[test]
fn an_unknown_extension_is_rejected_before_guessing_the_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "nowstream.conf", MINIMAL_TOML);
    let error = ConfigLoader::new().file(&path).load().unwrap_err();
    assert!(
        matches!(error, ConfigError::UnsupportedFormat { .. }),
        "{error}"
    );
}

#[test]
fn defaults_fill_the_sections_that_are_left_out() {
    let config = Config::parse(MINIMAL_TOML, Format::Toml).unwrap();
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9090");
    assert_eq!(config.telemetry.log_format, LogFormat::Text);
    assert_eq!(config.telemetry.log_level, "info");
    assert!(config.sei.is_none());
    assert!(!config.integrations[0].allow_http);
}

#[test]
fn the_example_file_with_every_key_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nowstream.toml");
    let config = ConfigLoader::new().file(&path).load().unwrap();
    assert_eq!(config.integrations.len(), 2, "{config:?}");
    assert_eq!(config.kafka.properties.len(), 4);
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9090");
    let oauth = match &config.integrations[1].auth {
        AuthConfig::Oauth(oauth) => oauth,
        other => panic!("expected oauth, got {other:?}"),
    };
    assert_eq!(oauth.grant, OAuthGrant::Password);
    assert!(oauth.token_url.is_some() && oauth.refresh_token_file.is_some());
    // The example's explicit [sei] and integration 4711 win over its satellite file.
    assert_eq!(
        config.sei.as_ref().unwrap().url,
        "https://app.harness.io/gateway/sei/api"
    );
    assert_eq!(basic_password(&config, 0), "change-me");
}

#[test]
fn a_relative_satellite_file_is_found_next_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "satellite.yml",
        "satellite:\n  tenant: acme\n  api_key: k\n  url: https://sei.example\nintegrations:\n  - id: \"9\"\n    url: https://nine.service-now.com\n    username: u\n    application: servicenow\n    api_key: p\n",
    );
    let path = write(
        dir.path(),
        "nowstream.toml",
        "satellite_file = \"satellite.yml\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n",
    );
    let config = ConfigLoader::new().file(&path).load().unwrap();
    assert_eq!(config.integrations.len(), 1);
    assert_eq!(config.integrations[0].id, "9");
    assert_eq!(config.sei.unwrap().tenant, "acme");
}

#[test]
fn a_missing_satellite_file_is_reported_with_its_resolved_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "nowstream.toml",
        "satellite_file = \"gone.yml\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n",
    );
    let error = ConfigLoader::new().file(&path).load().unwrap_err();
    let rendered = error.to_string();
    assert!(rendered.contains("satellite file"), "{rendered}");
    assert!(
        rendered.contains(&dir.path().join("gone.yml").display().to_string()),
        "{rendered}"
    );
}

#[test]
fn the_fetcher_section_takes_durations_and_numbers_from_file_and_environment() {
    let text = format!(
        "{MINIMAL_TOML}\n[fetcher]\npoll_interval = \"5m\"\nbackfill_since = \"2024-01-01T00:00:00Z\"\n"
    );
    let config = ConfigLoader::new()
        .text(&text, Format::Toml)
        .env_vars([
            ("NOWSTREAM__FETCHER__PAGE_SIZE", "250"),
            ("NOWSTREAM__FETCHER__OVERLAP", "30s"),
            ("NOWSTREAM__FETCHER__EXACTLY_ONCE", "true"),
        ])
        .load()
        .unwrap();
    let fetcher = &config.fetcher;
    assert_eq!(fetcher.poll_interval, std::time::Duration::from_secs(300));
    assert_eq!(fetcher.overlap, std::time::Duration::from_secs(30));
    assert_eq!(fetcher.page_size, 250);
    assert!(fetcher.exactly_once);
    assert_eq!(
        fetcher.backfill_since.map(|t| t.to_rfc3339()),
        Some("2024-01-01T00:00:00+00:00".to_owned())
    );
    assert_eq!(
        fetcher.group_id, "nowstream-fetcher",
        "unset keys keep defaults"
    );
}

#[test]
fn a_malformed_duration_names_the_fetcher_key() {
    let text = format!("{MINIMAL_TOML}\n[fetcher]\npoll_interval = \"soon\"\n");
    let error = Config::parse(&text, Format::Toml).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("fetcher.poll_interval"), "{message}");
}
