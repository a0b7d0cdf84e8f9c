//! Names of the ServiceNow tables the project reads. The four tables entities come from are
//! also reachable from [`Entity::source_table`](crate::Entity::source_table), which is
//! defined with these constants.

/// Incidents (extends `task`).
pub const INCIDENT: &str = "incident";
/// Change requests (extends `task`).
pub const CHANGE_REQUEST: &str = "change_request";
/// Users.
pub const SYS_USER: &str = "sys_user";
/// Groups (assignment groups).
pub const SYS_USER_GROUP: &str = "sys_user_group";
/// Choice lists: labels of choice values.
pub const SYS_CHOICE: &str = "sys_choice";
/// Column definitions: where custom `u_*` fields are discovered.
pub const SYS_DICTIONARY: &str = "sys_dictionary";
/// Roles.
pub const SYS_USER_ROLE: &str = "sys_user_role";
/// Role grants; preflight checks the integration user's roles here.
pub const SYS_USER_HAS_ROLE: &str = "sys_user_has_role";
/// Audit of deleted records (`tablename`, `documentkey`): the source of deletions.
pub const SYS_AUDIT_DELETE: &str = "sys_audit_delete";
/// Base table of incidents and change requests.
pub const TASK: &str = "task";
