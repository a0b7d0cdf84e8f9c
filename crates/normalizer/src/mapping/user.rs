//! `sys_user` → [`User`].

use nowstream_model::User;

use super::SourceKind::{Flag, Reference, Text, Time};
use super::{Common, FieldSource};
use crate::error::MapError;
use crate::fields::Fields;

pub(super) const SOURCES: &[FieldSource] = &[
    FieldSource::new("user_name", "user_name", Text),
    FieldSource::new("name", "name", Text),
    FieldSource::new("email", "email", Text),
    FieldSource::new("title", "title", Text),
    FieldSource::new("active", "active", Flag),
    FieldSource::new("department", "department", Reference),
    FieldSource::new("manager", "manager", Reference),
    FieldSource::new("sys_created_on", "sys_created_on", Time),
];

pub(super) fn map(fields: &Fields<'_>, common: Common) -> Result<User, MapError> {
    Ok(User {
        integration_id: common.integration_id,
        sys_id: common.sys_id,
        sys_updated_on: common.sys_updated_on,
        sys_mod_count: common.sys_mod_count,
        user_name: fields.text("user_name")?,
        name: fields.text("name")?,
        email: fields.text("email")?,
        title: fields.text("title")?,
        active: fields.flag("active")?,
        department: fields.reference("department")?,
        manager: fields.reference("manager")?,
        sys_created_on: fields.time("sys_created_on")?,
        excluded_fields: common.excluded_fields,
        custom_fields: common.custom_fields,
    })
}
