//! Secrets given as files (`*_file` keys, `kafka.property_files`, a secrets directory), read
//! only by the stage that uses them.

use std::path::{Path, PathBuf};

use nowstream_runtime::{
    AuthConfig, Config, ConfigError, ConfigLoader, Format, OAuthConfig, SecretScope,
};
use secrecy::ExposeSecret;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A config whose every secret is a file in `dir` (files not written here are missing).
fn config_with_files(dir: &Path) -> String {
    let at = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"
[kafka]
bootstrap_servers = "b:9092"
[kafka.property_files]
"sasl.password" = "{kafka}"

[sei]
url = "https://sei.example"
tenant = "acme"
api_key_file = "{sei}"

[[integrations]]
id = "basic"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
password_file = "{password}"

[[integrations]]
id = "oauth"
url = "https://acme-eu.service-now.com"
[integrations.auth]
type = "oauth"
client_id = "client"
client_secret_file = "{client_secret}"
grant = "password"
username = "reader"
password_file = "{oauth_password}"
"#,
        kafka = at("kafka"),
        sei = at("sei"),
        password = at("password"),
        client_secret = at("client_secret"),
        oauth_password = at("oauth_password"),
    )
}

fn write_every_secret(dir: &Path) {
    write(dir, "kafka", "kafka-secret\n");
    write(dir, "sei", "sei-secret\n");
    write(dir, "password", "basic-secret\n");
    write(dir, "client_secret", "client-secret\n");
    write(dir, "oauth_password", "oauth-password\n");
}

fn load(text: &str, scope: SecretScope) -> Result<Config, ConfigError> {
    ConfigLoader::new()
        .text(text, Format::Toml)
        .secret_scope(scope)
        .load()
}

fn basic_password(config: &Config) -> String {
    match &config.integrations[0].auth {
        AuthConfig::Basic(basic) => basic.password.expose_secret().to_owned(),
        other => panic!("expected basic auth, got {other:?}"),
    }
}

fn oauth(config: &Config) -> &OAuthConfig {
    match &config.integrations[1].auth {
        AuthConfig::Oauth(oauth) => oauth,
        other => panic!("expected oauth, got {other:?}"),
    }
}

fn sei_key(config: &Config) -> String {
    config
        .sei
        .as_ref()
        .unwrap()
        .api_key
        .expose_secret()
        .to_owned()
}

#[test]
fn every_secret_can_be_read_from_a_file_without_its_trailing_line_break() {
    let dir = tempfile::tempdir().unwrap();
    write_every_secret(dir.path());
    let config = load(&config_with_files(dir.path()), SecretScope::ALL).unwrap();
    assert_eq!(
        config.kafka.properties["sasl.password"].expose_secret(),
        "kafka-secret"
    );
    assert_eq!(sei_key(&config), "sei-secret");
    assert_eq!(basic_password(&config), "basic-secret");
    let oauth = oauth(&config);
    assert_eq!(oauth.client_secret.expose_secret(), "client-secret");
    assert_eq!(
        oauth
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_owned()),
        Some("oauth-password".to_owned())
    );
}

#[test]
fn only_one_trailing_line_break_is_removed_and_spaces_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_every_secret(dir.path());
    write(dir.path(), "password", " two lines \n\n");
    write(dir.path(), "sei", "windows\r\n");
    write(dir.path(), "kafka", "no-line-break");
    let config = load(&config_with_files(dir.path()), SecretScope::ALL).unwrap();
    assert_eq!(basic_password(&config), " two lines \n");
    assert_eq!(sei_key(&config), "windows");
    assert_eq!(
        config.kafka.properties["sasl.password"].expose_secret(),
        "no-line-break"
    );
}

#[test]
fn a_secret_given_both_inline_and_as_a_file_is_refused_naming_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_every_secret(dir.path());
    let text = config_with_files(dir.path());
    for (from, to, keys) in [
        (
            "password_file = ",
            "password = \"inline-SECRET\"\npassword_file = ",
            ["`password`", "`password_file`"],
        ),
        (
            "api_key_file = ",
            "api_key = \"inline-SECRET\"\napi_key_file = ",
            ["`api_key`", "`api_key_file`"],
        ),
        (
            "client_secret_file = ",
            "client_secret = \"inline-SECRET\"\nclient_secret_file = ",
            ["`client_secret`", "`client_secret_file`"],
        ),
        (
            "[kafka.property_files]",
            "[kafka.properties]\n\"sasl.password\" = \"inline-SECRET\"\n[kafka.property_files]",
            [
                "`properties.sasl.password`",
                "`property_files.sasl.password`",
            ],
        ),
    ] {
        let text = text.replacen(from, to, 1);
        let error = load(&text, SecretScope::ALL).expect_err(from);
        let message = error.to_string();
        assert!(
            matches!(error, ConfigError::Invalid { .. }),
            "{from}: {message}"
        );
        for key in keys {
            assert!(message.contains(key), "{key} not named: {message}");
        }
        assert!(message.contains("both set"), "{message}");
        assert!(!message.contains("inline-SECRET"), "{message}");
    }
}

#[test]
fn an_unreadable_or_empty_secret_file_is_an_error_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_every_secret(dir.path());
    std::fs::remove_file(dir.path().join("password")).unwrap();
    write(dir.path(), "sei", "");
    // A directory where a file should be: unreadable even for root.
    std::fs::remove_file(dir.path().join("client_secret")).unwrap();
    std::fs::create_dir(dir.path().join("client_secret")).unwrap();
    let error = load(&config_with_files(dir.path()), SecretScope::ALL).unwrap_err();
    let ConfigError::Validation(errors) = &error else {
        panic!("expected validation problems, got {error}");
    };
    let problems: Vec<(String, String)> = errors
        .problems()
        .iter()
        .map(|p| (p.path.clone(), p.message.clone()))
        .collect();
    let paths: Vec<&str> = problems.iter().map(|(path, _)| path.as_str()).collect();
    // Each once, at its `_file` key, and not again as an empty secret.
    assert_eq!(
        paths,
        [
            "sei.api_key_file",
            "integrations[0].auth.password_file",
            "integrations[1].auth.client_secret_file",
        ],
        "{error}"
    );
    for (path, message) in &problems {
        let file = path.rsplit('.').next().unwrap().trim_end_matches("_file");
        let file = if file == "api_key" { "sei" } else { file };
        assert!(
            message.contains(&dir.path().join(file).display().to_string()),
            "{path}: {message}"
        );
    }
    assert!(problems[0].1.contains("empty"), "{}", problems[0].1);
    let message = error.to_string();
    for secret in ["kafka-secret", "oauth-password"] {
        assert!(!message.contains(secret), "{message}");
    }
}

#[test]
fn each_stage_reads_only_its_own_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_with_files(dir.path());
    // Kafka's secret is every stage's.
    write(dir.path(), "kafka", "kafka-secret\n");

    let normalizer = load(&text, SecretScope::NORMALIZER).unwrap();
    assert_eq!(
        normalizer.kafka.properties["sasl.password"].expose_secret(),
        "kafka-secret"
    );
    assert_eq!(sei_key(&normalizer), "", "the SEI key is not read");
    assert_eq!(basic_password(&normalizer), "", "ServiceNow is not read");

    let missing = |scope| match load(&text, scope) {
        Err(ConfigError::Validation(errors)) => errors
            .problems()
            .iter()
            .map(|p| p.path.clone())
            .collect::<Vec<_>>(),
        other => panic!("expected missing secret files, got {other:?}"),
    };
    assert_eq!(missing(SecretScope::SINK), ["sei.api_key_file"]);
    assert_eq!(
        missing(SecretScope::FETCHER),
        [
            "integrations[0].auth.password_file",
            "integrations[1].auth.client_secret_file",
            "integrations[1].auth.password_file",
        ]
    );

    write(dir.path(), "sei", "sei-secret\n");
    let sink = load(&text, SecretScope::SINK).unwrap();
    assert_eq!(sei_key(&sink), "sei-secret");
    assert_eq!(basic_password(&sink), "");

    write(dir.path(), "password", "basic-secret\n");
    write(dir.path(), "client_secret", "client-secret\n");
    write(dir.path(), "oauth_password", "oauth-password\n");
    std::fs::remove_file(dir.path().join("sei")).unwrap();
    let fetcher = load(&text, SecretScope::FETCHER).unwrap();
    assert_eq!(basic_password(&fetcher), "basic-secret");
    assert_eq!(
        oauth(&fetcher).client_secret.expose_secret(),
        "client-secret"
    );
    assert_eq!(sei_key(&fetcher), "");

    // Without the Kafka secret no stage starts.
    std::fs::remove_file(dir.path().join("kafka")).unwrap();
    assert_eq!(
        missing(SecretScope::NORMALIZER),
        ["kafka.property_files.sasl.password"]
    );
}

#[test]
fn a_stage_that_does_not_read_a_secret_does_not_require_it() {
    let text = r#"
[kafka]
bootstrap_servers = "b:9092"
[sei]
url = "https://sei.example"
tenant = "acme"
[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
"#;
    load(text, SecretScope::NORMALIZER).unwrap();
    let problems = |scope| match load(text, scope) {
        Err(ConfigError::Validation(errors)) => errors.to_string(),
        other => panic!("expected a missing secret, got {other:?}"),
    };
    let fetcher = problems(SecretScope::FETCHER);
    assert!(
        fetcher.contains(
            "integrations[0].auth.password: must not be empty (set password or password_file)"
        ),
        "{fetcher}"
    );
    assert!(!fetcher.contains("sei.api_key"), "{fetcher}");
    let sink = problems(SecretScope::SINK);
    assert!(sink.contains("sei.api_key"), "{sink}");
    assert!(!sink.contains("password"), "{sink}");
}

#[test]
fn a_relative_secret_file_is_found_next_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    write(&dir.path().join("secrets"), "password", "relative-secret\n");
    let path = write(
        dir.path(),
        "nowstream.toml",
        r#"
[kafka]
bootstrap_servers = "b:9092"
[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
password_file = "secrets/password"
"#,
    );
    let config = ConfigLoader::new().file(&path).load().unwrap();
    assert_eq!(basic_password(&config), "relative-secret");
}

#[test]
fn file_keys_can_be_set_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let password = write(dir.path(), "password", "env-named-secret\n");
    let sasl = write(dir.path(), "sasl", "sasl-secret\n");
    let text = r#"
[kafka]
bootstrap_servers = "b:9092"
[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
"#;
    let config = ConfigLoader::new()
        .text(text, Format::Toml)
        .env_vars([
            (
                "NOWSTREAM__INTEGRATIONS__0__AUTH__PASSWORD_FILE",
                password.display().to_string(),
            ),
            (
                "NOWSTREAM__KAFKA__PROPERTY_FILES__SASL_PASSWORD",
                sasl.display().to_string(),
            ),
        ])
        .load()
        .unwrap();
    assert_eq!(basic_password(&config), "env-named-secret");
    assert_eq!(
        config.kafka.properties["sasl.password"].expose_secret(),
        "sasl-secret"
    );
}

#[test]
fn a_secrets_directory_sets_the_file_key_each_file_name_stands_for() {
    let secrets = tempfile::tempdir().unwrap();
    write(
        secrets.path(),
        "NOWSTREAM__INTEGRATIONS__0__AUTH__PASSWORD",
        "dir-password\n",
    );
    write(secrets.path(), "NOWSTREAM__SEI__API_KEY", "dir-sei-key\n");
    write(
        secrets.path(),
        "NOWSTREAM__KAFKA__PROPERTIES__SASL_PASSWORD",
        "dir-sasl\n",
    );
    // What a Kubernetes Secret volume holds besides its keys.
    std::fs::create_dir(secrets.path().join("..data")).unwrap();
    let text = r#"
[kafka]
bootstrap_servers = "b:9092"
[sei]
url = "https://sei.example"
tenant = "acme"
[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
"#;
    let config = ConfigLoader::new()
        .text(text, Format::Toml)
        .secrets_dir(secrets.path())
        .load()
        .unwrap();
    assert_eq!(basic_password(&config), "dir-password");
    assert_eq!(sei_key(&config), "dir-sei-key");
    assert_eq!(
        config.kafka.properties["sasl.password"].expose_secret(),
        "dir-sasl"
    );

    // A file that stands for a key with no `_file` sibling is refused, naming the file.
    write(
        secrets.path(),
        "NOWSTREAM__SEI__URL",
        "https://SECRET.example\n",
    );
    let error = ConfigLoader::new()
        .text(text, Format::Toml)
        .secrets_dir(secrets.path())
        .load()
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("NOWSTREAM__SEI__URL"), "{message}");
    assert!(message.contains("url_file"), "{message}");
    assert!(!message.contains("SECRET"), "{message}");
}

#[test]
fn a_missing_secrets_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let error = ConfigLoader::new()
        .text("[kafka]\nbootstrap_servers = \"b:9092\"\n", Format::Toml)
        .secrets_dir(&missing)
        .load()
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("secrets directory"), "{message}");
    assert!(message.contains("absent"), "{message}");
}
