//! `change_request` → [`ChangeRequest`].

use nowstream_model::ChangeRequest;

use super::Common;
use crate::error::MapError;
use crate::fields::Fields;

pub(super) fn map(fields: &Fields<'_>, common: Common) -> Result<ChangeRequest, MapError> {
    Ok(ChangeRequest {
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
        state: fields.choice("state")?,
        r#type: fields.choice("type")?,
        scope: fields.choice("scope")?,
        close_code: fields.choice("close_code")?,
        sys_created_on: fields.time("sys_created_on")?,
        start_date: fields.time("start_date")?,
        end_date: fields.time("end_date")?,
        closed_at: fields.time("closed_at")?,
        parent: fields.reference("parent")?,
        assigned_to: fields.reference("assigned_to")?,
        created_by: fields.reference("opened_by")?,
        closed_by: fields.reference("closed_by")?,
        business_service: fields.reference("business_service")?,
        business_service_department: fields.reference("business_service.department")?,
        requested_by_department: fields.reference("requested_by.department")?,
        excluded_fields: common.excluded_fields,
        custom_fields: common.custom_fields,
    })
}
