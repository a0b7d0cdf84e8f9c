//! `sys_user` → [`User`].

use nowstream_model::User;

use super::Common;
use crate::error::MapError;
use crate::fields::Fields;

pub(super) fn map(fields: &Fields<'_>, common: Common) -> Result<User, MapError> {
    Ok(User {
        integration_id: common.integration_id,
        sys_id: common.sys_id,
        sys_updated_on: common.sys_updated_on,
        sys_mod_count: common.sys_mod_count,
        user_name: fields.text("user_name")?,
        name: fields.text("name")?,
        email: fields.text("email")?,
        employee_number: fields.text("employee_number")?,
        title: fields.text("title")?,
        active: fields.flag("active")?,
        department: fields.reference("department")?,
        manager: fields.reference("manager")?,
        sys_created_on: fields.time("sys_created_on")?,
        excluded_fields: common.excluded_fields,
        custom_fields: common.custom_fields,
    })
}
