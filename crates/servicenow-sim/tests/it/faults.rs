//! Each fault mode is observable over HTTP, deterministically.

use crate::common;

use std::time::Duration;

use common::{as_integration, client, get, send, small_config, start};
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Fault, FaultRule, SimConfig,
};
use serde_json::{Value, json};

const LIST: &str = "/api/now/table/incident";

#[tokio::test]
async fn rate_limit_with_retry_after_answers_429_then_recovers() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![FaultRule::next(
        1,
        Fault::RateLimitRetryAfter {
            retry_after_secs: 7,
        },
    )]);
    let limited = get(&sim, "incident?sysparm_limit=1").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("Retry-After"), Some("7"));
    assert_eq!(limited.body["status"], "failure");
    let ok = get(&sim, "incident?sysparm_limit=1").await;
    assert_eq!(ok.status, 200);
    assert_eq!(sim.stats().count(LIST, 429), 1);
    assert_eq!(sim.stats().count(LIST, 200), 1);
}

#[tokio::test]
async fn rate_limit_with_only_reset_header_gives_an_epoch_second() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![FaultRule::next(
        1,
        Fault::RateLimitReset { reset_in_secs: 30 },
    )]);
    let limited = get(&sim, "incident?sysparm_limit=1").await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("Retry-After").is_none());
    let reset: i64 = limited
        .header("X-RateLimit-Reset")
        .unwrap()
        .parse()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 25..=now + 35).contains(&reset),
        "reset {reset} vs now {now}"
    );
}

#[tokio::test]
async fn server_errors_500_and_503_come_in_servicenow_shape() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![
        FaultRule::next(1, Fault::ServerError { status: 500 }),
        FaultRule::every_nth(2, Fault::ServerError { status: 503 }),
    ]);
    let statuses: Vec<u16> = futures_statuses(&sim, 4).await;
    // Request 1: both rules apply (the 500 wins, the 503 rule counts it as its 1st);
    // request 2: the 503 rule's 2nd; request 4: its 4th.
    assert_eq!(statuses, [500, 503, 200, 503]);
    let reply = get(&sim, "incident?sysparm_limit=1").await;
    assert_eq!(reply.status, 200);
}

async fn futures_statuses(sim: &nowstream_servicenow_sim::RunningSim, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let reply = get(sim, "incident?sysparm_limit=1").await;
        if reply.status != 200 {
            assert_eq!(reply.body["status"], "failure");
        }
        out.push(reply.status.as_u16());
    }
    out
}

#[tokio::test]
async fn latency_delays_the_response_past_a_client_timeout() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![FaultRule::next(1, Fault::Latency { millis: 3_000 })]);
    let url = format!("{}{LIST}?sysparm_limit=1", sim.base_url());
    let slow = as_integration(client().get(&url))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(slow.unwrap_err().is_timeout());
    let fast = as_integration(client().get(&url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(fast.status(), 200);
    assert_eq!(sim.faults()[0].fired, 1);
}

#[tokio::test]
async fn malformed_json_is_a_200_that_does_not_parse() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![FaultRule::next(1, Fault::MalformedJson)]);
    let url = format!("{}{LIST}?sysparm_limit=5", sim.base_url());
    let response = as_integration(client().get(&url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
}

#[tokio::test]
async fn truncated_body_breaks_the_connection_mid_body() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![FaultRule::next(1, Fault::TruncatedBody)]);
    let url = format!("{}{LIST}?sysparm_limit=20", sim.base_url());
    let response = as_integration(client().get(&url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err(), "body read must fail");
    let again = as_integration(client().get(&url)).send().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&again.bytes().await.unwrap()).is_ok());
}

#[tokio::test]
async fn short_page_hides_rows_but_total_count_and_next_link_remain() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![
        FaultRule::next(1, Fault::ShortPage { keep: 0 }),
        FaultRule::next(1, Fault::ShortPage { keep: 3 }),
    ]);
    let empty = get(&sim, "incident?sysparm_limit=10").await;
    assert!(empty.rows().is_empty());
    assert_eq!(empty.header("X-Total-Count"), Some("120"));
    assert!(empty.header("Link").unwrap().contains("rel=\"next\""));
    let full = get(&sim, "incident?sysparm_limit=10").await;
    assert_eq!(full.rows().len(), 10);
}

#[tokio::test]
async fn short_page_keeps_the_first_rows_of_the_page() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![FaultRule::next(1, Fault::ShortPage { keep: 3 })]);
    let short = get(
        &sim,
        "incident?sysparm_limit=10&sysparm_query=ORDERBYnumber",
    )
    .await;
    let full = get(
        &sim,
        "incident?sysparm_limit=10&sysparm_query=ORDERBYnumber",
    )
    .await;
    assert_eq!(short.rows().len(), 3);
    assert_eq!(short.rows()[..], full.rows()[..3]);
}

#[tokio::test]
async fn transaction_cancelled_when_limit_is_above_threshold() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![FaultRule::always(Fault::TransactionCancelled {
        above_limit: 50,
        http_status: 200,
    })]);
    let small = get(&sim, "incident?sysparm_limit=50").await;
    assert!(small.body.get("error").is_none());
    assert_eq!(small.rows().len(), 50);
    let big = get(&sim, "incident?sysparm_limit=100").await;
    assert_eq!(big.status, 200);
    assert_eq!(big.body["status"], "failure");
    assert_eq!(
        big.body["error"]["message"],
        "Transaction cancelled: maximum execution time exceeded"
    );
    assert!(big.rows().len() < 100, "the page was cut");
}

#[tokio::test]
async fn transaction_cancelled_can_answer_500_with_the_error_alone() {
    let sim = start(small_config()).await;
    sim.set_faults(vec![FaultRule::always(Fault::TransactionCancelled {
        above_limit: 10,
        http_status: 500,
    })]);
    let big = get(&sim, "incident").await;
    assert_eq!(big.status, 500);
    assert!(big.body.get("result").is_none());
    assert_eq!(
        big.body["error"]["message"],
        "Transaction cancelled: maximum execution time exceeded"
    );
}

#[tokio::test]
async fn expire_token_fault_makes_a_fresh_token_fail_with_401() {
    let sim = start(SimConfig {
        access_token_lifetime_secs: 3600,
        ..small_config()
    })
    .await;
    let token = send(
        client()
            .post(format!("{}/oauth_token.do", sim.base_url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
            ]),
    )
    .await;
    let access = token.body["access_token"].as_str().unwrap().to_owned();
    let url = format!("{}{LIST}?sysparm_limit=1", sim.base_url());
    assert_eq!(
        send(client().get(&url).bearer_auth(&access)).await.status,
        200
    );
    sim.set_faults(vec![FaultRule::next(1, Fault::ExpireToken)]);
    let expired = send(client().get(&url).bearer_auth(&access)).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.body["error"]["message"], "User Not Authenticated");
    assert_eq!(
        send(client().get(&url).bearer_auth(&access)).await.status,
        401,
        "stays expired"
    );
    assert_eq!(
        get(&sim, "incident?sysparm_limit=1").await.status,
        200,
        "basic auth unaffected"
    );
}

#[tokio::test]
async fn faults_and_stats_are_steerable_over_the_admin_api() {
    let sim = start(small_config()).await;
    let admin = format!("{}/sim/faults", sim.base_url());
    let set = client()
        .post(&admin)
        .json(&json!({"rules": [{"fault": {"kind": "server_error", "status": 503}, "when": {"mode": "next", "count": 2}, "path_prefix": "/api/now/table/incident"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        get(&sim, "sys_user?sysparm_limit=1").await.status,
        200,
        "other paths unaffected"
    );
    assert_eq!(get(&sim, "incident?sysparm_limit=1").await.status, 503);
    assert_eq!(get(&sim, "incident?sysparm_limit=1").await.status, 503);
    assert_eq!(get(&sim, "incident?sysparm_limit=1").await.status, 200);
    let report: Value = client()
        .get(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["rules"][0]["fired"], 2);
    assert_eq!(report["rules"][0]["seen"], 3);

    let stats: Value = client()
        .get(format!("{}/sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["by_path"][LIST]["503"], 2);
    assert_eq!(stats["by_path"][LIST]["200"], 1);
    assert_eq!(stats["recent"].as_array().unwrap().len(), 4);

    let bad = client()
        .post(&admin)
        .json(&json!({"rules": [{"fault": {"kind": "nope"}}]}))
        .send()
        .await
        .unwrap();
    assert!(bad.status().is_client_error());
    assert_eq!(client().delete(&admin).send().await.unwrap().status(), 204);
    assert_eq!(get(&sim, "incident?sysparm_limit=1").await.status, 200);
}

#[tokio::test]
async fn faults_configured_at_start_are_active_from_the_first_request() {
    let config = SimConfig {
        faults: vec![FaultRule::next(1, Fault::ServerError { status: 502 })],
        ..small_config()
    };
    let sim = start(config).await;
    assert_eq!(get(&sim, "incident?sysparm_limit=1").await.status, 502);
    assert_eq!(get(&sim, "incident?sysparm_limit=1").await.status, 200);
}
