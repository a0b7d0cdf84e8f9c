//! Keyset paging over rows that share one `sys_updated_on` second.

use crate::common;

use std::collections::BTreeSet;

use common::{get, start};
use nowstream_model::table_api::query::keyset;
use nowstream_servicenow_sim::{GeneratorConfig, SimConfig};

const ROWS: usize = 2_500;
const PAGE: usize = 100;

fn same_second_config() -> SimConfig {
    SimConfig {
        data: GeneratorConfig {
            incidents: ROWS,
            same_second: ROWS,
            change_requests: 0,
            users: 5,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    }
}

fn encode(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

#[tokio::test]
async fn keyset_query_returns_each_row_once_when_all_share_one_second() {
    let sim = start(same_second_config()).await;
    let seconds: BTreeSet<String> = sim
        .snapshot("incident")
        .unwrap()
        .iter()
        .map(|r| r["sys_updated_on"].clone())
        .collect();
    assert_eq!(seconds.len(), 1, "all rows share one second");

    let mut seen = Vec::new();
    let mut cursor: Option<(String, String)> = None;
    let mut pages = 0;
    loop {
        let query = keyset(
            cursor.as_ref().map(|(t, id)| (t.as_str(), id.as_str())),
            None,
            None,
        );
        let reply = get(
            &sim,
            &format!("incident?sysparm_query={}&sysparm_limit={PAGE}&sysparm_fields=sys_id,sys_updated_on", encode(&query)),
        )
        .await;
        assert_eq!(reply.status, 200);
        let rows = reply.rows();
        if rows.is_empty() {
            assert_eq!(reply.header("X-Total-Count"), Some("0"));
            break;
        }
        pages += 1;
        for row in rows {
            seen.push(row["sys_id"].as_str().unwrap().to_owned());
        }
        let last = rows.last().unwrap();
        cursor = Some((
            last["sys_updated_on"].as_str().unwrap().to_owned(),
            last["sys_id"].as_str().unwrap().to_owned(),
        ));
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), ROWS, "no row twice");
    assert_eq!(unique.len(), ROWS, "every row once");
    assert_eq!(pages, ROWS / PAGE);
}

#[tokio::test]
async fn timestamp_only_cursor_loses_rows_sharing_a_second() {
    let sim = start(same_second_config()).await;
    let first = get(
        &sim,
        &format!("incident?sysparm_query=ORDERBYsys_updated_on&sysparm_limit={PAGE}"),
    )
    .await;
    let last_time = first.rows().last().unwrap()["sys_updated_on"]
        .as_str()
        .unwrap()
        .to_owned();
    let next = get(
        &sim,
        &format!(
            "incident?sysparm_query={}&sysparm_limit={PAGE}",
            encode(&format!("sys_updated_on>{last_time}^ORDERBYsys_updated_on"))
        ),
    )
    .await;
    assert!(
        next.rows().is_empty(),
        "the simulator exposes the lost rows of a timestamp-only cursor"
    );
}
