//! A SQLite file keeps records, tombstones and Idempotency-Keys across restarts.

use crate::common;

use common::{Client, INTEGRATION, TENANT, batch, config, user};
use nowstream_model::Entity;
use nowstream_sei_local::{DatabaseLocation, SeiLocal};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn records_survive_a_restart_on_the_same_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sei.db");
    let mut config = config();
    config.database = DatabaseLocation::File(path.clone());

    let body = batch(
        vec![
            user("u1", "2024-01-01T00:00:00Z", 1, "Ada"),
            user("u2", "2024-01-01T00:00:00Z", 1, "Grace"),
        ],
        &["u3"],
    );
    let sei = SeiLocal::start(config.clone()).await.unwrap();
    let first = Client::new(&sei).ingest_ok("users", "batch-1", &body).await;
    assert_eq!(first, json!({"upserted": 2, "deleted": 1, "stale": 0}));
    sei.shutdown().await.unwrap();

    let sei = SeiLocal::start(config).await.unwrap();
    let client = Client::new(&sei);
    let (status, stored) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users/u2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["name"], "Grace");
    let (status, error) = client
        .get_json(&format!("/v1/servicenow/{INTEGRATION}/users/u3"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"], "deleted");
    // The key was remembered too: the replay gets the first answer, not "2 stale".
    assert_eq!(client.ingest_ok("users", "batch-1", &body).await, first);
    let records = sei.records(TENANT, INTEGRATION, Entity::User).unwrap();
    assert_eq!(records.len(), 3);
}

#[tokio::test]
async fn memory_databases_start_empty() {
    let sei = SeiLocal::start(config()).await.unwrap();
    Client::new(&sei)
        .ingest_ok(
            "users",
            "k1",
            &batch(vec![user("u1", "2024-01-01T00:00:00Z", 1, "Ada")], &[]),
        )
        .await;
    sei.shutdown().await.unwrap();
    let sei = SeiLocal::start(config()).await.unwrap();
    assert!(
        sei.records(TENANT, INTEGRATION, Entity::User)
            .unwrap()
            .is_empty()
    );
}
