//! Basic auth and OAuth against the simulator, and secrets staying out of errors.

use crate::common;

use std::time::Duration;

use std::sync::{Arc, Mutex};

use common::*;
use nowstream_servicenow::client::{
    AuthorizationCodeFlow, ClientConfig, ClientError, OAuthGrant, RefreshTokenObserver,
    ScanRequest, TokenSet,
};
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD, Fault, FaultRule,
    RunningSim,
};
use secrecy::{ExposeSecret, SecretString};

const WRONG_PASSWORD: &str = "not-the-password-0xC0FFEE";

/// Runs the authorization-code flow against the simulator (which approves at once).
async fn login(sim: &RunningSim) -> TokenSet {
    let config = basic_config(sim);
    let app = oauth_auth(OAuthGrant::ClientCredentials)
        .oauth_app()
        .unwrap();
    let flow = AuthorizationCodeFlow::new(&config, app).unwrap();
    let redirect_uri = "http://127.0.0.1:9/callback";
    let authorize = flow.authorize_url(redirect_uri, "state-123");
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(authorize)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    assert_eq!(param("state"), "state-123");
    flow.exchange_code(&param("code"), redirect_uri)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_wrong_password_fails_at_once_without_a_retry_storm() {
    let sim = start(sim_config(10, 0)).await;
    let client = client(config_with(&sim, basic_auth(WRONG_PASSWORD)));
    let err = client.count("incident", "").await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err:?}");
    assert!(err.is_auth());
    let text = err.to_string();
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("User Not Authenticated"), "{text}");
    assert_eq!(requests_to(&sim, INCIDENT_PATH), 1);
    assert!(!text.contains(WRONG_PASSWORD));
    assert!(!format!("{err:?}").contains(WRONG_PASSWORD));
}

#[tokio::test]
async fn the_oauth_password_grant_reads_the_table_with_one_token_request() {
    let sim = start(sim_config(45, 0)).await;
    let client = client(oauth_config(
        &sim,
        password_grant(DEFAULT_INTEGRATION_PASSWORD),
    ));
    let pages = drain(client.scan(ScanRequest::new("incident").page_size(10))).await;
    assert_eq!(unique_sys_ids(&pages), stored_sys_ids(&sim, "incident"));
    assert_eq!(requests_to(&sim, TOKEN_PATH), 1, "the token is cached");
    assert_eq!(sim.stats().count(INCIDENT_PATH, 401), 0);
}

#[tokio::test]
async fn the_oauth_client_credentials_grant_reads_the_table() {
    let sim = start(sim_config(12, 0)).await;
    let client = client(oauth_config(&sim, OAuthGrant::ClientCredentials));
    assert_eq!(client.count("incident", "").await.unwrap(), 12);
    assert_eq!(requests_to(&sim, TOKEN_PATH), 1);
}

#[tokio::test]
async fn the_authorization_code_flow_yields_a_refresh_token_that_configures_a_client() {
    let sim = start(sim_config(15, 0)).await;
    let tokens = login(&sim).await;
    let refresh_token = tokens
        .refresh_token
        .clone()
        .expect("code grant issues a refresh token");
    let client = client(oauth_config(
        &sim,
        OAuthGrant::RefreshToken {
            refresh_token: refresh_token.clone(),
        },
    ));
    assert_eq!(client.count("incident", "").await.unwrap(), 15);
    // One token request for the code exchange, one for the refresh grant.
    assert_eq!(requests_to(&sim, TOKEN_PATH), 2);
}

/// The refresh tokens a client reported to its observer, in order.
#[derive(Clone, Default)]
struct Reported(Arc<Mutex<Vec<String>>>);

impl Reported {
    fn attach(config: &mut ClientConfig) -> Reported {
        let reported = Reported::default();
        let sink = reported.0.clone();
        config.refresh_token_observer = Some(RefreshTokenObserver::new(move |token| {
            sink.lock().unwrap().push(token.expose_secret().to_owned());
        }));
        reported
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Whether the simulator still accepts `refresh_token` (on a rotating simulator this uses it
/// up, so only ask about tokens nobody needs afterwards).
async fn refresh_grant_status(sim: &RunningSim, refresh_token: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}{TOKEN_PATH}", sim.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_rotated_refresh_token_is_reported_and_used_for_the_next_renewal() {
    let mut sim_config = sim_config(15, 0);
    sim_config.rotate_refresh_tokens = true;
    let sim = start(sim_config).await;
    let original = login(&sim).await.refresh_token.expect("a refresh token");
    let mut config = oauth_config(
        &sim,
        OAuthGrant::RefreshToken {
            refresh_token: original.clone(),
        },
    );
    let reported = Reported::attach(&mut config);
    let client = client(config);

    assert_eq!(client.count("incident", "").await.unwrap(), 15);
    let after_first = reported.all();
    assert_eq!(after_first.len(), 1, "the first refresh grant rotated");
    assert_ne!(after_first[0], original.expose_secret());

    // The next renewal must present the rotated token: the original one is revoked, so a
    // client that went back to it would fail here.
    sim.expire_all_tokens();
    assert_eq!(client.count("incident", "").await.unwrap(), 15);
    let after_second = reported.all();
    assert_eq!(
        after_second.len(),
        2,
        "the second refresh grant rotated too"
    );
    assert_ne!(after_second[1], after_second[0]);
    assert_eq!(
        sim.stats().count(TOKEN_PATH, 401),
        0,
        "no token was refused"
    );
    assert_eq!(
        refresh_grant_status(&sim, original.expose_secret()).await,
        401
    );
    assert_eq!(refresh_grant_status(&sim, &after_second[0]).await, 401);
    assert_eq!(refresh_grant_status(&sim, &after_second[1]).await, 200);
}

#[tokio::test]
async fn a_refresh_token_the_instance_hands_back_unchanged_is_not_reported() {
    let sim = start(sim_config(15, 0)).await;
    let original = login(&sim).await.refresh_token.expect("a refresh token");
    let mut config = oauth_config(
        &sim,
        OAuthGrant::RefreshToken {
            refresh_token: original,
        },
    );
    let reported = Reported::attach(&mut config);
    let client = client(config);
    assert_eq!(client.count("incident", "").await.unwrap(), 15);
    sim.expire_all_tokens();
    assert_eq!(client.count("incident", "").await.unwrap(), 15);
    // The code exchange plus two refresh grants, each answered with the same refresh token.
    assert_eq!(requests_to(&sim, TOKEN_PATH), 3);
    assert_eq!(reported.all(), Vec::<String>::new());
}

#[tokio::test]
async fn the_password_grant_reports_its_first_refresh_token_once() {
    let sim = start(sim_config(15, 0)).await;
    let mut config = oauth_config(&sim, password_grant(DEFAULT_INTEGRATION_PASSWORD));
    let reported = Reported::attach(&mut config);
    let client = client(config);
    assert_eq!(client.count("incident", "").await.unwrap(), 15);
    let first = reported.all();
    assert_eq!(first.len(), 1, "the password grant's refresh token is new");
    sim.expire_all_tokens();
    assert_eq!(client.count("incident", "").await.unwrap(), 15);
    assert_eq!(requests_to(&sim, TOKEN_PATH), 2, "renewed by refresh token");
    assert_eq!(
        reported.all(),
        first,
        "the renewal handed back the same one"
    );
}

#[test]
fn client_config_debug_shows_only_whether_a_refresh_token_observer_is_set() {
    let mut config = ClientConfig::new(
        url::Url::parse("https://acme.service-now.com").unwrap(),
        oauth_auth(OAuthGrant::ClientCredentials),
    );
    config.refresh_token_observer = Some(RefreshTokenObserver::new(|_| {}));
    let text = format!("{config:?}");
    assert!(text.contains("refresh_token_observer: true"), "{text}");
    assert_eq!(
        format!("{:?}", config.refresh_token_observer.unwrap()),
        "RefreshTokenObserver"
    );
}

#[tokio::test]
async fn an_access_token_expiring_mid_scan_is_renewed_transparently() {
    let sim = start(sim_config(300, 100)).await;
    sim.set_faults(vec![
        FaultRule::every_nth(4, Fault::ExpireToken).on_path(INCIDENT_PATH),
    ]);
    let client = client(oauth_config(
        &sim,
        password_grant(DEFAULT_INTEGRATION_PASSWORD),
    ));
    let pages = drain(client.scan(ScanRequest::new("incident").page_size(20))).await;
    assert_eq!(unique_sys_ids(&pages), stored_sys_ids(&sim, "incident"));
    let refused = sim.stats().count(INCIDENT_PATH, 401);
    assert!(refused >= 3, "tokens expired mid-scan: {refused}");
    // One initial token plus one renewal per refusal, nothing more.
    assert_eq!(requests_to(&sim, TOKEN_PATH), 1 + refused);
}

#[tokio::test]
async fn all_tokens_expiring_at_once_is_absorbed_by_one_renewal() {
    let sim = start(sim_config(30, 0)).await;
    let client = client(oauth_config(
        &sim,
        password_grant(DEFAULT_INTEGRATION_PASSWORD),
    ));
    assert_eq!(client.count("incident", "").await.unwrap(), 30);
    sim.expire_all_tokens();
    assert_eq!(client.count("incident", "").await.unwrap(), 30);
    assert_eq!(sim.stats().count(INCIDENT_PATH, 401), 1);
    assert_eq!(requests_to(&sim, TOKEN_PATH), 2);
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire() {
    let mut config = sim_config(10, 0);
    config.access_token_lifetime_secs = 2;
    let sim = start(config).await;
    let client = client(oauth_config(
        &sim,
        password_grant(DEFAULT_INTEGRATION_PASSWORD),
    ));
    client.count("incident", "").await.unwrap();
    // Past the renewal point (90 % of 2 s) but before the instance would refuse the token:
    // a client that waited for expiry (or for a 401) would ask for no new token here.
    tokio::time::sleep(Duration::from_millis(1900)).await;
    client.count("incident", "").await.unwrap();
    assert_eq!(sim.stats().count(INCIDENT_PATH, 401), 0);
    assert_eq!(requests_to(&sim, TOKEN_PATH), 2);
}

#[tokio::test]
async fn a_token_refused_right_after_renewal_is_an_auth_error_not_a_loop() {
    let sim = start(sim_config(10, 0)).await;
    sim.set_faults(vec![
        FaultRule::always(Fault::ExpireToken).on_path(INCIDENT_PATH),
    ]);
    let client = client(oauth_config(
        &sim,
        password_grant(DEFAULT_INTEGRATION_PASSWORD),
    ));
    let err = client.count("incident", "").await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err:?}");
    assert_eq!(requests_to(&sim, INCIDENT_PATH), 2);
    assert_eq!(requests_to(&sim, TOKEN_PATH), 2);
}

#[tokio::test]
async fn a_wrong_oauth_password_is_a_token_error_without_table_requests() {
    let sim = start(sim_config(10, 0)).await;
    let client = client(oauth_config(&sim, password_grant(WRONG_PASSWORD)));
    let err = client.count("incident", "").await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::TokenRejected {
                grant: "password",
                status: 401,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("/oauth_token.do"), "{err}");
    assert_eq!(requests_to(&sim, TOKEN_PATH), 1);
    assert_eq!(requests_to(&sim, INCIDENT_PATH), 0);
}

#[tokio::test]
async fn no_secret_appears_in_any_error_display_or_debug() {
    let sim = start(sim_config(10, 0)).await;
    let tokens = login(&sim).await;
    let refresh_token = tokens.refresh_token.clone().unwrap();
    let access_token = tokens.access_token.clone();

    let mut errors: Vec<ClientError> = Vec::new();
    // Wrong basic password.
    errors.push(
        client(config_with(&sim, basic_auth(WRONG_PASSWORD)))
            .count("incident", "")
            .await
            .unwrap_err(),
    );
    // Wrong OAuth password, wrong client secret, unknown refresh token.
    errors.push(
        client(oauth_config(&sim, password_grant(WRONG_PASSWORD)))
            .count("incident", "")
            .await
            .unwrap_err(),
    );
    let mut wrong_secret = oauth_config(&sim, OAuthGrant::ClientCredentials);
    if let nowstream_servicenow::client::Auth::OAuth { client_secret, .. } = &mut wrong_secret.auth
    {
        *client_secret = SecretString::from("wrong-client-secret-0xBEEF");
    }
    errors.push(
        client(wrong_secret)
            .count("incident", "")
            .await
            .unwrap_err(),
    );
    let stale_refresh = SecretString::from(format!("{}-stale", refresh_token.expose_secret()));
    errors.push(
        client(oauth_config(
            &sim,
            OAuthGrant::RefreshToken {
                refresh_token: stale_refresh.clone(),
            },
        ))
        .count("incident", "")
        .await
        .unwrap_err(),
    );
    // A valid refresh token whose access tokens are always refused.
    sim.set_faults(vec![
        FaultRule::always(Fault::ExpireToken).on_path(INCIDENT_PATH),
    ]);
    errors.push(
        client(oauth_config(
            &sim,
            OAuthGrant::RefreshToken {
                refresh_token: refresh_token.clone(),
            },
        ))
        .count("incident", "")
        .await
        .unwrap_err(),
    );
    // A code that was already used.
    let flow = AuthorizationCodeFlow::new(
        &basic_config(&sim),
        oauth_auth(OAuthGrant::ClientCredentials)
            .oauth_app()
            .unwrap(),
    )
    .unwrap();
    errors.push(
        flow.exchange_code("used-code-0xFACE", "http://127.0.0.1:9/cb")
            .await
            .unwrap_err(),
    );

    let secrets = [
        DEFAULT_INTEGRATION_PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
        DEFAULT_CLIENT_SECRET.to_owned(),
        "wrong-client-secret-0xBEEF".to_owned(),
        refresh_token.expose_secret().to_owned(),
        stale_refresh.expose_secret().to_owned(),
        access_token.expose_secret().to_owned(),
        "used-code-0xFACE".to_owned(),
    ];
    assert_eq!(errors.len(), 6);
    for err in &errors {
        assert!(err.is_auth(), "{err:?}");
        for text in [err.to_string(), format!("{err:?}")] {
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "secret leaked in {text}");
            }
        }
    }
    let config_debug = format!(
        "{:?}",
        oauth_config(&sim, password_grant(DEFAULT_INTEGRATION_PASSWORD))
    );
    assert!(
        !config_debug.contains(DEFAULT_INTEGRATION_PASSWORD),
        "{config_debug}"
    );
    assert!(
        !config_debug.contains(DEFAULT_CLIENT_SECRET),
        "{config_debug}"
    );
    let used = client(oauth_config(
        &sim,
        OAuthGrant::RefreshToken {
            refresh_token: refresh_token.clone(),
        },
    ));
    sim.set_faults(Vec::new());
    used.count("incident", "").await.unwrap();
    let client_debug = format!("{used:?}");
    for secret in &secrets {
        assert!(
            !client_debug.contains(secret.as_str()),
            "secret leaked in {client_debug}"
        );
    }
    let tokens_debug = format!("{tokens:?}");
    assert!(
        !tokens_debug.contains(refresh_token.expose_secret()),
        "{tokens_debug}"
    );
}
