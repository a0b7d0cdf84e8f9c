//! `User`: value of `sei.servicenow.user`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CustomField, Reference};
use crate::avro_value::avro_record;
use crate::contract::{self, ContractSchema};
use crate::single_object::AvroRecord;
use crate::version::{Version, Versioned};

avro_record! {
    /// A ServiceNow user (`sys_user`) normalized for SEI; resolves the people incidents
    /// and changes refer to.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct User {
        /// SEI integration the record belongs to.
        pub integration_id: String,
        /// The user's sys_id.
        pub sys_id: String,
        /// Last update in ServiceNow; first half of the version.
        pub sys_updated_on: DateTime<Utc>,
        /// ServiceNow's update counter; second half of the version.
        pub sys_mod_count: Option<i64>,
        /// Login name.
        pub user_name: Option<String>,
        /// Full name.
        pub name: Option<String>,
        /// E-mail address.
        pub email: Option<String>,
        /// Employee number: SEI's datasheet lists it for users. Since schema v2; `None` for
        /// records written with v1.
        pub employee_number: Option<String>,
        /// Job title.
        pub title: Option<String>,
        /// Whether the account is active.
        pub active: Option<bool>,
        /// Department (cmn_department).
        pub department: Option<Reference>,
        /// Manager (sys_user).
        pub manager: Option<Reference>,
        /// Creation time in ServiceNow.
        pub sys_created_on: Option<DateTime<Utc>>,
        /// Names of the fields the exclusion policy removed.
        #[serde(default)]
        pub excluded_fields: Vec<String>,
        /// Custom `u_*` fields that were kept, by element name.
        #[serde(default)]
        pub custom_fields: BTreeMap<String, CustomField>,
    }
}

impl AvroRecord for User {
    fn contract() -> &'static ContractSchema {
        &contract::USER
    }
}

impl Versioned for User {
    fn version(&self) -> Version {
        Version::new(self.sys_updated_on, self.sys_mod_count)
    }
}
