//! The exclusion policy: which ServiceNow fields must never reach SEI.
//!
//! SEI lets an integration exclude fields (`exclude_fields`), by SEI's names ("Summary",
//! "Description", "Comments") or by ServiceNow field names, custom ones included
//! (`u_root_cause`). The policy turns each configured name into canonical ServiceNow names
//! (lowercase element names, or dot-walk paths) and then *strips every payload key that
//! mentions one of them, at every nesting level, before any mapping code reads the
//! payload*. Mapping code therefore cannot leak an excluded value, whatever it reads later:
//! the value is no longer there.
//!
//! A payload key mentions a canonical name when the name is one of the key's dot-separated
//! segments, or (for dotted names) a run of consecutive segments:
//!
//! | policy name | removes keys |
//! |---|---|
//! | `short_description` | `short_description`, `parent.short_description`, `short_description.x` |
//! | `department` | `department`, `business_service.department`, `requested_by.department` |
//! | `business_service.department` | `business_service.department`, `x.business_service.department.y` — not `business_service` |
//!
//! Configured names are read generously, because a name that fails to match would leak:
//! case is ignored, spaces and hyphens become `_`, CamelCase is also read split
//! (`SysCreatedOn` → `sys_created_on`, as SEI's datasheet spells fields), and SEI's names
//! expand to the fields behind them (see [`ALIASES`]). Both the plain and the split reading
//! are excluded when they differ: excluding too much is safe, too little is not.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::Entity;
use crate::field_sources::{derived_fields, field_sources};

/// SEI names (and SEI entity field names) that stand for other ServiceNow fields. Each
/// configured name is excluded itself *and* expands to the fields listed here.
pub const ALIASES: &[(&str, &[&str])] = &[
    // SEI "Summary".
    ("summary", &["short_description"]),
    // SEI "Comments" covers both journals, and the combined journal view that holds both.
    (
        "comments",
        &["comments", "work_notes", "comments_and_work_notes"],
    ),
    // The combined view carries work notes too.
    ("work_notes", &["comments_and_work_notes"]),
    // SEI "CreatedBy" is ServiceNow's opened_by; sys_created_by holds the creator's login.
    ("created_by", &["opened_by", "sys_created_by"]),
    // SEI "ParentId".
    ("parent_id", &["parent"]),
    // SEI "BusinessServiceDepartment" and "RequestedByDepartment" are dot-walked fields.
    (
        "business_service_department",
        &["business_service.department"],
    ),
    ("requested_by_department", &["requested_by.department"]),
];

/// Fields that cannot be excluded, and why.
const PROTECTED: &[(&str, &str)] = &[
    (
        "sys_id",
        "it is the record's identity, carried in every Kafka key",
    ),
    (
        "sys_updated_on",
        "it is half of the record's version, which every consumer needs to keep the newest",
    ),
    (
        "sys_mod_count",
        "it is half of the record's version, which every consumer needs to keep the newest",
    ),
    (
        "value",
        "it is part of the Table API's field shape, not a field; excluding it would empty every field",
    ),
    (
        "display_value",
        "it is part of the Table API's field shape, not a field; excluding it would empty every field",
    ),
];

/// A configured `exclude_fields` entry that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The entry is empty or only whitespace.
    #[error("exclude_fields entry {index} is empty")]
    EmptyName {
        /// Position of the entry in the list (from 0).
        index: usize,
    },
    /// The entry has a character no ServiceNow field name has.
    #[error(
        "exclude_fields entry {name:?} contains {character:?}; field names are letters, digits, '_' and '.' (spaces and '-' are read as '_')"
    )]
    InvalidCharacter {
        /// The entry as configured.
        name: String,
        /// The first offending character.
        character: char,
    },
    /// The entry has an empty segment between dots (`a..b`, `.a`).
    #[error("exclude_fields entry {name:?} has an empty segment between dots")]
    EmptySegment {
        /// The entry as configured.
        name: String,
    },
    /// The entry names a field nowstream cannot work without.
    #[error("exclude_fields entry {name:?} names {canonical}, which cannot be excluded: {reason}")]
    Protected {
        /// The entry as configured.
        name: String,
        /// The protected field it names.
        canonical: &'static str,
        /// Why the field is needed.
        reason: &'static str,
    },
}

/// Which fields an integration excludes. Cheap to share: build once at start-up with
/// [`ExclusionPolicy::new`] and pass by reference. Both stages apply it: the fetcher strips
/// dead letters and (with `exclude_at_source`) the fields it asks for, the normalizer strips
/// every payload before mapping; it lives in the model so neither stage links the other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExclusionPolicy {
    /// Every canonical name, sorted: what [`names`](Self::names) reports.
    names: BTreeSet<String>,
    /// Single-segment names, sorted, matched against each segment of a key (a binary
    /// search: cheaper than hashing for the few names a policy has, and `excludes` runs
    /// for every key of every record).
    segments: Vec<String>,
    /// Dotted names, matched as runs of consecutive segments.
    paths: Vec<String>,
    /// What [`excluded_entity_fields`](Self::excluded_entity_fields) returns, per entity in
    /// [`entity_slot`] order: computed once, since it depends on the policy alone.
    excluded_entity_fields: [Vec<String>; 4],
}

impl ExclusionPolicy {
    /// The policy for `exclude_fields` as configured (SEI names or ServiceNow field names,
    /// any case). Fails on entries that are empty, malformed, or name a protected field
    /// (sys_id, sys_updated_on, sys_mod_count), so a typo stops start-up instead of
    /// silently excluding nothing.
    pub fn new(exclude_fields: &[String]) -> Result<Self, PolicyError> {
        let mut names = BTreeSet::new();
        for (index, configured) in exclude_fields.iter().enumerate() {
            names.extend(canonical_names(index, configured)?);
        }
        let (paths, segments): (Vec<String>, Vec<String>) =
            names.iter().cloned().partition(|name| name.contains('.'));
        let mut policy = Self {
            names,
            segments,
            paths,
            excluded_entity_fields: Default::default(),
        };
        for entity in Entity::ALL {
            policy.excluded_entity_fields[entity_slot(entity)] = policy.compute_excluded(entity);
        }
        Ok(policy)
    }

    /// What `excluded_fields` holds for every record of `entity` under this policy, sorted:
    /// the entity fields whose source the policy excludes, the derived fields computed from
    /// an excluded field (or named by the policy themselves), and the excluded custom
    /// (`u_*`) field names.
    ///
    /// It depends on the policy alone, never on the record: a consumer that finds a field
    /// listed knows its null means "withheld", whether or not the record had a value, and
    /// the list reveals nothing about the record.
    pub fn excluded_entity_fields(&self, entity: Entity) -> &[String] {
        &self.excluded_entity_fields[entity_slot(entity)]
    }

    fn compute_excluded(&self, entity: Entity) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for source in field_sources(entity) {
            if self.excludes(source.source) {
                names.insert(source.entity_field);
            }
        }
        for derived in derived_fields(entity) {
            if self.excludes(derived.entity_field)
                || derived.inputs.iter().any(|input| self.excludes(input))
            {
                names.insert(derived.entity_field);
            }
        }
        names.extend(self.custom_field_names());
        names.into_iter().map(str::to_owned).collect()
    }

    /// The policy that excludes nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether the policy excludes nothing.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every canonical field name the policy excludes (aliases expanded), sorted: what to
    /// log at start-up so operators see what the configuration means.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Whether a payload key (a field name or a dot-walk path, any case) mentions an
    /// excluded field and must be removed.
    pub fn excludes(&self, key: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let lowered;
        let key = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = key.to_ascii_lowercase();
            lowered.as_str()
        } else {
            key
        };
        key.split('.').any(|segment| {
            self.segments
                .binary_search_by(|name| name.as_str().cmp(segment))
                .is_ok()
        }) || self.paths.iter().any(|path| contains_path(key, path))
    }

    /// Removes every object key that [`excludes`](Self::excludes) names, with its whole
    /// value, at every nesting level (inside field objects, nested objects and arrays).
    pub fn strip(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::Object(fields) => {
                fields.retain(|key, _| !self.excludes(key));
                for nested in fields.values_mut() {
                    self.strip(nested);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.strip(item);
                }
            }
            _ => {}
        }
    }

    /// The excluded custom (`u_*`) field names: listed in every entity's `excluded_fields`,
    /// because custom columns differ per table and per instance.
    pub fn custom_field_names(&self) -> impl Iterator<Item = &str> {
        self.names()
            .filter(|name| name.starts_with("u_") && !name.contains('.'))
    }
}

/// Where an entity's list is kept in `excluded_entity_fields`.
fn entity_slot(entity: Entity) -> usize {
    match entity {
        Entity::Incident => 0,
        Entity::ChangeRequest => 1,
        Entity::User => 2,
        Entity::FieldDefinition => 3,
    }
}

/// Whether `path`'s segments occur as consecutive whole segments of `key`.
fn contains_path(key: &str, path: &str) -> bool {
    let bytes = key.as_bytes();
    key.match_indices(path).any(|(start, _)| {
        let end = start + path.len();
        (start == 0 || bytes[start - 1] == b'.') && (end == key.len() || bytes[end] == b'.')
    })
}

/// Every canonical name one configured entry stands for.
fn canonical_names(index: usize, configured: &str) -> Result<Vec<String>, PolicyError> {
    let trimmed = configured.trim();
    if trimmed.is_empty() {
        return Err(PolicyError::EmptyName { index });
    }
    let plain = normalize(trimmed, false);
    let split = normalize(trimmed, true);
    let mut names = Vec::new();
    for base in [plain, split] {
        check(configured, &base)?;
        let aliases = ALIASES
            .iter()
            .filter(|(alias, _)| *alias == base)
            .flat_map(|(_, fields)| fields.iter().map(|field| (*field).to_owned()));
        names.extend(aliases);
        names.push(base);
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Lowercase, with spaces and hyphens as `_`; with `split_camel_case`, an `_` also goes
/// before each capital that follows a lowercase letter or digit.
fn normalize(name: &str, split_camel_case: bool) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if split_camel_case
            && c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('_');
        }
        match c {
            ' ' | '-' => out.push('_'),
            other => out.push(other.to_ascii_lowercase()),
        }
        previous = Some(c);
    }
    out
}

fn check(configured: &str, canonical: &str) -> Result<(), PolicyError> {
    if let Some(character) = canonical
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '.'))
    {
        return Err(PolicyError::InvalidCharacter {
            name: configured.to_owned(),
            character,
        });
    }
    if canonical.split('.').any(str::is_empty) {
        return Err(PolicyError::EmptySegment {
            name: configured.to_owned(),
        });
    }
    if let Some((field, reason)) = PROTECTED.iter().find(|(field, _)| *field == canonical) {
        return Err(PolicyError::Protected {
            name: configured.to_owned(),
            canonical: field,
            reason,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(names: &[&str]) -> ExclusionPolicy {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        ExclusionPolicy::new(&names).unwrap()
    }

    fn names(policy: &ExclusionPolicy) -> Vec<&str> {
        policy.names().collect()
    }

    #[test]
    fn sei_names_expand_to_the_servicenow_fields_behind_them_in_any_case() {
        assert_eq!(
            names(&policy(&["SUMMARY"])),
            ["short_description", "summary"]
        );
        assert_eq!(names(&policy(&["Description"])), ["description"]);
        assert_eq!(
            names(&policy(&["comments"])),
            ["comments", "comments_and_work_notes", "work_notes"]
        );
        assert_eq!(
            names(&policy(&["BusinessServiceDepartment"])),
            [
                "business_service.department",
                "business_service_department",
                "businessservicedepartment"
            ]
        );
    }

    #[test]
    fn raw_names_and_datasheet_spellings_are_read_both_plain_and_split() {
        assert_eq!(names(&policy(&["u_root_cause"])), ["u_root_cause"]);
        assert_eq!(
            names(&policy(&["Short Description"])),
            ["short_description"]
        );
        assert_eq!(
            names(&policy(&["U_RootCause"])),
            ["u_root_cause", "u_rootcause"]
        );
        assert_eq!(
            names(&policy(&["SysCreatedOn"])),
            ["sys_created_on", "syscreatedon"]
        );
        assert_eq!(
            names(&policy(&["  work-notes "])),
            ["comments_and_work_notes", "work_notes"]
        );
    }

    #[test]
    fn keys_are_excluded_when_any_segment_or_dotted_run_matches() {
        let p = policy(&["short_description", "business_service.department"]);
        assert!(p.excludes("short_description"));
        assert!(p.excludes("parent.short_description"));
        assert!(p.excludes("Short_Description"));
        assert!(p.excludes("business_service.department"));
        assert!(p.excludes("parent.business_service.department.name"));
        assert!(!p.excludes("business_service"));
        assert!(!p.excludes("short_description_2"));
        assert!(!p.excludes("my_business_service.department"));
        assert!(!p.excludes("business_service.department_head"));
    }

    #[test]
    fn stripping_removes_excluded_keys_at_every_level_and_keeps_the_rest() {
        let p = policy(&["Comments", "u_secret"]);
        let mut payload = json!({
            "comments": {"value": "", "display_value": "hidden 1"},
            "parent.work_notes": {"value": "hidden 2"},
            "number": {"value": "INC1", "display_value": "INC1"},
            "x_blob": {"inner": {"u_secret": "hidden 3", "kept": "k"}, "list": [{"work_notes": "hidden 4"}]},
        });
        p.strip(&mut payload);
        assert_eq!(
            payload,
            json!({
                "number": {"value": "INC1", "display_value": "INC1"},
                "x_blob": {"inner": {"kept": "k"}, "list": [{}]},
            })
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        let refuse = |name: &str| ExclusionPolicy::new(&[name.to_owned()]).unwrap_err();
        assert_eq!(refuse("  "), PolicyError::EmptyName { index: 0 });
        assert!(matches!(refuse("a..b"), PolicyError::EmptySegment { .. }));
        assert!(matches!(
            refuse("short/description"),
            PolicyError::InvalidCharacter { character: '/', .. }
        ));
        for protected in [
            "sys_id",
            "SysId",
            "sys_updated_on",
            "sys_mod_count",
            "value",
        ] {
            let error = refuse(protected);
            assert!(
                matches!(error, PolicyError::Protected { .. }),
                "{protected}"
            );
            assert!(error.to_string().contains(protected), "{error}");
        }
    }

    #[test]
    fn an_empty_policy_excludes_nothing() {
        let p = ExclusionPolicy::none();
        assert!(p.is_empty());
        assert!(!p.excludes("short_description"));
        let mut payload = json!({"short_description": "kept"});
        p.strip(&mut payload);
        assert_eq!(payload, json!({"short_description": "kept"}));
    }
}
