//! `sys_dictionary` → [`FieldDefinition`].

use nowstream_model::FieldDefinition;

use super::SourceKind::{Flag, Integer, Text};
use super::{Common, FieldSource};
use crate::error::MapError;
use crate::fields::Fields;

/// `sys_dictionary.name`: the table the defined field belongs to, which the entity cannot
/// do without.
const TABLE: &str = "name";

pub(super) const SOURCES: &[FieldSource] = &[
    FieldSource::new("table", TABLE, Text),
    FieldSource::new("element", "element", Text),
    FieldSource::new("column_label", "column_label", Text),
    FieldSource::new("internal_type", "internal_type", Text),
    FieldSource::new("reference", "reference", Text),
    FieldSource::new("mandatory", "mandatory", Flag),
    FieldSource::new("active", "active", Flag),
    FieldSource::new("max_length", "max_length", Integer),
];

pub(super) fn map(fields: &Fields<'_>, common: Common) -> Result<FieldDefinition, MapError> {
    let Some(table) = fields.text(TABLE)? else {
        return Err(MapError::MissingField {
            table: nowstream_servicenow::table::tables::SYS_DICTIONARY.to_owned(),
            sys_id: common.sys_id,
            field: TABLE,
        });
    };
    Ok(FieldDefinition {
        integration_id: common.integration_id,
        sys_id: common.sys_id,
        sys_updated_on: common.sys_updated_on,
        sys_mod_count: common.sys_mod_count,
        table,
        element: fields.text("element")?,
        column_label: fields.text("column_label")?,
        // Stored values are the type and table names (`string`, `sys_user`); the display
        // values are their labels.
        internal_type: fields.text("internal_type")?,
        reference: fields.text("reference")?,
        mandatory: fields.flag("mandatory")?,
        active: fields.flag("active")?,
        max_length: fields.integer("max_length", "an integer length")?,
        excluded_fields: common.excluded_fields,
        custom_fields: common.custom_fields,
    })
}
