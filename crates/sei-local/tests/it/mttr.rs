//! The MTTR report against a fixture computed by hand.
//!
//! Window [2024-03-04, 2024-03-18): the ISO weeks starting Monday 03-04 and Monday 03-11.
//!
//! | incident | priority | time to restore           | resolved_at (week)      | counted |
//! |----------|----------|---------------------------|-------------------------|---------|
//! | a        | 1        | 0.5 h (23:00 → 23:30)     | Sun 03-10 23:30 (03-04) | yes     |
//! | b        | 1        | 0.75 h (explicit ms; the timestamps say 12 h) | 03-05 (03-04) | yes |
//! | i        | 3        | 1 h, resolved exactly at `from` | 03-04 00:00 (03-04) | yes     |
//! | c        | 2        | 60 h                      | 03-11 12:00 (03-11)     | yes     |
//! | d        | 2        | 40 h                      | 03-12 08:00 (03-11)     | yes     |
//! | e        | none     | 336 h                     | 03-15 00:00 (03-11)     | yes     |
//! | f        | 1        | 1 h                       | 03-20 (after `to`)      | no      |
//! | h        | 1        | 1 h                       | exactly at `to`         | no      |
//! | j        | 1        | 96 h                      | 03-06, then deleted     | no      |
//! | k        | 1        | open                      | —                       | no      |
//! | l        | 1        | resolved, no opened_at, no ms | 03-06               | no      |
//! | (sn2, other tenant) | 1 | 200 h                 | 03-06                   | no      |
//!
//! Overall: 0.5, 0.75, 1, 40, 60, 336 → count 6, mean 438.25 / 6 = 73.041 666… h,
//! median (1 + 40) / 2 = 20.5 h → High.
//! Priority 1: 0.5, 0.75 → mean = median = 0.625 h, Elite. Priority 2: 40, 60 → 50 h,
//! Medium. Priority 3: 1 h → High (1 h is not under an hour). none: 336 h → Low.
//! Week 03-04: 0.5, 0.75, 1 → mean = median = 0.75 h, Elite. Week 03-11: 40, 60, 336 →
//! mean 145.333… h, median 60 h, Medium.

use crate::common;

use common::{Client, INTEGRATION, OTHER_KEY, OTHER_TENANT, batch, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const HOUR_MS: i64 = 3_600_000;

fn resolved(
    sys_id: &str,
    priority: Option<&str>,
    opened_at: Option<&str>,
    resolved_at: Option<&str>,
) -> Value {
    let mut record = json!({
        "integration_id": INTEGRATION,
        "sys_id": sys_id,
        "sys_updated_on": "2024-03-20T00:00:00Z",
        "sys_mod_count": 1,
        "opened_at": opened_at,
        "resolved_at": resolved_at,
    });
    if let Some(priority) = priority {
        record["priority"] = json!({"value": priority, "label": format!("{priority} - label")});
    }
    record
}

async fn load_fixture(client: &Client) {
    let mut b = resolved(
        "b",
        Some("1"),
        Some("2024-03-05T00:00:00Z"),
        Some("2024-03-05T12:00:00Z"),
    );
    b["time_to_restore_ms"] = json!(45 * 60 * 1000);
    let mut l = resolved("l", Some("1"), None, Some("2024-03-06T00:00:00Z"));
    l["time_to_restore_ms"] = Value::Null;
    let incidents = vec![
        resolved(
            "a",
            Some("1"),
            Some("2024-03-10T23:00:00Z"),
            Some("2024-03-10T23:30:00Z"),
        ),
        b,
        resolved(
            "i",
            Some("3"),
            Some("2024-03-03T23:00:00Z"),
            Some("2024-03-04T00:00:00Z"),
        ),
        resolved(
            "c",
            Some("2"),
            Some("2024-03-09T00:00:00Z"),
            Some("2024-03-11T12:00:00Z"),
        ),
        resolved(
            "d",
            Some("2"),
            Some("2024-03-10T16:00:00Z"),
            Some("2024-03-12T08:00:00Z"),
        ),
        resolved(
            "e",
            None,
            Some("2024-03-01T00:00:00Z"),
            Some("2024-03-15T00:00:00Z"),
        ),
        resolved(
            "f",
            Some("1"),
            Some("2024-03-19T23:00:00Z"),
            Some("2024-03-20T00:00:00Z"),
        ),
        resolved(
            "h",
            Some("1"),
            Some("2024-03-17T23:00:00Z"),
            Some("2024-03-18T00:00:00Z"),
        ),
        resolved(
            "j",
            Some("1"),
            Some("2024-03-02T00:00:00Z"),
            Some("2024-03-06T00:00:00Z"),
        ),
        resolved("k", Some("1"), Some("2024-03-06T00:00:00Z"), None),
        l,
    ];
    client
        .ingest_ok("incidents", "fixture", &batch(incidents, &[]))
        .await;
    client
        .ingest_ok("incidents", "delete-j", &batch(vec![], &["j"]))
        .await;
    // Another integration of the same tenant.
    let mut other_integration = resolved(
        "x",
        Some("1"),
        Some("2024-03-01T00:00:00Z"),
        Some("2024-03-06T00:00:00Z"),
    );
    other_integration["integration_id"] = json!("sn2");
    let response = client
        .http
        .post(format!(
            "{}/v1/ingest/servicenow/sn2/incidents",
            client.base_url
        ))
        .header("Authorization", format!("Apikey {}", client.key))
        .header("X-Tenant", &client.tenant)
        .header("Idempotency-Key", "sn2")
        .body(batch(vec![other_integration], &[]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn load_other_tenant(client: &Client) {
    let record = resolved(
        "y",
        Some("1"),
        Some("2024-02-28T00:00:00Z"),
        Some("2024-03-06T08:00:00Z"),
    );
    client
        .ingest_ok("incidents", "other", &batch(vec![record], &[]))
        .await;
}

fn assert_stats(stats: &Value, count: u64, mean: f64, median: f64, grade: &str) {
    assert_eq!(stats["count"], count, "{stats}");
    let close = |field: &str, expected: f64| {
        let actual = stats[field].as_f64().unwrap_or(f64::NAN);
        assert!(
            (actual - expected).abs() < 1e-9,
            "{field}: expected {expected}, got {stats}"
        );
    };
    close("mean_hours", mean);
    close("median_hours", median);
    assert_eq!(stats["grade"], grade, "{stats}");
}

const WINDOW: &str = "integration_id=sn1&from=2024-03-04T00:00:00Z&to=2024-03-18T00:00:00Z";

#[tokio::test]
async fn overall_mttr_matches_the_hand_computed_fixture() {
    let sei = start().await;
    let client = Client::new(&sei);
    load_fixture(&client).await;
    load_other_tenant(&Client::as_tenant(&sei, OTHER_TENANT, OTHER_KEY)).await;
    let (status, report) = client.get_json(&format!("/v1/metrics/mttr?{WINDOW}")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["integration_id"], "sn1");
    assert_eq!(report["from"], "2024-03-04T00:00:00Z");
    assert_eq!(report["to"], "2024-03-18T00:00:00Z");
    assert_eq!(report["group_by"], Value::Null);
    assert_eq!(report["groups"], json!([]));
    assert_stats(&report["overall"], 6, 438.25 / 6.0, 20.5, "High");
    // Sanity of the fixture itself: b's explicit time to restore is what counts.
    assert_eq!(45 * 60 * 1000, 3 * HOUR_MS / 4);
}

#[tokio::test]
async fn mttr_groups_by_priority_in_key_order() {
    let sei = start().await;
    let client = Client::new(&sei);
    load_fixture(&client).await;
    let (status, report) = client
        .get_json(&format!("/v1/metrics/mttr?{WINDOW}&group_by=priority"))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["group_by"], "priority");
    let groups = report["groups"].as_array().unwrap();
    let keys: Vec<&str> = groups.iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["1", "2", "3", "none"]);
    assert_stats(&groups[0], 2, 0.625, 0.625, "Elite");
    assert_stats(&groups[1], 2, 50.0, 50.0, "Medium");
    assert_stats(&groups[2], 1, 1.0, 1.0, "High");
    assert_stats(&groups[3], 1, 336.0, 336.0, "Low");
    assert_stats(&report["overall"], 6, 438.25 / 6.0, 20.5, "High");
}

#[tokio::test]
async fn mttr_groups_by_iso_week_starting_monday() {
    let sei = start().await;
    let client = Client::new(&sei);
    load_fixture(&client).await;
    let (status, report) = client
        .get_json(&format!("/v1/metrics/mttr?{WINDOW}&group_by=week"))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let groups = report["groups"].as_array().unwrap();
    let keys: Vec<&str> = groups.iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["2024-03-04", "2024-03-11"]);
    assert_stats(&groups[0], 3, 0.75, 0.75, "Elite");
    assert_stats(&groups[1], 3, 436.0 / 3.0, 60.0, "Medium");
}

#[tokio::test]
async fn an_empty_window_reports_zero_count_and_nulls() {
    let sei = start().await;
    let client = Client::new(&sei);
    load_fixture(&client).await;
    let (status, report) = client
        .get_json("/v1/metrics/mttr?integration_id=sn1&from=2023-01-01T00:00:00Z&to=2023-02-01T00:00:00Z&group_by=week")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        report["overall"],
        json!({"count": 0, "mean_hours": null, "median_hours": null, "grade": null})
    );
    assert_eq!(report["groups"], json!([]));
}

#[tokio::test]
async fn bad_mttr_queries_are_400_naming_the_parameter() {
    let sei = start().await;
    let client = Client::new(&sei);
    let cases = [
        (
            "integration_id=sn1&from=2024-03-04&to=2024-03-18T00:00:00Z",
            Some("from"),
        ),
        (
            "integration_id=sn1&from=2024-03-18T00:00:00Z&to=2024-03-04T00:00:00Z",
            Some("to"),
        ),
        ("integration_id=sn1&from=2024-03-04T00:00:00Z", None),
        (
            "integration_id=sn1&from=2024-03-04T00:00:00Z&to=2024-03-18T00:00:00Z&group_by=day",
            None,
        ),
    ];
    for (query, field) in cases {
        let (status, error) = client.get_json(&format!("/v1/metrics/mttr?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error["error"], "bad_query", "{query}");
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{query}");
        }
    }
}

#[tokio::test]
async fn an_offset_in_the_window_is_honoured_when_url_encoded() {
    let sei = start().await;
    let client = Client::new(&sei);
    load_fixture(&client).await;
    // 2024-03-04T01:00:00+01:00 is the same instant as the fixture's `from`.
    let (status, report) = client
        .get_json("/v1/metrics/mttr?integration_id=sn1&from=2024-03-04T01:00:00%2B01:00&to=2024-03-18T00:00:00Z")
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["from"], "2024-03-04T00:00:00Z");
    assert_eq!(report["overall"]["count"], 6);
}
