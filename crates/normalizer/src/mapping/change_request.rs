//! `change_request` → [`ChangeRequest`].

use nowstream_model::ChangeRequest;

use super::SourceKind::{Choice, Journal, Reference, Text, Time};
use super::{Common, FieldSource};
use crate::error::MapError;
use crate::fields::Fields;

pub(super) const SOURCES: &[FieldSource] = &[
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
