//! Encoded-query filters as a real instance applies them: conditions on known fields limit the
//! rows, a condition on a field the table does not have is dropped silently, and
//! `sys_db_object` says which table a table extends.

use crate::common;

use std::collections::BTreeSet;

use common::{get, small_config, start};
use nowstream_servicenow_sim::RunningSim;

fn encode(q: &str) -> String {
    url::form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

async fn sys_ids(sim: &RunningSim, table: &str, query: &str) -> BTreeSet<String> {
    let reply = get(
        sim,
        &format!(
            "{table}?sysparm_query={}&sysparm_limit=10000&sysparm_fields=sys_id",
            encode(query)
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply
        .rows()
        .iter()
        .map(|row| row["sys_id"].as_str().unwrap().to_owned())
        .collect()
}

fn stored(
    sim: &RunningSim,
    table: &str,
    keep: impl Fn(&str) -> bool,
    field: &str,
) -> BTreeSet<String> {
    sim.snapshot(table)
        .unwrap()
        .iter()
        .filter(|row| keep(row.get(field).map(String::as_str).unwrap_or("")))
        .map(|row| row["sys_id"].clone())
        .collect()
}

#[tokio::test]
async fn a_filter_on_a_known_field_returns_exactly_the_matching_rows() {
    let sim = start(small_config()).await;
    let network = stored(
        &sim,
        "incident",
        |category| category == "network",
        "category",
    );
    assert!(!network.is_empty(), "the generator makes network incidents");
    assert_eq!(sys_ids(&sim, "incident", "category=network").await, network);
}

#[tokio::test]
async fn a_condition_on_an_unknown_field_is_ignored_like_a_real_instance_does() {
    let sim = start(small_config()).await;
    let all = sys_ids(&sim, "incident", "").await;
    let network = sys_ids(&sim, "incident", "category=network").await;
    assert!(network.len() < all.len());
    // Alone, the unknown condition drops out and every row matches.
    assert_eq!(sys_ids(&sim, "incident", "u_no_such_field=x").await, all);
    // Beside a known one, only the known one limits.
    assert_eq!(
        sys_ids(&sim, "incident", "categroy=software^category=network").await,
        network
    );
    // A dot-walk through a field that is no reference is unknown too.
    assert_eq!(
        sys_ids(&sim, "incident", "category.name=x^category=network").await,
        network
    );
}

#[tokio::test]
async fn a_dot_walked_condition_through_a_reference_is_applied() {
    let sim = start(small_config()).await;
    let with_assignee = stored(&sim, "incident", |id| !id.is_empty(), "assigned_to");
    assert!(!with_assignee.is_empty());
    let some_user = sim
        .snapshot("sys_user")
        .unwrap()
        .into_iter()
        .find(|user| {
            sim.snapshot("incident")
                .unwrap()
                .iter()
                .any(|incident| incident["assigned_to"] == user["sys_id"])
        })
        .expect("someone is assigned an incident");
    let theirs = stored(
        &sim,
        "incident",
        |assignee| assignee == some_user["sys_id"],
        "assigned_to",
    );
    let query = format!("assigned_to.user_name={}", some_user["user_name"]);
    assert_eq!(sys_ids(&sim, "incident", &query).await, theirs);
}

#[tokio::test]
async fn sys_db_object_names_task_as_the_parent_of_incident_and_change_request() {
    let sim = start(small_config()).await;
    for (table, parent) in [
        ("incident", "task"),
        ("change_request", "task"),
        ("task", ""),
    ] {
        let reply = get(
            &sim,
            &format!(
                "sys_db_object?sysparm_query=name={table}&sysparm_fields=name,super_class.name"
            ),
        )
        .await;
        assert_eq!(reply.status, 200);
        let rows = reply.rows();
        assert_eq!(rows.len(), 1, "{table}: {rows:?}");
        let found = rows[0]["super_class.name"]
            .as_str()
            .or_else(|| rows[0]["super_class.name"]["value"].as_str())
            .unwrap_or_default();
        assert_eq!(found, parent, "{table}: {rows:?}");
    }
}
