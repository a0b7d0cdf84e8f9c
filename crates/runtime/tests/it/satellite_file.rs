//! SEI's satellite.yml, read exactly as SEI generates it.

use std::path::Path;

use nowstream_runtime::{AuthConfig, Config, ConfigError, ConfigLoader, Satellite};
use secrecy::ExposeSecret;

/// The file as SEI generates it.
const SEI_SATELLITE: &str = r#"satellite:
  tenant: acme
  api_key: <SEI_API_KEY>
  url: https://app.harness.io/gateway/sei/api
integrations:
  - id: "4711"
    url: https://acme.service-now.com
    username: sei.reader
    application: servicenow
    api_key: <SERVICENOW_PASSWORD>
"#;

fn load_with_satellite(dir: &Path, satellite: &str, config: &str) -> Result<Config, ConfigError> {
    std::fs::write(dir.join("satellite.yml"), satellite).unwrap();
    let config_path = dir.join("nowstream.toml");
    std::fs::write(
        &config_path,
        format!(
            "satellite_file = \"satellite.yml\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n{config}"
        ),
    )
    .unwrap();
    ConfigLoader::new().file(config_path).load()
}

#[test]
fn the_generated_file_yields_one_servicenow_integration_and_the_sei_target() {
    let dir = tempfile::tempdir().unwrap();
    let config = load_with_satellite(dir.path(), SEI_SATELLITE, "").unwrap();

    let sei = config.sei.as_ref().unwrap();
    assert_eq!(sei.url, "https://app.harness.io/gateway/sei/api");
    assert_eq!(sei.tenant, "acme");
    assert_eq!(sei.api_key.expose_secret(), "<SEI_API_KEY>");

    assert_eq!(config.integrations.len(), 1);
    let integration = &config.integrations[0];
    assert_eq!(integration.id, "4711");
    assert_eq!(integration.url, "https://acme.service-now.com");
    assert!(!integration.allow_http);
    match &integration.auth {
        AuthConfig::Basic(basic) => {
            assert_eq!(basic.username, "sei.reader");
            assert_eq!(basic.password.expose_secret(), "<SERVICENOW_PASSWORD>");
        }
        other => panic!("expected basic auth, got {other:?}"),
    }
}

#[test]
fn integrations_of_other_applications_are_skipped() {
    let with_jira = format!(
        "{SEI_SATELLITE}  - id: \"4712\"\n    url: https://acme.atlassian.net\n    username: bot\n    application: jira\n    api_key: <JIRA_TOKEN>\n  - id: \"4713\"\n    application: github\n    api_key: <GH_TOKEN>\n"
    );
    let satellite = Satellite::parse(&with_jira).unwrap();
    assert_eq!(satellite.integrations.len(), 1);
    assert_eq!(satellite.integrations[0].id, "4711");
}

#[test]
fn extra_keys_sei_may_add_are_tolerated() {
    let extended = r#"metadata:
  generated_by: sei
satellite:
  tenant: acme
  api_key: <SEI_API_KEY>
  url: https://app.harness.io/gateway/sei/api
  proxy:
    host: proxy.acme
    port: 3128
integrations:
  - id: 4711
    url: https://acme.service-now.com
    username: sei.reader
    application: ServiceNow
    api_key: <SERVICENOW_PASSWORD>
    authentication: basic
    metadata:
      timezone: UTC
"#;
    let satellite = Satellite::parse(extended).unwrap();
    assert_eq!(satellite.integrations.len(), 1);
    assert_eq!(
        satellite.integrations[0].id, "4711",
        "an unquoted id is read as text"
    );
    assert_eq!(satellite.sei.tenant, "acme");
}

#[test]
fn explicit_configuration_wins_over_the_satellite_file_on_id_clash() {
    let dir = tempfile::tempdir().unwrap();
    let own = r#"
[sei]
url = "http://sei-local:8080"
tenant = "dev"
api_key = "local"

[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
exclude_fields = ["caller_id"]
[integrations.auth]
type = "oauth"
client_id = "c"
client_secret = "s"
grant = "client_credentials"
"#;
    let config = load_with_satellite(dir.path(), SEI_SATELLITE, own).unwrap();
    assert_eq!(config.integrations.len(), 1);
    assert!(matches!(config.integrations[0].auth, AuthConfig::Oauth(_)));
    assert_eq!(config.integrations[0].exclude_fields, ["caller_id"]);
    assert_eq!(config.sei.unwrap().tenant, "dev");
}

#[test]
fn satellite_integrations_are_added_after_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let own = r#"
[[integrations]]
id = "1"
url = "https://one.service-now.com"
[integrations.auth]
type = "basic"
username = "u"
password = "p"
"#;
    let config = load_with_satellite(dir.path(), SEI_SATELLITE, own).unwrap();
    let ids: Vec<&str> = config.integrations.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["1", "4711"]);
}

#[test]
fn a_servicenow_entry_without_a_password_is_named_by_path_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let broken = SEI_SATELLITE.replace("    api_key: <SERVICENOW_PASSWORD>\n", "");
    let error = load_with_satellite(dir.path(), &broken, "").unwrap_err();
    let rendered = error.to_string();
    assert!(rendered.contains("integrations[0].api_key"), "{rendered}");
    assert!(rendered.contains("satellite.yml"), "{rendered}");
}

#[test]
fn a_satellite_file_without_its_satellite_section_is_rejected() {
    let error = Satellite::parse("integrations: []\n").unwrap_err();
    let rendered = error.to_string();
    assert!(rendered.contains("satellite"), "{rendered}");
}

#[test]
fn satellite_secrets_stay_out_of_debug_output() {
    let satellite = Satellite::parse(SEI_SATELLITE).unwrap();
    let debug = format!("{satellite:?}");
    assert!(!debug.contains("<SEI_API_KEY>"), "{debug}");
    assert!(!debug.contains("<SERVICENOW_PASSWORD>"), "{debug}");
}

#[test]
fn the_satellite_example_beside_the_config_example_is_the_generated_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/satellite.yml");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), SEI_SATELLITE);
    let satellite = Satellite::read(&path).unwrap();
    assert_eq!(satellite.integrations.len(), 1);
}

/// An integration entry with SEI's `metadata` block.
const SEI_SATELLITE_WITH_METADATA: &str = r#"satellite:
  tenant: acme
  api_key: <SEI_API_KEY>
  url: https://app.harness.io/gateway/sei/api
integrations:
  - id: "4711"
    url: https://acme.service-now.com
    username: sei.reader
    application: servicenow
    api_key: <SERVICENOW_PASSWORD>
    metadata:
      incident_query: category=network^NQpriority=1
      change_request_query: type!=emergency
      timezone: Europe/Berlin
      something_sei_adds_later: true
"#;

#[test]
fn the_metadata_block_supplies_the_filters_and_time_zone() {
    let satellite = Satellite::parse(SEI_SATELLITE_WITH_METADATA).unwrap();
    let metadata = &satellite.integrations[0].metadata;
    assert_eq!(
        metadata.incident_query.as_deref(),
        Some("category=network^NQpriority=1")
    );
    assert_eq!(
        metadata.change_request_query.as_deref(),
        Some("type!=emergency")
    );
    assert_eq!(metadata.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(
        metadata.query_for("incident"),
        Some("category=network^NQpriority=1")
    );
    assert_eq!(metadata.query_for("sys_user"), None);
}

#[test]
fn an_entry_without_metadata_filters_nothing() {
    let satellite = Satellite::parse(SEI_SATELLITE).unwrap();
    let metadata = &satellite.integrations[0].metadata;
    assert_eq!(metadata.filters().count(), 0);
    assert_eq!(metadata.timezone, None);
}

#[test]
fn a_bad_satellite_query_is_named_by_its_key_in_the_satellite_file() {
    let dir = tempfile::tempdir().unwrap();
    let ordering = SEI_SATELLITE_WITH_METADATA.replace(
        "change_request_query: type!=emergency",
        "change_request_query: type!=emergency^ORDERBYDESCnumber",
    );
    let error = load_with_satellite(dir.path(), &ordering, "").unwrap_err();
    let rendered = error.to_string();
    assert!(
        rendered.contains("integrations[0].metadata.change_request_query"),
        "{rendered}"
    );
    assert!(rendered.contains("satellite.yml"), "{rendered}");
    assert!(rendered.contains("ORDERBY"), "{rendered}");

    let unparsable = SEI_SATELLITE_WITH_METADATA.replace(
        "incident_query: category=network^NQpriority=1",
        "incident_query: category",
    );
    let rendered = load_with_satellite(dir.path(), &unparsable, "")
        .unwrap_err()
        .to_string();
    assert!(
        rendered.contains("integrations[0].metadata.incident_query"),
        "{rendered}"
    );
}

#[test]
fn a_satellite_integration_remembers_where_its_metadata_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = load_with_satellite(dir.path(), SEI_SATELLITE_WITH_METADATA, "").unwrap();
    let path = config.integrations[0]
        .metadata
        .key_path(0, "incident_query");
    assert!(path.contains("satellite.yml"), "{path}");
    assert!(
        path.ends_with("integrations[0].metadata.incident_query"),
        "{path}"
    );
}
