//! The exclusion guarantee, tested on generated records: whatever the record and the
//! policy, no value of an excluded field reaches the output — neither the Avro bytes of the
//! entity topic nor the entity JSON for SEI — and `excluded_fields` lists exactly the
//! withheld entity field names.
//!
//! Every string value in a generated payload is a unique marker (`MK00042Q`), so "the
//! value reached the output" is a plain substring search. Payloads mix the entity's real
//! fields (in both the `display_value=all` and plain-string shapes), custom `u_*` fields,
//! dot-walked keys and arbitrary nested objects and arrays. Policies mix keys of the
//! payload (top-level, nested, dot-walk segments) with SEI's names for fields.
//!
//! The same records, also spoiled in every way that makes mapping fail (a bad time, no
//! sys_id, a wrong type, a payload that is not JSON or not an object, an unknown table or
//! integration, bytes that are not a `RawRecord`, no value, an output over the producer's
//! size limit), must not leak either: the stage's decision function ([`Normalizer::decide`])
//! is checked on thousands of them, and a sample goes through the running stage and a real
//! broker, where every message of every `sei.*` topic and of the DLQ is searched.

use std::collections::BTreeSet;

use crate::common;

use chrono::{TimeZone, Utc};
use nowstream_model::{AvroRecord, Entity, RawRecord, RecordOp, TopicNames};
use nowstream_normalizer::mapping::{SourceKind, derived_fields, field_sources};
use nowstream_normalizer::{
    Content, DeadLetter, Decision, ExclusionPolicy, Mapped, Normalizer, map_record,
};
use nowstream_testkit::fixtures::raw_record;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Map, Value, json};

const SYS_ID: &str = "0123456789abcdef0123456789abcdef";

/// Stands for a marker until the payload is complete; then numbered in order.
const PLACEHOLDER: &str = "\u{1}";

/// Fields that identify a record or shape a field: never in a policy.
const PROTECTED: [&str; 5] = [
    "sys_id",
    "sys_updated_on",
    "sys_mod_count",
    "value",
    "display_value",
];

/// SEI names a policy may use, with the canonical fields each one withholds. Written out
/// here, independently of the policy's own alias table, as the specification.
const SEI_NAMES: &[(&str, &[&str])] = &[
    ("Summary", &["summary", "short_description"]),
    ("Description", &["description"]),
    (
        "Comments",
        &["comments", "work_notes", "comments_and_work_notes"],
    ),
    ("Short Description", &["short_description"]),
    (
        "CreatedBy",
        &["created_by", "createdby", "opened_by", "sys_created_by"],
    ),
    ("ParentId", &["parent_id", "parentid", "parent"]),
    (
        "BusinessServiceDepartment",
        &[
            "business_service_department",
            "businessservicedepartment",
            "business_service.department",
        ],
    ),
    (
        "RequestedByDepartment",
        &[
            "requested_by_department",
            "requestedbydepartment",
            "requested_by.department",
        ],
    ),
    ("WORK_NOTES", &["work_notes", "comments_and_work_notes"]),
];

/// Raw field names that are also SEI names, with what they withhold besides themselves.
const RAW_ALIASES: &[(&str, &[&str])] = &[
    ("summary", &["short_description"]),
    ("comments", &["work_notes", "comments_and_work_notes"]),
    ("work_notes", &["comments_and_work_notes"]),
];

/// Field names that are not entity sources but are worth having around.
const INTERESTING: &[&str] = &[
    "comments_and_work_notes",
    "sys_created_by",
    "close_notes",
    "caller_id",
    "summary",
    "location",
    "short_description",
    "department",
    "name",
    "opened_by",
    "link",
    "display_value_internal",
];
const DOT_HEADS: &[&str] = &[
    "parent",
    "caller_id",
    "business_service",
    "requested_by",
    "assigned_to",
    "u_vendor",
];
const DOT_TAILS: &[&str] = &[
    "short_description",
    "department",
    "name",
    "email",
    "description",
    "u_tier",
    "work_notes",
];

fn placeholder() -> Value {
    Value::String(PLACEHOLDER.to_owned())
}

fn time_text() -> impl Strategy<Value = String> {
    (
        2015..2030i32,
        1..=12u32,
        1..=28u32,
        0..24u32,
        0..60u32,
        0..60u32,
    )
        .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
}

/// A stored value that the mapping can read for `kind`: markers for strings, valid
/// text for times, booleans and numbers.
fn stored_value(kind: SourceKind) -> BoxedStrategy<Value> {
    match kind {
        SourceKind::Text | SourceKind::Choice | SourceKind::Reference => {
            Just(placeholder()).boxed()
        }
        SourceKind::Journal => prop_oneof![Just(json!("")), Just(placeholder())].boxed(),
        SourceKind::Time => time_text().prop_map(Value::String).boxed(),
        SourceKind::Flag => select(vec!["true", "false"]).prop_map(|b| json!(b)).boxed(),
        SourceKind::Integer => (0..100_000i32).prop_map(|n| json!(n.to_string())).boxed(),
    }
}

/// One entity source field: absent, empty, a `display_value=all` object, or plain.
fn source_field(kind: SourceKind) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(json!({"value": "", "display_value": ""}))),
        6 => (stored_value(kind), any::<bool>()).prop_map(|(value, link)| {
            let mut field = json!({"display_value": placeholder(), "value": value});
            if link {
                field["link"] = placeholder();
            }
            Some(field)
        }),
        2 => stored_value(kind).prop_map(Some),
    ]
    .boxed()
}

fn nested_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        "u_[a-z]{1,6}",
        select(INTERESTING).prop_map(str::to_owned),
        select(DOT_TAILS).prop_map(str::to_owned),
        select(vec!["value", "display_value"]).prop_map(str::to_owned),
    ]
}

/// Arbitrary JSON under a non-field key: objects and arrays of markers.
fn tree() -> impl Strategy<Value = Value> {
    Just(placeholder()).prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((nested_key(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn extra_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "u_[a-z]{1,6}",
        "x_[a-z]{1,6}",
        select(INTERESTING).prop_map(str::to_owned),
        (
            select(DOT_HEADS),
            prop_oneof![
                select(DOT_TAILS).prop_map(str::to_owned),
                "[a-z]{1,6}",
                "u_[a-z]{1,4}"
            ]
        )
            .prop_map(|(head, tail)| format!("{head}.{tail}")),
    ]
}

/// An extra field: a custom column holds a field value; anything else may hold any JSON.
fn extra_field() -> impl Strategy<Value = (String, Value)> {
    extra_name().prop_flat_map(|name| {
        let value = if name.starts_with("u_") && !name.contains('.') {
            prop_oneof![
                Just(json!({"display_value": placeholder(), "value": placeholder()})),
                Just(placeholder()),
                Just(json!({"display_value": "", "value": ""})),
            ]
            .boxed()
        } else {
            tree().boxed()
        };
        (Just(name), value)
    })
}

/// A payload for `entity` with placeholders for markers.
fn payload(entity: Entity) -> impl Strategy<Value = Map<String, Value>> {
    let sources = field_sources(entity);
    let fields: Vec<BoxedStrategy<Option<Value>>> = sources
        .iter()
        .map(|source| {
            if entity == Entity::FieldDefinition && source.source == "name" {
                // A definition cannot do without its table; only withholding it may
                // take it away.
                Just(Some(
                    json!({"display_value": placeholder(), "value": placeholder()}),
                ))
                .boxed()
            } else {
                source_field(source.kind)
            }
        })
        .collect();
    (
        fields,
        prop::collection::vec(extra_field(), 0..10),
        time_text(),
    )
        .prop_map(move |(values, extras, updated)| {
            let mut map = Map::new();
            map.insert(
                "sys_id".into(),
                json!({"display_value": SYS_ID, "value": SYS_ID}),
            );
            map.insert(
                "sys_mod_count".into(),
                json!({"display_value": "3", "value": "3"}),
            );
            map.insert(
                "sys_updated_on".into(),
                json!({"display_value": "", "value": updated}),
            );
            for (source, value) in sources.iter().zip(values) {
                if let Some(value) = value {
                    map.insert(source.source.to_owned(), value);
                }
            }
            for (name, value) in extras {
                let taken =
                    map.contains_key(&name) || sources.iter().any(|source| source.source == name);
                if !taken {
                    map.insert(name, value);
                }
            }
            map
        })
}

/// Every key at any depth, and every segment of a dotted key.
fn collect_names(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, nested) in map {
                names.insert(key.clone());
                names.extend(key.split('.').map(str::to_owned));
                collect_names(nested, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_names(item, names)),
        _ => {}
    }
}

fn number_markers(value: &mut Value, next: &mut u32) {
    match value {
        Value::String(text) if text == PLACEHOLDER => {
            *text = format!("MK{next:05}Q");
            *next += 1;
        }
        Value::Object(map) => map.values_mut().for_each(|v| number_markers(v, next)),
        Value::Array(items) => items.iter_mut().for_each(|v| number_markers(v, next)),
        _ => {}
    }
}

#[derive(Debug, Clone)]
struct Case {
    entity: Entity,
    payload: Map<String, Value>,
    exclude_fields: Vec<String>,
}

fn case() -> impl Strategy<Value = Case> {
    select(Entity::ALL.to_vec())
        .prop_flat_map(|entity| (Just(entity), payload(entity)))
        .prop_flat_map(|(entity, payload)| {
            let mut names = BTreeSet::new();
            collect_names(&Value::Object(payload.clone()), &mut names);
            let mut candidates: Vec<String> = names
                .into_iter()
                .filter(|name| !PROTECTED.contains(&name.as_str()))
                .collect();
            candidates.extend(SEI_NAMES.iter().map(|(name, _)| (*name).to_owned()));
            let most = candidates.len().min(6);
            (
                Just(entity),
                Just(payload),
                subsequence(candidates, 0..=most),
            )
        })
        .prop_map(|(entity, mut payload, exclude_fields)| {
            let mut next = 0;
            payload
                .values_mut()
                .for_each(|v| number_markers(v, &mut next));
            Case {
                entity,
                payload,
                exclude_fields,
            }
        })
}

/// The canonical fields a configured policy withholds, per the specification above.
fn withheld_names(exclude_fields: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for configured in exclude_fields {
        if let Some((_, fields)) = SEI_NAMES.iter().find(|(name, _)| name == configured) {
            names.extend(fields.iter().map(|f| (*f).to_owned()));
            continue;
        }
        names.insert(configured.clone());
        if let Some((_, fields)) = RAW_ALIASES.iter().find(|(name, _)| name == configured) {
            names.extend(fields.iter().map(|f| (*f).to_owned()));
        }
    }
    names
}

/// Whether a payload key mentions a withheld name (as a segment, or a run of segments).
fn is_withheld(key: &str, withheld: &BTreeSet<String>) -> bool {
    let segments: Vec<&str> = key.split('.').collect();
    withheld.iter().any(|name| {
        let wanted: Vec<&str> = name.split('.').collect();
        segments
            .windows(wanted.len())
            .any(|run| run == wanted.as_slice())
    })
}

fn all_markers(value: &Value, out: &mut Vec<String>) {
    match value {
        // `MK00042Q`, or `C007MK00042Q` in the samples run through the stage.
        Value::String(text) if text.contains("MK") => out.push(text.clone()),
        Value::Object(map) => map.values().for_each(|v| all_markers(v, out)),
        Value::Array(items) => items.iter().for_each(|v| all_markers(v, out)),
        _ => {}
    }
}

/// Markers under withheld keys, at any depth.
fn withheld_markers(value: &Value, withheld: &BTreeSet<String>, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, nested) in map {
                if is_withheld(key, withheld) {
                    all_markers(nested, out);
                } else {
                    withheld_markers(nested, withheld, out);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| withheld_markers(item, withheld, out)),
        _ => {}
    }
}

fn raw(case: &Case) -> RawRecord {
    RawRecord {
        integration_id: "7".into(),
        ..raw_record(
            case.entity.source_table(),
            SYS_ID,
            Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap(),
            3,
            RecordOp::Upsert,
            Some(Value::Object(case.payload.clone()).to_string()),
        )
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        // A failing case shrinks to a readable one long before this; the default (40,000)
        // can take minutes on payloads this size.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn excluded_values_never_reach_the_avro_bytes_or_the_entity_json(case in case()) {
        let policy = ExclusionPolicy::new(&case.exclude_fields)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let withheld = withheld_names(&case.exclude_fields);
        let payload = Value::Object(case.payload.clone());
        let mut hidden = Vec::new();
        withheld_markers(&payload, &withheld, &mut hidden);

        let record = match map_record(&raw(&case), &policy) {
            Ok(Mapped::Upsert(record)) => record,
            Ok(other) => return Err(TestCaseError::fail(format!("not an upsert: {other:?}"))),
            Err(error) => {
                // The only refusal: a definition whose table was withheld.
                prop_assert_eq!(error.code(), "missing_required_field", "{}", error);
                prop_assert!(case.entity == Entity::FieldDefinition && is_withheld("name", &withheld));
                let message = error.to_string();
                for marker in &hidden {
                    prop_assert!(!message.contains(marker.as_str()));
                }
                return Ok(());
            }
        };
        let bytes = record.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let json = serde_json::to_value(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = json.to_string();
        for marker in &hidden {
            prop_assert!(!contains(&bytes, marker), "{} in the Avro bytes", marker);
            prop_assert!(!text.contains(marker.as_str()), "{} in the entity JSON", marker);
        }

        // excluded_fields: the entity fields whose source is withheld, derived fields of
        // withheld inputs, and the withheld custom fields; names only.
        let entity = case.entity;
        let mut expected: BTreeSet<String> = field_sources(entity)
            .iter()
            .filter(|source| is_withheld(source.source, &withheld))
            .map(|source| source.entity_field.to_owned())
            .collect();
        for derived in derived_fields(entity) {
            if is_withheld(derived.entity_field, &withheld)
                || derived.inputs.iter().any(|input| is_withheld(input, &withheld))
            {
                expected.insert(derived.entity_field.to_owned());
            }
        }
        expected.extend(
            withheld.iter().filter(|name| name.starts_with("u_") && !name.contains('.')).cloned(),
        );
        let listed: BTreeSet<String> = record.excluded_fields().iter().cloned().collect();
        prop_assert_eq!(&listed, &expected);
        for field in &expected {
            prop_assert!(json[field.as_str()].is_null(), "{} not null", field);
            prop_assert!(json["custom_fields"].get(field.as_str()).is_none(), "{} kept", field);
        }

        // The search can find markers: kept string fields do show theirs.
        for source in field_sources(entity) {
            let kept_value = matches!(source.kind, SourceKind::Text | SourceKind::Choice | SourceKind::Reference)
                && !is_withheld(source.source, &withheld);
            if let (true, Some(Value::Object(field))) = (kept_value, case.payload.get(source.source)) {
                if let Some(Value::String(marker)) = field.get("value") {
                    prop_assert!(text.contains(marker.as_str()), "kept {} lost", source.source);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Records that fail: the dead-letter decision and the running stage.
// ---------------------------------------------------------------------------------------

/// How a generated record is spoiled before the stage sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Left as generated: normally published.
    Nothing,
    /// A time field that is not a time.
    BadTime,
    /// No sys_id in the raw record nor in the payload.
    MissingSysId,
    /// `sys_mod_count` only in the payload, and not a number.
    WrongType,
    /// The payload cut in the middle: not JSON.
    PayloadNotJson,
    /// The payload wrapped in an array.
    PayloadNotObject,
    /// A table the normalizer does not map.
    UnknownTable,
    /// An integration the normalizer is not configured for: its policy is unknown.
    UnknownIntegration,
    /// The payload's JSON text where a `RawRecord` belongs.
    JsonInsteadOfAvro,
    /// A `RawRecord` cut short.
    TruncatedAvro,
    /// A `RawRecord` with a damaged schema fingerprint.
    DamagedFingerprint,
    /// No value at all.
    NullValue,
}

impl Fault {
    const ALL: [Fault; 12] = [
        Fault::Nothing,
        Fault::BadTime,
        Fault::MissingSysId,
        Fault::WrongType,
        Fault::PayloadNotJson,
        Fault::PayloadNotObject,
        Fault::UnknownTable,
        Fault::UnknownIntegration,
        Fault::JsonInsteadOfAvro,
        Fault::TruncatedAvro,
        Fault::DamagedFingerprint,
        Fault::NullValue,
    ];

    /// Whether the record's integration and policy can be known: otherwise every value in it
    /// counts as excluded.
    fn policy_known(self) -> bool {
        !matches!(
            self,
            Fault::UnknownIntegration
                | Fault::JsonInsteadOfAvro
                | Fault::TruncatedAvro
                | Fault::DamagedFingerprint
                | Fault::NullValue
        )
    }

    /// Whether mapping must refuse the record whatever the policy.
    fn always_fails(self) -> bool {
        !matches!(self, Fault::Nothing | Fault::BadTime)
    }
}

/// The raw message value of `case` as `integration_id` publishes it, spoiled by `fault`.
fn spoiled(case: &Case, integration_id: &str, sys_id: &str, fault: Fault) -> Option<Vec<u8>> {
    let mut payload = Value::Object(case.payload.clone());
    payload["sys_id"] = json!({"display_value": sys_id, "value": sys_id});
    let mut record = raw(case);
    record.integration_id = integration_id.into();
    record.sys_id = sys_id.into();
    match fault {
        Fault::BadTime => {
            payload["sys_created_on"] = json!({"display_value": "yesterday", "value": "yesterday"});
        }
        Fault::MissingSysId => {
            record.sys_id = String::new();
            payload.as_object_mut()?.remove("sys_id");
        }
        Fault::WrongType => {
            record.sys_mod_count = None;
            payload["sys_mod_count"] = json!({"display_value": "many", "value": "many"});
        }
        Fault::UnknownTable => record.table = "problem".into(),
        Fault::UnknownIntegration => record.integration_id = "9999".into(),
        _ => {}
    }
    let text = payload.to_string();
    record.payload = Some(match fault {
        Fault::PayloadNotJson => text.chars().take(text.chars().count() / 2).collect(),
        Fault::PayloadNotObject => Value::Array(vec![payload]).to_string(),
        _ => text.clone(),
    });
    let mut bytes = record.encode().ok()?;
    match fault {
        Fault::JsonInsteadOfAvro => Some(text.into_bytes()),
        Fault::TruncatedAvro => {
            bytes.truncate(bytes.len() - 3);
            Some(bytes)
        }
        Fault::DamagedFingerprint => {
            bytes[4] ^= 0xff;
            Some(bytes)
        }
        Fault::NullValue => None,
        _ => Some(bytes),
    }
}

/// The markers that must not leave the normalizer for this record: those under withheld
/// keys, or every one when the record's policy cannot be known.
fn forbidden_markers(case: &Case, withheld: &BTreeSet<String>, fault: Fault) -> Vec<String> {
    let payload = Value::Object(case.payload.clone());
    let mut out = Vec::new();
    if fault.policy_known() {
        withheld_markers(&payload, withheld, &mut out);
    } else {
        all_markers(&payload, &mut out);
    }
    out
}

/// Every byte string a dead letter puts on the wire besides the standard headers: its
/// value, its reason's detail and its own headers.
fn letter_bytes(letter: &DeadLetter) -> Vec<Vec<u8>> {
    let mut out = vec![letter.reason.detail.clone().into_bytes()];
    out.extend(letter.value.clone());
    out.extend(letter.headers().into_iter().map(|(_, value)| value));
    out
}

fn integration(id: &str, exclude_fields: &[String]) -> nowstream_runtime::IntegrationConfig {
    nowstream_runtime::IntegrationConfig {
        id: id.into(),
        url: "https://acme.service-now.com".into(),
        auth: nowstream_runtime::AuthConfig::Basic(nowstream_runtime::BasicAuth {
            username: "reader".into(),
            password: secrecy::SecretString::from("secret"),
        }),
        exclude_fields: exclude_fields.to_vec(),
        allow_http: false,
        exclude_at_source: false,
        metadata: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3_000,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_excluded_value_reaches_an_output_or_a_dead_letter_whatever_fails(
        case in case(),
        fault in select(Fault::ALL.to_vec()),
        limit in prop_oneof![3 => Just(1_000_000usize), 1 => 2_500..8_000usize],
    ) {
        let normalizer = Normalizer::new(
            TopicNames::default(),
            &[integration("7", &case.exclude_fields)],
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .with_max_message_bytes(limit);
        let withheld = withheld_names(&case.exclude_fields);
        let forbidden = forbidden_markers(&case, &withheld, fault);
        let key = format!("7:{SYS_ID}");
        let value = spoiled(&case, "7", SYS_ID, fault);

        match normalizer.decide(Some(key.as_bytes()), value.as_deref()) {
            Decision::Publish(output) => {
                prop_assert!(!fault.always_fails(), "{:?} was published", fault);
                let bytes = output.value.unwrap_or_default();
                for marker in &forbidden {
                    prop_assert!(!contains(&bytes, marker), "{} published", marker);
                }
            }
            Decision::DeadLetter(letter) => {
                for bytes in letter_bytes(&letter) {
                    for marker in &forbidden {
                        prop_assert!(
                            !contains(&bytes, marker),
                            "{} in the dead letter ({:?}, {})", marker, fault, letter.reason.code
                        );
                    }
                }
                if !fault.policy_known() || fault == Fault::PayloadNotJson {
                    prop_assert_eq!(letter.content, Content::Reference);
                }
                if letter.content == Content::Reference {
                    prop_assert!(letter.value.is_none());
                    return Ok(());
                }
                // Scrubbed: the record as it came, minus the withheld fields; it fits.
                let parked = letter.value.as_deref().unwrap_or_default();
                prop_assert!(
                    key.len() + parked.len() + letter.reason.code.len()
                        + letter.reason.detail.len() + 2_048 <= limit,
                    "a letter of {} bytes does not fit under {}", parked.len(), limit
                );
                let record = RawRecord::decode(parked).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let original = RawRecord::decode(value.as_deref().unwrap_or_default())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&record.sys_id, &original.sys_id);
                prop_assert_eq!(&record.table, &original.table);
                prop_assert_eq!(record.sys_updated_on, original.sys_updated_on);
                if letter.cut_fields.is_empty() {
                    // The markers of the payload as spoiled (a fault may replace a field).
                    let sent: Value = serde_json::from_str(original.payload.as_deref().unwrap_or("null"))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let mut kept = Vec::new();
                    all_markers(&sent, &mut kept);
                    let text = record.payload.unwrap_or_default();
                    for marker in kept.iter().filter(|m| !forbidden.contains(m)) {
                        prop_assert!(text.contains(marker.as_str()), "kept {} lost", marker);
                    }
                }
            }
        }
    }
}

/// A sample of generated records, spoiled or not, through the running stage and a real
/// Apache Kafka broker.
mod through_the_stage {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use nowstream_bus::dlq::headers;
    use nowstream_bus::{OutRecord, Producer};
    use nowstream_model::{AvroRecord, Entity, RecordOp};
    use nowstream_runtime::Health;
    use nowstream_testkit::KafkaBroker;
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, TestRng, TestRunner};
    use serde_json::Value;
    use tokio_util::sync::CancellationToken;

    use super::common::{OutputReader, RAW_PARTITIONS, Setup};
    use super::{Case, Fault, case, contains, forbidden_markers, spoiled, withheld_names};

    /// The one policy of integration `4711` in these runs: SEI names, plain, dot-walked and
    /// custom fields, all of which the generator uses.
    const POLICY: &[&str] = &[
        "Summary",
        "Description",
        "Comments",
        "department",
        "caller_id",
        "requested_by.department",
        "name",
        "u_vendor",
    ];
    const SAMPLE: usize = 96;

    /// `SAMPLE` generated cases, each with its fault, its own sys_id, and markers unique to
    /// it (`C007MK00042Q`), so a marker found anywhere names its record.
    fn sample() -> Vec<(Case, Fault, String)> {
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        );
        (0..SAMPLE)
            .map(|index| {
                let mut case = case().new_tree(&mut runner).expect("case").current();
                for value in case.payload.values_mut() {
                    prefix_markers(value, &format!("C{index:03}"));
                }
                let fault = Fault::ALL[index % Fault::ALL.len()];
                (case, fault, format!("s{index:03}"))
            })
            .collect()
    }

    fn prefix_markers(value: &mut Value, prefix: &str) {
        match value {
            Value::String(text) if text.starts_with("MK") => *text = format!("{prefix}{text}"),
            Value::Object(map) => map.values_mut().for_each(|v| prefix_markers(v, prefix)),
            Value::Array(items) => items.iter_mut().for_each(|v| prefix_markers(v, prefix)),
            _ => {}
        }
    }

    /// Writes the sample and one oversized incident to the raw topics (which exist), runs the
    /// stage with `POLICY` until every input has its output or dead letter, and searches
    /// everything it wrote.
    async fn run_sample(mut setup: Setup) {
        let policy: Vec<String> = POLICY.iter().map(|name| (*name).to_owned()).collect();
        setup.exclude_fields = policy.clone();
        // librdkafka's 1 MB limit, under which the 1.5 MB record below does not fit
        // (nowstream's default, 8 MiB, would take it).
        setup
            .kafka_properties
            .push_str("\n\"message.max.bytes\" = \"1000000\"\n");
        let withheld = withheld_names(&policy);
        let topics = setup.topics();
        let producer = Producer::new(&setup.kafka()).expect("producer");
        let mut forbidden: BTreeSet<String> = BTreeSet::new();
        let sample = sample();
        for (case, fault, sys_id) in &sample {
            forbidden.extend(forbidden_markers(case, &withheld, *fault));
            let value = spoiled(case, "4711", sys_id, *fault);
            let topic = topics.raw(case.entity.source_table()).expect("raw topic");
            let key = format!("4711:{sys_id}");
            producer
                .send(OutRecord::new(&topic, key.as_bytes(), value.as_deref()))
                .await
                .expect("raw record written");
        }
        // And one incident whose entity is over the producer's limit (a 1.5 MB custom field),
        // with an excluded description: dead-lettered `too_large`, scrubbed and cut.
        let mut oversized = super::common::raw(Entity::Incident, "oversized", 1, RecordOp::Upsert);
        let mut payload: Value =
            serde_json::from_str(oversized.payload.as_deref().expect("payload")).expect("JSON");
        payload["u_big"] = Value::String("b".repeat(1_500_000));
        payload["description"] = serde_json::json!({"value": "C999MK00000Q", "display_value": ""});
        forbidden.insert("C999MK00000Q".to_owned());
        oversized.payload = Some(payload.to_string());
        let mut kafka = setup.kafka();
        kafka.properties.insert(
            "message.max.bytes".into(),
            secrecy::SecretString::from("16000000"),
        );
        Producer::new(&kafka)
            .expect("producer")
            .send(OutRecord::new(
                &topics.raw("incident").expect("raw topic"),
                b"4711:oversized",
                Some(&oversized.encode().expect("encodes")),
            ))
            .await
            .expect("oversized record written");
        assert!(
            sample
                .iter()
                .filter(|(_, fault, _)| fault.always_fails())
                .count()
                >= SAMPLE / 2,
            "the sample has records that fail"
        );
        assert!(
            forbidden.len() >= SAMPLE,
            "the sample has values to withhold: {}",
            forbidden.len()
        );

        let shutdown = CancellationToken::new();
        let stage = tokio::spawn(nowstream_normalizer::run(
            setup.config(),
            Health::new(),
            shutdown.clone(),
        ));
        let mut reader = OutputReader::new(&setup);
        let complete = reader
            .read_until(Duration::from_secs(120), |reader| {
                reader.messages + reader.dead_letters.len() > SAMPLE
            })
            .await;
        shutdown.cancel();
        let summary = stage.await.expect("stage task").expect("stage ran");
        assert!(
            complete,
            "{} outputs and {} dead letters for {SAMPLE} inputs",
            reader.messages,
            reader.dead_letters.len()
        );
        assert!(summary.dead_lettered >= (SAMPLE / 2) as u64, "{summary}");
        let too_large = reader
            .dead_letters
            .iter()
            .find(|letter| letter.key == "4711:oversized")
            .expect("the oversized incident is dead-lettered");
        assert_eq!(
            too_large.header(headers::REASON).as_deref(),
            Some("too_large")
        );
        assert_eq!(
            too_large.header(headers::CUT_FIELDS).as_deref(),
            Some("u_big")
        );

        let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
        for ((topic, key), value) in &reader.latest {
            seen.push((format!("{topic} {key}"), key.clone().into_bytes()));
            seen.extend(value.clone().map(|value| (format!("{topic} {key}"), value)));
        }
        for letter in &reader.dead_letters {
            let at = format!("{} {}", letter.topic, letter.key);
            seen.push((at.clone(), letter.key.clone().into_bytes()));
            seen.extend(letter.value.clone().map(|value| (at.clone(), value)));
            for (name, value) in &letter.headers {
                seen.push((at.clone(), name.clone().into_bytes()));
                seen.push((at.clone(), value.clone()));
            }
        }
        for (at, bytes) in &seen {
            for marker in &forbidden {
                assert!(!contains(bytes, marker), "{marker} reached {at}");
            }
        }
        // The search finds markers where they may be: kept values did come out.
        let kept_somewhere = seen.iter().any(|(_, bytes)| {
            contains(bytes, "MK") && !forbidden.iter().any(|m| contains(bytes, m))
        });
        assert!(kept_somewhere, "no kept value came out at all");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_excluded_value_reaches_any_sei_topic_or_the_dlq_through_the_running_stage() {
        let broker = KafkaBroker::shared().expect("Kafka starts");
        let setup = Setup::new(broker);
        setup.create_raw_topics().await;
        run_sample(setup).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_excluded_value_reaches_any_sei_topic_or_the_dlq_through_the_transactional_stage() {
        let cluster = rdkafka::mocking::MockCluster::new(3).expect("mock cluster");
        let mut setup = Setup::on(cluster.bootstrap_servers());
        setup.session_timeout_ms = 6_000;
        setup.normalizer = "exactly_once = true\ntransaction_linger = \"200ms\"".into();
        let topics = setup.topics();
        // The mock does not serve CreateTopics.
        for entity in Entity::ALL {
            let raw = topics.raw(entity.source_table()).expect("raw topic");
            cluster
                .create_topic(&raw, RAW_PARTITIONS, 3)
                .expect("raw topic");
            cluster
                .create_topic(&topics.entity(entity), 3, 3)
                .expect("entity topic");
        }
        cluster
            .create_topic(&topics.dlq(), 3, 3)
            .expect("dlq topic");
        run_sample(setup).await;
    }
}
