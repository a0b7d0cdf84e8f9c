//! Rate limits, server errors, broken bodies and refusals against the simulator.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use nowstream_servicenow::client::{ClientError, ListRequest, RetryReason, WaitSource};
use nowstream_servicenow_sim::{Fault, FaultRule, SimUser};

fn list_all(limit: usize) -> ListRequest {
    ListRequest {
        table: "incident".to_owned(),
        query: "active=true".to_owned(),
        limit,
        offset: 0,
        fields: None,
    }
}

#[tokio::test]
async fn a_429_with_retry_after_waits_as_told() {
    let sim = start(sim_config(20, 0)).await;
    sim.set_faults(vec![FaultRule::next(
        1,
        Fault::RateLimitRetryAfter {
            retry_after_secs: 1,
        },
    )]);
    let mut config = basic_config(&sim);
    let events = Events::attach(&mut config);
    let client = client(config);
    let started = tokio::time::Instant::now();
    let page = client.list_page(&list_all(5)).await.unwrap();
    assert!(!page.records.is_empty());
    let events = events.all();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason, RetryReason::RateLimited);
    assert_eq!(events[0].source, WaitSource::RetryAfter);
    assert_eq!(events[0].wait, Duration::from_secs(1));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(sim.stats().count(INCIDENT_PATH, 429), 1);
    assert_eq!(sim.stats().count(INCIDENT_PATH, 200), 1);
}

#[tokio::test]
async fn a_429_with_only_x_ratelimit_reset_waits_until_the_reset() {
    let sim = start(sim_config(20, 0)).await;
    sim.set_faults(vec![FaultRule::next(
        1,
        Fault::RateLimitReset { reset_in_secs: 2 },
    )]);
    let mut config = basic_config(&sim);
    let events = Events::attach(&mut config);
    let client = client(config);
    client.count("incident", "").await.unwrap();
    let events = events.all();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason, RetryReason::RateLimited);
    assert_eq!(events[0].source, WaitSource::RateLimitReset);
    // Epoch seconds are whole: the wait lands within the last second before the reset.
    assert!(
        events[0].wait > Duration::from_secs(1) && events[0].wait <= Duration::from_secs(2),
        "{:?}",
        events[0].wait
    );
}

#[tokio::test]
async fn server_errors_timeouts_malformed_and_truncated_bodies_are_retried() {
    let sim = start(sim_config(40, 0)).await;
    let mut config = basic_config(&sim);
    config.request_timeout = Duration::from_millis(700);
    let events = Events::attach(&mut config);
    let client = client(config);
    let cases = [
        (Fault::ServerError { status: 503 }, RetryReason::ServerError),
        (Fault::ServerError { status: 500 }, RetryReason::ServerError),
        (Fault::MalformedJson, RetryReason::MalformedJson),
        (Fault::TruncatedBody, RetryReason::TruncatedBody),
        (Fault::Latency { millis: 3000 }, RetryReason::Timeout),
    ];
    for (fault, reason) in cases {
        sim.set_faults(vec![FaultRule::next(2, fault.clone())]);
        let before = events.all().len();
        let page = client.list_page(&list_all(10)).await.unwrap();
        assert_eq!(page.records.len(), 10, "{fault:?}");
        let new: Vec<_> = events.all()[before..].to_vec();
        assert_eq!(new.len(), 2, "{fault:?}: {new:?}");
        assert!(new.iter().all(|e| e.reason == reason), "{fault:?}: {new:?}");
        assert!(new.iter().all(|e| e.source == WaitSource::Backoff));
        assert!(new.iter().all(|e| e.table.as_deref() == Some("incident")));
    }
}

#[tokio::test]
async fn retries_stop_at_the_budget_with_an_error_naming_table_query_and_status() {
    let sim = start(sim_config(10, 0)).await;
    sim.set_faults(vec![FaultRule::always(Fault::ServerError { status: 502 })]);
    let mut config = basic_config(&sim);
    config.max_retries = 2;
    let client = client(config);
    let err = client.list_page(&list_all(5)).await.unwrap_err();
    assert!(err.is_transient());
    assert!(
        matches!(err, ClientError::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("table incident"), "{text}");
    assert!(text.contains("active=true"), "{text}");
    assert!(text.contains("502"), "{text}");
    assert_eq!(requests_to(&sim, INCIDENT_PATH), 3);
}

#[tokio::test]
async fn an_invalid_table_is_reported_at_once_with_servicenows_message() {
    let sim = start(sim_config(5, 0)).await;
    let client = client(basic_config(&sim));
    let mut request = list_all(5);
    request.table = "incidnt".to_owned();
    let err = client.list_page(&request).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    let text = err.to_string();
    assert!(text.contains("Invalid table incidnt"), "{text}");
    assert!(text.contains("table incidnt"), "{text}");
    assert_eq!(requests_to(&sim, "/api/now/table/incidnt"), 1);
}

#[tokio::test]
async fn a_table_acl_denial_is_a_forbidden_error_without_retries() {
    let mut config = sim_config(5, 0);
    let mut user = SimUser::integration();
    user.denied_tables.insert("incident".to_owned());
    config.users = vec![user, SimUser::admin()];
    let sim = start(config).await;
    let client = client(basic_config(&sim));
    let err = client.count("incident", "").await.unwrap_err();
    assert!(matches!(err, ClientError::Forbidden { .. }), "{err:?}");
    assert!(err.is_auth());
    assert!(err.to_string().contains("Insufficient rights"), "{err}");
    assert_eq!(requests_to(&sim, INCIDENT_PATH), 1);
}

#[tokio::test]
async fn count_get_record_and_get_json_go_through_auth() {
    let sim = start(sim_config(37, 0)).await;
    let client = client(basic_config(&sim));
    assert_eq!(client.count("incident", "").await.unwrap(), 37);

    let stored = sim.snapshot("incident").unwrap();
    let sys_id = &stored[0]["sys_id"];
    let record = client
        .get_record("incident", sys_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value(&record, "sys_id"), sys_id);
    assert!(record["number"]["display_value"].is_string());
    let missing = client
        .get_record("incident", "00000000000000000000000000000000")
        .await
        .unwrap();
    assert!(missing.is_none());

    let body = client
        .get_json("/api/now/table/sys_user", &[("sysparm_limit", "2")])
        .await
        .unwrap();
    assert_eq!(body["result"].as_array().unwrap().len(), 2);
    let err = client
        .get_json("api/now/table/sys_user", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidArgument { .. }),
        "{err:?}"
    );
}

/// A bare Table API stand-in that records how many requests it serves at once.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let state = (in_flight, peak.clone());
    let app = axum::Router::new()
        .route(
            "/api/now/table/incident",
            axum::routing::get(
                |axum::extract::State((in_flight, peak)): axum::extract::State<(
                    Arc<AtomicUsize>,
                    Arc<AtomicUsize>,
                )>| async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    (
                        [("X-Total-Count", "1")],
                        axum::Json(serde_json::json!({"result": []})),
                    )
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, peak)
}

#[tokio::test]
async fn no_more_than_max_concurrency_requests_are_in_flight_across_clones() {
    let (url, peak) = counting_server().await;
    let mut config = nowstream_servicenow::client::ClientConfig::new(
        url::Url::parse(&url).unwrap(),
        basic_auth("irrelevant"),
    );
    config.allow_http = true;
    config.max_concurrency = 2;
    let client = client(config);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.count("incident", "").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn requests_go_through_the_configured_proxy() {
    // The simulator serves absolute-form requests, so it can stand in for a forward proxy:
    // the instance host does not resolve, so only a proxied request can succeed.
    let sim = start(sim_config(7, 0)).await;
    let mut config = basic_config(&sim);
    config.instance_url = url::Url::parse("http://instance.invalid").unwrap();
    let mut proxy = url::Url::parse(sim.base_url()).unwrap();
    proxy.set_username("proxyuser").unwrap();
    proxy.set_password(Some("proxy-password-0xD00D")).unwrap();
    config.proxy = Some(proxy);
    assert!(!format!("{config:?}").contains("proxy-password-0xD00D"));
    let client = client(config);
    assert_eq!(client.count("incident", "").await.unwrap(), 7);
    assert_eq!(requests_to(&sim, INCIDENT_PATH), 1);
}
