//! One Table API record as it came over the wire: its JSON text, read on demand.
//!
//! A page of 1,000 incidents with `sysparm_display_value=all` is about 4–5 MB of JSON. Parsed
//! into `serde_json::Map`s it took about four times that (every field is a nested map of
//! `value`, `display_value` and `link`, each key and string its own allocation), and a fetcher
//! holds two pages per unit at once (the one being published and the next one): the pages were
//! nearly all of its heap. A [`Row`] is a slice of the response body it came in, shared by the
//! rows of that page (no copy, no allocation per record); the fetcher reads only the fields it
//! needs ([`Row::select`]), one record at a time, and the scan only the two cursor fields.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A Table API record, kept as the JSON object text ServiceNow sent: a range of its page's
/// body. Cheap to clone; the body lives as long as one of its rows does.
#[derive(Clone)]
pub struct Row {
    text: Arc<String>,
    range: Range<usize>,
}

/// A record whose text does not read as a JSON object of fields. Only the parser's category
/// and position are kept: the text is record data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record JSON cannot be read: {kind} at line {line}, column {column}")]
pub struct RowError {
    pub kind: &'static str,
    pub line: usize,
    pub column: usize,
}

/// A list response body that is not `{"result": [ {record}, … ]}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PageError {
    #[error("the response is not UTF-8")]
    NotUtf8,
    #[error("the response is not a JSON object")]
    NotAnObject,
    #[error("no `result` array in the response")]
    NoResultArray,
    #[error("result[{index}] is not a JSON object")]
    NotARecord { index: usize },
}

impl From<serde_json::Error> for RowError {
    fn from(error: serde_json::Error) -> Self {
        RowError {
            kind: match error.classify() {
                serde_json::error::Category::Eof => "it ends early",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "not a JSON object of fields",
                serde_json::error::Category::Io => "read error",
            },
            line: error.line(),
            column: error.column(),
        }
    }
}

impl Row {
    /// The rows of a list response body `{"result": [ {record}, … ]}`, each a range of the
    /// body. `Err` says what is wrong with the body's shape.
    pub(crate) fn page(mut body: Vec<u8>) -> Result<Vec<Row>, PageError> {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            result: Option<Vec<&'a RawValue>>,
        }
        // A body read without Content-Length grew by doubling; the rows keep it for the
        // page's lifetime, so give back the spare capacity.
        body.shrink_to_fit();
        let text = Arc::new(String::from_utf8(body).map_err(|_| PageError::NotUtf8)?);
        if !text.trim_start().starts_with('{') {
            return Err(PageError::NotAnObject);
        }
        let envelope: Envelope<'_> =
            serde_json::from_str(&text).map_err(|_| PageError::NoResultArray)?;
        let raws = envelope.result.ok_or(PageError::NoResultArray)?;
        raws.iter()
            .enumerate()
            .map(|(index, raw)| {
                if !raw.get().starts_with('{') {
                    return Err(PageError::NotARecord { index });
                }
                Ok(Row::within(&text, raw.get()))
            })
            .collect()
    }

    /// The row of `part`, a slice borrowed from `text` (as a borrowed `RawValue` is).
    fn within(text: &Arc<String>, part: &str) -> Row {
        let start = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        let range = start..start.wrapping_add(part.len());
        match text.get(range.clone()) {
            Some(found) if std::ptr::eq(found, part) => Row {
                text: Arc::clone(text),
                range,
            },
            // Not a slice of `text` after all: keep a copy rather than a wrong range.
            _ => Row::owned(part.to_owned()),
        }
    }

    fn owned(text: String) -> Row {
        let range = 0..text.len();
        Row {
            text: Arc::new(text),
            range,
        }
    }

    /// A row holding `record` (tests, and callers that built a record themselves).
    pub fn from_map(record: &Map<String, Value>) -> Row {
        Row::owned(Value::Object(record.clone()).to_string())
    }

    /// The record's JSON text, exactly as received.
    pub fn json(&self) -> &str {
        // The range was checked against the text when the row was made.
        self.text.get(self.range.clone()).unwrap_or("{}")
    }

    /// Every field of the record.
    pub fn to_map(&self) -> Result<Map<String, Value>, RowError> {
        Ok(serde_json::from_str(self.json())?)
    }

    /// Only the named top-level fields (those present), skipping the others without building
    /// them: what reading a cursor or a key needs.
    pub fn select(&self, fields: &[&str]) -> Result<Map<String, Value>, RowError> {
        let mut deserializer = serde_json::Deserializer::from_str(self.json());
        let selected = Selected { fields }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(selected)
    }
}

impl Row {
    /// The stored `value` of one field (never its display value; see
    /// `nowstream_model::table_api::stored_value`), `None` when absent or empty. Only that
    /// field is parsed; a field whose own JSON cannot be read (a number beyond `f64`) reads
    /// as absent too, like any field of a shape ServiceNow does not send.
    pub fn stored_value(&self, name: &str) -> Option<String> {
        let selected = self.select(&[name]).ok()?;
        nowstream_model::table_api::stored_value(&selected, name).map(|value| value.into_owned())
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl fmt::Debug for Row {
    /// The length only: the text is record data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Row({} bytes)", self.json().len())
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if !raw.get().starts_with('{') {
            return Err(serde::de::Error::custom(
                "a Table API record must be a JSON object",
            ));
        }
        Ok(Row::owned(raw.get().to_owned()))
    }
}

/// Deserializes an object into a map of the wanted fields only.
struct Selected<'f> {
    fields: &'f [&'f str],
}

impl<'de> DeserializeSeed<'de> for Selected<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Selected<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut selected = Map::new();
        while let Some(key) = access.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.fields.contains(&key.as_ref()) {
                let value: Value = access.next_value()?;
                selected.insert(key.into_owned(), value);
            } else {
                access.next_value::<IgnoredAny>()?;
            }
        }
        Ok(selected)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(text: &str) -> Row {
        serde_json::from_str(text).expect("a row")
    }

    #[test]
    fn a_row_keeps_the_text_it_was_sent_and_reads_every_field_on_demand() {
        let text = r#"{"sys_id":{"value":"a1","display_value":"a1"},"u_x":{"value":"é\n","display_value":"É"}}"#;
        let row = row(text);
        assert_eq!(row.json(), text);
        let map = row.to_map().expect("fields");
        assert_eq!(map["u_x"]["display_value"], json!("É"));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["sys_id", "u_x"]);
    }

    #[test]
    fn select_reads_only_the_named_fields_and_skips_nested_ones_of_the_same_name() {
        let row = row(
            r#"{"a":{"value":"1"},"nested":{"sys_id":"inner"},"sys_id":{"value":"s"},"b":[1,2]}"#,
        );
        let selected = row.select(&["sys_id", "absent"]).expect("fields");
        assert_eq!(Value::Object(selected), json!({"sys_id": {"value": "s"}}));
    }

    #[test]
    fn stored_value_reads_the_value_never_the_display_value() {
        let row = row(
            r#"{"sys_updated_on":{"value":"2024-01-01 10:00:00","display_value":"01/01/2024 05:00:00"},"empty":{"value":"","display_value":"x"}}"#,
        );
        assert_eq!(
            row.stored_value("sys_updated_on").as_deref(),
            Some("2024-01-01 10:00:00")
        );
        assert_eq!(row.stored_value("empty"), None);
        assert_eq!(row.stored_value("absent"), None);
    }

    #[test]
    fn the_rows_of_a_page_are_ranges_of_its_body_sharing_it() {
        let body = br#"{"result": [{"sys_id": {"value": "a"}}, {"sys_id": {"value": "b"}, "n": [1, {"x": "}"}]}]}"#;
        let rows = Row::page(body.to_vec()).expect("a page");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].json(), r#"{"sys_id": {"value": "a"}}"#);
        assert_eq!(
            rows[1].json(),
            r#"{"sys_id": {"value": "b"}, "n": [1, {"x": "}"}]}"#
        );
        assert!(Arc::ptr_eq(&rows[0].text, &rows[1].text), "one shared body");
        assert_eq!(rows[1].stored_value("sys_id").as_deref(), Some("b"));
    }

    #[test]
    fn a_body_of_the_wrong_shape_is_named() {
        let page = |body: &[u8]| Row::page(body.to_vec()).unwrap_err();
        assert_eq!(page(b"[]"), PageError::NotAnObject);
        assert_eq!(page(b"{\"error\": 1}"), PageError::NoResultArray);
        assert_eq!(page(b"{\"result\": {}}"), PageError::NoResultArray);
        assert_eq!(
            page(b"{\"result\": [{}, 2]}"),
            PageError::NotARecord { index: 1 }
        );
        assert_eq!(page(b"{\"result\": [\xff]}"), PageError::NotUtf8);
    }

    #[test]
    fn a_row_that_is_not_an_object_is_refused() {
        assert!(serde_json::from_str::<Row>("[1]").is_err());
        assert!(serde_json::from_str::<Row>("\"text\"").is_err());
    }

    #[test]
    fn a_number_too_large_for_a_float_is_an_error_naming_the_position_not_the_text() {
        let row = row(r#"{"n":1e999}"#);
        let error = row.to_map().unwrap_err();
        assert_eq!(error.line, 1);
        assert!(!error.to_string().contains("1e999"), "{error}");
    }

    #[test]
    fn rows_from_maps_round_trip_and_compare_by_text() {
        let map = match json!({"sys_id": {"value": "x", "display_value": "x"}}) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let row = Row::from_map(&map);
        assert_eq!(row.to_map().expect("fields"), map);
        assert_eq!(row.clone(), row);
        assert_eq!(
            format!("{row:?}"),
            format!("Row({} bytes)", row.json().len())
        );
    }
}
