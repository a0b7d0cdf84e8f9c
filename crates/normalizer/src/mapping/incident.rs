//! `incident` → [`Incident`].

use nowstream_model::Incident;
use nowstream_model::field_sources::TIME_TO_RESTORE;

use super::Common;
use crate::error::MapError;
use crate::fields::Fields;

pub(super) fn map(fields: &Fields<'_>, common: Common) -> Result<Incident, MapError> {
    let opened_at = fields.time("opened_at")?;
    let resolved_at = fields.time("resolved_at")?;
    // Excluded inputs are already gone from the payload; this covers a policy that names
    // the derived field itself.
    let time_to_restore_ms = if common.excluded_fields.iter().any(|f| f == TIME_TO_RESTORE) {
        None
    } else {
        Incident::derive_time_to_restore_ms(opened_at, resolved_at)
    };
    Ok(Incident {
        integration_id: common.integration_id,
        sys_id: common.sys_id,
        sys_updated_on: common.sys_updated_on,
        sys_mod_count: common.sys_mod_count,
        number: fields.text("number")?,
        short_description: fields.text("short_description")?,
        description: fields.text("description")?,
        comments: fields.journal("comments")?,
        work_notes: fields.journal("work_notes")?,
        priority: fields.choice("priority")?,
        urgency: fields.choice("urgency")?,
        impact: fields.choice("impact")?,
        severity: fields.choice("severity")?,
        state: fields.choice("state")?,
        escalation: fields.choice("escalation")?,
        category: fields.choice("category")?,
        close_code: fields.choice("close_code")?,
        sys_created_on: fields.time("sys_created_on")?,
        opened_at,
        resolved_at,
        closed_at: fields.time("closed_at")?,
        sla_due: fields.time("sla_due")?,
        time_to_restore_ms,
        parent: fields.reference("parent")?,
        assigned_to: fields.reference("assigned_to")?,
        created_by: fields.reference("opened_by")?,
        resolved_by: fields.reference("resolved_by")?,
        business_service: fields.reference("business_service")?,
        business_service_department: fields.reference("business_service.department")?,
        caused_by: fields.reference("caused_by")?,
        excluded_fields: common.excluded_fields,
        custom_fields: common.custom_fields,
    })
}
