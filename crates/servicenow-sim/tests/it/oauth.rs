//! OAuth: authorization-code round trip, password / refresh_token / client_credentials grants,
//! token expiry.

use crate::common;

use std::time::Duration;

use common::{Reply, client, send, small_config, start};
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD,
    DEFAULT_INTEGRATION_USER, RunningSim, SimConfig,
};
use serde_json::json;

async fn token(sim: &RunningSim, form: &[(&str, &str)]) -> Reply {
    let mut all = vec![
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    all.extend_from_slice(form);
    send(
        client()
            .post(format!("{}/oauth_token.do", sim.base_url()))
            .form(&all),
    )
    .await
}

async fn list_with(sim: &RunningSim, access_token: &str) -> Reply {
    send(
        client()
            .get(format!(
                "{}/api/now/table/incident?sysparm_limit=2",
                sim.base_url()
            ))
            .bearer_auth(access_token),
    )
    .await
}

fn access_token(reply: &Reply) -> String {
    reply.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

#[tokio::test]
async fn authorization_code_flow_round_trips_to_the_table_api() {
    let sim = start(small_config()).await;
    let redirect = "http://127.0.0.1:9/callback";
    let auth = client()
        .get(format!("{}/oauth_auth.do", sim.base_url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", redirect),
            ("state", "xyz-42"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), 302);
    let location = url::Url::parse(auth.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect));
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some("xyz-42"));
    let code = param("code").expect("code in redirect");

    let issued = token(
        &sim,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    assert_eq!(issued.body["token_type"], "Bearer");
    assert_eq!(issued.body["expires_in"], 1800);
    assert!(issued.body["refresh_token"].is_string());
    let listed = list_with(&sim, &access_token(&issued)).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.rows().len(), 2);

    let reused = token(
        &sim,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(reused.status, 401, "a code works once");
}

#[tokio::test]
async fn password_and_refresh_token_grants_issue_working_tokens() {
    let sim = start(small_config()).await;
    let issued = token(
        &sim,
        &[
            ("grant_type", "password"),
            ("username", DEFAULT_INTEGRATION_USER),
            ("password", DEFAULT_INTEGRATION_PASSWORD),
            ("scope", "table_read"),
        ],
    )
    .await;
    assert_eq!(issued.status, 200);
    assert_eq!(issued.body["scope"], "table_read");
    let refresh = issued.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(list_with(&sim, &access_token(&issued)).await.status, 200);

    let refreshed = token(
        &sim,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(refreshed.status, 200);
    assert_ne!(access_token(&refreshed), access_token(&issued));
    assert_eq!(refreshed.body["scope"], "table_read");
    assert_eq!(list_with(&sim, &access_token(&refreshed)).await.status, 200);

    let bad = token(
        &sim,
        &[
            ("grant_type", "password"),
            ("username", DEFAULT_INTEGRATION_USER),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.body,
        json!({"error_description": "access_denied", "error": "server_error"})
    );
    let unknown_refresh = token(
        &sim,
        &[("grant_type", "refresh_token"), ("refresh_token", "forged")],
    )
    .await;
    assert_eq!(unknown_refresh.status, 401);
}

#[tokio::test]
async fn client_credentials_grant_acts_as_the_application_user() {
    let sim = start(small_config()).await;
    let issued = token(&sim, &[("grant_type", "client_credentials")]).await;
    assert_eq!(issued.status, 200);
    assert!(issued.body.get("refresh_token").is_none());
    let created = send(
        client()
            .post(format!("{}/api/now/table/incident", sim.base_url()))
            .bearer_auth(access_token(&issued))
            .json(&json!({"short_description": "via oauth"})),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.body["result"]["sys_created_by"],
        DEFAULT_INTEGRATION_USER
    );

    let wrong_secret = send(
        client()
            .post(format!("{}/oauth_token.do", sim.base_url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", "wrong"),
            ]),
    )
    .await;
    assert_eq!(wrong_secret.status, 401);
    let unsupported = token(&sim, &[("grant_type", "implicit")]).await;
    assert_eq!(unsupported.status, 400);
}

#[tokio::test]
async fn a_token_past_its_lifetime_gets_401() {
    let sim = start(SimConfig {
        access_token_lifetime_secs: 1,
        ..small_config()
    })
    .await;
    let issued = token(&sim, &[("grant_type", "client_credentials")]).await;
    assert_eq!(issued.body["expires_in"], 1);
    let access = access_token(&issued);
    assert_eq!(list_with(&sim, &access).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let expired = list_with(&sim, &access).await;
    assert_eq!(expired.status, 401);
    assert_eq!(
        expired.body,
        json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})
    );
}

#[tokio::test]
async fn expiring_all_tokens_keeps_refresh_tokens_usable() {
    let sim = start(small_config()).await;
    let issued = token(
        &sim,
        &[
            ("grant_type", "password"),
            ("username", DEFAULT_INTEGRATION_USER),
            ("password", DEFAULT_INTEGRATION_PASSWORD),
        ],
    )
    .await;
    let expire = client()
        .post(format!("{}/sim/tokens/expire", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(expire.status(), 204);
    assert_eq!(list_with(&sim, &access_token(&issued)).await.status, 401);
    let refresh = issued.body["refresh_token"].as_str().unwrap();
    let refreshed = token(
        &sim,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(list_with(&sim, &access_token(&refreshed)).await.status, 200);
}
