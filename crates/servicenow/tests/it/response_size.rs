//! `max_response_bytes`: a response body is never read past the limit. A page over it is asked
//! again with half the rows; a single record over it is reported by sys_id and the scan goes
//! on past it.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use nowstream_servicenow::client::{ClientError, ScanPage, ScanRequest};
use serde_json::json;

/// Gives every incident a description of `len` characters; returns their sys_ids in order.
fn long_descriptions(sim: &nowstream_servicenow_sim::RunningSim, len: usize) -> Vec<String> {
    let ids: Vec<String> = stored_sys_ids(sim, "incident").into_iter().collect();
    for id in &ids {
        sim.update("incident", id, json!({"description": "d".repeat(len)}))
            .expect("update");
    }
    ids
}

/// Every page of a scan, including pages that only report an oversized record.
async fn all_pages(
    mut scan: nowstream_servicenow::client::KeysetScan,
) -> Result<Vec<ScanPage>, ClientError> {
    let mut pages = Vec::new();
    while let Some(page) = scan.next_page().await? {
        pages.push(page);
    }
    assert!(scan.is_finished());
    Ok(pages)
}

#[tokio::test]
async fn a_page_over_the_response_limit_is_split_and_every_record_arrives() {
    let sim = start(sim_config(40, 0)).await;
    // About 10 kB per record with display_value=all: a page of 20 is ~200 kB.
    long_descriptions(&sim, 4000);
    let mut config = basic_config(&sim);
    config.max_response_bytes = 50_000;
    let client = client(config);

    let pages = all_pages(client.scan(ScanRequest::new("incident").page_size(20)))
        .await
        .expect("the scan completes");

    assert_eq!(unique_sys_ids(&pages), stored_sys_ids(&sim, "incident"));
    assert!(pages.iter().all(|page| page.oversized.is_empty()));
    assert!(
        pages.iter().all(|page| page.page_size < 20),
        "every page was asked again with fewer rows: {:?}",
        pages.iter().map(|page| page.page_size).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn one_record_over_the_response_limit_is_reported_by_sys_id_and_the_scan_goes_on() {
    let sim = start(sim_config(30, 0)).await;
    let ids: Vec<String> = stored_sys_ids(&sim, "incident").into_iter().collect();
    let big = ids[11].clone();
    // The big record in the middle of the scan: changed after the generated ones, before ten
    // others.
    let now = chrono::Utc::now();
    sim.set_now(Some(now - chrono::Duration::seconds(10)));
    sim.update(
        "incident",
        &big,
        json!({"description": "d".repeat(300_000)}),
    )
    .expect("update");
    sim.set_now(Some(now - chrono::Duration::seconds(5)));
    for id in ids.iter().filter(|id| **id != big).take(10) {
        sim.update("incident", id, json!({"short_description": "later"}))
            .expect("update");
    }
    sim.set_now(None);
    let mut config = basic_config(&sim);
    config.max_response_bytes = 100_000;
    let client = client(config);

    let pages = all_pages(client.scan(ScanRequest::new("incident").page_size(10)))
        .await
        .expect("the scan goes on past the oversized record");

    let oversized: Vec<&str> = pages
        .iter()
        .flat_map(|page| &page.oversized)
        .map(|record| value(&record.keys, "sys_id"))
        .collect();
    assert_eq!(oversized, [big.as_str()]);
    let keys = &pages
        .iter()
        .find(|page| !page.oversized.is_empty())
        .expect("a page reports it")
        .oversized[0];
    assert_eq!(keys.limit, 100_000);
    assert!(
        keys.keys.contains_key("sys_updated_on") && !keys.keys.contains_key("description"),
        "only its keys were asked for: {:?}",
        keys.keys.keys().collect::<Vec<_>>()
    );
    let expected: BTreeSet<String> = ids.iter().filter(|id| **id != big).cloned().collect();
    assert_eq!(unique_sys_ids(&pages), expected);
    // The page size went back up after the oversized record: the scan did not crawl on at
    // one row per request.
    assert!(
        pages.last().is_some_and(|page| page.page_size == 10),
        "{:?}",
        pages.iter().map(|page| page.page_size).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_response_over_the_limit_is_an_error_for_a_single_request() {
    let sim = start(sim_config(20, 0)).await;
    long_descriptions(&sim, 4000);
    let mut config = basic_config(&sim);
    config.max_response_bytes = 20_000;
    let client = client(config);
    let request = nowstream_servicenow::client::ListRequest {
        table: "incident".to_owned(),
        query: String::new(),
        limit: 20,
        offset: 0,
        fields: None,
    };
    let error = client.list_page(&request).await.unwrap_err();
    assert!(
        matches!(error, ClientError::ResponseTooLarge { limit: 20_000, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("max_response_bytes"), "{error}");
}

/// A real instance sends large Table API responses chunked, without `Content-Length`, so the
/// limit must hold while the body streams in. This server never ends its body: a client that
/// read bodies whole would wait (and grow) for ever.
#[tokio::test]
async fn a_chunked_response_without_an_end_is_cut_off_at_the_limit() {
    use axum::body::{Body, Bytes};
    use axum::routing::get;

    let endless = || {
        let opening = std::iter::once(Bytes::from_static(br#"{"result":["#));
        let rows = std::iter::repeat_with(|| {
            Bytes::from(format!(r#"{{"description":"{}"}},"#, "d".repeat(8_000)))
        });
        Body::from_stream(futures::stream::iter(
            opening.chain(rows).map(Ok::<_, std::convert::Infallible>),
        ))
    };
    let app = axum::Router::new().route(
        "/api/now/table/incident",
        get(move || async move { endless() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = url::Url::parse(&format!("http://{address}/")).expect("server URL");
    let mut config = nowstream_servicenow::client::ClientConfig::new(
        url,
        basic_auth(nowstream_servicenow_sim::DEFAULT_INTEGRATION_PASSWORD),
    );
    config.allow_http = true;
    config.max_response_bytes = 200_000;
    let client = client(config);
    let request = nowstream_servicenow::client::ListRequest {
        table: "incident".to_owned(),
        query: String::new(),
        limit: 1000,
        offset: 0,
        fields: None,
    };

    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        client.list_page(&request),
    )
    .await
    .expect("the client stops reading at the limit instead of waiting for an end");
    let error = outcome.unwrap_err();
    assert!(
        matches!(error, ClientError::ResponseTooLarge { limit: 200_000, .. }),
        "{error}"
    );
}
