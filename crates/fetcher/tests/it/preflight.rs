//! `validate` against the ServiceNow simulator on 127.0.0.1:0: a good setup passes, and each
//! kind of broken setup fails its own check with its own message and never shows a secret.

use std::path::PathBuf;

use nowstream_fetcher::preflight::{self, CheckKind, IntegrationReport, Outcome, Report, TABLES};
use nowstream_runtime::{
    AuthConfig, BasicAuth, Config, IntegrationConfig, OAuthConfig, OAuthGrant,
};
use nowstream_servicenow_sim::{
    AUDIT_READ_ROLE, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD,
    DEFAULT_INTEGRATION_USER, GeneratorConfig, RunningSim, SimConfig, SimUser, Simulator,
};
use secrecy::SecretString;

const ID: &str = "acme";

fn sim_config(extra_users: Vec<SimUser>) -> SimConfig {
    let mut config = SimConfig {
        data: GeneratorConfig {
            incidents: 20,
            change_requests: 5,
            users: 5,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    };
    config.users.extend(extra_users);
    config
}

async fn start(extra_users: Vec<SimUser>) -> RunningSim {
    Simulator::start(sim_config(extra_users))
        .await
        .expect("simulator starts")
}

fn basic(username: &str, password: &str) -> AuthConfig {
    AuthConfig::Basic(BasicAuth {
        username: username.to_owned(),
        password: SecretString::from(password.to_owned()),
    })
}

fn oauth(grant: OAuthGrant, refresh_token_file: Option<PathBuf>) -> AuthConfig {
    AuthConfig::Oauth(OAuthConfig {
        client_id: DEFAULT_CLIENT_ID.to_owned(),
        client_secret: SecretString::from(DEFAULT_CLIENT_SECRET),
        grant,
        username: None,
        password: None,
        refresh_token_file,
        token_url: None,
        scope: None,
    })
}

fn config(url: &str, auth: AuthConfig) -> Config {
    Config {
        integrations: vec![IntegrationConfig {
            id: ID.to_owned(),
            url: url.to_owned(),
            auth,
            exclude_fields: Vec::new(),
            allow_http: true,
            exclude_at_source: false,
            metadata: Default::default(),
        }],
        ..Config::default()
    }
}

async fn validate(url: &str, auth: AuthConfig) -> Report {
    preflight::validate(&config(url, auth)).await
}

fn only(report: &Report) -> &IntegrationReport {
    report.integration(ID).expect("the integration is reported")
}

fn check(report: &Report, kind: CheckKind) -> &preflight::Check {
    only(report)
        .check(kind)
        .unwrap_or_else(|| panic!("no {kind:?} check in\n{}", report.render()))
}

fn failures(report: &Report) -> Vec<CheckKind> {
    only(report)
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .map(|c| c.kind)
        .collect()
}

#[tokio::test]
async fn a_correct_setup_passes_every_check() {
    // Correct includes an integration user working in UTC (the simulator's default account
    // works in America/New_York, which `validate` warns about).
    let mut config = sim_config(Vec::new());
    config.users[0].time_zone = "UTC".to_owned();
    let sim = Simulator::start(config).await.expect("simulator starts");
    let report = validate(
        sim.base_url(),
        basic(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
    )
    .await;
    let text = report.render();
    assert!(report.passed(), "{text}");
    for check in &only(&report).checks {
        assert_eq!(check.outcome, Outcome::Pass, "{check:?}\n{text}");
    }
    for kind in [
        CheckKind::Auth,
        CheckKind::Roles,
        CheckKind::AdvisedRole,
        CheckKind::TimeZone,
        CheckKind::MappedFields("incident"),
        CheckKind::MappedFields("change_request"),
    ]
    .into_iter()
    .chain(TABLES.iter().map(|t| CheckKind::TableRead(t)))
    {
        assert!(
            only(&report).check(kind).is_some(),
            "{kind:?} missing\n{text}"
        );
    }
    assert!(text.contains("Result: all checks passed."), "{text}");
    assert!(!text.contains(DEFAULT_INTEGRATION_PASSWORD), "{text}");
}

#[tokio::test]
async fn a_malformed_url_fails_the_url_check_and_skips_the_rest() {
    let report = validate(
        "acme.service-now.com/no scheme",
        basic(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
    )
    .await;
    assert!(!report.passed());
    assert_eq!(failures(&report), [CheckKind::Url]);
    assert!(
        check(&report, CheckKind::Url)
            .message
            .contains("is not a URL"),
        "{}",
        report.render()
    );
    assert_eq!(check(&report, CheckKind::Auth).outcome, Outcome::Skipped);
    assert!(
        report.render().contains("Result: FAILED"),
        "{}",
        report.render()
    );
}

#[tokio::test]
async fn an_unreachable_port_fails_the_connect_check() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let report = validate(
        &format!("http://127.0.0.1:{port}"),
        basic(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
    )
    .await;
    assert!(!report.passed());
    assert_eq!(
        failures(&report),
        [CheckKind::Connect],
        "{}",
        report.render()
    );
    let connect = check(&report, CheckKind::Connect);
    assert!(
        connect
            .message
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{connect:?}"
    );
    assert!(connect.hint.is_some());
    assert_eq!(check(&report, CheckKind::Dns).outcome, Outcome::Pass);
    assert_eq!(check(&report, CheckKind::Auth).outcome, Outcome::Skipped);
}

#[tokio::test]
async fn a_wrong_password_fails_authentication_without_showing_it() {
    let sim = start(Vec::new()).await;
    let wrong = "wrong-password-4711";
    let report = validate(sim.base_url(), basic(DEFAULT_INTEGRATION_USER, wrong)).await;
    let text = report.render();
    assert!(!report.passed());
    assert_eq!(failures(&report), [CheckKind::Auth], "{text}");
    let auth = check(&report, CheckKind::Auth);
    assert!(
        auth.message
            .contains("rejected the user name or password for nowstream.integration"),
        "{auth:?}"
    );
    assert_eq!(check(&report, CheckKind::Http).outcome, Outcome::Pass);
    assert_eq!(
        check(&report, CheckKind::TableRead("incident")).outcome,
        Outcome::Skipped
    );
    assert!(!text.contains(wrong), "{text}");
    assert!(!format!("{report:?}").contains(wrong));
}

#[tokio::test]
async fn a_missing_required_role_is_named() {
    let user = SimUser::new(
        "no.dictionary",
        "no-dictionary-password",
        &["itil", "personalize_choices", "user_admin"],
    );
    let sim = start(vec![user]).await;
    let report = validate(
        sim.base_url(),
        basic("no.dictionary", "no-dictionary-password"),
    )
    .await;
    let text = report.render();
    assert!(!report.passed());
    assert_eq!(failures(&report), [CheckKind::Roles], "{text}");
    let roles = check(&report, CheckKind::Roles);
    assert!(
        roles
            .message
            .contains("no.dictionary is missing required role(s): personalize_dictionary"),
        "{roles:?}"
    );
    assert!(
        roles
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("grant personalize_dictionary")),
        "{roles:?}"
    );
    assert_eq!(
        check(&report, CheckKind::AdvisedRole).outcome,
        Outcome::Pass
    );
    assert!(!text.contains("no-dictionary-password"), "{text}");
}

#[tokio::test]
async fn lacking_only_user_admin_warns_but_passes() {
    let mut user = SimUser::new(
        "no.user.admin",
        "no-user-admin-password",
        &[
            "itil",
            "personalize_choices",
            "personalize_dictionary",
            AUDIT_READ_ROLE,
        ],
    );
    user.time_zone = "UTC".to_owned();
    let sim = start(vec![user]).await;
    let report = validate(
        sim.base_url(),
        basic("no.user.admin", "no-user-admin-password"),
    )
    .await;
    let text = report.render();
    assert!(report.passed(), "{text}");
    assert_eq!(check(&report, CheckKind::Roles).outcome, Outcome::Pass);
    let advised = check(&report, CheckKind::AdvisedRole);
    assert_eq!(advised.outcome, Outcome::Warn, "{text}");
    assert!(
        advised.message.contains("does not have user_admin"),
        "{advised:?}"
    );
    assert!(text.contains("Result: passed with 1 warning(s)."), "{text}");
}

#[tokio::test]
async fn a_table_without_read_access_fails_that_table_only() {
    // (Was shown with sys_audit_delete, which now warns instead: see the next test.)
    let mut user = SimUser::new(
        "no.choices",
        "no-choices-password",
        &[
            "itil",
            "personalize_choices",
            "personalize_dictionary",
            "user_admin",
        ],
    );
    user.denied_tables.insert("sys_choice".to_owned());
    let sim = start(vec![user]).await;
    let report = validate(sim.base_url(), basic("no.choices", "no-choices-password")).await;
    let text = report.render();
    assert!(!report.passed());
    assert_eq!(
        failures(&report),
        [CheckKind::TableRead("sys_choice")],
        "{text}"
    );
    let denied = check(&report, CheckKind::TableRead("sys_choice"));
    assert!(
        denied
            .message
            .contains("read access to sys_choice denied (HTTP 403)"),
        "{denied:?}"
    );
    assert!(
        denied
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("personalize_choices")),
        "{denied:?}"
    );
    assert!(!text.contains("no-choices-password"), "{text}");
}

#[tokio::test]
async fn seis_documented_roles_without_sys_audit_delete_warn_that_deletions_are_reconciled() {
    let sim = start(vec![SimUser::sei_documented(
        "sei.reader",
        "sei-reader-password",
    )])
    .await;
    let report = validate(sim.base_url(), basic("sei.reader", "sei-reader-password")).await;
    let text = report.render();
    assert!(report.passed(), "the fetcher works without it\n{text}");
    assert_eq!(check(&report, CheckKind::Roles).outcome, Outcome::Pass);
    let audit = check(&report, CheckKind::TableRead("sys_audit_delete"));
    assert_eq!(audit.outcome, Outcome::Warn, "{text}");
    for said in [
        "denied (HTTP 403)",
        "audit-based deletes are off for this integration",
        "reconciliation",
        "every 1h",
    ] {
        assert!(audit.message.contains(said), "{said:?} in {audit:?}");
    }
    assert!(
        audit
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("read access to sys_audit_delete")),
        "{audit:?}"
    );
    assert!(!text.contains("sei-reader-password"), "{text}");
}

#[tokio::test]
async fn a_user_in_a_local_time_zone_is_warned_what_that_changes() {
    let sim = start(Vec::new()).await;
    let report = validate(
        sim.base_url(),
        basic(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
    )
    .await;
    let text = report.render();
    assert!(report.passed(), "{text}");
    let zone = check(&report, CheckKind::TimeZone);
    assert_eq!(zone.outcome, Outcome::Warn, "{text}");
    for said in [
        "America/New_York, not UTC",
        "display values",
        "UTC `value`s",
        "gs.dateGenerate",
        "metadata.timezone",
    ] {
        assert!(zone.message.contains(said), "{said:?} in {zone:?}");
    }
    assert!(
        zone.hint
            .as_deref()
            .is_some_and(|h| h.contains("Time zone to UTC")),
        "{zone:?}"
    );
}

#[tokio::test]
async fn a_user_without_a_zone_gets_the_system_default_when_readable_else_unknown() {
    let mut unset = SimUser::new(
        "no.zone",
        "no-zone-password",
        &[
            "itil",
            "personalize_choices",
            "personalize_dictionary",
            "user_admin",
        ],
    );
    unset.time_zone = String::new();
    let mut admin = SimUser::new("zone.admin", "zone-admin-password", &["admin"]);
    admin.time_zone = String::new();
    let mut config = sim_config(vec![unset, admin]);
    config.data.system_time_zone = "Etc/UTC".to_owned();
    let sim = Simulator::start(config).await.expect("simulator starts");

    let report = validate(sim.base_url(), basic("zone.admin", "zone-admin-password")).await;
    let zone = check(&report, CheckKind::TimeZone);
    assert_eq!(zone.outcome, Outcome::Pass, "{}", report.render());
    assert!(
        zone.message.contains("the system default is Etc/UTC"),
        "{zone:?}"
    );

    let report = validate(sim.base_url(), basic("no.zone", "no-zone-password")).await;
    let zone = check(&report, CheckKind::TimeZone);
    assert_eq!(zone.outcome, Outcome::Warn, "{}", report.render());
    assert!(
        zone.message
            .contains("glide.sys.default.tz) cannot be read, so the zone is unknown"),
        "{zone:?}"
    );
}

#[tokio::test]
async fn mapped_fields_the_dictionary_does_not_show_are_listed() {
    let mut config = sim_config(Vec::new());
    config.data.dictionary_base_fields = false;
    let sim = Simulator::start(config).await.expect("simulator starts");
    let report = validate(
        sim.base_url(),
        basic(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
    )
    .await;
    let text = report.render();
    assert!(report.passed(), "{text}");
    for table in ["incident", "change_request"] {
        let mapped = check(&report, CheckKind::MappedFields(table));
        assert_eq!(mapped.outcome, Outcome::Warn, "{text}");
        for field in [
            "number",
            "state",
            "priority",
            "sys_created_on",
            "business_service",
        ] {
            assert!(mapped.message.contains(field), "{field} in {mapped:?}");
        }
        assert!(
            mapped.message.contains("asks for them anyway"),
            "{mapped:?}"
        );
    }
}

#[tokio::test]
async fn client_credentials_skip_the_role_check_with_a_note() {
    let sim = start(Vec::new()).await;
    let report = validate(sim.base_url(), oauth(OAuthGrant::ClientCredentials, None)).await;
    let text = report.render();
    assert!(report.passed(), "{text}");
    assert_eq!(check(&report, CheckKind::Auth).outcome, Outcome::Pass);
    let roles = check(&report, CheckKind::Roles);
    assert_eq!(roles.outcome, Outcome::Skipped, "{text}");
    assert!(roles.message.contains("make sure it has itil"), "{roles:?}");
    assert_eq!(
        check(&report, CheckKind::TableRead("incident")).outcome,
        Outcome::Pass
    );
    assert!(!text.contains(DEFAULT_CLIENT_SECRET), "{text}");
}

#[tokio::test]
async fn a_missing_refresh_token_file_points_to_oauth_login() {
    let sim = start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let report = validate(
        sim.base_url(),
        oauth(
            OAuthGrant::AuthorizationCode,
            Some(dir.path().join("absent.token")),
        ),
    )
    .await;
    let text = report.render();
    assert!(!report.passed());
    assert_eq!(failures(&report), [CheckKind::Auth], "{text}");
    assert_eq!(check(&report, CheckKind::Http).outcome, Outcome::Pass);
    let auth = check(&report, CheckKind::Auth);
    assert!(
        auth.message.contains("cannot read refresh token file"),
        "{auth:?}"
    );
    assert!(
        auth.hint
            .as_deref()
            .is_some_and(|h| h.contains("oauth login --integration acme")),
        "{auth:?}"
    );
}

#[tokio::test]
async fn a_wrong_client_secret_is_reported_as_a_refused_grant() {
    let sim = start(Vec::new()).await;
    let mut auth = oauth(OAuthGrant::ClientCredentials, None);
    if let AuthConfig::Oauth(oauth) = &mut auth {
        oauth.client_secret = SecretString::from("not-the-client-secret");
    }
    let report = validate(sim.base_url(), auth).await;
    let text = report.render();
    assert_eq!(failures(&report), [CheckKind::Auth], "{text}");
    assert!(
        check(&report, CheckKind::Auth)
            .message
            .contains("the OAuth token endpoint refused the client_credentials grant (HTTP 401)"),
        "{text}"
    );
    assert!(!text.contains("not-the-client-secret"), "{text}");
}

fn with_filters(url: &str, incident_query: &str, change_request_query: &str) -> Config {
    let mut config = config(
        url,
        basic(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
    );
    let metadata = &mut config.integrations[0].metadata;
    metadata.incident_query = Some(incident_query.to_owned());
    metadata.change_request_query = Some(change_request_query.to_owned());
    config
}

#[tokio::test]
async fn a_filter_naming_an_unknown_field_fails_and_names_its_config_key() {
    let sim = start(Vec::new()).await;
    // `categroy` is a typo ServiceNow would silently ignore; `priority` is inherited from task;
    // `assigned_to.user_name` is dot-walked into sys_user.
    let config = with_filters(
        sim.base_url(),
        "categroy=network^NQpriority=1",
        "type=normal^assigned_to.user_name=beth.anglin",
    );
    let report = preflight::validate(&config).await;
    let text = report.render();
    let incident = check(&report, CheckKind::Filter("incident_query"));
    assert_eq!(incident.outcome, Outcome::Fail, "{text}");
    assert!(
        incident
            .message
            .contains("integrations[0].metadata.incident_query"),
        "{incident:?}"
    );
    assert!(incident.message.contains("categroy"), "{incident:?}");
    assert!(!incident.message.contains("priority"), "{incident:?}");
    let change = check(&report, CheckKind::Filter("change_request_query"));
    assert_eq!(change.outcome, Outcome::Pass, "{text}");
    assert!(
        change.message.contains("change_request → task"),
        "{change:?}"
    );
    assert!(!report.passed(), "{text}");
    assert!(text.contains("Filter incident_query"), "{text}");
}

#[tokio::test]
async fn filters_on_existing_fields_pass_and_a_dot_walk_through_a_non_reference_is_named() {
    let sim = start(Vec::new()).await;
    let config = with_filters(
        sim.base_url(),
        // `category` is no reference, so nothing can be dot-walked from it.
        "category=network^ORpriority=1^category.name=x",
        "type=normal^sys_updated_on>2024-01-01 00:00:00",
    );
    let report = preflight::validate(&config).await;
    let incident = check(&report, CheckKind::Filter("incident_query"));
    assert_eq!(incident.outcome, Outcome::Fail, "{}", report.render());
    assert!(incident.message.contains("category.name"), "{incident:?}");
    let change = check(&report, CheckKind::Filter("change_request_query"));
    assert_eq!(change.outcome, Outcome::Pass, "{}", report.render());
}

#[tokio::test]
async fn filters_are_skipped_with_the_rest_when_authentication_fails() {
    let sim = start(Vec::new()).await;
    let mut config = with_filters(sim.base_url(), "category=network", "type=normal");
    config.integrations[0].auth = basic(DEFAULT_INTEGRATION_USER, "wrong-password");
    let report = preflight::validate(&config).await;
    for key in ["incident_query", "change_request_query"] {
        let filter = check(&report, CheckKind::Filter(key));
        assert_eq!(filter.outcome, Outcome::Skipped, "{}", report.render());
    }
}

#[tokio::test]
async fn a_metadata_timezone_other_than_the_users_zone_is_warned() {
    let sim = start(Vec::new()).await;
    let mut config = config(
        sim.base_url(),
        basic(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
    );
    config.integrations[0].metadata.timezone = Some("Europe/Berlin".to_owned());
    let report = preflight::validate(&config).await;
    let zone = check(&report, CheckKind::TimeZone);
    assert_eq!(zone.outcome, Outcome::Warn, "{}", report.render());
    assert!(
        zone.message
            .contains("metadata.timezone says Europe/Berlin, but"),
        "{zone:?}"
    );
    assert!(zone.message.contains("America/New_York"), "{zone:?}");

    config.integrations[0].metadata.timezone = Some("America/New_York".to_owned());
    let report = preflight::validate(&config).await;
    let zone = check(&report, CheckKind::TimeZone);
    assert!(
        zone.message.contains("metadata.timezone agrees"),
        "{zone:?}"
    );
}
