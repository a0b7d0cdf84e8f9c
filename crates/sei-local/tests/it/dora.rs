//! The DORA report against a fixture computed by hand.
//!
//! Window [2024-03-04, 2024-03-18): 14 days, the ISO weeks of Monday 03-04 and Monday 03-11.
//!
//! Change requests (deployments are those *closed* in the window):
//!
//! | change | closed_at          | state | type      | priority | counted |
//! |--------|--------------------|-------|-----------|----------|---------|
//! | c1     | 03-04 10:00 (wk 1) | 3     | normal    | 3        | yes     |
//! | c2     | 03-05 (wk 1)       | 3     | standard  | 4        | yes     |
//! | c3     | 03-06 (wk 1)       | 4     | normal    | 3        | yes     |
//! | c4     | 03-12 (wk 2)       | 3     | emergency | 1        | yes     |
//! | c9     | 03-14 (wk 2)       | 3     | normal    | 3        | yes     |
//! | c5     | exactly at `to`    | 3     | normal    | 3        | no      |
//! | c6     | 03-03 23:59:59     | 3     | normal    | 3        | no      |
//! | c7     | not closed         | 3     | normal    | 3        | no      |
//! | c8     | 03-13, deleted     | 3     | normal    | 3        | no      |
//!
//! Incidents:
//!
//! | inc | created  | opened   | resolved    | prio | category | caused_by |
//! |-----|----------|----------|-------------|------|----------|-----------|
//! | i1  | 03-04 09 | 03-04 10 | 03-04 11    | 1    | software | c1        |
//! | i2  | 03-05 00 | 03-05 00 | 03-06 00    | 2    | network  | c1        |
//! | i3  | 03-12 00 | 03-12 06 | 03-12 06:30 | 3    | software | c4        |
//! | i4  | 03-13 00 | 03-13 00 | open        | 1    | database | null      |
//! | i5  | 03-01 00 | 03-01 00 | 03-08 00    | 2    | network  | c2        |
//! | i6  | 03-14 00 | 03-14 00 | 03-20 (out) | 4    | software | c-unknown |
//! | i7  | 03-06 00 | 03-06 00 | 03-06 12, then deleted | 1 | software | c9 |
//! | (other tenant) | 03-06 | 03-06 | 03-06 12 | 1 | — | c3     |
//!
//! MTTR from creation (resolved in the window: i1, i2, i3, i5): 2, 24, 6.5, 168 h → median
//! (6.5 + 24) / 2 = 15.25 h (High), mean 200.5 / 4 = 50.125 h. From opened_at: 1, 24, 0.5,
//! 168 h → median 12.5 h (High), mean 48.375 h. Week 1: 2, 24, 168 → median 24 h (Medium);
//! week 2: 6.5 h (High).
//!
//! Deployment frequency: 5 in 14 days → 0.357… per day, 2.5 per week (High). Week 1: 3 in 7
//! days (High); week 2: 2 (High). change_state=3 & change_type=normal: c1, c9 → exactly once per
//! week (High, the boundary); change_state=3 & change_type=emergency: c4 → once in 14 days
//! (Medium).
//!
//! Change failure rate, failures by default priority 1 or 2, created in the window: i1, i2, i4
//! → 3 / 5 = 0.6 (Low). Attributed: c1 (i1, i2), c2 (i5), c4 (i3) → 3 / 5 (Low); c9 is named
//! only by a deleted incident. Week 1: 2 / 3 and attributed 2 / 3; week 2: 1 / 2 and 1 / 2.
//! failure_category=software: i1, i3, i6 → 3 / 5; failure_priority=1 & failure_category=software:
//! i1 → 1 / 5 = 0.2 (High).

use crate::common;

use common::{Client, INTEGRATION, OTHER_KEY, OTHER_TENANT, batch, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WINDOW: &str = "integration_id=sn1&from=2024-03-04T00:00:00Z&to=2024-03-18T00:00:00Z";

fn choice(value: &str) -> Value {
    json!({"value": value, "label": format!("{value} - label")})
}

fn change(sys_id: &str, closed_at: Option<&str>, state: &str, kind: &str, priority: &str) -> Value {
    json!({
        "integration_id": INTEGRATION,
        "sys_id": sys_id,
        "sys_updated_on": "2024-03-20T00:00:00Z",
        "sys_mod_count": 1,
        "closed_at": closed_at,
        "state": choice(state),
        "type": choice(kind),
        "priority": choice(priority),
    })
}

#[allow(clippy::too_many_arguments)]
fn incident(
    sys_id: &str,
    created: &str,
    opened: &str,
    resolved: Option<&str>,
    priority: &str,
    category: &str,
    caused_by: Option<&str>,
) -> Value {
    json!({
        "integration_id": INTEGRATION,
        "sys_id": sys_id,
        "sys_updated_on": "2024-03-20T00:00:00Z",
        "sys_mod_count": 1,
        "sys_created_on": created,
        "opened_at": opened,
        "resolved_at": resolved,
        "priority": choice(priority),
        "category": choice(category),
        "caused_by": caused_by.map(|sys_id| json!({"sys_id": sys_id, "display_value": format!("CHG-{sys_id}")})),
    })
}

pub(crate) async fn load_fixture(client: &Client) {
    let changes = vec![
        change("c1", Some("2024-03-04T10:00:00Z"), "3", "normal", "3"),
        change("c2", Some("2024-03-05T00:00:00Z"), "3", "standard", "4"),
        change("c3", Some("2024-03-06T00:00:00Z"), "4", "normal", "3"),
        change("c4", Some("2024-03-12T00:00:00Z"), "3", "emergency", "1"),
        change("c9", Some("2024-03-14T00:00:00Z"), "3", "normal", "3"),
        change("c5", Some("2024-03-18T00:00:00Z"), "3", "normal", "3"),
        change("c6", Some("2024-03-03T23:59:59Z"), "3", "normal", "3"),
        change("c7", None, "3", "normal", "3"),
        change("c8", Some("2024-03-13T00:00:00Z"), "3", "normal", "3"),
    ];
    client
        .ingest_ok("change_requests", "dora-c1", &batch(changes, &[]))
        .await;
    client
        .ingest_ok("change_requests", "dora-c2", &batch(vec![], &["c8"]))
        .await;
    let incidents = vec![
        incident(
            "i1",
            "2024-03-04T09:00:00Z",
            "2024-03-04T10:00:00Z",
            Some("2024-03-04T11:00:00Z"),
            "1",
            "software",
            Some("c1"),
        ),
        incident(
            "i2",
            "2024-03-05T00:00:00Z",
            "2024-03-05T00:00:00Z",
            Some("2024-03-06T00:00:00Z"),
            "2",
            "network",
            Some("c1"),
        ),
        incident(
            "i3",
            "2024-03-12T00:00:00Z",
            "2024-03-12T06:00:00Z",
            Some("2024-03-12T06:30:00Z"),
            "3",
            "software",
            Some("c4"),
        ),
        incident(
            "i4",
            "2024-03-13T00:00:00Z",
            "2024-03-13T00:00:00Z",
            None,
            "1",
            "database",
            None,
        ),
        incident(
            "i5",
            "2024-03-01T00:00:00Z",
            "2024-03-01T00:00:00Z",
            Some("2024-03-08T00:00:00Z"),
            "2",
            "network",
            Some("c2"),
        ),
        incident(
            "i6",
            "2024-03-14T00:00:00Z",
            "2024-03-14T00:00:00Z",
            Some("2024-03-20T00:00:00Z"),
            "4",
            "software",
            Some("c-unknown"),
        ),
        incident(
            "i7",
            "2024-03-06T00:00:00Z",
            "2024-03-06T00:00:00Z",
            Some("2024-03-06T12:00:00Z"),
            "1",
            "software",
            Some("c9"),
        ),
    ];
    client
        .ingest_ok("incidents", "dora-i1", &batch(incidents, &[]))
        .await;
    client
        .ingest_ok("incidents", "dora-i2", &batch(vec![], &["i7"]))
        .await;
}

async fn loaded() -> (nowstream_sei_local::RunningSeiLocal, Client) {
    let sei = start().await;
    let client = Client::new(&sei);
    load_fixture(&client).await;
    let other = Client::as_tenant(&sei, OTHER_TENANT, OTHER_KEY);
    let foreign = incident(
        "x1",
        "2024-03-06T00:00:00Z",
        "2024-03-06T00:00:00Z",
        Some("2024-03-06T12:00:00Z"),
        "1",
        "software",
        Some("c3"),
    );
    other
        .ingest_ok("incidents", "dora-x", &batch(vec![foreign], &[]))
        .await;
    (sei, client)
}

async fn report(client: &Client, extra: &str) -> Value {
    let (status, body) = client
        .get_json(&format!("/v1/metrics/dora?{WINDOW}{extra}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn close(value: &Value, want: f64) -> bool {
    value.as_f64().is_some_and(|got| (got - want).abs() < 1e-9)
}

#[track_caller]
fn assert_close(value: &Value, want: f64) {
    assert!(close(value, want), "{value} is not {want}");
}

#[tokio::test]
async fn mttr_runs_from_creation_by_default_and_from_opened_at_when_asked() {
    let (_sei, client) = loaded().await;
    let body = report(&client, "").await;
    assert_eq!(body["definitions"]["mttr_start"], "sys_created_on");
    let mttr = &body["overall"]["mttr"];
    assert_eq!(mttr["count"], 4);
    assert_close(&mttr["median_hours"], 15.25);
    assert_close(&mttr["mean_hours"], 50.125);
    assert_eq!(mttr["grade"], "High");

    let opened = report(&client, "&mttr_start=opened_at").await;
    let mttr = &opened["overall"]["mttr"];
    assert_eq!(opened["definitions"]["mttr_start"], "opened_at");
    assert_close(&mttr["median_hours"], 12.5);
    assert_close(&mttr["mean_hours"], 48.375);
}

#[tokio::test]
async fn deployment_frequency_counts_changes_closed_in_the_window_per_day_and_week() {
    let (_sei, client) = loaded().await;
    let body = report(&client, "").await;
    let df = &body["overall"]["deployment_frequency"];
    assert_eq!(df["count"], 5, "{df}");
    assert_close(&df["days"], 14.0);
    assert_close(&df["per_day"], 5.0 / 14.0);
    assert_close(&df["per_week"], 2.5);
    assert_eq!(df["grade"], "High");
}

#[tokio::test]
async fn deployment_filters_on_state_and_type_accept_repeats_and_comma_lists() {
    let (_sei, client) = loaded().await;
    let states = report(&client, "&change_state=3").await;
    assert_eq!(states["overall"]["deployment_frequency"]["count"], 4);
    let types = report(&client, "&change_type=normal,emergency").await;
    assert_eq!(types["overall"]["deployment_frequency"]["count"], 4);
    let repeated = report(&client, "&change_type=normal&change_type=emergency").await;
    assert_eq!(repeated["overall"], types["overall"]);
    assert_eq!(
        repeated["definitions"]["change_types"],
        json!(["normal", "emergency"])
    );

    // Two in fourteen days is exactly once per week: still High.
    let weekly = report(&client, "&change_state=3&change_type=normal").await;
    let df = &weekly["overall"]["deployment_frequency"];
    assert_eq!(df["count"], 2);
    assert_close(&df["per_week"], 1.0);
    assert_eq!(df["grade"], "High");
    let fortnightly = report(&client, "&change_state=3&change_type=emergency").await;
    assert_eq!(
        fortnightly["overall"]["deployment_frequency"]["grade"],
        "Medium"
    );
    // The failure rate's denominator is the same filtered set.
    assert_eq!(
        fortnightly["overall"]["change_failure_rate"]["deployments"],
        1
    );
}

#[tokio::test]
async fn change_failure_rate_divides_failure_incidents_by_deployments_and_attributes_exactly() {
    let (_sei, client) = loaded().await;
    let body = report(&client, "").await;
    assert_eq!(body["definitions"]["failure_priorities"], json!(["1", "2"]));
    let cfr = &body["overall"]["change_failure_rate"];
    assert_eq!(cfr["failures"], 3, "{cfr}");
    assert_eq!(cfr["deployments"], 5);
    assert_close(&cfr["rate"], 0.6);
    assert_eq!(cfr["grade"], "Low");
    let attributed = &cfr["attributed"];
    assert_eq!(attributed["failed_deployments"], 3, "{attributed}");
    assert_eq!(attributed["deployments"], 5);
    assert_close(&attributed["rate"], 0.6);
    assert_eq!(attributed["grade"], "Low");
    // i1, i2, i3, i5, i6 (i7 is deleted; the other tenant's does not count).
    assert_eq!(body["incidents_with_caused_by"], 5);
}

#[tokio::test]
async fn the_failure_filter_takes_priorities_and_categories_together() {
    let (_sei, client) = loaded().await;
    let software = report(&client, "&failure_category=software").await;
    assert_eq!(
        software["definitions"]["failure_priorities"],
        json!([]),
        "a category alone drops the default priorities"
    );
    assert_eq!(software["overall"]["change_failure_rate"]["failures"], 3);
    let both = report(&client, "&failure_priority=1&failure_category=software").await;
    let cfr = &both["overall"]["change_failure_rate"];
    assert_eq!(cfr["failures"], 1);
    assert_close(&cfr["rate"], 0.2);
    assert_eq!(cfr["grade"], "High");
}

#[tokio::test]
async fn weekly_groups_cover_every_week_of_the_window() {
    let (_sei, client) = loaded().await;
    let body = report(&client, "&group_by=week").await;
    let groups = body["groups"].as_array().expect("groups");
    let keys: Vec<&str> = groups.iter().filter_map(|g| g["key"].as_str()).collect();
    assert_eq!(keys, ["2024-03-04", "2024-03-11"]);
    let (first, second) = (&groups[0], &groups[1]);
    assert_eq!(first["from"], "2024-03-04T00:00:00Z");
    assert_eq!(first["to"], "2024-03-11T00:00:00Z");
    assert_close(&first["mttr"]["median_hours"], 24.0);
    assert_eq!(first["mttr"]["grade"], "Medium");
    assert_close(&second["mttr"]["median_hours"], 6.5);
    assert_eq!(first["deployment_frequency"]["count"], 3);
    assert_close(&first["deployment_frequency"]["per_week"], 3.0);
    assert_eq!(second["deployment_frequency"]["count"], 2);
    assert_close(&first["change_failure_rate"]["rate"], 2.0 / 3.0);
    assert_close(
        &first["change_failure_rate"]["attributed"]["rate"],
        2.0 / 3.0,
    );
    assert_close(&second["change_failure_rate"]["rate"], 0.5);
    assert_close(&second["change_failure_rate"]["attributed"]["rate"], 0.5);
}

#[tokio::test]
async fn a_monthly_group_is_clipped_to_the_window() {
    let (_sei, client) = loaded().await;
    let body = report(&client, "&group_by=month").await;
    let groups = body["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["key"], "2024-03");
    assert_eq!(groups[0]["from"], "2024-03-04T00:00:00Z");
    assert_eq!(groups[0]["to"], "2024-03-18T00:00:00Z");
    for figure in ["mttr", "deployment_frequency", "change_failure_rate"] {
        assert_eq!(groups[0][figure], body["overall"][figure], "{figure}");
    }
}

#[tokio::test]
async fn priority_groups_split_each_figure_by_its_own_records_priority() {
    let (_sei, client) = loaded().await;
    let body = report(&client, "&group_by=priority").await;
    let groups = body["groups"].as_array().expect("groups");
    let keys: Vec<&str> = groups.iter().filter_map(|g| g["key"].as_str()).collect();
    assert_eq!(keys, ["1", "2", "3", "4"]);
    let p1 = &groups[0];
    assert_close(&p1["mttr"]["median_hours"], 2.0);
    assert_eq!(p1["deployment_frequency"]["count"], 1);
    assert_eq!(p1["change_failure_rate"]["failures"], 2);
    assert_eq!(p1["change_failure_rate"]["deployments"], 5);
    assert_eq!(p1["change_failure_rate"]["grade"], "Medium");
    assert_eq!(
        p1["change_failure_rate"]["attributed"]["failed_deployments"],
        1
    );
    let p2 = &groups[1];
    assert_close(&p2["mttr"]["median_hours"], 96.0);
    assert_eq!(p2["deployment_frequency"]["count"], 0);
    assert_eq!(p2["deployment_frequency"]["grade"], "Low");
    assert_eq!(
        p2["change_failure_rate"]["attributed"]["failed_deployments"],
        2
    );
    let p3 = &groups[2];
    assert_eq!(p3["deployment_frequency"]["count"], 3);
    assert_eq!(p3["change_failure_rate"]["failures"], 0);
    assert_eq!(p3["change_failure_rate"]["grade"], "Elite");
    let p4 = &groups[3];
    assert_eq!(p4["mttr"]["count"], 0);
    assert_eq!(p4["mttr"]["median_hours"], Value::Null);
}

#[tokio::test]
async fn a_window_without_deployments_has_no_failure_rate() {
    let (_sei, client) = loaded().await;
    let (status, body) = client
        .get_json(
            "/v1/metrics/dora?integration_id=sn1&from=2023-01-01T00:00:00Z&to=2023-02-01T00:00:00Z",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cfr = &body["overall"]["change_failure_rate"];
    assert_eq!(cfr["deployments"], 0);
    assert_eq!(cfr["rate"], Value::Null);
    assert_eq!(cfr["grade"], Value::Null);
    assert_eq!(body["overall"]["deployment_frequency"]["grade"], "Low");
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_parameter() {
    let (_sei, client) = loaded().await;
    let base = "/v1/metrics/dora?integration_id=sn1&from=2024-03-04T00:00:00Z";
    let cases = [
        (format!("{base}&to=2024-03-18T00:00:00Z&colour=red"), "colour"),
        (format!("{base}&to=2024-03-18T00:00:00Z&group_by=year"), "group_by"),
        (
            format!("{base}&to=2024-03-18T00:00:00Z&mttr_start=closed_at"),
            "mttr_start",
        ),
        (format!("{base}&to=yesterday"), "to"),
        (base.to_owned(), "to"),
        (format!("{base}&to=2024-03-01T00:00:00Z"), "to"),
        (
            "/v1/metrics/dora?from=2024-03-04T00:00:00Z&to=2024-03-18T00:00:00Z".to_owned(),
            "integration_id",
        ),
        (
            format!("{base}&from=2024-03-05T00:00:00Z&to=2024-03-18T00:00:00Z"),
            "from",
        ),
        (
            "/v1/metrics/dora?integration_id=sn1&from=1970-01-01T00:00:00Z&to=2024-03-18T00:00:00Z&group_by=week"
                .to_owned(),
            "group_by",
        ),
    ];
    for (path, field) in cases {
        let (status, body) = client.get_json(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"], "bad_query", "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
}

#[tokio::test]
async fn the_report_needs_the_api_key_like_every_v1_endpoint() {
    let sei = start().await;
    let response = reqwest::get(format!("{}/v1/metrics/dora?{WINDOW}", sei.base_url()))
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn caused_by_is_stored_with_the_incident_and_must_be_a_reference_or_null() {
    let sei = start().await;
    let client = Client::new(&sei);
    let linked = incident(
        "i1",
        "2024-03-04T09:00:00Z",
        "2024-03-04T10:00:00Z",
        None,
        "1",
        "software",
        Some("c1"),
    );
    client
        .ingest_ok("incidents", "k1", &batch(vec![linked], &[]))
        .await;
    let (status, stored) = client.get_json("/v1/servicenow/sn1/incidents/i1").await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["caused_by"]["sys_id"], "c1", "{stored}");

    let mut bad = incident(
        "i2",
        "2024-03-04T09:00:00Z",
        "2024-03-04T10:00:00Z",
        None,
        "1",
        "software",
        None,
    );
    bad["caused_by"] = json!(42);
    let response = client
        .ingest("incidents", "k2", &batch(vec![bad], &[]))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["field"], "caused_by", "{body}");
}
