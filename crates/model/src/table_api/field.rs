//! One field of a Table API record, and how it is read.
//!
//! The fetcher asks for `sysparm_display_value=all`, so every field should be
//! `{"value": "...", "display_value": "..."}` (plus `"link"` for references and
//! `"display_value_internal"` for date-times on some releases). For robustness [`read_field`]
//! also accepts what other Table API modes return: a plain string (taken as the stored
//! `value`, with no display value), JSON numbers and booleans (as their text), `null`, and
//! objects with only one of `value`/`display_value` (`{"link", "value"}` for references).
//! Anything else (arrays, objects with neither key) is a [`FieldShapeError`].
//!
//! Empty strings are absent values.
//!
//! # Stored value or display value
//!
//! `value` is what ServiceNow stores: a sys_id for references, a choice value, a UTC time.
//! `display_value` is what the API user sees: a label, a name, a time in the user's zone and
//! format. [`stored_value`] reads the stored value only and never falls back to the display
//! value: it serves keys, versions, cursors, identities and role names, where a label read in
//! place of a value would be a wrong key, a time in the wrong zone or a role that is not one.
//! (A fallback to the display value, as preflight's own reader had, is deliberately not
//! offered: no Table API mode sends a display value without a value for such fields, and if
//! one did, reading nothing is the honest answer.) Only text shown to people may fall back:
//! [`FieldText::value_or_display`], and
//! journals, whose entries ServiceNow renders into the display value only
//! ([`FieldText::display_or_value`]).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// One field of a record fetched with `sysparm_display_value=all`:
/// `{"display_value": "...", "value": "...", "link": "..."}`, as the simulator writes it.
///
/// `value` is the stored value (sys_id for references, choice value, UTC time);
/// `display_value` is what a user sees (label, name, local time). `link` is present only
/// for reference fields and points at the referenced record's Table API URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    /// The stored value.
    pub value: String,
    /// What the API user sees.
    pub display_value: String,
    /// Table API URL of the referenced record (reference fields only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl FieldValue {
    /// A non-reference field.
    pub fn plain(value: impl Into<String>, display_value: impl Into<String>) -> Self {
        FieldValue {
            value: value.into(),
            display_value: display_value.into(),
            link: None,
        }
    }

    /// A reference field pointing at `link`.
    pub fn reference(
        value: impl Into<String>,
        display_value: impl Into<String>,
        link: impl Into<String>,
    ) -> Self {
        FieldValue {
            value: value.into(),
            display_value: display_value.into(),
            link: Some(link.into()),
        }
    }
}

/// How a field arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldShape {
    /// The record has no such key.
    Absent,
    /// A scalar (string, number, boolean, null): what the Table API returns without
    /// `sysparm_display_value=all`.
    Plain,
    /// An object with `value` and/or `display_value`: the `sysparm_display_value=all` shape.
    Pair,
}

/// One field's stored value and display value, as read; each `None` when empty or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldText<'a> {
    /// The stored value (for a plain scalar, the scalar).
    pub value: Option<Cow<'a, str>>,
    /// The display value (never set for a plain scalar).
    pub display_value: Option<Cow<'a, str>>,
    /// How the field arrived.
    pub shape: FieldShape,
}

impl<'a> FieldText<'a> {
    /// The stored value, or the display value when only that was returned: for text shown
    /// to people, never for keys, times or references.
    pub fn value_or_display(self) -> Option<Cow<'a, str>> {
        self.value.or(self.display_value)
    }

    /// The display value, else the stored value: for journals (`comments`, `work_notes`),
    /// whose `value` ServiceNow leaves empty while it renders the entries into
    /// `display_value`.
    pub fn display_or_value(self) -> Option<Cow<'a, str>> {
        self.display_value.or(self.value)
    }
}

/// A field whose JSON is not a Table API field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the field is {found}")]
pub struct FieldShapeError {
    /// What was found instead, e.g. `a JSON array`.
    pub found: &'static str,
}

// What a field that is not a Table API field was, in [`FieldShapeError::found`].
pub(crate) const NEITHER_VALUE_NOR_DISPLAY: &str =
    "an object with neither \"value\" nor \"display_value\"";
pub(crate) const VALUE_NOT_SCALAR: &str = "an object whose \"value\" is not a scalar";
pub(crate) const DISPLAY_VALUE_NOT_SCALAR: &str =
    "an object whose \"display_value\" is not a scalar";
pub(crate) const A_JSON_ARRAY: &str = "a JSON array";
pub(crate) const A_JSON_OBJECT: &str = "a JSON object";

/// Reads field `name` of `record` (see the [module docs](self) for the shapes accepted).
pub fn read_field<'a>(
    record: &'a Map<String, Value>,
    name: &str,
) -> Result<FieldText<'a>, FieldShapeError> {
    read_field_value(record.get(name))
}

/// Reads one field's JSON (`None`: the record has no such key); what [`read_field`] does
/// after looking the key up.
pub fn read_field_value(field: Option<&Value>) -> Result<FieldText<'_>, FieldShapeError> {
    let shape_error = |found| FieldShapeError { found };
    match field {
        None => Ok(FieldText {
            value: None,
            display_value: None,
            shape: FieldShape::Absent,
        }),
        Some(Value::Object(object)) => {
            let value = object.get("value");
            let display = object.get("display_value");
            if value.is_none() && display.is_none() {
                return Err(shape_error(NEITHER_VALUE_NOR_DISPLAY));
            }
            Ok(FieldText {
                value: value
                    .map(scalar)
                    .transpose()
                    .map_err(|_| shape_error(VALUE_NOT_SCALAR))?
                    .flatten(),
                display_value: display
                    .map(scalar)
                    .transpose()
                    .map_err(|_| shape_error(DISPLAY_VALUE_NOT_SCALAR))?
                    .flatten(),
                shape: FieldShape::Pair,
            })
        }
        Some(plain) => Ok(FieldText {
            value: scalar(plain).map_err(shape_error)?,
            display_value: None,
            shape: FieldShape::Plain,
        }),
    }
}

/// The stored value of field `name`, never its display value (see the [module
/// docs](self) for why); `None` when absent, empty or not a Table API field.
pub fn stored_value<'a>(record: &'a Map<String, Value>, name: &str) -> Option<Cow<'a, str>> {
    read_field(record, name).ok()?.value
}

/// The text of a scalar JSON value; `None` for `null` and `""`; `Err` names what a
/// non-scalar is.
fn scalar(value: &Value) -> Result<Option<Cow<'_, str>>, &'static str> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.is_empty() => Ok(None),
        Value::String(text) => Ok(Some(Cow::Borrowed(text))),
        Value::Bool(flag) => Ok(Some(Cow::Borrowed(if *flag { "true" } else { "false" }))),
        Value::Number(number) => Ok(Some(Cow::Owned(number_text(number)))),
        Value::Array(_) => Err(A_JSON_ARRAY),
        Value::Object(_) => Err(A_JSON_OBJECT),
    }
}

/// A JSON number as ServiceNow would have written it as text: integral numbers without a
/// fraction (`3.0` → `"3"`), so a choice value matches whichever way it was serialized.
pub(crate) fn number_text(number: &Number) -> String {
    /// Largest integer an f64 holds exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match number.as_f64() {
        Some(float) if number.is_f64() && float.fract() == 0.0 && float.abs() <= EXACT => {
            // Integral and within ±2^53 (checked above), so the conversion is exact.
            (float as i64).to_string()
        }
        _ => number.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(value: Value) -> Map<String, Value> {
        let Value::Object(map) = value else {
            panic!("test record must be an object")
        };
        map
    }

    #[test]
    fn stored_values_never_fall_back_to_display_values() {
        let r = record(json!({
            "sys_updated_on": {"display_value": "01/02/2026 10:04:05 PM", "value": "2026-01-03 03:04:05"},
            "label_only": {"display_value": "itil"},
            "journal": {"display_value": "entries", "value": ""},
            "plain": "abc",
            "count": {"display_value": "1,204", "value": 1204},
        }));
        assert_eq!(
            stored_value(&r, "sys_updated_on").as_deref(),
            Some("2026-01-03 03:04:05")
        );
        assert_eq!(stored_value(&r, "label_only"), None);
        assert_eq!(stored_value(&r, "journal"), None);
        assert_eq!(stored_value(&r, "plain").as_deref(), Some("abc"));
        assert_eq!(stored_value(&r, "count").as_deref(), Some("1204"));
        assert_eq!(stored_value(&r, "absent"), None);
    }

    #[test]
    fn text_for_people_may_fall_back_and_journals_prefer_the_display_value() {
        let r = record(json!({
            "label_only": {"display_value": "itil"},
            "journal": {"display_value": "entries", "value": ""},
            "both": {"display_value": "In Progress", "value": "2"},
        }));
        let read = |name| read_field(&r, name).unwrap();
        assert_eq!(
            read("label_only").value_or_display().as_deref(),
            Some("itil")
        );
        assert_eq!(
            read("journal").display_or_value().as_deref(),
            Some("entries")
        );
        assert_eq!(read("both").value_or_display().as_deref(), Some("2"));
        assert_eq!(
            read("both").display_or_value().as_deref(),
            Some("In Progress")
        );
    }

    #[test]
    fn the_shape_says_whether_the_field_came_as_a_display_value_all_pair() {
        let r = record(json!({"pair": {"value": "a"}, "plain": "a", "null": null}));
        assert_eq!(read_field(&r, "pair").unwrap().shape, FieldShape::Pair);
        assert_eq!(read_field(&r, "plain").unwrap().shape, FieldShape::Plain);
        assert_eq!(read_field(&r, "null").unwrap().shape, FieldShape::Plain);
        assert_eq!(read_field(&r, "absent").unwrap().shape, FieldShape::Absent);
    }

    #[test]
    fn what_is_no_table_api_field_is_a_shape_error_saying_what_it_is() {
        let r = record(json!({
            "list": ["u1"],
            "link_only": {"link": "https://x"},
            "nested": {"value": {"deep": "x"}},
            "nested_label": {"value": "x", "display_value": ["y"]},
        }));
        let found = |name| read_field(&r, name).unwrap_err().found;
        assert_eq!(found("list"), "a JSON array");
        assert_eq!(
            found("link_only"),
            "an object with neither \"value\" nor \"display_value\""
        );
        assert_eq!(found("nested"), "an object whose \"value\" is not a scalar");
        assert_eq!(
            found("nested_label"),
            "an object whose \"display_value\" is not a scalar"
        );
        assert_eq!(stored_value(&r, "list"), None);
    }

    #[test]
    fn integral_json_numbers_read_without_a_fraction() {
        let r = record(json!({"a": 3.0, "b": 0.5, "c": true}));
        assert_eq!(stored_value(&r, "a").as_deref(), Some("3"));
        assert_eq!(stored_value(&r, "b").as_deref(), Some("0.5"));
        assert_eq!(stored_value(&r, "c").as_deref(), Some("true"));
    }

    #[test]
    fn field_values_have_servicenow_display_value_all_shape() {
        let plain = FieldValue::plain("2", "2 - High");
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"value": "2", "display_value": "2 - High"})
        );
        let reference = FieldValue::reference(
            "6816f79cc0a8016401c5a33be04be441",
            "Fred Luddy",
            "https://x.service-now.com/api/now/table/sys_user/6816f79cc0a8016401c5a33be04be441",
        );
        let json = json!({
            "display_value": "Fred Luddy",
            "link": "https://x.service-now.com/api/now/table/sys_user/6816f79cc0a8016401c5a33be04be441",
            "value": "6816f79cc0a8016401c5a33be04be441"
        });
        assert_eq!(serde_json::to_value(&reference).unwrap(), json);
        assert_eq!(
            serde_json::from_value::<FieldValue>(json).unwrap(),
            reference
        );
    }
}
