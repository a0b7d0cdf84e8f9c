//! Which tables the simulator knows and what their fields are.
//!
//! ServiceNow stores every value as a string and gives it meaning through the field's type:
//! a reference holds a target sys_id, a choice holds a value whose label lives in `sys_choice`,
//! a date-time holds UTC `yyyy-MM-dd HH:mm:ss`. The simulator keeps the same split: records are
//! plain strings, and this module says how to read them. Custom `u_*` fields are not listed
//! here; they come from `sys_dictionary` rows at run time (see [`crate::store`]).

use nowstream_model::table_api::tables;

/// How a field's raw string is interpreted when rendering display values and links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text, or a choice value (labels are looked up in `sys_choice` for any plain field).
    Text,
    /// Whole number stored as a decimal string.
    Integer,
    /// `"true"` / `"false"`.
    Boolean,
    /// UTC `yyyy-MM-dd HH:mm:ss`; shown in the user's zone as its display value.
    DateTime,
    /// sys_id of a record in the named table.
    Reference(String),
}

/// One field of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    /// Column name, e.g. `assigned_to`.
    pub name: String,
    /// How to interpret the stored string.
    pub kind: FieldKind,
}

impl FieldDef {
    fn new(name: &str, kind: FieldKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
        }
    }

    /// The referenced table, when this is a reference field.
    pub fn reference_target(&self) -> Option<&str> {
        match &self.kind {
            FieldKind::Reference(target) => Some(target),
            _ => None,
        }
    }
}

/// Service catalogue table that `business_service` points at.
pub const CMDB_CI_SERVICE: &str = "cmdb_ci_service";
/// Department table (`business_service.department`, `sys_user.department`).
pub const CMN_DEPARTMENT: &str = "cmn_department";
/// System properties (`glide.sys.default.tz`, ...); admin-only on a default instance.
pub const SYS_PROPERTIES: &str = "sys_properties";
/// Table definitions: `super_class` names the table a table extends (incident → task).
pub const SYS_DB_OBJECT: &str = "sys_db_object";

/// Static description of one table.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// Table name as used in URLs.
    pub name: &'static str,
    /// Field whose value is a reference's display value (e.g. `sys_user.name`).
    pub display_field: &'static str,
    /// Base fields, in the order records are rendered.
    pub fields: Vec<FieldDef>,
    /// True for `task`: a read-only view over every table that extends it.
    pub is_view: bool,
}

impl TableSchema {
    /// The base field called `name`, if the table has one.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Tables whose rows extend `task` (and so are visible through the `task` view).
pub const TASK_TABLES: [&str; 2] = [tables::INCIDENT, tables::CHANGE_REQUEST];

/// Every table the simulator serves; anything else is "Invalid table".
pub fn all_tables() -> Vec<TableSchema> {
    vec![
        incident(),
        change_request(),
        task(),
        sys_user(),
        sys_user_group(),
        sys_user_role(),
        sys_user_has_role(),
        sys_choice(),
        sys_dictionary(),
        sys_audit_delete(),
        cmdb_ci_service(),
        cmn_department(),
        sys_properties(),
        sys_db_object(),
    ]
}

fn reference(target: &str) -> FieldKind {
    FieldKind::Reference(target.to_owned())
}

/// Fields every ServiceNow record carries.
fn system_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("sys_id", FieldKind::Text),
        FieldDef::new("sys_created_on", FieldKind::DateTime),
        FieldDef::new("sys_created_by", FieldKind::Text),
        FieldDef::new("sys_updated_on", FieldKind::DateTime),
        FieldDef::new("sys_updated_by", FieldKind::Text),
        FieldDef::new("sys_mod_count", FieldKind::Integer),
    ]
}

/// Journal columns of `task`: the whole history of comments and work notes.
pub const JOURNAL_FIELDS: &[&str] = &["comments", "work_notes"];

/// Fields shared by everything that extends `task`.
fn task_fields() -> Vec<FieldDef> {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("number", FieldKind::Text),
        FieldDef::new("short_description", FieldKind::Text),
        FieldDef::new("description", FieldKind::Text),
        FieldDef::new("state", FieldKind::Integer),
        FieldDef::new("priority", FieldKind::Integer),
        FieldDef::new("urgency", FieldKind::Integer),
        FieldDef::new("impact", FieldKind::Integer),
        FieldDef::new("active", FieldKind::Boolean),
        FieldDef::new("opened_at", FieldKind::DateTime),
        FieldDef::new("opened_by", reference(tables::SYS_USER)),
        FieldDef::new("assigned_to", reference(tables::SYS_USER)),
        FieldDef::new("assignment_group", reference(tables::SYS_USER_GROUP)),
        FieldDef::new("business_service", reference(CMDB_CI_SERVICE)),
        FieldDef::new("closed_at", FieldKind::DateTime),
        FieldDef::new("closed_by", reference(tables::SYS_USER)),
        FieldDef::new("close_notes", FieldKind::Text),
        // Journal fields: the whole history of comments and work notes, which on a long-lived
        // record runs to megabytes.
        FieldDef::new("comments", FieldKind::Text),
        FieldDef::new("work_notes", FieldKind::Text),
        FieldDef::new("escalation", FieldKind::Integer),
        FieldDef::new("sla_due", FieldKind::DateTime),
        FieldDef::new("parent", reference(tables::TASK)),
        FieldDef::new("sys_class_name", FieldKind::Text),
    ]);
    fields
}

fn incident() -> TableSchema {
    let mut fields = task_fields();
    fields.extend([
        FieldDef::new("severity", FieldKind::Integer),
        FieldDef::new("category", FieldKind::Text),
        FieldDef::new("subcategory", FieldKind::Text),
        FieldDef::new("contact_type", FieldKind::Text),
        FieldDef::new("caller_id", reference(tables::SYS_USER)),
        FieldDef::new("parent_incident", reference(tables::INCIDENT)),
        FieldDef::new("resolved_at", FieldKind::DateTime),
        FieldDef::new("resolved_by", reference(tables::SYS_USER)),
        FieldDef::new("close_code", FieldKind::Text),
        FieldDef::new("hold_reason", FieldKind::Integer),
        FieldDef::new("reopen_count", FieldKind::Integer),
        FieldDef::new("calendar_stc", FieldKind::Integer),
        // The change request that caused the incident: what change failure rate counts.
        FieldDef::new("caused_by", reference(tables::CHANGE_REQUEST)),
    ]);
    TableSchema {
        name: tables::INCIDENT,
        display_field: "number",
        fields,
        is_view: false,
    }
}

fn change_request() -> TableSchema {
    let mut fields = task_fields();
    fields.extend([
        FieldDef::new("type", FieldKind::Text),
        FieldDef::new("category", FieldKind::Text),
        FieldDef::new("risk", FieldKind::Integer),
        FieldDef::new("scope", FieldKind::Integer),
        FieldDef::new("approval", FieldKind::Text),
        FieldDef::new("requested_by", reference(tables::SYS_USER)),
        FieldDef::new("start_date", FieldKind::DateTime),
        FieldDef::new("end_date", FieldKind::DateTime),
        FieldDef::new("close_code", FieldKind::Text),
    ]);
    TableSchema {
        name: tables::CHANGE_REQUEST,
        display_field: "number",
        fields,
        is_view: false,
    }
}

fn task() -> TableSchema {
    TableSchema {
        name: tables::TASK,
        display_field: "number",
        fields: task_fields(),
        is_view: true,
    }
}

fn sys_user() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("user_name", FieldKind::Text),
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("first_name", FieldKind::Text),
        FieldDef::new("last_name", FieldKind::Text),
        FieldDef::new("email", FieldKind::Text),
        FieldDef::new("employee_number", FieldKind::Text),
        FieldDef::new("title", FieldKind::Text),
        FieldDef::new("department", reference(CMN_DEPARTMENT)),
        FieldDef::new("manager", reference(tables::SYS_USER)),
        FieldDef::new("active", FieldKind::Boolean),
        FieldDef::new("locked_out", FieldKind::Boolean),
        FieldDef::new("time_zone", FieldKind::Text),
    ]);
    TableSchema {
        name: tables::SYS_USER,
        display_field: "name",
        fields,
        is_view: false,
    }
}

fn sys_user_group() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("description", FieldKind::Text),
        FieldDef::new("email", FieldKind::Text),
        FieldDef::new("manager", reference(tables::SYS_USER)),
        FieldDef::new("active", FieldKind::Boolean),
    ]);
    TableSchema {
        name: tables::SYS_USER_GROUP,
        display_field: "name",
        fields,
        is_view: false,
    }
}

fn sys_user_role() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("description", FieldKind::Text),
        FieldDef::new("elevated_privilege", FieldKind::Boolean),
    ]);
    TableSchema {
        name: tables::SYS_USER_ROLE,
        display_field: "name",
        fields,
        is_view: false,
    }
}

fn sys_user_has_role() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("user", reference(tables::SYS_USER)),
        FieldDef::new("role", reference(tables::SYS_USER_ROLE)),
        FieldDef::new("state", FieldKind::Text),
        FieldDef::new("inherited", FieldKind::Boolean),
    ]);
    TableSchema {
        name: tables::SYS_USER_HAS_ROLE,
        display_field: "sys_id",
        fields,
        is_view: false,
    }
}

fn sys_choice() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("element", FieldKind::Text),
        FieldDef::new("value", FieldKind::Text),
        FieldDef::new("label", FieldKind::Text),
        FieldDef::new("sequence", FieldKind::Integer),
        FieldDef::new("language", FieldKind::Text),
        FieldDef::new("inactive", FieldKind::Boolean),
    ]);
    TableSchema {
        name: tables::SYS_CHOICE,
        display_field: "label",
        fields,
        is_view: false,
    }
}

fn sys_dictionary() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("element", FieldKind::Text),
        FieldDef::new("column_label", FieldKind::Text),
        FieldDef::new("internal_type", FieldKind::Text),
        FieldDef::new("max_length", FieldKind::Integer),
        FieldDef::new("reference", FieldKind::Text),
        FieldDef::new("choice", FieldKind::Integer),
        FieldDef::new("mandatory", FieldKind::Boolean),
        FieldDef::new("read_only", FieldKind::Boolean),
        FieldDef::new("active", FieldKind::Boolean),
        FieldDef::new("default_value", FieldKind::Text),
    ]);
    TableSchema {
        name: tables::SYS_DICTIONARY,
        display_field: "column_label",
        fields,
        is_view: false,
    }
}

fn sys_audit_delete() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("tablename", FieldKind::Text),
        FieldDef::new("documentkey", FieldKind::Text),
        FieldDef::new("display_value", FieldKind::Text),
    ]);
    TableSchema {
        name: tables::SYS_AUDIT_DELETE,
        display_field: "documentkey",
        fields,
        is_view: false,
    }
}

fn cmdb_ci_service() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("department", reference(CMN_DEPARTMENT)),
        FieldDef::new("owned_by", reference(tables::SYS_USER)),
        FieldDef::new("busines_criticality", FieldKind::Text),
        FieldDef::new("operational_status", FieldKind::Integer),
    ]);
    TableSchema {
        name: CMDB_CI_SERVICE,
        display_field: "name",
        fields,
        is_view: false,
    }
}

fn cmn_department() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("id", FieldKind::Text),
        FieldDef::new("description", FieldKind::Text),
        FieldDef::new("dept_head", reference(tables::SYS_USER)),
    ]);
    TableSchema {
        name: CMN_DEPARTMENT,
        display_field: "name",
        fields,
        is_view: false,
    }
}

fn sys_properties() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("value", FieldKind::Text),
        FieldDef::new("type", FieldKind::Text),
        FieldDef::new("description", FieldKind::Text),
    ]);
    TableSchema {
        name: SYS_PROPERTIES,
        display_field: "name",
        fields,
        is_view: false,
    }
}

fn sys_db_object() -> TableSchema {
    let mut fields = system_fields();
    fields.extend([
        FieldDef::new("name", FieldKind::Text),
        FieldDef::new("label", FieldKind::Text),
        FieldDef::new("super_class", reference(SYS_DB_OBJECT)),
    ]);
    TableSchema {
        name: SYS_DB_OBJECT,
        display_field: "name",
        fields,
        is_view: false,
    }
}

/// Field kind for a custom field described by a `sys_dictionary` row.
///
/// Only the types the project's custom fields use are distinguished; anything else is text,
/// which is what ServiceNow's wire format makes of it anyway.
pub fn kind_from_dictionary(internal_type: &str, reference_table: &str) -> FieldKind {
    match internal_type {
        "integer" | "decimal" | "float" => FieldKind::Integer,
        "boolean" => FieldKind::Boolean,
        "glide_date_time" | "due_date" => FieldKind::DateTime,
        "reference" if !reference_table.is_empty() => {
            FieldKind::Reference(reference_table.to_owned())
        }
        _ => FieldKind::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_points_at_a_served_table() {
        let schemas = all_tables();
        let names: Vec<&str> = schemas.iter().map(|s| s.name).collect();
        for schema in &schemas {
            for field in &schema.fields {
                if let Some(target) = field.reference_target() {
                    assert!(
                        names.contains(&target),
                        "{}.{} -> {target}",
                        schema.name,
                        field.name
                    );
                }
            }
            assert!(
                schema.field(schema.display_field).is_some(),
                "{} display field",
                schema.name
            );
        }
    }
}
