//! `ChangeRequest`: value of `sei.servicenow.change_request`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Choice, CustomField, Reference};
use crate::avro_value::avro_record;
use crate::contract::{self, ContractSchema};
use crate::single_object::AvroRecord;
use crate::version::{Version, Versioned};

avro_record! {
    /// A ServiceNow change request normalized for SEI. See `schemas/change_request.avsc`
    /// for each field's source in ServiceNow.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ChangeRequest {
        /// SEI integration the record belongs to.
        pub integration_id: String,
        /// The change's sys_id.
        pub sys_id: String,
        /// Last update in ServiceNow; first half of the version.
        pub sys_updated_on: DateTime<Utc>,
        /// ServiceNow's update counter; second half of the version.
        pub sys_mod_count: Option<i64>,
        /// e.g. `CHG0030001`.
        pub number: Option<String>,
        /// SEI "Summary".
        pub short_description: Option<String>,
        /// SEI "Description".
        pub description: Option<String>,
        /// Customer-visible comments journal (SEI "Comments").
        pub comments: Option<String>,
        /// Internal work notes journal (SEI "Comments").
        pub work_notes: Option<String>,
        /// Priority.
        pub priority: Option<Choice>,
        /// Urgency.
        pub urgency: Option<Choice>,
        /// Impact.
        pub impact: Option<Choice>,
        /// Change state.
        pub state: Option<Choice>,
        /// Change type: standard, normal or emergency (`type` in Avro and JSON).
        pub r#type: Option<Choice>,
        /// Scope (size) of the change.
        pub scope: Option<Choice>,
        /// Close code.
        pub close_code: Option<Choice>,
        /// Creation time in ServiceNow.
        pub sys_created_on: Option<DateTime<Utc>>,
        /// Planned start of the change window.
        pub start_date: Option<DateTime<Utc>>,
        /// Planned end of the change window.
        pub end_date: Option<DateTime<Utc>>,
        /// When the change was closed.
        pub closed_at: Option<DateTime<Utc>>,
        /// Parent task.
        pub parent: Option<Reference>,
        /// Assignee (sys_user).
        pub assigned_to: Option<Reference>,
        /// Who opened it (`opened_by`, sys_user).
        pub created_by: Option<Reference>,
        /// Who closed it (sys_user).
        pub closed_by: Option<Reference>,
        /// Affected business service.
        pub business_service: Option<Reference>,
        /// Department owning the business service.
        pub business_service_department: Option<Reference>,
        /// Department of the requester.
        pub requested_by_department: Option<Reference>,
        /// Names of the fields the exclusion policy removed.
        #[serde(default)]
        pub excluded_fields: Vec<String>,
        /// Custom `u_*` fields that were kept, by element name.
        #[serde(default)]
        pub custom_fields: BTreeMap<String, CustomField>,
    }
}

impl AvroRecord for ChangeRequest {
    fn contract() -> &'static ContractSchema {
        &contract::CHANGE_REQUEST
    }
}

impl Versioned for ChangeRequest {
    fn version(&self) -> Version {
        Version::new(self.sys_updated_on, self.sys_mod_count)
    }
}
