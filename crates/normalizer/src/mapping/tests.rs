//! Checks that each entity's source list and its mapping code agree.

use chrono::TimeZone;
use serde_json::{Map, Value, json};

use super::*;

const SYS_ID: &str = "9d385017c611228701d22104cc95c371";

/// A payload with every source of `entity` set to a distinct non-empty value.
fn full_payload(entity: Entity) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(
        "sys_id".into(),
        json!({"value": SYS_ID, "display_value": SYS_ID}),
    );
    for (index, source) in field_sources(entity).iter().enumerate() {
        let name = source.source;
        let value = match source.kind {
            SourceKind::Text => {
                json!({"value": format!("{name}-v"), "display_value": format!("{name}-v")})
            }
            SourceKind::Journal => json!({"value": "", "display_value": format!("{name}-entries")}),
            SourceKind::Choice => {
                json!({"value": format!("{name}-v"), "display_value": format!("{name}-label")})
            }
            SourceKind::Reference => json!({
                "value": format!("{index:032x}"),
                "display_value": format!("{name}-name"),
                "link": format!("https://acme.service-now.com/api/now/table/x/{index:032x}"),
            }),
            // Increasing with the list order, so resolved_at follows opened_at.
            SourceKind::Time => json!({
                "value": format!("2024-03-01 10:{index:02}:00"),
                "display_value": format!("01/03/2024 05:{index:02}"),
            }),
            SourceKind::Flag => json!({"value": "true", "display_value": "true"}),
            SourceKind::Integer => json!({"value": "40", "display_value": "40"}),
        };
        map.insert(name.to_owned(), value);
    }
    map
}

fn raw(entity: Entity, payload: &Map<String, Value>) -> RawRecord {
    RawRecord {
        integration_id: "42".into(),
        table: entity.source_table().into(),
        sys_id: SYS_ID.into(),
        sys_updated_on: Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).unwrap(),
        sys_mod_count: Some(3),
        op: RecordOp::Upsert,
        fetched_at: Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 5).unwrap(),
        instance_url: "https://acme.service-now.com".into(),
        payload: Some(Value::Object(payload.clone()).to_string()),
    }
}

fn entity_json(entity: Entity, policy: &ExclusionPolicy) -> Result<Value, MapError> {
    match map_record(&raw(entity, &full_payload(entity)), policy)? {
        Mapped::Upsert(record) => Ok(serde_json::to_value(record).unwrap()),
        Mapped::Delete { .. } => panic!("an upsert mapped to a tombstone"),
    }
}

fn policy_of(name: &str) -> ExclusionPolicy {
    ExclusionPolicy::new(&[name.to_owned()]).unwrap()
}

#[test]
fn every_listed_entity_field_is_filled_from_a_full_record() {
    for entity in Entity::ALL {
        let json = entity_json(entity, &ExclusionPolicy::none()).unwrap();
        let listed = field_sources(entity)
            .iter()
            .map(|s| s.entity_field)
            .chain(derived_fields(entity).iter().map(|d| d.entity_field));
        for field in listed {
            assert!(!json[field].is_null(), "{entity}.{field} is null: {json:#}");
        }
    }
}

#[test]
fn excluding_a_source_nulls_exactly_its_entity_field_and_lists_it() {
    for entity in Entity::ALL {
        for source in field_sources(entity) {
            let policy = policy_of(source.source);
            let json = match entity_json(entity, &policy) {
                Ok(json) => json,
                // The definition's table cannot be withheld: the record is refused instead.
                Err(error) if entity == Entity::FieldDefinition && source.source == "name" => {
                    assert_eq!(error.code(), "missing_required_field");
                    continue;
                }
                Err(error) => panic!("{entity} without {}: {error}", source.source),
            };
            assert!(
                json[source.entity_field].is_null(),
                "{entity}.{} still set with {} excluded",
                source.entity_field,
                source.source
            );
            let derived_from_it: Vec<&str> = derived_fields(entity)
                .iter()
                .filter(|d| d.inputs.contains(&source.source))
                .map(|d| d.entity_field)
                .collect();
            for other in field_sources(entity) {
                if other.entity_field != source.entity_field && !policy.excludes(other.source) {
                    assert!(
                        !json[other.entity_field].is_null(),
                        "{entity}.{} lost when only {} was excluded",
                        other.entity_field,
                        source.source
                    );
                }
            }
            // Aliases may withhold more than the one source ("comments" also withholds
            // work_notes); every withheld field is listed.
            let mut expected: Vec<&str> = field_sources(entity)
                .iter()
                .filter(|other| policy.excludes(other.source))
                .map(|other| other.entity_field)
                .chain(derived_from_it.iter().copied())
                .collect();
            expected.sort_unstable();
            assert!(expected.contains(&source.entity_field));
            assert_eq!(
                json["excluded_fields"],
                json!(expected),
                "{entity} with {} excluded",
                source.source
            );
            for derived in derived_from_it {
                assert!(json[derived].is_null(), "{entity}.{derived} still derived");
            }
        }
    }
}

#[test]
fn a_policy_naming_a_derived_field_withholds_it_and_keeps_its_inputs() {
    let json = entity_json(Entity::Incident, &policy_of("TimeToRestoreMs")).unwrap();
    assert!(json["time_to_restore_ms"].is_null());
    assert!(!json["opened_at"].is_null() && !json["resolved_at"].is_null());
    assert_eq!(json["excluded_fields"], json!(["time_to_restore_ms"]));
}

#[test]
fn excluded_custom_fields_are_listed_on_every_entity() {
    let policy = ExclusionPolicy::new(&["u_root_cause".into(), "Summary".into()]).unwrap();
    assert_eq!(
        excluded_fields(Entity::Incident, &policy),
        ["short_description", "u_root_cause"]
    );
    assert_eq!(excluded_fields(Entity::User, &policy), ["u_root_cause"]);
    assert!(excluded_fields(Entity::User, &ExclusionPolicy::none()).is_empty());
}

#[test]
fn sei_datasheet_names_withhold_the_fields_behind_them() {
    let json = entity_json(Entity::ChangeRequest, &policy_of("CreatedBy")).unwrap();
    assert!(json["created_by"].is_null());
    let json = entity_json(Entity::ChangeRequest, &policy_of("Department")).unwrap();
    assert!(json["business_service_department"].is_null());
    assert!(json["requested_by_department"].is_null());
    assert!(!json["business_service"].is_null());
    assert_eq!(
        json["excluded_fields"],
        json!(["business_service_department", "requested_by_department"])
    );
    // Excluding a reference also withholds what was dot-walked through it.
    let json = entity_json(Entity::Incident, &policy_of("business_service")).unwrap();
    assert!(json["business_service_department"].is_null());
    assert_eq!(
        json["excluded_fields"],
        json!(["business_service", "business_service_department"])
    );
}
