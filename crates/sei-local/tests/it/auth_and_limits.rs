//! Who may call, and how much they may send.

use crate::common;

use common::{Client, INTEGRATION, KEY, OTHER_KEY, TENANT, batch, gzip, start, user};
use nowstream_model::Entity;
use nowstream_sei_local::{SeiLocal, SeiLocalConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.expect("JSON error body"))
}

fn one_user() -> Value {
    batch(vec![user("u1", "2024-01-01T00:00:00Z", 1, "Ada")], &[])
}

#[tokio::test]
async fn a_wrong_key_is_401_in_the_error_shape_without_echoing_the_key() {
    let sei = start().await;
    let client = Client::as_tenant(&sei, TENANT, "not-the-key-at-all");
    let (status, body) = error_of(client.ingest("users", "k1", &one_user()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    assert!(body["message"].is_string());
    assert!(!body.to_string().contains("not-the-key-at-all"), "{body}");
    assert!(
        sei.records(TENANT, INTEGRATION, Entity::User)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_missing_key_or_another_scheme_is_401() {
    let sei = start().await;
    let client = Client::new(&sei);
    for authorization in [None, Some(format!("Bearer {KEY}")), Some(KEY.to_owned())] {
        let mut request = client
            .http
            .post(client.ingest_url("users"))
            .header("X-Tenant", TENANT)
            .header("Idempotency-Key", "k1")
            .body(one_user().to_string());
        if let Some(value) = &authorization {
            request = request.header("Authorization", value);
        }
        let (status, body) = error_of(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(body["error"], "unauthorized");
    }
}

#[tokio::test]
async fn a_missing_tenant_is_401_so_the_sink_treats_it_as_configuration() {
    let sei = start().await;
    let client = Client::new(&sei);
    let response = client
        .http
        .post(client.ingest_url("users"))
        .header("Authorization", format!("Apikey {KEY}"))
        .header("Idempotency-Key", "k1")
        .body(one_user().to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing_tenant");
}

#[tokio::test]
async fn another_tenants_key_is_403_and_reads_are_guarded_too() {
    let sei = start().await;
    let intruder = Client::as_tenant(&sei, TENANT, OTHER_KEY);
    let (status, body) = error_of(intruder.ingest("users", "k1", &one_user()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden");
    let (status, _) = intruder
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = intruder
        .get_json(
            "/v1/metrics/mttr?integration_id=sn1&from=2024-01-01T00:00:00Z&to=2024-02-01T00:00:00Z",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn tenants_do_not_see_each_others_records() {
    let sei = start().await;
    Client::new(&sei)
        .ingest_ok("users", "k1", &one_user())
        .await;
    let other = Client::as_tenant(&sei, common::OTHER_TENANT, OTHER_KEY);
    let (status, page) = other
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn a_gzip_body_is_accepted() {
    let sei = start().await;
    let response = Client::new(&sei)
        .ingest_gzip("users", "k1", &one_user())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"upserted": 1, "deleted": 0, "stale": 0}));
    let stored = sei.records(TENANT, INTEGRATION, Entity::User).unwrap();
    assert_eq!(stored[0].body().unwrap()["name"], "Ada");
}

#[tokio::test]
async fn a_body_that_claims_gzip_but_is_not_is_a_bad_body() {
    let sei = start().await;
    let client = Client::new(&sei);
    let response = client
        .http
        .post(client.ingest_url("users"))
        .header("Authorization", format!("Apikey {KEY}"))
        .header("X-Tenant", TENANT)
        .header("Idempotency-Key", "k1")
        .header("Content-Encoding", "gzip")
        .body(one_user().to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad_body");
}

async fn small_limit_server() -> nowstream_sei_local::RunningSeiLocal {
    let config = SeiLocalConfig {
        max_body_bytes: 2_000,
        ..SeiLocalConfig::for_tenant(TENANT, KEY)
    };
    SeiLocal::start(config).await.unwrap()
}

fn many_users(count: usize) -> Value {
    let users = (0..count)
        .map(|i| user(&format!("u{i:04}"), "2024-01-01T00:00:00Z", 1, "Someone"))
        .collect();
    batch(users, &[])
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_nothing_is_stored() {
    let sei = small_limit_server().await;
    let client = Client::new(&sei);
    let big = many_users(40);
    assert!(big.to_string().len() > 2_000);
    let (status, body) = error_of(client.ingest("users", "k1", &big).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "too_large");
    assert!(
        sei.records(TENANT, INTEGRATION, Entity::User)
            .unwrap()
            .is_empty()
    );
    // Just under the limit goes through.
    let small = many_users(5);
    assert!(small.to_string().len() < 2_000);
    client.ingest_ok("users", "k2", &small).await;
}

#[tokio::test]
async fn a_gzip_body_that_expands_past_the_limit_is_413() {
    let sei = small_limit_server().await;
    let big = many_users(200);
    // Repetitive JSON compresses far below the limit on the wire.
    assert!(gzip(big.to_string().as_bytes()).len() < 2_000);
    let response = Client::new(&sei).ingest_gzip("users", "k1", &big).await;
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["message"].as_str().unwrap().contains("gzip"), "{body}");
}

#[tokio::test]
async fn an_ingest_without_idempotency_key_is_refused() {
    let sei = start().await;
    let client = Client::new(&sei);
    let response = client
        .http
        .post(client.ingest_url("users"))
        .header("Authorization", format!("Apikey {KEY}"))
        .header("X-Tenant", TENANT)
        .body(one_user().to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "missing_idempotency_key");
}

#[tokio::test]
async fn an_unknown_entity_or_route_is_a_json_404() {
    let sei = start().await;
    let client = Client::new(&sei);
    let (status, body) = error_of(client.ingest("incident", "k1", &one_user()).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let (status, body) = client.get_json("/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}
