//! Reading typed values out of a record's payload fields.
//!
//! A field is read with the model's Table API reader
//! ([`nowstream_model::table_api::field`], which says what shapes are accepted and when a
//! display value may stand in for a stored value); a field of any other shape that the
//! mapping reads is a [`MapError::UnexpectedShape`] naming the record and field. Times come
//! only from `value` (UTC); display values are in the API user's zone and format and are
//! never parsed as times.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nowstream_model::table_api::{FieldText, RecordFields, parse_time};
use nowstream_model::{Choice, CustomField, Reference};

use crate::error::{MapError, excerpt};

/// Prefix ServiceNow gives columns that customers add to a table.
pub const CUSTOM_FIELD_PREFIX: &str = "u_";

/// The payload fields of one record (after exclusion), with the facts errors must name.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    table: &'a str,
    sys_id: &'a str,
    record: &'a RecordFields<'a>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(table: &'a str, sys_id: &'a str, record: &'a RecordFields<'a>) -> Self {
        Self {
            table,
            sys_id,
            record,
        }
    }

    /// A text field: its stored value, or its display value when only that was returned.
    pub(crate) fn text(&self, name: &str) -> Result<Option<String>, MapError> {
        Ok(self.read(name)?.value_or_display().map(Cow::into_owned))
    }

    /// A journal field (`comments`, `work_notes`): ServiceNow leaves `value` empty and
    /// renders the entries into `display_value`, so the display value comes first.
    pub(crate) fn journal(&self, name: &str) -> Result<Option<String>, MapError> {
        Ok(self.read(name)?.display_or_value().map(Cow::into_owned))
    }

    /// A choice field: stored value and label; `None` when both are empty.
    pub(crate) fn choice(&self, name: &str) -> Result<Option<Choice>, MapError> {
        let field = self.read(name)?;
        if field.value.is_none() && field.display_value.is_none() {
            return Ok(None);
        }
        Ok(Some(Choice {
            value: field.value.map(Cow::into_owned),
            label: field.display_value.map(Cow::into_owned),
        }))
    }

    /// A reference field: `None` without a sys_id, since a display value alone identifies
    /// nothing.
    pub(crate) fn reference(&self, name: &str) -> Result<Option<Reference>, MapError> {
        let field = self.read(name)?;
        Ok(field.value.map(|sys_id| Reference {
            sys_id: sys_id.into_owned(),
            display_value: field.display_value.map(Cow::into_owned),
        }))
    }

    /// A date-time field, from its UTC `value` only.
    pub(crate) fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, MapError> {
        let Some(value) = self.read(name)?.value else {
            return Ok(None);
        };
        parse_time(&value)
            .map(Some)
            .map_err(|error| MapError::UnparseableTime {
                table: self.table.to_owned(),
                sys_id: self.sys_id.to_owned(),
                field: name.to_owned(),
                value: excerpt(&value),
                reason: error.reason,
            })
    }

    /// A boolean field: `true`/`false` (any case) or `1`/`0`.
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, MapError> {
        let Some(value) = self.read(name)?.value else {
            return Ok(None);
        };
        if value.eq_ignore_ascii_case("true") || value == "1" {
            Ok(Some(true))
        } else if value.eq_ignore_ascii_case("false") || value == "0" {
            Ok(Some(false))
        } else {
            Err(self.invalid(name, &value, "a boolean (\"true\" or \"false\")"))
        }
    }

    /// An integer field, from its stored value (display values may carry digit grouping).
    pub(crate) fn integer<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<Option<T>, MapError> {
        let Some(value) = self.read(name)?.value else {
            return Ok(None);
        };
        value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| self.invalid(name, &value, expected))
    }

    /// Every top-level custom (`u_*`) field, value and display value as returned. Dot-walked
    /// keys (`u_vendor.name`) are not columns of this record and are left out.
    pub(crate) fn custom_fields(&self) -> Result<BTreeMap<String, CustomField>, MapError> {
        let mut custom = BTreeMap::new();
        for name in self.record.names() {
            if !name.starts_with(CUSTOM_FIELD_PREFIX) || name.contains('.') {
                continue;
            }
            let field = self.read(name)?;
            custom.insert(
                name.to_owned(),
                CustomField {
                    value: field.value.map(Cow::into_owned),
                    display_value: field.display_value.map(Cow::into_owned),
                },
            );
        }
        Ok(custom)
    }

    fn read(&self, name: &str) -> Result<FieldText<'a>, MapError> {
        self.record
            .read(name)
            .map_err(|error| MapError::UnexpectedShape {
                table: self.table.to_owned(),
                sys_id: self.sys_id.to_owned(),
                field: name.to_owned(),
                found: error.found,
            })
    }

    fn invalid(&self, name: &str, value: &str, expected: &'static str) -> MapError {
        MapError::InvalidValue {
            table: self.table.to_owned(),
            sys_id: self.sys_id.to_owned(),
            field: name.to_owned(),
            value: excerpt(value),
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;

    fn with<R>(payload: Value, read: impl FnOnce(&Fields<'_>) -> R) -> R {
        let Value::Object(map) = payload else {
            panic!("test payload must be an object")
        };
        read(&Fields::new(
            "incident",
            "abc",
            &RecordFields::from_map(&map),
        ))
    }

    #[test]
    fn display_value_all_objects_give_value_and_label() {
        let payload = json!({
            "state": {"display_value": "In Progress", "value": "2"},
            "assigned_to": {"display_value": "Fred Luddy", "link": "https://x/api/now/table/sys_user/u1", "value": "u1"},
            "number": {"display_value": "INC1", "value": "INC1"},
        });
        with(payload, |f| {
            assert_eq!(
                f.choice("state").unwrap(),
                Some(Choice {
                    value: Some("2".into()),
                    label: Some("In Progress".into())
                })
            );
            assert_eq!(
                f.reference("assigned_to").unwrap(),
                Some(Reference {
                    sys_id: "u1".into(),
                    display_value: Some("Fred Luddy".into())
                })
            );
            assert_eq!(f.text("number").unwrap().as_deref(), Some("INC1"));
        });
    }

    #[test]
    fn plain_strings_are_stored_values_without_labels() {
        let payload = json!({
            "state": "2",
            "assigned_to": {"link": "https://x/api/now/table/sys_user/u1", "value": "u1"},
            "opened_at": "2024-01-02 03:04:05",
        });
        with(payload, |f| {
            assert_eq!(
                f.choice("state").unwrap(),
                Some(Choice {
                    value: Some("2".into()),
                    label: None
                })
            );
            assert_eq!(
                f.reference("assigned_to").unwrap().unwrap().display_value,
                None
            );
            assert_eq!(
                f.time("opened_at").unwrap(),
                Some(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap())
            );
        });
    }

    #[test]
    fn empty_strings_nulls_and_absent_fields_are_all_none() {
        let payload = json!({
            "a": {"display_value": "", "value": ""},
            "b": "",
            "c": null,
            "d": {"display_value": "UNKNOWN", "value": "", "display_value_internal": ""},
        });
        with(payload, |f| {
            for name in ["a", "b", "c", "absent"] {
                assert_eq!(f.text(name).unwrap(), None, "{name}");
                assert_eq!(f.choice(name).unwrap(), None, "{name}");
                assert_eq!(f.reference(name).unwrap(), None, "{name}");
            }
            // A display value alone is no time and no reference.
            assert_eq!(f.time("d").unwrap(), None);
            assert_eq!(f.reference("d").unwrap(), None);
        });
    }

    #[test]
    fn journals_prefer_the_rendered_display_value() {
        let payload = json!({
            "comments": {"display_value": "2024-01-02 03:04:05 - Fred (Additional comments)\nRebooted", "value": ""},
            "work_notes": "plain note",
        });
        with(payload, |f| {
            assert!(
                f.journal("comments")
                    .unwrap()
                    .unwrap()
                    .ends_with("Rebooted")
            );
            assert_eq!(
                f.journal("work_notes").unwrap().as_deref(),
                Some("plain note")
            );
        });
    }

    #[test]
    fn numbers_and_booleans_in_json_read_as_their_text() {
        let payload = json!({
            "urgency": {"display_value": "3 - Low", "value": 3.0},
            "sys_mod_count": 10,
            "active": {"display_value": "false", "value": false},
            "ratio": 0.5,
        });
        with(payload, |f| {
            assert_eq!(
                f.choice("urgency").unwrap().unwrap().value.as_deref(),
                Some("3")
            );
            assert_eq!(
                f.integer::<i64>("sys_mod_count", "an integer").unwrap(),
                Some(10)
            );
            assert_eq!(f.flag("active").unwrap(), Some(false));
            assert_eq!(f.text("ratio").unwrap().as_deref(), Some("0.5"));
        });
    }

    #[test]
    fn bad_flags_numbers_and_shapes_are_errors_naming_the_field() {
        let payload = json!({
            "active": "maybe",
            "max_length": {"display_value": "1,000", "value": "1,000"},
            "watch_list": ["u1", "u2"],
            "odd": {"link": "https://x"},
            "nested": {"value": {"deep": "x"}},
        });
        with(payload, |f| {
            let error = f.flag("active").unwrap_err();
            assert_eq!(error.code(), "invalid_field_value");
            assert!(error.to_string().contains("active"), "{error}");
            let error = f.integer::<i32>("max_length", "an integer").unwrap_err();
            assert!(error.to_string().contains("\"1,000\""), "{error}");
            for name in ["watch_list", "odd", "nested"] {
                let error = f.text(name).unwrap_err();
                assert_eq!(error.code(), "unexpected_field_shape", "{name}");
                assert!(error.to_string().contains(name), "{error}");
            }
        });
    }

    #[test]
    fn custom_fields_are_top_level_u_columns_only() {
        let payload = json!({
            "u_root_cause": {"display_value": "Disk full", "value": "Disk full"},
            "u_empty": {"display_value": "", "value": ""},
            "u_tier": "gold",
            "u_vendor.name": {"display_value": "Acme", "value": "Acme"},
            "number": "INC1",
        });
        let custom = with(payload, |f| f.custom_fields().unwrap());
        assert_eq!(
            custom.keys().collect::<Vec<_>>(),
            ["u_empty", "u_root_cause", "u_tier"]
        );
        assert_eq!(custom["u_empty"], CustomField::default());
        assert_eq!(custom["u_tier"].value.as_deref(), Some("gold"));
        assert_eq!(custom["u_tier"].display_value, None);
    }
}
