//! Keyset scans against the simulator: ties within one second, row ACLs, cancelled
//! transactions, resuming.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use nowstream_servicenow::client::{ClientError, Cursor, RetryReason, ScanRequest, WaitSource};
use nowstream_servicenow_sim::{Fault, FaultRule, SimUser};

#[tokio::test]
async fn keyset_scan_returns_each_of_2500_same_second_rows_exactly_once() {
    let sim = start(sim_config(2500, 2500)).await;
    let stored = sim.snapshot("incident").unwrap();
    let seconds: BTreeSet<&String> = stored.iter().map(|r| &r["sys_updated_on"]).collect();
    assert_eq!(seconds.len(), 1, "all rows share one second");

    let client = client(basic_config(&sim));
    let pages = drain(client.scan(ScanRequest::new("incident").page_size(100))).await;

    assert_eq!(unique_sys_ids(&pages), stored_sys_ids(&sim, "incident"));
    assert!(pages.iter().all(|p| p.records.len() == 100));
    // The end is known by count: no extra request for an empty last page.
    assert_eq!(pages.len(), 25);
    assert_eq!(requests_to(&sim, INCIDENT_PATH), 25);
    assert_eq!(pages.last().unwrap().remaining, Some(0));
}

#[tokio::test]
async fn records_come_back_exactly_as_returned_with_values_display_values_and_links() {
    let sim = start(sim_config(30, 0)).await;
    let client = client(basic_config(&sim));
    let pages = drain(client.scan(ScanRequest::new("incident").page_size(10))).await;
    let record = &pages[0].records[0].to_map().expect("fields");
    let opened_by = &record["opened_by"];
    assert!(opened_by["value"].is_string(), "{opened_by}");
    assert!(opened_by["display_value"].is_string(), "{opened_by}");
    assert!(
        opened_by["link"]
            .as_str()
            .unwrap()
            .contains("/api/now/table/sys_user/"),
        "reference links are kept: {opened_by}"
    );
    let query = sim.stats().recent[0].query.clone().unwrap();
    assert!(query.contains("sysparm_display_value=all"), "{query}");
    assert!(!query.contains("sysparm_exclude_reference_link"), "{query}");
}

/// Hides every incident whose sys_id starts with one of `prefixes` from the integration
/// user, as a row ACL would (after the limit is applied).
fn hide_prefixes(config: &mut nowstream_servicenow_sim::SimConfig, prefixes: &[char]) {
    let query = prefixes
        .iter()
        .map(|p| format!("sys_idSTARTSWITH{p}"))
        .collect::<Vec<_>>()
        .join("^OR");
    let mut user = SimUser::integration();
    user.hidden_rows.insert("incident".to_owned(), query);
    config.users = vec![user, SimUser::admin()];
}

#[tokio::test]
async fn short_and_empty_pages_from_row_acls_do_not_end_the_scan_early() {
    // All rows in one second, so scan order is sys_id order and each hidden prefix is a
    // contiguous block of ~60 rows: pages of 20 inside a block come back empty, pages at
    // its edges come back short. Hiding the tail too checks that the scan still ends.
    let hidden = ['2', '3', '4', 'e', 'f'];
    let mut config = sim_config(1000, 1000);
    hide_prefixes(&mut config, &hidden);
    let sim = start(config).await;

    let client = client(basic_config(&sim));
    let pages = drain(client.scan(ScanRequest::new("incident").page_size(20))).await;

    let expected: BTreeSet<String> = stored_sys_ids(&sim, "incident")
        .into_iter()
        .filter(|id| !id.starts_with(hidden))
        .collect();
    assert_eq!(unique_sys_ids(&pages), expected);
    assert!(
        pages.iter().any(|p| p.records.len() < 20),
        "some pages were short"
    );
    let queries: Vec<String> = sim
        .stats()
        .recent
        .iter()
        .filter_map(|r| r.query.clone())
        .collect();
    assert!(
        queries.iter().any(|q| q.contains("sysparm_offset=")),
        "empty windows are skipped with sysparm_offset"
    );
}

#[tokio::test]
async fn injected_short_pages_continue_from_the_last_row() {
    let sim = start(sim_config(300, 100)).await;
    sim.set_faults(vec![FaultRule::every_nth(2, Fault::ShortPage { keep: 3 })]);
    let client = client(basic_config(&sim));
    let pages = drain(client.scan(ScanRequest::new("incident").page_size(25))).await;
    assert_eq!(unique_sys_ids(&pages), stored_sys_ids(&sim, "incident"));
    assert!(pages.iter().any(|p| p.records.len() == 3));
}

#[tokio::test]
async fn maximum_execution_time_exceeded_halves_the_page_size_and_the_scan_completes() {
    for http_status in [200, 500] {
        let sim = start(sim_config(400, 50)).await;
        sim.set_faults(vec![FaultRule::always(Fault::TransactionCancelled {
            above_limit: 100,
            http_status,
        })]);
        let mut config = basic_config(&sim);
        let events = Events::attach(&mut config);
        let client = client(config);
        let mut scan = client.scan(ScanRequest::new("incident").page_size(1000));
        let mut pages = Vec::new();
        while let Some(page) = scan.next_page().await.unwrap() {
            pages.push(page);
        }
        // 1000 → 500 → 250 → 125 → 62.
        assert_eq!(scan.page_size(), 62, "status {http_status}");
        assert!(pages.iter().all(|p| p.page_size == 62));
        assert_eq!(unique_sys_ids(&pages), stored_sys_ids(&sim, "incident"));
        let halvings: Vec<_> = events
            .all()
            .into_iter()
            .filter(|e| e.reason == RetryReason::TransactionCancelled)
            .collect();
        assert_eq!(halvings.len(), 4, "status {http_status}");
        assert!(halvings.iter().all(|e| e.source == WaitSource::Immediate));
    }
}

#[tokio::test]
async fn a_cancelled_transaction_at_the_page_size_floor_is_retried_then_reported() {
    let sim = start(sim_config(50, 0)).await;
    sim.set_faults(vec![FaultRule::always(Fault::TransactionCancelled {
        above_limit: 5,
        http_status: 200,
    })]);
    let mut config = basic_config(&sim);
    config.max_retries = 2;
    let client = client(config);
    let mut scan = client.scan(ScanRequest::new("incident").page_size(40));
    let err = scan.next_page().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::RetriesExhausted {
                reason: RetryReason::TransactionCancelled,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("maximum execution time exceeded"), "{text}");
    assert!(text.contains("table incident"), "{text}");
    assert_eq!(scan.page_size(), 10);
    // 40 → 20 → 10, then three attempts at the floor.
    assert_eq!(requests_to(&sim, INCIDENT_PATH), 5);
}

#[tokio::test]
async fn a_scan_resumes_after_a_cursor_and_since_a_time() {
    let sim = start(sim_config(200, 0)).await;
    let client = client(basic_config(&sim));
    let all = drain(client.scan(ScanRequest::new("incident").page_size(50))).await;
    let records = maps(&all);
    assert_eq!(records.len(), 200);

    // Resume after the 120th row: exactly the last 80 come back.
    let cursor = Cursor::from_record(&records[119]).unwrap();
    let rest = drain(client.scan(ScanRequest::new("incident").after(cursor).page_size(30))).await;
    let rest = maps(&rest);
    let rest_ids: Vec<&str> = rest.iter().map(|r| value(r, "sys_id")).collect();
    let expected: Vec<&str> = records[120..].iter().map(|r| value(r, "sys_id")).collect();
    assert_eq!(rest_ids, expected);

    // Since the 120th row's second: that row and everything after (and its second's ties).
    let since = Cursor::from_record(&records[119]).unwrap().updated_on;
    let from = drain(client.scan(ScanRequest::new("incident").since(since))).await;
    let count: usize = from.iter().map(|p| p.records.len()).sum();
    let expected = records
        .iter()
        .filter(|r| Cursor::from_record(r).unwrap().updated_on >= since)
        .count();
    assert_eq!(count, expected);
}

#[tokio::test]
async fn a_filter_and_field_list_narrow_the_scan() {
    let sim = start(sim_config(150, 0)).await;
    let client = client(basic_config(&sim));
    let pages = drain(
        client.scan(
            ScanRequest::new("incident")
                .filter("priority=1")
                .fields(["number", "priority"])
                .page_size(10),
        ),
    )
    .await;
    let expected = sim
        .snapshot("incident")
        .unwrap()
        .into_iter()
        .filter(|r| r.get("priority").map(String::as_str) == Some("1"))
        .count();
    let records = maps(&pages);
    assert_eq!(records.len(), expected);
    for record in &records {
        assert_eq!(value(record, "priority"), "1");
        let keys: BTreeSet<&str> = record.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["number", "priority", "sys_id", "sys_updated_on"])
        );
    }
}

#[tokio::test]
async fn a_failed_page_leaves_the_scan_where_it_was() {
    let sim = start(sim_config(60, 0)).await;
    let mut config = basic_config(&sim);
    config.max_retries = 0;
    let client = client(config);
    let mut scan = client.scan(ScanRequest::new("incident").page_size(20));
    let first = scan.next_page().await.unwrap().unwrap();
    sim.set_faults(vec![FaultRule::next(1, Fault::ServerError { status: 503 })]);
    assert!(scan.next_page().await.unwrap_err().is_transient());
    assert_eq!(scan.cursor(), Some(&first.cursor));
    let mut rest = Vec::new();
    while let Some(page) = scan.next_page().await.unwrap() {
        rest.push(page);
    }
    rest.insert(0, first);
    assert_eq!(unique_sys_ids(&rest), stored_sys_ids(&sim, "incident"));
}
