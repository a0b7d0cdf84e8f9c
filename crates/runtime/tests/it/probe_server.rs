//! `/healthz`, `/readyz` and `/metrics` on a real listener.

use std::net::SocketAddr;

use nowstream_runtime::{Health, ServeHandle, serve};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

async fn start(health: Health) -> (ServeHandle, oneshot::Sender<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let handle = serve(addr, health, stopped).await.unwrap();
    (handle, stop)
}

async fn get(handle: &ServeHandle, path: &str) -> (StatusCode, String) {
    let url = format!("http://{}{path}", handle.local_addr());
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn healthz_answers_while_the_process_runs_and_fails_once_declared_dead() {
    let health = Health::new();
    let (server, stop) = start(health.clone()).await;

    let (status, body) = get(&server, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    health.set_dead("fetch loop ended");
    let (status, body) = get(&server, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["reason"], "fetch loop ended");

    stop.send(()).unwrap();
    server.stopped().await.unwrap();
}

#[tokio::test]
async fn readyz_flips_with_the_readiness_of_every_component() {
    let health = Health::new();
    let kafka = health.component("kafka");
    let sei = health.component("sei");
    let (server, stop) = start(health.clone()).await;

    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    kafka.set_ready();
    sei.set_not_ready("SEI answered 401");
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(
        body["not_ready"],
        serde_json::json!([{"component": "sei", "reason": "SEI answered 401"}])
    );

    sei.set_ready();
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    kafka.set_not_ready("broker unreachable");
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("kafka") && body.contains("broker unreachable"),
        "{body}"
    );

    stop.send(()).unwrap();
    server.stopped().await.unwrap();
}

#[tokio::test]
async fn readyz_stays_200_with_a_degraded_component_and_names_it_in_the_body() {
    let health = Health::new();
    health.component("fetcher").set_ready();
    let unit = health.component("fetcher unit 4711:change_request");
    unit.set_degraded("degraded: access denied (HTTP 403)");
    let (server, stop) = start(health.clone()).await;

    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(
        body["degraded"],
        serde_json::json!([{
            "component": "fetcher unit 4711:change_request",
            "reason": "degraded: access denied (HTTP 403)"
        }])
    );

    unit.set_ready();
    let (_, body) = get(&server, "/readyz").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["degraded"], serde_json::json!([]));

    stop.send(()).unwrap();
    server.stopped().await.unwrap();
}

#[tokio::test]
async fn metrics_shows_a_registered_counter_in_prometheus_text_format() {
    let (server, stop) = start(Health::new()).await;

    metrics::counter!("nowstream_probe_test_records_total", "table" => "incident").increment(7);
    let (status, body) = get(&server, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("nowstream_probe_test_records_total{table=\"incident\"} 7"),
        "{body}"
    );

    stop.send(()).unwrap();
    server.stopped().await.unwrap();
}

/// The value of an unlabelled series in a Prometheus text exposition.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn metrics_shows_the_processs_resident_memory_and_its_peak() {
    let (server, stop) = start(Health::new()).await;

    let (status, body) = get(&server, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let resident = gauge(&body, "process_resident_memory_bytes")
        .unwrap_or_else(|| panic!("no resident memory in:\n{body}"));
    let peak = gauge(&body, "process_resident_memory_peak_bytes")
        .unwrap_or_else(|| panic!("no peak resident memory in:\n{body}"));
    assert!(resident > 0.0, "{resident}");
    assert!(peak >= resident, "peak {peak} below current {resident}");
    assert!(
        body.contains("# TYPE process_resident_memory_bytes gauge"),
        "{body}"
    );

    stop.send(()).unwrap();
    server.stopped().await.unwrap();
}

#[tokio::test]
async fn the_server_stops_when_the_shutdown_future_resolves() {
    let (server, stop) = start(Health::new()).await;
    let addr = server.local_addr();
    stop.send(()).unwrap();
    server.stopped().await.unwrap();
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn binding_a_taken_address_names_it() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let error = serve(addr, Health::new(), std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}
