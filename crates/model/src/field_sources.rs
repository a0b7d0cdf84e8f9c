//! Which ServiceNow field feeds which SEI entity field: the mapping's sources.
//!
//! The normalizer reads these fields (its entity modules hold the code, and a test there
//! checks code and list agree); the fetcher asks ServiceNow for them (`sysparm_fields`)
//! and reports records that lack one; `excluded_fields` is computed from them and
//! `docs/normalizer-mapping.md` documents them. They live in the model because both stages
//! need them and neither may link the other.

use crate::Entity;
use SourceKind::{Choice, Flag, Integer, Journal, Reference, Text, Time};

/// How a ServiceNow field's `{value, display_value}` becomes an entity field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A string: the stored value (the display value when only that was returned).
    Text,
    /// A journal (`comments`, `work_notes`): the rendered display value, else the value.
    Journal,
    /// A `Choice`: value and label (display value).
    Choice,
    /// A `Reference`: sys_id (value) and display value; null without a sys_id.
    Reference,
    /// A UTC time parsed from the value only, never from the display value.
    Time,
    /// A boolean from the value (`true`/`false`).
    Flag,
    /// An integer from the value.
    Integer,
}

/// One entity field and the ServiceNow field it is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSource {
    /// Field of the SEI entity (Avro and JSON name).
    pub entity_field: &'static str,
    /// ServiceNow payload key: an element name, or a dot-walk path such as
    /// `business_service.department`.
    pub source: &'static str,
    /// How the value is read.
    pub kind: SourceKind,
}

impl FieldSource {
    const fn new(entity_field: &'static str, source: &'static str, kind: SourceKind) -> Self {
        Self {
            entity_field,
            source,
            kind,
        }
    }
}

/// An entity field computed from other ServiceNow fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DerivedField {
    /// Field of the SEI entity.
    pub entity_field: &'static str,
    /// The ServiceNow fields it is computed from; excluding any of them withholds it.
    pub inputs: &'static [&'static str],
    /// How it is computed, for the documentation.
    pub rule: &'static str,
}

/// Every entity field read from a ServiceNow field, for `entity`. The version and identity
/// fields (`integration_id`, `sys_id`, `sys_updated_on`, `sys_mod_count`) come from the raw
/// record and are not listed; nor are `excluded_fields` and `custom_fields`.
pub fn field_sources(entity: Entity) -> &'static [FieldSource] {
    match entity {
        Entity::Incident => INCIDENT_SOURCES,
        Entity::ChangeRequest => CHANGE_REQUEST_SOURCES,
        Entity::User => USER_SOURCES,
        Entity::FieldDefinition => FIELD_DEFINITION_SOURCES,
    }
}

/// Every entity field computed from other fields, for `entity`.
pub fn derived_fields(entity: Entity) -> &'static [DerivedField] {
    match entity {
        Entity::Incident => INCIDENT_DERIVED,
        Entity::ChangeRequest | Entity::User | Entity::FieldDefinition => &[],
    }
}

const INCIDENT_SOURCES: &[FieldSource] = &[
    FieldSource::new("number", "number", Text),
    FieldSource::new("short_description", "short_description", Text),
    FieldSource::new("description", "description", Text),
    FieldSource::new("comments", "comments", Journal),
    FieldSource::new("work_notes", "work_notes", Journal),
    FieldSource::new("priority", "priority", Choice),
    FieldSource::new("urgency", "urgency", Choice),
    FieldSource::new("impact", "impact", Choice),
    FieldSource::new("severity", "severity", Choice),
    FieldSource::new("state", "state", Choice),
    FieldSource::new("escalation", "escalation", Choice),
    FieldSource::new("category", "category", Choice),
    FieldSource::new("close_code", "close_code", Choice),
    FieldSource::new("sys_created_on", "sys_created_on", Time),
    FieldSource::new("opened_at", "opened_at", Time),
    FieldSource::new("resolved_at", "resolved_at", Time),
    FieldSource::new("closed_at", "closed_at", Time),
    FieldSource::new("sla_due", "sla_due", Time),
    FieldSource::new("parent", "parent", Reference),
    FieldSource::new("assigned_to", "assigned_to", Reference),
    FieldSource::new("created_by", "opened_by", Reference),
    FieldSource::new("resolved_by", "resolved_by", Reference),
    FieldSource::new("business_service", "business_service", Reference),
    FieldSource::new(
        "business_service_department",
        "business_service.department",
        Reference,
    ),
    FieldSource::new("caused_by", "caused_by", Reference),
];

/// Entity field of the incident's derived time to restore.
pub const TIME_TO_RESTORE: &str = "time_to_restore_ms";

const INCIDENT_DERIVED: &[DerivedField] = &[DerivedField {
    entity_field: TIME_TO_RESTORE,
    inputs: &["opened_at", "resolved_at"],
    rule: "resolved_at − opened_at in milliseconds; null unless both are set and resolved_at ≥ opened_at",
}];

const CHANGE_REQUEST_SOURCES: &[FieldSource] = &[
    FieldSource::new("number", "number", Text),
    FieldSource::new("short_description", "short_description", Text),
    FieldSource::new("description", "description", Text),
    FieldSource::new("comments", "comments", Journal),
    FieldSource::new("work_notes", "work_notes", Journal),
    FieldSource::new("priority", "priority", Choice),
    FieldSource::new("urgency", "urgency", Choice),
    FieldSource::new("impact", "impact", Choice),
    FieldSource::new("state", "state", Choice),
    FieldSource::new("type", "type", Choice),
    FieldSource::new("scope", "scope", Choice),
    FieldSource::new("close_code", "close_code", Choice),
    FieldSource::new("sys_created_on", "sys_created_on", Time),
    FieldSource::new("start_date", "start_date", Time),
    FieldSource::new("end_date", "end_date", Time),
    FieldSource::new("closed_at", "closed_at", Time),
    FieldSource::new("parent", "parent", Reference),
    FieldSource::new("assigned_to", "assigned_to", Reference),
    FieldSource::new("created_by", "opened_by", Reference),
    FieldSource::new("closed_by", "closed_by", Reference),
    FieldSource::new("business_service", "business_service", Reference),
    FieldSource::new(
        "business_service_department",
        "business_service.department",
        Reference,
    ),
    FieldSource::new(
        "requested_by_department",
        "requested_by.department",
        Reference,
    ),
];

const USER_SOURCES: &[FieldSource] = &[
    FieldSource::new("user_name", "user_name", Text),
    FieldSource::new("name", "name", Text),
    FieldSource::new("email", "email", Text),
    FieldSource::new("employee_number", "employee_number", Text),
    FieldSource::new("title", "title", Text),
    FieldSource::new("active", "active", Flag),
    FieldSource::new("department", "department", Reference),
    FieldSource::new("manager", "manager", Reference),
    FieldSource::new("sys_created_on", "sys_created_on", Time),
];

/// `sys_dictionary.name`: the table the defined field belongs to, which a field definition
/// cannot do without.
pub const FIELD_DEFINITION_TABLE: &str = "name";

const FIELD_DEFINITION_SOURCES: &[FieldSource] = &[
    FieldSource::new("table", FIELD_DEFINITION_TABLE, Text),
    FieldSource::new("element", "element", Text),
    FieldSource::new("column_label", "column_label", Text),
    FieldSource::new("internal_type", "internal_type", Text),
    FieldSource::new("reference", "reference", Text),
    FieldSource::new("mandatory", "mandatory", Flag),
    FieldSource::new("active", "active", Flag),
    FieldSource::new("max_length", "max_length", Integer),
];
