//! `docs/normalizer-mapping.md` stays true to the code: every mapped field, derived field,
//! SEI alias and DLQ reason code appears there.

use std::path::Path;

use nowstream_model::Entity;
use nowstream_normalizer::MapError;
use nowstream_normalizer::mapping::{derived_fields, field_sources};
use nowstream_normalizer::policy::ALIASES;

fn mapping_doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/normalizer-mapping.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The part of the document from `heading` to the next `## ` heading.
fn section<'d>(doc: &'d str, heading: &str) -> &'d str {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &doc[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn every_mapped_field_has_a_row_in_its_entity_section() {
    let doc = mapping_doc();
    for entity in Entity::ALL {
        let heading = match entity {
            Entity::Incident => "## Incident",
            Entity::ChangeRequest => "## Change request",
            Entity::User => "## User",
            Entity::FieldDefinition => "## Field definition",
        };
        let section = section(&doc, heading);
        for source in field_sources(entity) {
            let row = format!("| `{}` | `{}` |", source.entity_field, source.source);
            assert!(section.contains(&row), "{heading} lacks {row}");
        }
        for derived in derived_fields(entity) {
            let row = format!("| `{}` | derived from", derived.entity_field);
            assert!(section.contains(&row), "{heading} lacks {row}");
        }
    }
}

#[test]
fn every_dlq_code_is_documented() {
    let doc = mapping_doc();
    let codes = section(&doc, "## DLQ reason codes");
    for code in MapError::CODES {
        assert!(
            codes.contains(&format!("| `{code}` |")),
            "{code} undocumented"
        );
    }
}

#[test]
fn every_alias_expansion_is_documented() {
    let doc = mapping_doc();
    let exclusion = section(&doc, "## Exclusion");
    for (_, fields) in ALIASES {
        for field in *fields {
            assert!(
                exclusion.contains(&format!("`{field}`")),
                "{field} undocumented"
            );
        }
    }
}

fn stage_doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/normalizer.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_stage_guide_lists_every_metric_and_every_stage_dlq_code() {
    let doc = stage_doc();
    for metric in nowstream_normalizer::metrics::NAMES {
        assert!(
            doc.contains(&format!("| `{metric}` |")),
            "{metric} undocumented"
        );
    }
    let runbook = section(&doc, "## DLQ runbook");
    for code in nowstream_normalizer::normalize::STAGE_CODES {
        assert!(
            runbook.contains(&format!("| `{code}` |")),
            "{code} undocumented"
        );
    }
}

#[test]
fn the_stage_guide_lists_every_key_of_the_example_normalizer_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/examples/nowstream.toml");
    let example =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = example
        .find("[normalizer]")
        .expect("the example has a [normalizer] section");
    let body = &example[start + "[normalizer]".len()..];
    let body = &body[..body.find("\n[").unwrap_or(body.len())];
    let keys: Vec<&str> = body
        .lines()
        .map(|line| line.trim_start_matches('#').trim())
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key.trim()))
        .collect();
    assert!(keys.len() >= 10, "keys found: {keys:?}");
    let doc = stage_doc();
    let configuration = section(&doc, "## Configuration");
    for key in keys {
        assert!(
            configuration.contains(&format!("| `{key}` |")),
            "{key} undocumented"
        );
    }
}
