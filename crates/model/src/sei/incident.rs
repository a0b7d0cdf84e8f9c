//! `Incident`: value of `sei.servicenow.incident`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Choice, CustomField, Reference};
use crate::avro_value::avro_record;
use crate::contract::{self, ContractSchema};
use crate::single_object::AvroRecord;
use crate::version::{Version, Versioned};

avro_record! {
    /// A ServiceNow incident normalized for SEI. See `schemas/incident.avsc` for each
    /// field's source in ServiceNow.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Incident {
        /// SEI integration the record belongs to.
        pub integration_id: String,
        /// The incident's sys_id.
        pub sys_id: String,
        /// Last update in ServiceNow; first half of the version.
        pub sys_updated_on: DateTime<Utc>,
        /// ServiceNow's update counter; second half of the version.
        pub sys_mod_count: Option<i64>,
        /// e.g. `INC0010001`.
        pub number: Option<String>,
        /// SEI "Summary".
        pub short_description: Option<String>,
        /// SEI "Description".
        pub description: Option<String>,
        /// Customer-visible comments journal (SEI "Comments").
        pub comments: Option<String>,
        /// Internal work notes journal (SEI "Comments").
        pub work_notes: Option<String>,
        /// Priority, derived by ServiceNow from impact and urgency.
        pub priority: Option<Choice>,
        /// Urgency.
        pub urgency: Option<Choice>,
        /// Impact.
        pub impact: Option<Choice>,
        /// Severity.
        pub severity: Option<Choice>,
        /// Incident state.
        pub state: Option<Choice>,
        /// Escalation.
        pub escalation: Option<Choice>,
        /// Category.
        pub category: Option<Choice>,
        /// Resolution code.
        pub close_code: Option<Choice>,
        /// Creation time in ServiceNow.
        pub sys_created_on: Option<DateTime<Utc>>,
        /// When the incident was opened; start of time to restore.
        pub opened_at: Option<DateTime<Utc>>,
        /// When it was resolved; end of time to restore.
        pub resolved_at: Option<DateTime<Utc>>,
        /// When it was closed.
        pub closed_at: Option<DateTime<Utc>>,
        /// When its SLA falls due.
        pub sla_due: Option<DateTime<Utc>>,
        /// `resolved_at - opened_at` in milliseconds, derived once so every consumer's MTTR agrees.
        pub time_to_restore_ms: Option<i64>,
        /// Parent task.
        pub parent: Option<Reference>,
        /// Assignee (sys_user).
        pub assigned_to: Option<Reference>,
        /// Who opened it (`opened_by`, sys_user).
        pub created_by: Option<Reference>,
        /// Who resolved it (sys_user).
        pub resolved_by: Option<Reference>,
        /// Affected business service.
        pub business_service: Option<Reference>,
        /// Department owning the business service.
        pub business_service_department: Option<Reference>,
        /// The change request that caused the incident (`caused_by`): the exact link behind
        /// change failure rate. Since schema v2; `None` for records written with v1.
        pub caused_by: Option<Reference>,
        /// Names of the fields the exclusion policy removed.
        #[serde(default)]
        pub excluded_fields: Vec<String>,
        /// Custom `u_*` fields that were kept, by element name.
        #[serde(default)]
        pub custom_fields: BTreeMap<String, CustomField>,
    }
}

impl Incident {
    /// Time to restore as the contract derives it: `resolved_at - opened_at`, when both
    /// are known and the incident was not resolved before it was opened.
    pub fn derive_time_to_restore_ms(
        opened_at: Option<DateTime<Utc>>,
        resolved_at: Option<DateTime<Utc>>,
    ) -> Option<i64> {
        let elapsed = resolved_at?.signed_duration_since(opened_at?);
        (elapsed >= chrono::TimeDelta::zero()).then(|| elapsed.num_milliseconds())
    }
}

impl AvroRecord for Incident {
    fn contract() -> &'static ContractSchema {
        &contract::INCIDENT
    }
}

impl Versioned for Incident {
    fn version(&self) -> Version {
        Version::new(self.sys_updated_on, self.sys_mod_count)
    }
}
