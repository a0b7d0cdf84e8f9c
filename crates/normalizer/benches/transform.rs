//! Per-record cost of the normalizer's transform, as the stage runs it: decode the raw
//! record's Avro, map it (parse the payload, strip excluded fields, read the fields), and
//! encode the entity's Avro.
//!
//! `cargo bench -p nowstream-normalizer --bench transform`

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nowstream_model::{AvroRecord, RawRecord, RecordOp};
use nowstream_normalizer::{ExclusionPolicy, map_record};
use serde_json::{Map, Value, json};

/// A closed incident shaped like a `sysparm_display_value=all` row from the simulator:
/// the fields SEI maps, the usual unmapped ones, two custom fields and a dot-walk.
fn incident_payload() -> Value {
    let link =
        |table: &str, id: &str| format!("https://acme.service-now.com/api/now/table/{table}/{id}");
    let reference = |table: &str, id: &str, name: &str| json!({"display_value": name, "link": link(table, id), "value": id});
    let plain = |value: &str| json!({"display_value": value, "value": value});
    let choice = |value: &str, label: &str| json!({"display_value": label, "value": value});
    let time = |utc: &str, local: &str| json!({"display_value": local, "value": utc});
    let mut fields = Map::new();
    let mut put = |name: &str, value: Value| {
        fields.insert(name.to_owned(), value);
    };
    put("sys_id", plain("5302c7465a884170652eaff0c0295d49"));
    put(
        "sys_created_on",
        time("2024-08-21 17:34:57", "2024-08-21 12:34:57"),
    );
    put("sys_created_by", plain("mira.popescu"));
    put(
        "sys_updated_on",
        time("2024-08-27 15:17:23", "2024-08-27 10:17:23"),
    );
    put("sys_updated_by", plain("tara.popescu"));
    put("sys_mod_count", plain("19"));
    put("number", plain("INC0010035"));
    put("short_description", plain("Email drops connections"));
    put(
        "description",
        plain("Caller reports: Email drops connections."),
    );
    put(
        "comments",
        json!({"display_value": "2024-08-21 12:40:00 - Mira Popescu (Additional comments)\nStill failing", "value": ""}),
    );
    put(
        "work_notes",
        json!({"display_value": "2024-08-21 13:00:00 - Tara Popescu (Work notes)\nDB locks", "value": ""}),
    );
    put("state", choice("7", "Closed"));
    put("priority", choice("5", "5 - Planning"));
    put("urgency", choice("3", "3 - Low"));
    put("impact", choice("3", "3 - Low"));
    put("severity", choice("3", "3 - Low"));
    put("escalation", choice("0", "Normal"));
    put("category", choice("network", "Network"));
    put("subcategory", plain(""));
    put("contact_type", choice("self-service", "Self-service"));
    put("close_code", plain("Solution provided"));
    put(
        "close_notes",
        plain("Solution provided: Database lock contention."),
    );
    put("active", plain("false"));
    put(
        "opened_at",
        time("2024-08-21 17:34:57", "2024-08-21 12:34:57"),
    );
    put(
        "resolved_at",
        time("2024-08-22 09:23:52", "2024-08-22 04:23:52"),
    );
    put(
        "closed_at",
        time("2024-08-27 15:10:07", "2024-08-27 10:10:07"),
    );
    put(
        "sla_due",
        time("2024-08-31 17:34:57", "2024-08-31 12:34:57"),
    );
    put(
        "opened_by",
        reference(
            "sys_user",
            "f6e57ab2a828bd9a957327e3d26a66be",
            "Mira Popescu",
        ),
    );
    put(
        "caller_id",
        reference(
            "sys_user",
            "f6e57ab2a828bd9a957327e3d26a66be",
            "Mira Popescu",
        ),
    );
    put(
        "assigned_to",
        reference(
            "sys_user",
            "0939a7c6c7bae05c58f61d84c1c503a6",
            "Tara Popescu",
        ),
    );
    put(
        "resolved_by",
        reference(
            "sys_user",
            "0939a7c6c7bae05c58f61d84c1c503a6",
            "Tara Popescu",
        ),
    );
    put(
        "closed_by",
        reference(
            "sys_user",
            "0939a7c6c7bae05c58f61d84c1c503a6",
            "Tara Popescu",
        ),
    );
    put(
        "assignment_group",
        reference(
            "sys_user_group",
            "5dc314dde7fb10734611cddeee16eeae",
            "Hardware",
        ),
    );
    put(
        "business_service",
        reference(
            "cmdb_ci_service",
            "742aa9f6eebefd4d115d8cf33c349a08",
            "Email",
        ),
    );
    put(
        "business_service.department",
        reference("cmn_department", "f3453fc625799188ae90bfb5395d5ba1", "IT"),
    );
    put(
        "parent",
        reference("task", "3f2777dc6b819101081d22d1a10ed36a", "INC0010032"),
    );
    put(
        "parent_incident",
        reference("incident", "3f2777dc6b819101081d22d1a10ed36a", "INC0010032"),
    );
    put("hold_reason", plain(""));
    put("reopen_count", plain("0"));
    put("calendar_stc", plain("56935"));
    put("sys_class_name", plain("incident"));
    put("u_customer_impact", choice("none", "None"));
    put("u_root_cause", plain("Database lock contention"));
    Value::Object(fields)
}

fn raw_bytes() -> Vec<u8> {
    let raw = RawRecord {
        integration_id: "4711".into(),
        table: "incident".into(),
        sys_id: "5302c7465a884170652eaff0c0295d49".into(),
        sys_updated_on: Utc.with_ymd_and_hms(2024, 8, 27, 15, 17, 23).unwrap(),
        sys_mod_count: Some(19),
        op: RecordOp::Upsert,
        fetched_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 7).unwrap(),
        instance_url: "https://acme.service-now.com".into(),
        payload: Some(incident_payload().to_string()),
    };
    raw.encode().unwrap()
}

fn transform(bytes: &[u8], policy: &ExclusionPolicy) -> Option<Vec<u8>> {
    let raw = RawRecord::decode(bytes).unwrap();
    map_record(&raw, policy).unwrap().encode_value().unwrap()
}

fn bench_transform(c: &mut Criterion) {
    let bytes = raw_bytes();
    let policies = [
        ("no_exclusions", ExclusionPolicy::none()),
        (
            "summary_comments_custom_excluded",
            ExclusionPolicy::new(&["Summary".into(), "Comments".into(), "u_root_cause".into()])
                .unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("transform_incident");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    for (name, policy) in &policies {
        group.bench_function(*name, |b| {
            b.iter_batched(
                || bytes.clone(),
                |bytes| black_box(transform(black_box(&bytes), policy)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_transform);
criterion_main!(benches);
