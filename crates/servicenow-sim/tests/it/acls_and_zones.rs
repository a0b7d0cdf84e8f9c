//! The simulator is as strict as a default instance where SEI's documented roles meet it:
//! `sys_audit_delete` and `sys_properties` refuse them, the user's time zone is served, and the
//! dictionary can list custom fields only.

use crate::common;

use common::{client, send, small_config, start};
use nowstream_servicenow_sim::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, DEFAULT_INTEGRATION_PASSWORD,
    DEFAULT_INTEGRATION_USER, GeneratorConfig, SimUser,
};

async fn status_as(base: &str, path: &str, user: &str, password: &str) -> (u16, serde_json::Value) {
    let reply = send(
        client()
            .get(format!("{base}/api/now/table/{path}"))
            .basic_auth(user, Some(password)),
    )
    .await;
    (reply.status.as_u16(), reply.body)
}

#[tokio::test]
async fn seis_documented_roles_get_403_on_sys_audit_delete_lists_and_records() {
    let mut config = small_config();
    config
        .users
        .push(SimUser::sei_documented("sei.only", "sei-only-pw"));
    let sim = start(config).await;
    let base = sim.base_url();
    let (status, body) = status_as(
        base,
        "sys_audit_delete?sysparm_limit=1",
        "sei.only",
        "sei-only-pw",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["status"], "failure");
    assert_eq!(
        body["error"]["message"],
        "Insufficient rights to query records"
    );
    let (status, _) = status_as(
        base,
        "sys_audit_delete/00000000000000000000000000000000",
        "sei.only",
        "sei-only-pw",
    )
    .await;
    assert_eq!(status, 403, "a record read is refused too");
    let (status, _) = status_as(base, "incident?sysparm_limit=1", "sei.only", "sei-only-pw").await;
    assert_eq!(status, 200, "the tables its roles cover stay readable");

    for (user, password) in [
        (DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
        (DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD),
    ] {
        let (status, _) = status_as(base, "sys_audit_delete?sysparm_limit=1", user, password).await;
        assert_eq!(status, 200, "{user} holds the audit ACL's role or admin");
    }
}

#[tokio::test]
async fn the_users_time_zone_is_in_sys_user_and_the_default_in_admin_only_sys_properties() {
    let mut config = small_config();
    let mut utc = SimUser::sei_documented("utc.user", "utc-pw");
    utc.time_zone = "UTC".to_owned();
    let mut unset = SimUser::sei_documented("unset.user", "unset-pw");
    unset.time_zone = String::new();
    config.users.extend([utc, unset]);
    config.data.system_time_zone = "Europe/Berlin".to_owned();
    let sim = start(config).await;
    let base = sim.base_url();
    for (user, zone) in [
        ("utc.user", "UTC"),
        ("unset.user", ""),
        (DEFAULT_INTEGRATION_USER, "America/New_York"),
    ] {
        let (status, body) = status_as(
            base,
            &format!("sys_user?sysparm_query=user_name={user}&sysparm_fields=time_zone"),
            DEFAULT_ADMIN_USER,
            DEFAULT_ADMIN_PASSWORD,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["result"][0]["time_zone"], zone, "{user}: {body}");
    }
    let property = "sys_properties?sysparm_query=name=glide.sys.default.tz&sysparm_fields=value";
    let (status, body) =
        status_as(base, property, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"][0]["value"], "Europe/Berlin");
    let (status, _) = status_as(base, property, "utc.user", "utc-pw").await;
    assert_eq!(status, 403, "sys_properties is admin-only");
}

#[tokio::test]
async fn a_dictionary_without_base_fields_lists_only_custom_fields() {
    let mut config = small_config();
    config.data = GeneratorConfig {
        dictionary_base_fields: false,
        ..config.data
    };
    let sim = start(config).await;
    let (status, body) = status_as(
        sim.base_url(),
        "sys_dictionary?sysparm_query=nameINincident,change_request,task&sysparm_fields=element",
        DEFAULT_INTEGRATION_USER,
        DEFAULT_INTEGRATION_PASSWORD,
    )
    .await;
    assert_eq!(status, 200);
    let elements: Vec<&str> = body["result"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["element"].as_str())
        .collect();
    assert!(!elements.is_empty());
    assert!(elements.iter().all(|e| e.starts_with("u_")), "{elements:?}");
    let (_, incident) = status_as(
        sim.base_url(),
        "incident?sysparm_limit=1&sysparm_fields=number",
        DEFAULT_INTEGRATION_USER,
        DEFAULT_INTEGRATION_PASSWORD,
    )
    .await;
    assert!(
        incident["result"][0]["number"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "the columns exist all the same: {incident}"
    );
}
