//! Table API semantics over real HTTP: display values, dot-walking, fields, paging headers,
//! writes, errors, ACLs.

use crate::common;

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use common::{as_integration, client, get, send, small_config, start};
use nowstream_servicenow_sim::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, DEFAULT_INTEGRATION_USER, SimUser,
};
use serde_json::{Value, json};

fn field<'a>(record: &'a nowstream_servicenow_sim::Record, name: &str) -> &'a str {
    record.get(name).map_or("", String::as_str)
}

#[tokio::test]
async fn display_value_all_gives_labels_values_and_reference_links() {
    let sim = start(small_config()).await;
    let reply = get(&sim, "incident?sysparm_query=state=7^assigned_toISNOTEMPTY&sysparm_limit=1&sysparm_display_value=all").await;
    assert_eq!(reply.status, 200);
    let row = &reply.rows()[0];
    assert_eq!(
        row["state"],
        json!({"display_value": "Closed", "value": "7"})
    );
    let assignee_id = row["assigned_to"]["value"].as_str().unwrap();
    let user = sim.get("sys_user", assignee_id).unwrap().unwrap();
    assert_eq!(row["assigned_to"]["display_value"], field(&user, "name"));
    assert_eq!(
        row["assigned_to"]["link"],
        format!("{}/api/now/table/sys_user/{assignee_id}", sim.base_url())
    );
    let priority = row["priority"]["value"].as_str().unwrap();
    assert!(
        row["priority"]["display_value"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{priority} - "))
    );
    assert!(
        row["u_customer_impact"]["display_value"].is_string(),
        "custom field present: {row}"
    );
}

#[tokio::test]
async fn display_value_true_and_false_shape_references_and_choices() {
    let sim = start(small_config()).await;
    let q = "incident?sysparm_query=state=7^assigned_toISNOTEMPTY&sysparm_limit=1";
    let display = get(&sim, &format!("{q}&sysparm_display_value=true")).await;
    let row = &display.rows()[0];
    assert_eq!(row["state"], "Closed");
    assert!(
        row["assigned_to"]["display_value"].is_string() && row["assigned_to"]["link"].is_string()
    );

    let raw = get(&sim, &format!("{q}&sysparm_display_value=false")).await;
    let row = &raw.rows()[0];
    assert_eq!(row["state"], "7");
    assert!(row["assigned_to"]["value"].is_string() && row["assigned_to"]["link"].is_string());

    let plain = get(&sim, &format!("{q}&sysparm_exclude_reference_link=true")).await;
    let row = &plain.rows()[0];
    assert!(row["assigned_to"].is_string(), "{row}");
    assert_eq!(row["assigned_to"], raw.rows()[0]["assigned_to"]["value"]);
}

#[tokio::test]
async fn date_time_display_values_are_in_the_users_zone_not_utc() {
    let sim = start(small_config()).await;
    let reply = get(
        &sim,
        "incident?sysparm_limit=1&sysparm_display_value=all&sysparm_fields=opened_at",
    )
    .await;
    let opened = &reply.rows()[0]["opened_at"];
    let value = nowstream_model::table_api::parse_time(opened["value"].as_str().unwrap()).unwrap();
    let shown =
        nowstream_model::table_api::parse_time(opened["display_value"].as_str().unwrap()).unwrap();
    assert_eq!(
        value - shown,
        chrono::Duration::hours(5),
        "default zone is UTC-5"
    );
}

#[tokio::test]
async fn dot_walked_fields_come_back_under_their_dotted_name() {
    let sim = start(small_config()).await;
    let reply = get(
        &sim,
        "incident?sysparm_query=business_serviceISNOTEMPTY&sysparm_limit=5&sysparm_display_value=all&sysparm_fields=number,business_service,business_service.department",
    )
    .await;
    for row in reply.rows() {
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["number", "business_service", "business_service.department"])
        );
        let service = sim
            .get(
                "cmdb_ci_service",
                row["business_service"]["value"].as_str().unwrap(),
            )
            .unwrap()
            .unwrap();
        let department = sim
            .get("cmn_department", field(&service, "department"))
            .unwrap()
            .unwrap();
        assert_eq!(
            row["business_service.department"]["value"],
            field(&service, "department")
        );
        assert_eq!(
            row["business_service.department"]["display_value"],
            field(&department, "name")
        );
        assert!(
            row["business_service.department"]["link"]
                .as_str()
                .unwrap()
                .contains("/cmn_department/")
        );
    }
}

#[tokio::test]
async fn queries_can_dot_walk_and_roles_of_the_integration_user_are_listed() {
    let sim = start(small_config()).await;
    let reply = get(
        &sim,
        &format!("sys_user_has_role?sysparm_query=user.user_name={DEFAULT_INTEGRATION_USER}&sysparm_display_value=true&sysparm_fields=role"),
    )
    .await;
    let roles: BTreeSet<&str> = reply
        .rows()
        .iter()
        .map(|r| r["role"]["display_value"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from([
            "itil",
            "personalize_choices",
            "personalize_dictionary",
            "user_admin",
            // The custom role an administrator gave read access to sys_audit_delete.
            nowstream_servicenow_sim::AUDIT_READ_ROLE,
        ])
    );
}

#[tokio::test]
async fn total_count_and_link_headers_describe_the_result_set() {
    let sim = start(small_config()).await;
    let active = sim
        .snapshot("incident")
        .unwrap()
        .iter()
        .filter(|r| field(r, "active") == "true")
        .count();
    assert!(active > 25);
    let reply = get(
        &sim,
        "incident?sysparm_query=active=true^ORDERBYnumber&sysparm_limit=10&sysparm_offset=10",
    )
    .await;
    assert_eq!(reply.rows().len(), 10);
    assert_eq!(
        reply.header("X-Total-Count"),
        Some(active.to_string().as_str())
    );
    let link = reply.header("Link").unwrap().to_owned();
    let rels: Vec<&str> = link
        .split(',')
        .map(|l| l.rsplit(";rel=").next().unwrap())
        .collect();
    assert_eq!(rels, ["\"first\"", "\"prev\"", "\"next\"", "\"last\""]);

    let next = link
        .split(',')
        .find(|l| l.ends_with("rel=\"next\""))
        .unwrap();
    let next_url = next.trim_start_matches('<').split('>').next().unwrap();
    let followed = send(as_integration(client().get(next_url))).await;
    assert_eq!(followed.status, 200);
    let numbers = |r: &common::Reply| {
        r.rows()
            .iter()
            .map(|x| x["number"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let all = get(
        &sim,
        "incident?sysparm_query=active=true^ORDERBYnumber&sysparm_limit=30",
    )
    .await;
    assert_eq!(numbers(&followed), numbers(&all)[20..30]);

    let last_page = get(
        &sim,
        &format!(
            "incident?sysparm_query=active=true&sysparm_limit=10&sysparm_offset={}",
            active - 1
        ),
    )
    .await;
    assert!(!last_page.header("Link").unwrap().contains("rel=\"next\""));
    let no_count = get(&sim, "incident?sysparm_limit=1&sysparm_no_count=true").await;
    assert!(no_count.header("X-Total-Count").is_none());
}

#[tokio::test]
async fn order_by_desc_sorts_and_limit_defaults_to_everything() {
    let sim = start(small_config()).await;
    let reply = get(
        &sim,
        "incident?sysparm_query=ORDERBYDESCnumber&sysparm_fields=number",
    )
    .await;
    let numbers: Vec<&str> = reply
        .rows()
        .iter()
        .map(|r| r["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers.len(), 120);
    let mut sorted = numbers.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(numbers, sorted);
}

#[tokio::test]
async fn post_patch_put_and_delete_follow_servicenow_semantics() {
    let sim = start(small_config()).await;
    let t0 = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
    sim.set_now(Some(t0));
    let base = format!("{}/api/now/table/incident", sim.base_url());
    let created = send(
        as_integration(client().post(&base))
            .json(&json!({"short_description": "Disk full", "urgency": "1", "impact": "1"})),
    )
    .await;
    assert_eq!(created.status, 201);
    let rec = &created.body["result"];
    let sys_id = rec["sys_id"].as_str().unwrap().to_owned();
    assert_eq!(sys_id.len(), 32);
    assert!(sys_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(rec["sys_mod_count"], "0");
    assert_eq!(rec["sys_created_on"], "2025-03-01 12:00:00");
    assert_eq!(rec["sys_updated_on"], "2025-03-01 12:00:00");
    assert_eq!(rec["sys_created_by"], DEFAULT_INTEGRATION_USER);
    assert_eq!(rec["priority"], "1");
    assert!(rec["number"].as_str().unwrap().starts_with("INC"));
    assert_eq!(
        created.header("Location"),
        Some(format!("{base}/{sys_id}").as_str())
    );

    sim.set_now(Some(t0 + chrono::Duration::seconds(90)));
    let patched = send(
        as_integration(client().patch(format!("{base}/{sys_id}"))).json(&json!({"state": "6"})),
    )
    .await;
    assert_eq!(patched.status, 200);
    let rec = &patched.body["result"];
    assert_eq!(rec["sys_mod_count"], "1");
    assert_eq!(rec["sys_updated_on"], "2025-03-01 12:01:30");
    assert_eq!(rec["sys_created_on"], "2025-03-01 12:00:00");
    assert_eq!(rec["resolved_at"], "2025-03-01 12:01:30");

    let put = send(
        as_integration(client().put(format!("{base}/{sys_id}")))
            .json(&json!({"close_code": "Solution provided"})),
    )
    .await;
    assert_eq!(put.body["result"]["sys_mod_count"], "2");

    let deleted = send(as_integration(client().delete(format!("{base}/{sys_id}")))).await;
    assert_eq!(deleted.status, 204);
    let gone = send(as_integration(client().get(format!("{base}/{sys_id}")))).await;
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.body,
        json!({"error": {"message": "No Record found", "detail": "Record doesn't exist or ACL restricts the record retrieval"}, "status": "failure"})
    );
    let audit = get(
        &sim,
        &format!("sys_audit_delete?sysparm_query=documentkey={sys_id}"),
    )
    .await;
    assert_eq!(audit.rows().len(), 1);
    let row = &audit.rows()[0];
    assert_eq!(row["tablename"], "incident");
    assert_eq!(row["sys_created_on"], "2025-03-01 12:01:30");
    assert_eq!(row["sys_updated_on"], "2025-03-01 12:01:30");
    assert_ne!(row["sys_id"], Value::from(sys_id));
}

#[tokio::test]
async fn single_record_reads_honour_fields_and_display_value() {
    let sim = start(small_config()).await;
    let some = sim.snapshot("change_request").unwrap().remove(0);
    let id = field(&some, "sys_id");
    let reply = get(&sim, &format!("change_request/{id}?sysparm_fields=number,state,requested_by.department&sysparm_display_value=true")).await;
    assert_eq!(reply.status, 200);
    let keys: BTreeSet<&str> = reply.body["result"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["number", "state", "requested_by.department"])
    );
    assert_eq!(reply.body["result"]["number"], field(&some, "number"));
}

#[tokio::test]
async fn unknown_table_is_invalid_table_in_servicenow_shape() {
    let sim = start(small_config()).await;
    let reply = get(&sim, "u_nope?sysparm_limit=1").await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body,
        json!({"error": {"message": "Invalid table u_nope", "detail": null}, "status": "failure"})
    );
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_in_servicenow_shape() {
    let sim = start(small_config()).await;
    let url = format!("{}/api/now/table/incident?sysparm_limit=1", sim.base_url());
    let expected = json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"});
    let none = send(client().get(&url)).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.body, expected);
    let wrong = send(
        client()
            .get(&url)
            .basic_auth(DEFAULT_INTEGRATION_USER, Some("wrong")),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body, expected);
}

#[tokio::test]
async fn a_denied_table_answers_403_for_that_user_only() {
    let mut config = small_config();
    let mut limited = SimUser::new("limited", "limited-pw", &["itil"]);
    limited.denied_tables.insert("sys_user_has_role".to_owned());
    config.users.push(limited);
    let sim = start(config).await;
    let url = format!(
        "{}/api/now/table/sys_user_has_role?sysparm_limit=1",
        sim.base_url()
    );
    let denied = send(client().get(&url).basic_auth("limited", Some("limited-pw"))).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body["status"], "failure");
    assert_eq!(
        denied.body["error"]["message"],
        "Insufficient rights to query records"
    );
    let allowed = send(
        client()
            .get(&url)
            .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD)),
    )
    .await;
    assert_eq!(allowed.status, 200);
}

#[tokio::test]
async fn row_acls_hide_rows_after_the_limit_and_still_count_them() {
    let mut config = small_config();
    let mut limited = SimUser::new("rowacl", "rowacl-pw", &["itil"]);
    limited
        .hidden_rows
        .insert("incident".to_owned(), "priority=5^ORpriority=4".to_owned());
    config.users.push(limited);
    let sim = start(config).await;
    let url = format!(
        "{}/api/now/table/incident?sysparm_limit=50&sysparm_fields=priority",
        sim.base_url()
    );
    let reply = send(client().get(&url).basic_auth("rowacl", Some("rowacl-pw"))).await;
    assert_eq!(reply.header("X-Total-Count"), Some("120"));
    assert!(reply.rows().len() < 50, "page comes back short");
    assert!(
        reply
            .rows()
            .iter()
            .all(|r| r["priority"] != "5" && r["priority"] != "4")
    );
    assert!(reply.header("Link").unwrap().contains("rel=\"next\""));
}

#[tokio::test]
async fn custom_fields_are_described_in_sys_dictionary_and_choices_in_sys_choice() {
    let sim = start(small_config()).await;
    let dict = get(&sim, "sys_dictionary?sysparm_query=name=incident^elementSTARTSWITHu_&sysparm_fields=element,internal_type,column_label").await;
    let elements: BTreeSet<&str> = dict
        .rows()
        .iter()
        .map(|r| r["element"].as_str().unwrap())
        .collect();
    assert_eq!(
        elements,
        BTreeSet::from(["u_customer_impact", "u_root_cause"])
    );
    let choices = get(
        &sim,
        "sys_choice?sysparm_query=name=incident^element=state&sysparm_fields=value,label",
    )
    .await;
    let labels: BTreeSet<(&str, &str)> = choices
        .rows()
        .iter()
        .map(|r| (r["value"].as_str().unwrap(), r["label"].as_str().unwrap()))
        .collect();
    assert!(labels.contains(&("6", "Resolved")) && labels.contains(&("8", "Canceled")));
    let change = get(
        &sim,
        "change_request?sysparm_limit=1&sysparm_fields=u_risk_score",
    )
    .await;
    assert!(
        change.rows()[0]["u_risk_score"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .is_ok()
    );
}

#[tokio::test]
async fn the_task_view_lists_incidents_and_change_requests() {
    let sim = start(small_config()).await;
    let reply = get(
        &sim,
        "task?sysparm_fields=number,sys_class_name&sysparm_limit=1",
    )
    .await;
    assert_eq!(reply.header("X-Total-Count"), Some("150"));
}
