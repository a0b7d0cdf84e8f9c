//! Fault injection and request counters, as a retrying client sees them.

use crate::common;

use std::time::{Duration, Instant};

use common::{Client, INTEGRATION, TENANT, batch, config, start, user};
use nowstream_model::Entity;
use nowstream_sei_local::{Fault, FaultRule, SeiLocal, Stats};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn one_user(sys_id: &str) -> Value {
    batch(vec![user(sys_id, "2024-01-01T00:00:00Z", 1, "x")], &[])
}

async fn admin_post(client: &Client, path: &str, body: Value) -> (StatusCode, Value) {
    let response = client
        .http
        .post(format!("{}{path}", client.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn admin_stats(client: &Client) -> Stats {
    client
        .http
        .get(format!("{}/admin/stats", client.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_nth_ingest_fails_with_503_set_through_the_admin_endpoint() {
    let sei = start().await;
    let client = Client::new(&sei);
    let (status, rules) = admin_post(
        &client,
        "/admin/faults",
        json!({"rules": [{
            "fault": {"kind": "server_error", "status": 503},
            "when": {"mode": "every_nth", "n": 2},
            "path_prefix": "/v1/ingest/"
        }]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rules}");
    let mut statuses = Vec::new();
    for i in 0..4 {
        let response = client
            .ingest("users", &format!("k{i}"), &one_user(&format!("u{i}")))
            .await;
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"], "unavailable");
        }
    }
    assert_eq!(statuses, [200, 503, 200, 503]);
    // A failed request stored nothing; reads were not faulted.
    let stored: Vec<String> = sei
        .records(TENANT, INTEGRATION, Entity::User)
        .unwrap()
        .into_iter()
        .map(|record| record.sys_id)
        .collect();
    assert_eq!(stored, ["u0", "u2"]);
    let (status, _) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users"))
        .await;
    assert_eq!(status, StatusCode::OK);

    let stats = admin_stats(&client).await;
    let ingest_path = format!("/v1/ingest/servicenow/{INTEGRATION}/users");
    assert_eq!(stats.count_on(&ingest_path, 503), 2);
    assert_eq!(stats.count_on(&ingest_path, 200), 2);
    assert_eq!(stats.faults_injected, 2);
    assert_eq!(stats.requests, 5);
    assert_eq!(sei.faults()[0].fired, 2);
}

#[tokio::test]
async fn a_rate_limit_answers_429_with_retry_after_then_lets_the_retry_through() {
    let sei = start().await;
    sei.set_faults(vec![FaultRule::next(
        1,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    )]);
    let client = Client::new(&sei);
    let first = client.ingest("users", "k1", &one_user("u1")).await;
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers()["retry-after"], "7");
    let error: Value = first.json().await.unwrap();
    assert_eq!(error["error"], "rate_limited");
    let retry = client.ingest("users", "k1", &one_user("u1")).await;
    assert_eq!(retry.status(), StatusCode::OK);
    let stats = sei.stats();
    assert_eq!(stats.count(429), 1);
    assert_eq!(stats.count(200), 1);
}

#[tokio::test]
async fn a_server_error_can_carry_retry_after() {
    let mut config = config();
    config.faults = vec![FaultRule::always(Fault::ServerError {
        status: 502,
        retry_after_secs: Some(3),
    })];
    let sei = SeiLocal::start(config).await.unwrap();
    let response = Client::new(&sei)
        .ingest("users", "k1", &one_user("u1"))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["retry-after"], "3");
}

#[tokio::test]
async fn latency_delays_the_answer_by_at_least_the_configured_time() {
    let sei = start().await;
    sei.set_faults(vec![FaultRule::always(Fault::Latency { millis: 300 })]);
    let client = Client::new(&sei);
    let started = Instant::now();
    let response = client.ingest("users", "k1", &one_user("u1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn clearing_faults_and_stats_through_admin_restores_normal_service() {
    let sei = start().await;
    sei.set_faults(vec![FaultRule::always(Fault::ServerError {
        status: 503,
        retry_after_secs: None,
    })]);
    let client = Client::new(&sei);
    assert_eq!(
        client.ingest("users", "k1", &one_user("u1")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let cleared = client
        .http
        .delete(format!("{}/admin/faults", client.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    client
        .http
        .delete(format!("{}/admin/stats", client.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(admin_stats(&client).await, Stats::default());
    assert_eq!(
        client.ingest("users", "k1", &one_user("u1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(admin_stats(&client).await.count(200), 1);
}

#[tokio::test]
async fn an_impossible_fault_rule_is_refused_by_the_admin_endpoint() {
    let sei = start().await;
    let client = Client::new(&sei);
    let (status, error) = admin_post(
        &client,
        "/admin/faults",
        json!({"rules": [{"fault": {"kind": "server_error", "status": 404}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["field"], "rules[0]");
    assert!(sei.faults().is_empty());
}

#[tokio::test]
async fn an_html_bad_request_fault_answers_400_with_a_page_that_is_not_the_contracts_error() {
    let sei = start().await;
    sei.set_faults(vec![
        FaultRule::always(Fault::HtmlBadRequest).on_path("/v1/ingest/"),
    ]);
    let client = Client::new(&sei);
    let response = client.ingest("users", "k1", &one_user("u1")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = response.text().await.unwrap();
    assert!(body.contains("<html>") && serde_json::from_str::<Value>(&body).is_err());
    assert!(
        sei.records(TENANT, INTEGRATION, Entity::User)
            .unwrap()
            .is_empty(),
        "nothing was stored"
    );
}
