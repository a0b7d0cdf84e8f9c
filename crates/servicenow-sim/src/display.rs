//! Turning stored strings into what the Table API returns: raw values, display values,
//! reference links, dot-walked fields.
//!
//! The three `sysparm_display_value` modes and `sysparm_exclude_reference_link` follow the
//! real Table API: with links included, a reference is an object even in `false`/`true` mode
//! (`{"link","value"}` / `{"display_value","link"}`); `all` gives `{"display_value","value"}`
//! plus `"link"` for non-empty references.

use chrono::FixedOffset;
use nowstream_model::table_api::{TIME_FORMAT, parse_time};
use serde_json::{Map, Value};

use crate::schema::FieldKind;
use crate::store::{Record, Store, field};

/// `sysparm_display_value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DisplayMode {
    /// `false` (the default): raw stored values.
    #[default]
    Value,
    /// `true`: display strings (choice labels, referenced names, times in the user's zone).
    Display,
    /// `all`: both, as `{"display_value","value"}` objects.
    All,
}

impl DisplayMode {
    /// Parse the query parameter; ServiceNow treats anything unrecognised as `false`.
    pub fn from_param(value: Option<&str>) -> Self {
        match value.map(str::to_ascii_lowercase).as_deref() {
            Some("true") => Self::Display,
            Some("all") => Self::All,
            _ => Self::Value,
        }
    }
}

/// How to render records for one response.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// `sysparm_display_value`.
    pub mode: DisplayMode,
    /// `sysparm_exclude_reference_link`.
    pub exclude_reference_link: bool,
    /// `sysparm_fields`; `None` renders every field of the table.
    pub fields: Option<Vec<String>>,
    /// Base of reference links (`https://instance.service-now.com`).
    pub instance_url: String,
    /// Zone of the requesting user: display values of date-times are shown in it.
    pub display_offset: FixedOffset,
}

/// Where a (possibly dot-walked) field path leads.
struct Resolved<'a> {
    /// Table that owns the final field.
    table: String,
    kind: FieldKind,
    /// Final field name.
    name: String,
    /// Raw value; empty when the field is empty or a reference on the way is empty/dangling.
    raw: &'a str,
}

fn resolve<'a>(
    store: &'a Store,
    table: &str,
    record: &'a Record,
    path: &str,
) -> Option<Resolved<'a>> {
    let mut table = table.to_owned();
    let mut current = Some(record);
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let def = store.field_def(&table, segment)?;
        if segments.peek().is_none() {
            let raw = current.map_or("", |r| field(r, segment));
            return Some(Resolved {
                table,
                kind: def.kind.clone(),
                name: segment.to_owned(),
                raw,
            });
        }
        let target = def.reference_target()?.to_owned();
        current = current
            .map(|r| field(r, segment))
            .filter(|id| !id.is_empty())
            .and_then(|id| store.get(&target, id).ok().flatten().map(|(_, rec)| rec));
        // Walking on through a view (`parent.…`) continues from the concrete table when known.
        table = match current
            .and_then(|r| r.get("sys_class_name"))
            .filter(|c| store.has_table(c))
        {
            Some(concrete) => concrete.clone(),
            None => target,
        };
    }
    None
}

/// Raw value of a possibly dot-walked field, as the query language needs it.
///
/// `None` when the field does not exist or a reference on the way is empty, so that the
/// query crate can treat it as missing.
pub fn raw_value(store: &Store, table: &str, record: &Record, path: &str) -> Option<String> {
    let resolved = resolve(store, table, record, path)?;
    if resolved.raw.is_empty() && path.contains('.') {
        return None;
    }
    Some(resolved.raw.to_owned())
}

/// Render one record for a response; `view` chooses the field list (`task` vs the
/// concrete table) and `concrete` the table the row lives in.
pub fn render_record(
    store: &Store,
    view: &str,
    concrete: &str,
    record: &Record,
    options: &RenderOptions,
) -> Map<String, Value> {
    let names: Vec<String> = match &options.fields {
        Some(fields) => fields.clone(),
        None => store
            .fields_of(view)
            .into_iter()
            .map(|f| f.name.clone())
            .collect(),
    };
    names
        .into_iter()
        .filter_map(|name| render_field(store, concrete, record, &name, options).map(|v| (name, v)))
        .collect()
}

fn render_field(
    store: &Store,
    table: &str,
    record: &Record,
    path: &str,
    options: &RenderOptions,
) -> Option<Value> {
    let resolved = resolve(store, table, record, path)?;
    let raw = resolved.raw;
    let link = match &resolved.kind {
        FieldKind::Reference(target) if !raw.is_empty() && !options.exclude_reference_link => {
            Some(format!(
                "{}/api/now/table/{target}/{raw}",
                options.instance_url.trim_end_matches('/')
            ))
        }
        _ => None,
    };
    let display = || display_string(store, &resolved, options);
    let value = match (options.mode, link) {
        (DisplayMode::Value, None) => Value::from(raw),
        (DisplayMode::Display, None) => Value::from(display()),
        (DisplayMode::Value, Some(link)) => object([("link", link), ("value", raw.to_owned())]),
        (DisplayMode::Display, Some(link)) => {
            object([("display_value", display()), ("link", link)])
        }
        (DisplayMode::All, None) => {
            object([("display_value", display()), ("value", raw.to_owned())])
        }
        (DisplayMode::All, Some(link)) => object([
            ("display_value", display()),
            ("link", link),
            ("value", raw.to_owned()),
        ]),
    };
    Some(value)
}

fn object<const N: usize>(pairs: [(&str, String); N]) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect(),
    )
}

fn display_string(store: &Store, resolved: &Resolved<'_>, options: &RenderOptions) -> String {
    let raw = resolved.raw;
    if raw.is_empty() {
        return String::new();
    }
    match &resolved.kind {
        FieldKind::Reference(target) => {
            let Ok(Some((concrete, rec))) = store.get(target, raw) else {
                return String::new();
            };
            let display_field = store
                .schema(concrete)
                .map(|s| s.display_field)
                .unwrap_or("sys_id");
            field(rec, display_field).to_owned()
        }
        FieldKind::DateTime => match parse_time(raw) {
            Ok(t) => t
                .with_timezone(&options.display_offset)
                .format(TIME_FORMAT)
                .to_string(),
            Err(_) => raw.to_owned(),
        },
        FieldKind::Text | FieldKind::Integer | FieldKind::Boolean => store
            .choice_label(&resolved.table, &resolved.name, raw)
            .map_or_else(|| raw.to_owned(), str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Actor, Dataset};
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn options(mode: DisplayMode) -> RenderOptions {
        RenderOptions {
            mode,
            exclude_reference_link: false,
            fields: None,
            instance_url: "https://sim.example".to_owned(),
            display_offset: FixedOffset::east_opt(3600).unwrap(),
        }
    }

    fn store_with_incident() -> (Store, Record) {
        let mut store = Store::new(Dataset::default(), 7);
        let a = Actor::system();
        let dept = store
            .insert("cmn_department", &map(json!({"name": "IT"})), &a)
            .unwrap();
        let svc = store
            .insert(
                "cmdb_ci_service",
                &map(json!({"name": "Email", "department": dept["sys_id"]})),
                &a,
            )
            .unwrap();
        store
            .insert("sys_choice", &map(json!({"name": "incident", "element": "state", "value": "2", "label": "In Progress"})), &a)
            .unwrap();
        let inc = store
            .insert(
                "incident",
                &map(json!({"state": "2", "business_service": svc["sys_id"], "opened_at": "2024-01-01 10:00:00"})),
                &a,
            )
            .unwrap();
        (store, inc)
    }

    #[test]
    fn all_mode_gives_labels_values_and_links() {
        let (store, inc) = store_with_incident();
        let out = render_record(
            &store,
            "incident",
            "incident",
            &inc,
            &options(DisplayMode::All),
        );
        assert_eq!(
            out["state"],
            json!({"display_value": "In Progress", "value": "2"})
        );
        assert_eq!(out["business_service"]["display_value"], "Email");
        let link = out["business_service"]["link"].as_str().unwrap();
        assert!(link.starts_with("https://sim.example/api/now/table/cmdb_ci_service/"));
        assert_eq!(
            out["opened_at"],
            json!({"display_value": "2024-01-01 11:00:00", "value": "2024-01-01 10:00:00"})
        );
        assert_eq!(
            out["assigned_to"],
            json!({"display_value": "", "value": ""})
        );
    }

    #[test]
    fn dot_walked_fields_resolve_through_references() {
        let (store, inc) = store_with_incident();
        let mut opts = options(DisplayMode::Display);
        opts.fields = Some(vec![
            "business_service.department".to_owned(),
            "nope".to_owned(),
        ]);
        opts.exclude_reference_link = true;
        let out = render_record(&store, "incident", "incident", &inc, &opts);
        assert_eq!(out["business_service.department"], json!("IT"));
        assert!(!out.contains_key("nope"));
        assert!(raw_value(&store, "incident", &inc, "business_service.department").is_some());
        assert_eq!(
            raw_value(&store, "incident", &inc, "assigned_to.name"),
            None
        );
    }

    #[test]
    fn value_mode_keeps_reference_links_unless_excluded() {
        let (store, inc) = store_with_incident();
        let out = render_record(
            &store,
            "incident",
            "incident",
            &inc,
            &options(DisplayMode::Value),
        );
        assert!(out["business_service"].is_object());
        assert_eq!(out["state"], json!("2"));
        let mut opts = options(DisplayMode::Value);
        opts.exclude_reference_link = true;
        let out = render_record(&store, "incident", "incident", &inc, &opts);
        assert!(out["business_service"].is_string());
    }
}
