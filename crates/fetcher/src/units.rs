//! Work units: one (integration, table) pair each, the grain at which replicas share work.

use std::fmt;

use nowstream_model::Entity;
use nowstream_model::table_api::tables;

/// The tables whose records the fetcher publishes to `servicenow.raw.<table>`: the source
/// table of every entity.
pub const RECORD_TABLES: [&str; 4] = Entity::SOURCE_TABLES;

/// Tables whose deletions are read from `sys_audit_delete`. `sys_dictionary` is left out: a
/// removed custom-field definition is rare and SEI keeps definitions for history.
pub const DELETION_TABLES: [&str; 3] = [tables::INCIDENT, tables::CHANGE_REQUEST, tables::SYS_USER];

/// Custom-field definitions of these tables are fetched from `sys_dictionary` (incident and
/// change_request extend task, so custom fields defined on task show up on both).
pub const DICTIONARY_TABLES: [&str; 3] = [tables::INCIDENT, tables::CHANGE_REQUEST, tables::TASK];

/// What a unit reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnitKind {
    /// New and changed records of one table.
    Records(&'static str),
    /// Deletions of [`DELETION_TABLES`], from `sys_audit_delete`.
    Deletions,
}

/// One integration's table: fetched by exactly one replica at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkUnit {
    pub integration_id: String,
    pub kind: UnitKind,
}

impl WorkUnit {
    /// Every unit of one integration, in a stable order.
    pub fn all_for(integration_id: &str) -> Vec<WorkUnit> {
        RECORD_TABLES
            .iter()
            .map(|table| UnitKind::Records(table))
            .chain(std::iter::once(UnitKind::Deletions))
            .map(|kind| WorkUnit {
                integration_id: integration_id.to_owned(),
                kind,
            })
            .collect()
    }

    /// The ServiceNow table this unit pages through.
    pub fn source_table(&self) -> &'static str {
        match self.kind {
            UnitKind::Records(table) => table,
            UnitKind::Deletions => tables::SYS_AUDIT_DELETE,
        }
    }

    /// The filter ANDed into every keyset query of this unit.
    pub fn filter(&self) -> Option<String> {
        match self.kind {
            UnitKind::Records(tables::SYS_DICTIONARY) => Some(format!(
                "nameIN{}^elementSTARTSWITHu_",
                DICTIONARY_TABLES.join(",")
            )),
            UnitKind::Records(_) => None,
            UnitKind::Deletions => Some(format!("tablenameIN{}", DELETION_TABLES.join(","))),
        }
    }

    /// The coordination-topic partition that owns this unit.
    ///
    /// CRC-32 rather than Rust's `DefaultHasher`: every replica, whatever version it was built
    /// with, must map a unit to the same partition, or two replicas would fetch it at once.
    pub fn partition(&self, partitions: i32) -> i32 {
        let partitions = partitions.max(1) as u32;
        (crc32fast::hash(self.to_string().as_bytes()) % partitions) as i32
    }
}

impl fmt::Display for WorkUnit {
    /// `<integration_id>:<source table>`: also the unit's checkpoint key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.integration_id, self.source_table())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integration_has_one_unit_per_table_and_one_for_deletions() {
        let units = WorkUnit::all_for("4711");
        let names: Vec<String> = units.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "4711:incident",
                "4711:change_request",
                "4711:sys_user",
                "4711:sys_dictionary",
                "4711:sys_audit_delete"
            ]
        );
    }

    #[test]
    fn a_unit_always_maps_to_the_same_partition() {
        let unit = WorkUnit::all_for("4711").remove(0);
        // Pinned: changing the mapping would make replicas of two versions disagree.
        assert_eq!(
            unit.partition(12),
            (crc32fast::hash(b"4711:incident") % 12) as i32
        );
        assert_eq!(unit.partition(12), unit.partition(12));
        assert!((0..12).contains(&unit.partition(12)));
    }

    #[test]
    fn deletions_and_dictionary_units_filter_their_tables() {
        let units = WorkUnit::all_for("4711");
        assert_eq!(
            units[3].filter().as_deref(),
            Some("nameINincident,change_request,task^elementSTARTSWITHu_")
        );
        assert_eq!(
            units[4].filter().as_deref(),
            Some("tablenameINincident,change_request,sys_user")
        );
        assert_eq!(units[0].filter(), None);
    }
}
