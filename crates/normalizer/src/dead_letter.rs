//! What the normalizer puts in the DLQ for a record it cannot publish.
//!
//! The DLQ is read by people and tools the SEI integration's exclusion policy was never
//! meant to feed, so a dead letter obeys the same guarantee as the entity topics: no value of
//! a field the record's integration excludes, at any nesting level, in the value or in a
//! header. A dead letter is therefore one of two things ([`Content`]):
//!
//! * **scrubbed**: the raw record, decoded, its JSON payload stripped by the integration's
//!   [`ExclusionPolicy`] exactly as mapping strips it, and encoded again as a `RawRecord`. It
//!   can be written back to its raw topic once the cause is fixed.
//! * **reference**: a null value; the headers (source topic, partition, offset; the key; the
//!   reason) say where the record is. Used whenever scrubbing is impossible: the value is not
//!   a `RawRecord`, the payload is not JSON, or the integration is not configured, so its
//!   policy is unknown. The record itself stays on its raw topic (until retention removes it).
//!
//! A scrubbed letter must itself fit under the producer's `message.max.bytes`, or parking it
//! would fail the same way the output did. When it does not fit, the largest top-level payload
//! fields are left out, one at a time, until it does; their names (never values) go into the
//! `nowstream.cut_fields` header. If even that cannot make it fit, the letter is a reference.
//!
//! The original message's headers are never copied: a producer may have attached anything.

use std::collections::HashMap;

use nowstream_bus::DlqReason;
use nowstream_bus::dlq::{content, headers};
use nowstream_model::{AvroRecord, RawRecord};
use serde_json::Value;

use crate::ExclusionPolicy;

/// The DLQ code of a record whose output is larger than the producer accepts.
pub const TOO_LARGE: &str = "too_large";

/// Bytes kept free, under `message.max.bytes`, for a record's framing and the fixed DLQ
/// headers (stage, reason, source topic/partition/offset, time, content, size, table, sys_id).
/// An entity is published only with this much to spare too, so that the sink's dead letter of
/// it (the same bytes plus the sink's headers) still fits.
pub const FRAMING_ALLOWANCE: usize = 2_048;

/// Longest `nowstream.cut_fields` header; further names are left out (an ellipsis says so).
const MAX_CUT_FIELDS_HEADER: usize = 1_024;

/// What a dead letter carries as its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The raw record with its integration's excluded fields removed.
    Scrubbed,
    /// No value: the headers are a reference to the record.
    Reference,
}

impl Content {
    /// The `nowstream.content` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scrubbed => content::SCRUBBED,
            Self::Reference => content::REFERENCE,
        }
    }
}

/// One record's dead letter: the reason, the value to park, and what the headers add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why the record is dead-lettered (`nowstream.reason`, `nowstream.detail`).
    pub reason: DlqReason,
    /// The value to write: the scrubbed `RawRecord`, or `None` for a reference.
    pub value: Option<Vec<u8>>,
    /// Which of the two [`value`](Self::value) is.
    pub content: Content,
    /// The record's table and sys_id, when the value decoded as a `RawRecord`.
    pub table: Option<String>,
    /// See [`table`](Self::table).
    pub sys_id: Option<String>,
    /// Top-level payload fields left out so the letter fits (names only).
    pub cut_fields: Vec<String>,
    /// For `too_large`: the size of the output that did not fit, and the limit it exceeded.
    pub too_large: Option<(usize, usize)>,
}

impl DeadLetter {
    /// A reference-only letter: nothing of the record but where it is.
    pub fn reference(reason: DlqReason) -> Self {
        Self {
            reason,
            value: None,
            content: Content::Reference,
            table: None,
            sys_id: None,
            cut_fields: Vec::new(),
            too_large: None,
        }
    }

    /// The same letter without its value: the fallback when even the scrubbed letter is
    /// refused for its size (a topic whose `max.message.bytes` is below the producer's limit).
    pub fn into_reference(mut self) -> Self {
        self.value = None;
        self.content = Content::Reference;
        self.cut_fields.clear();
        self
    }

    /// The headers this letter adds to the DLQ writer's standard ones.
    pub fn headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = vec![(headers::CONTENT, self.content.as_str().as_bytes().to_vec())];
        if let Some(table) = &self.table {
            out.push((headers::TABLE, table.clone().into_bytes()));
        }
        if let Some(sys_id) = &self.sys_id {
            out.push((headers::SYS_ID, sys_id.clone().into_bytes()));
        }
        if let Some((size, limit)) = self.too_large {
            out.push((headers::SIZE, size.to_string().into_bytes()));
            out.push((headers::LIMIT, limit.to_string().into_bytes()));
        }
        if !self.cut_fields.is_empty() {
            out.push((headers::CUT_FIELDS, cut_fields_header(&self.cut_fields)));
        }
        out
    }
}

/// Builds the dead letter of a raw message value whose record cannot be published.
///
/// `policies` holds each configured integration's exclusion policy; a record of any other
/// integration is only referenced. `budget` is how many bytes the value may take.
pub fn dead_letter(
    value: Option<&[u8]>,
    policies: &HashMap<String, ExclusionPolicy>,
    reason: DlqReason,
    budget: usize,
) -> DeadLetter {
    let Some(bytes) = value else {
        return DeadLetter::reference(reason);
    };
    let Ok(mut raw) = RawRecord::decode(bytes) else {
        return DeadLetter::reference(reason);
    };
    let mut letter = DeadLetter::reference(reason);
    letter.table = Some(raw.table.clone());
    letter.sys_id = Some(raw.sys_id.clone());
    let Some(policy) = policies.get(&raw.integration_id) else {
        return letter;
    };
    let mut payload = match raw.payload.as_deref().map(serde_json::from_str::<Value>) {
        None => None,
        Some(Ok(payload)) => Some(payload),
        // Not JSON: nothing tells which bytes belong to an excluded field.
        Some(Err(_)) => return letter,
    };
    if let Some(payload) = payload.as_mut() {
        policy.strip(payload);
    }
    let mut cut_fields = Vec::new();
    loop {
        raw.payload = payload.as_ref().map(Value::to_string);
        let Ok(encoded) = raw.encode() else {
            return letter;
        };
        if encoded.len() <= budget {
            letter.value = Some(encoded);
            letter.content = Content::Scrubbed;
            letter.cut_fields = cut_fields;
            return letter;
        }
        match payload.as_mut().and_then(cut_largest_field) {
            Some(cut) => cut_fields.push(cut),
            None => return letter,
        }
    }
}

/// Removes the largest top-level field of an object payload; its name, or `None` when there
/// is nothing left to remove.
fn cut_largest_field(payload: &mut Value) -> Option<String> {
    let fields = payload.as_object_mut()?;
    let largest = fields
        .iter()
        .max_by_key(|(name, value)| name.len() + value.to_string().len())
        .map(|(name, _)| name.clone())?;
    fields.remove(&largest);
    Some(largest)
}

fn cut_fields_header(names: &[String]) -> Vec<u8> {
    let mut header = String::new();
    for name in names {
        if header.len() + name.len() + 1 > MAX_CUT_FIELDS_HEADER {
            header.push_str(",…");
            break;
        }
        if !header.is_empty() {
            header.push(',');
        }
        header.push_str(name);
    }
    header.into_bytes()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use nowstream_model::RecordOp;

    use super::*;

    fn raw(payload: &str) -> Vec<u8> {
        RawRecord {
            integration_id: "42".into(),
            table: "incident".into(),
            sys_id: "abc".into(),
            sys_updated_on: Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap(),
            sys_mod_count: Some(3),
            op: RecordOp::Upsert,
            fetched_at: Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 10).unwrap(),
            instance_url: "https://acme.service-now.com".into(),
            payload: Some(payload.to_owned()),
        }
        .encode()
        .unwrap()
    }

    fn policies() -> HashMap<String, ExclusionPolicy> {
        HashMap::from([(
            "42".to_owned(),
            ExclusionPolicy::new(&["description".to_owned()]).unwrap(),
        )])
    }

    fn reason() -> DlqReason {
        DlqReason::new("unparseable_time", "incident record abc: opened_at")
    }

    fn payload_of(letter: &DeadLetter) -> Value {
        let raw = RawRecord::decode(letter.value.as_deref().unwrap()).unwrap();
        serde_json::from_str(raw.payload.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn a_decodable_record_is_parked_without_its_excluded_fields_at_any_depth() {
        let bytes = raw(
            r#"{"description": "secret", "opened_at": "bad", "parent": {"description": "deep"}}"#,
        );
        let letter = dead_letter(Some(&bytes), &policies(), reason(), 1_000_000);
        assert_eq!(letter.content, Content::Scrubbed);
        assert_eq!(
            payload_of(&letter),
            serde_json::json!({"opened_at": "bad", "parent": {}})
        );
        assert_eq!(letter.sys_id.as_deref(), Some("abc"));
    }

    #[test]
    fn an_unknown_integration_or_an_unreadable_record_leaves_only_a_reference() {
        let other = HashMap::new();
        let bytes = raw(r#"{"description": "secret"}"#);
        let unknown = dead_letter(Some(&bytes), &other, reason(), 1_000_000);
        assert_eq!(unknown.content, Content::Reference);
        assert_eq!(unknown.value, None);
        let not_json = raw(r#"{"description": "secr"#);
        let letter = dead_letter(Some(&not_json), &policies(), reason(), 1_000_000);
        assert_eq!(letter.value, None);
        let letter = dead_letter(
            Some(b"description: secret"),
            &policies(),
            reason(),
            1_000_000,
        );
        assert_eq!((letter.value, letter.table), (None, None));
        assert_eq!(
            dead_letter(None, &policies(), reason(), 1_000_000).value,
            None
        );
    }

    #[test]
    fn a_letter_over_its_budget_loses_its_largest_fields_until_it_fits() {
        let big = "x".repeat(5_000);
        let bytes = raw(&format!(
            r#"{{"u_big": "{big}", "u_mid": "{}", "number": "INC1"}}"#,
            "y".repeat(2_000)
        ));
        let letter = dead_letter(Some(&bytes), &policies(), reason(), 1_500);
        assert_eq!(letter.content, Content::Scrubbed);
        assert_eq!(letter.cut_fields, vec!["u_big", "u_mid"]);
        assert_eq!(payload_of(&letter), serde_json::json!({"number": "INC1"}));
        let headers = letter.headers();
        assert!(headers.contains(&(headers::CUT_FIELDS, b"u_big,u_mid".to_vec())));

        let tiny = dead_letter(Some(&bytes), &policies(), reason(), 10);
        assert_eq!(tiny.content, Content::Reference);
        assert!(tiny.cut_fields.is_empty());
    }
}
