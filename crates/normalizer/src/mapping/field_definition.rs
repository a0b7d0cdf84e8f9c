//! `sys_dictionary` → [`FieldDefinition`].

use nowstream_model::field_sources::FIELD_DEFINITION_TABLE as TABLE;
use nowstream_model::{Entity, FieldDefinition};

use super::Common;
use crate::error::MapError;
use crate::fields::Fields;

pub(super) fn map(fields: &Fields<'_>, common: Common) -> Result<FieldDefinition, MapError> {
    let Some(table) = fields.text(TABLE)? else {
        return Err(MapError::MissingField {
            table: Entity::FieldDefinition.source_table().to_owned(),
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
