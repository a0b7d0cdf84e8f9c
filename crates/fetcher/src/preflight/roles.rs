//! The integration user's roles, as `sys_user_has_role` lists them (inherited ones included).

use std::collections::BTreeSet;

use nowstream_model::table_api::tables;
use nowstream_servicenow::client::{Client, ClientError, ListRequest, TablePage};

use super::field_value;
use super::report::{Check, CheckKind};

/// Roles SEI requires of the integration user: `itil` reads incidents and change requests,
/// the `personalize_*` roles read choice lists and field definitions.
pub const REQUIRED_ROLES: [&str; 3] = ["itil", "personalize_choices", "personalize_dictionary"];

/// Without this role ACLs usually hide part of `sys_user`, so SEI misses some users.
pub const ADVISED_ROLE: &str = "user_admin";

/// Role with which every ACL passes.
const ADMIN_ROLE: &str = "admin";

/// Reads the user's active grants of the roles that matter from `sys_user_has_role` (which
/// also lists roles inherited from groups and containing roles, marked `inherited`).
pub(super) async fn check_roles(client: &Client, user_name: &str, sys_id: &str) -> (Check, Check) {
    let wanted: Vec<&str> = REQUIRED_ROLES
        .iter()
        .copied()
        .chain([ADVISED_ROLE, ADMIN_ROLE])
        .collect();
    let request = ListRequest {
        table: tables::SYS_USER_HAS_ROLE.to_owned(),
        query: format!("user={sys_id}^state=active^role.nameIN{}", wanted.join(",")),
        limit: 100,
        offset: 0,
        fields: Some(vec!["role.name".to_owned()]),
    };
    let page = match client.list_page(&request).await {
        Ok(page) => page,
        Err(error) => {
            let (message, hint) = match &error {
                ClientError::Forbidden { .. } => (
                    "cannot read sys_user_has_role (HTTP 403), so the roles cannot be verified"
                        .to_owned(),
                    format!(
                        "verify in ServiceNow (User Administration > Users > {user_name} > \
                         Roles) that the user has {}",
                        REQUIRED_ROLES.join(", ")
                    ),
                ),
                other => (
                    format!("could not read the user's roles: {other}"),
                    "verify the roles in ServiceNow by hand".to_owned(),
                ),
            };
            return (
                Check::warn(CheckKind::Roles, message, hint),
                Check::skipped(CheckKind::AdvisedRole, "skipped: roles could not be read"),
            );
        }
    };
    let held = held_roles(&page);
    role_checks(user_name, &held)
}

fn held_roles(page: &TablePage) -> BTreeSet<String> {
    page.records
        .iter()
        .filter_map(|record| field_value(record, "role.name"))
        .collect()
}

fn role_checks(user_name: &str, held: &BTreeSet<String>) -> (Check, Check) {
    if held.contains(ADMIN_ROLE) {
        return (
            Check::pass(
                CheckKind::Roles,
                format!("{user_name} has {ADMIN_ROLE}, which passes every ACL"),
            ),
            Check::pass(
                CheckKind::AdvisedRole,
                format!("{user_name} has {ADMIN_ROLE}"),
            ),
        );
    }
    let missing: Vec<&str> = REQUIRED_ROLES
        .iter()
        .copied()
        .filter(|role| !held.contains(*role))
        .collect();
    let roles = if missing.is_empty() {
        Check::pass(
            CheckKind::Roles,
            format!("{user_name} has {}", REQUIRED_ROLES.join(", ")),
        )
    } else {
        Check::fail(
            CheckKind::Roles,
            format!(
                "{user_name} is missing required role(s): {}",
                missing.join(", ")
            ),
            format!(
                "grant {} to {user_name} (User Administration > Users > Roles); SEI needs itil \
                 for incidents and changes and the personalize_* roles for choice lists and \
                 custom field definitions",
                missing.join(", ")
            ),
        )
    };
    let advised = if held.contains(ADVISED_ROLE) {
        Check::pass(
            CheckKind::AdvisedRole,
            format!("{user_name} has {ADVISED_ROLE}"),
        )
    } else {
        Check::warn(
            CheckKind::AdvisedRole,
            format!("{user_name} does not have {ADVISED_ROLE}: ACLs may hide some users"),
            format!("grant {ADVISED_ROLE} (and user) so that every sys_user record reaches SEI"),
        )
    };
    (roles, advised)
}

#[cfg(test)]
mod tests {
    use crate::preflight::Outcome;
    use nowstream_servicenow::row::Row;

    use super::*;

    #[test]
    fn admin_satisfies_every_role_and_a_missing_role_is_named() {
        let held: BTreeSet<String> = ["admin".to_owned()].into();
        let (roles, advised) = role_checks("svc", &held);
        assert_eq!(
            (roles.outcome, advised.outcome),
            (Outcome::Pass, Outcome::Pass)
        );
        let held: BTreeSet<String> = ["itil", "personalize_choices"].map(str::to_owned).into();
        let (roles, advised) = role_checks("svc", &held);
        assert_eq!(roles.outcome, Outcome::Fail);
        assert!(
            roles.message.ends_with("personalize_dictionary"),
            "{roles:?}"
        );
        assert_eq!(advised.outcome, Outcome::Warn);
    }

    #[test]
    fn dot_walked_role_names_are_read_from_value_or_plain_strings() {
        let page = TablePage {
            records: vec![
                serde_json::json!({"role.name": {"display_value": "itil", "value": "itil"}}),
                serde_json::json!({"role.name": "user_admin"}),
                serde_json::json!({"role.name": {"display_value": "", "value": ""}}),
            ]
            .into_iter()
            .filter_map(|v| v.as_object().map(Row::from_map))
            .collect(),
            total: Some(3),
            has_next: None,
        };
        let held = held_roles(&page);
        assert_eq!(held.into_iter().collect::<Vec<_>>(), ["itil", "user_admin"]);
    }
}
