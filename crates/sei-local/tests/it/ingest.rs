//! Batches: validation, versions, tombstones, idempotency, reading back.

use crate::common;

use chrono::{Duration, SecondsFormat, Utc};
use common::{Client, INTEGRATION, TENANT, batch, incident, start, user};
use nowstream_model::Entity;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn counts(upserted: u64, deleted: u64, stale: u64) -> Value {
    json!({"upserted": upserted, "deleted": deleted, "stale": stale})
}

#[tokio::test]
async fn a_bad_record_rejects_the_whole_batch_and_names_its_index_and_field() {
    let sei = start().await;
    let client = Client::new(&sei);
    let mut bad = incident("i2", "2024-01-01T00:00:00Z", 1);
    bad["sys_updated_on"] = json!("yesterday");
    let body = batch(
        vec![
            incident("i0", "2024-01-01T00:00:00Z", 1),
            incident("i1", "2024-01-01T00:00:00Z", 1),
            bad,
        ],
        &[],
    );
    let response = client.ingest("incidents", "k1", &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "bad_record");
    assert_eq!(error["record_index"], 2);
    assert_eq!(error["field"], "sys_updated_on");
    assert!(
        error["message"].as_str().unwrap().contains("upserts[2]"),
        "{error}"
    );
    // All or nothing: the good records before it were not stored either.
    assert!(
        sei.records(TENANT, INTEGRATION, Entity::Incident)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_record_of_the_wrong_entity_shape_is_refused() {
    let sei = start().await;
    let client = Client::new(&sei);
    // A field definition needs `table`; a user record lacks it.
    let body = batch(vec![user("d1", "2024-01-01T00:00:00Z", 1, "x")], &[]);
    let response = client.ingest("field_definitions", "k1", &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["record_index"], 0);
    assert_eq!(error["field"], "table");
    // With `table` it parses, but `name` is no field of a field definition.
    let mut record = user("d1", "2024-01-01T00:00:00Z", 1, "x");
    record["table"] = json!("incident");
    let response = client
        .ingest("field_definitions", "k2", &batch(vec![record], &[]))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["field"], "name");
}

#[tokio::test]
async fn the_newest_version_wins_whatever_the_arrival_order() {
    // The update counter decides first: a later write may carry an earlier time (a late
    // commit, a node whose clock is behind), and a lower count with a later time is older.
    let sei = start().await;
    let client = Client::new(&sei);
    let v1 = user("u1", "2024-01-01T00:00:00Z", 1, "first");
    let v2 = user("u1", "2024-01-01T00:00:00Z", 2, "second"); // same second, higher count
    let v0 = user("u1", "2024-01-02T00:00:00Z", 0, "zeroth"); // later second, lower count
    let result = client.ingest_ok("users", "k1", &batch(vec![v0], &[])).await;
    assert_eq!(result, counts(1, 0, 0));
    let result = client
        .ingest_ok("users", "k2", &batch(vec![v1, v2], &[]))
        .await;
    assert_eq!(result, counts(2, 0, 0), "earlier times, higher counts");
    let (_, stored) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users/u1"))
        .await;
    assert_eq!(stored["name"], "second");

    // The other order ends the same.
    let w0 = user("u2", "2024-01-02T00:00:00Z", 0, "zeroth");
    let w1 = user("u2", "2024-01-01T00:00:00Z", 1, "first");
    let w2 = user("u2", "2024-01-01T00:00:00Z", 2, "second");
    let result = client
        .ingest_ok("users", "k3", &batch(vec![w1, w2, w0], &[]))
        .await;
    assert_eq!(result, counts(2, 0, 1));
    let (_, stored) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users/u2"))
        .await;
    assert_eq!(stored["name"], "second");
    assert_eq!(stored["sys_mod_count"], 2);
}

#[tokio::test]
async fn equal_and_older_versions_count_as_stale_and_change_nothing() {
    let sei = start().await;
    let client = Client::new(&sei);
    client
        .ingest_ok(
            "users",
            "k1",
            &batch(vec![user("u1", "2024-01-01T10:00:00Z", 5, "held")], &[]),
        )
        .await;
    let replay = batch(
        vec![
            user("u1", "2024-01-01T10:00:00Z", 5, "equal version, other name"),
            user("u1", "2024-01-01T10:00:00Z", 4, "older count"),
            user("u1", "2024-01-01T09:59:59Z", 5, "same count, older time"),
            user("u1", "2024-01-01T10:00:01Z", 4, "older count, later time"),
        ],
        &[],
    );
    assert_eq!(
        client.ingest_ok("users", "k2", &replay).await,
        counts(0, 0, 4)
    );
    let stored = sei.records(TENANT, INTEGRATION, Entity::User).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body().unwrap()["name"], "held");
}

#[tokio::test]
async fn a_delete_is_not_undone_by_an_older_upsert_replayed_later() {
    let sei = start().await;
    let client = Client::new(&sei);
    let v1 = incident("i1", "2024-01-01T00:00:00Z", 1);
    let v2 = incident("i1", "2024-01-02T00:00:00Z", 2);
    client
        .ingest_ok("incidents", "k1", &batch(vec![v1.clone()], &[]))
        .await;
    assert_eq!(
        client
            .ingest_ok("incidents", "k2", &batch(vec![], &["i1"]))
            .await,
        counts(0, 1, 0)
    );
    // The whole stream replayed (a sink restart), and a version that raced the delete.
    let replay = batch(vec![v1, v2], &[]);
    assert_eq!(
        client.ingest_ok("incidents", "k3", &replay).await,
        counts(0, 0, 2)
    );
    let (status, error) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/incidents/i1"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"], "deleted");
    let (_, page) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/incidents"))
        .await;
    assert_eq!(page["items"], json!([]));
    assert!(sei.records(TENANT, INTEGRATION, Entity::Incident).unwrap()[0].is_deleted());
}

#[tokio::test]
async fn a_record_changed_after_its_deletion_comes_back() {
    let sei = start().await;
    let client = Client::new(&sei);
    client
        .ingest_ok(
            "users",
            "k1",
            &batch(vec![user("u1", "2024-01-01T00:00:00Z", 1, "old")], &["u1"]),
        )
        .await;
    // Restored in ServiceNow after the delete arrived: its update time is later.
    let later = (Utc::now() + Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let result = client
        .ingest_ok(
            "users",
            "k2",
            &batch(vec![user("u1", &later, 2, "restored")], &[]),
        )
        .await;
    assert_eq!(result, counts(1, 0, 0));
    let (status, stored) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users/u1"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["name"], "restored");
}

#[tokio::test]
async fn a_delete_of_an_unseen_record_stops_its_late_upsert() {
    let sei = start().await;
    let client = Client::new(&sei);
    client
        .ingest_ok("users", "k1", &batch(vec![], &["u9"]))
        .await;
    let late = batch(vec![user("u9", "2024-01-01T00:00:00Z", 1, "late")], &[]);
    assert_eq!(
        client.ingest_ok("users", "k2", &late).await,
        counts(0, 0, 1)
    );
}

#[tokio::test]
async fn an_idempotency_key_replay_returns_the_first_response() {
    let sei = start().await;
    let client = Client::new(&sei);
    let body = batch(
        vec![
            user("u1", "2024-01-01T00:00:00Z", 1, "a"),
            user("u2", "2024-01-01T00:00:00Z", 1, "b"),
        ],
        &["u3"],
    );
    let first = client.ingest_ok("users", "batch-42", &body).await;
    assert_eq!(first, counts(2, 1, 0));
    let replay = client.ingest_ok("users", "batch-42", &body).await;
    assert_eq!(replay, first);
    // The same batch under a new key is applied again: everything is stale now.
    let fresh = client.ingest_ok("users", "batch-43", &body).await;
    assert_eq!(fresh, counts(0, 1, 2));
    // A gzip replay of the same batch is the same batch.
    let gzip_replay = client.ingest_gzip("users", "batch-42", &body).await;
    assert_eq!(gzip_replay.json::<Value>().await.unwrap(), first);
}

#[tokio::test]
async fn listing_pages_through_live_records_by_sys_id() {
    let sei = start().await;
    let client = Client::new(&sei);
    let users = (0..7)
        .map(|i| {
            user(
                &format!("u{i}"),
                "2024-01-01T00:00:00Z",
                1,
                &format!("n{i}"),
            )
        })
        .collect();
    client
        .ingest_ok("users", "k1", &batch(users, &["u3"]))
        .await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/servicenow/{INTEGRATION}/users?limit=2");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = client.get_json(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["sys_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["u0", "u1", "u2", "u4", "u5", "u6"]);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn a_limit_out_of_range_or_a_forged_cursor_is_a_bad_query() {
    let sei = start().await;
    let client = Client::new(&sei);
    for query in ["limit=0", "limit=10001", "cursor=!!!"] {
        let (status, error) = client
            .get_json(&format!("/v1/servicenow/{INTEGRATION}/users?{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error["error"], "bad_query");
    }
}

#[tokio::test]
async fn getting_an_unknown_record_is_not_found() {
    let sei = start().await;
    let (status, error) = Client::new(&sei)
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users/nobody"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"], "not_found");
}

#[tokio::test]
async fn stored_records_read_back_as_the_model_types() {
    let sei = start().await;
    let client = Client::new(&sei);
    let mut record = incident("i1", "2024-01-01T00:00:00Z", 1);
    record["priority"] = json!({"value": "1", "label": "1 - Critical"});
    client
        .ingest_ok("incidents", "k1", &batch(vec![record], &[]))
        .await;
    let (_, stored) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/incidents/i1"))
        .await;
    let incident: nowstream_model::Incident = serde_json::from_value(stored).unwrap();
    assert_eq!(incident.number.as_deref(), Some("INCi1"));
    assert_eq!(
        incident.priority.and_then(|p| p.value).as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn schema_v2_fields_are_stored_in_the_body_and_v1_bodies_without_them_are_accepted() {
    let sei = start().await;
    let client = Client::new(&sei);
    let change =
        json!({"sys_id": "c83c5e5347c12200e0ef563dbb9a7190", "display_value": "CHG0030002"});
    let mut caused = incident("i2", "2024-01-01T00:00:00Z", 1);
    caused["caused_by"] = change.clone();
    // A sender still on v1 leaves the field out altogether.
    let from_v1 = incident("i1", "2024-01-01T00:00:00Z", 1);
    assert!(from_v1.get("caused_by").is_none());
    client
        .ingest_ok("incidents", "k1", &batch(vec![from_v1, caused], &[]))
        .await;
    let mut numbered = user("u2", "2024-01-01T00:00:00Z", 1, "Zoë");
    numbered["employee_number"] = json!("100042");
    let user_from_v1 = user("u1", "2024-01-01T00:00:00Z", 1, "Ada");
    client
        .ingest_ok("users", "k2", &batch(vec![user_from_v1, numbered], &[]))
        .await;

    let stored = |path: String| {
        let client = client.clone();
        async move {
            let (status, body) = client.get_json(&path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let incidents = format!("/v1/servicenow/{INTEGRATION}/incidents");
    let users = format!("/v1/servicenow/{INTEGRATION}/users");
    assert_eq!(stored(format!("{incidents}/i2")).await["caused_by"], change);
    let v1_incident = stored(format!("{incidents}/i1")).await;
    assert!(v1_incident.as_object().unwrap().contains_key("caused_by"));
    assert!(v1_incident["caused_by"].is_null());
    assert_eq!(
        stored(format!("{users}/u2")).await["employee_number"],
        "100042"
    );
    assert!(stored(format!("{users}/u1")).await["employee_number"].is_null());
}

#[tokio::test]
async fn a_withheld_v2_field_that_carries_a_value_is_refused() {
    let sei = start().await;
    let client = Client::new(&sei);
    let mut record = user("u1", "2024-01-01T00:00:00Z", 1, "Zoë");
    record["employee_number"] = json!("100042");
    record["excluded_fields"] = json!(["employee_number"]);
    let response = client
        .ingest("users", "k1", &batch(vec![record], &[]))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["field"], "employee_number", "{error}");
}
