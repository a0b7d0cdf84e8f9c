//! The configuration reference (`examples/nowstream.toml`, which docs/configuration.md points
//! to) documents every key the config structs accept: each struct is asked for its fields by
//! feeding it an unknown key, and each field must appear in the example.

use nowstream_runtime::{Config, ConfigError, Format};

const BASE: &str = r#"
[kafka]
bootstrap_servers = "b:9092"
[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
[integrations.auth]
type = "basic"
username = "reader"
password = "pw"
"#;

/// The field names serde lists after "expected one of" for an unknown key.
fn accepted_fields(text: &str) -> Vec<String> {
    let message = match Config::parse(text, Format::Toml) {
        Err(error @ ConfigError::Invalid { .. }) => error.to_string(),
        other => panic!("expected an unknown-key error, got {other:?}"),
    };
    let list = message
        .split("expected one of ")
        .nth(1)
        .or_else(|| message.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("no field list in {message:?}"));
    list.split(", ")
        .filter_map(|item| item.split('`').nth(1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_config_key_is_shown_in_the_example_reference() {
    let example = include_str!("../../examples/nowstream.toml");
    let documented = |key: &str| {
        example.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{key} ="))
                || line.starts_with(&format!("[{key}]"))
                || line.starts_with(&format!("[[{key}]]"))
                || (line.starts_with('[') && line.contains(&format!(".{key}]")))
        })
    };
    let probes = [
        ("top level", format!("zz_probe = 1\n{BASE}")),
        ("[kafka]", BASE.replace("[kafka]\n", "[kafka]\nzz_probe = 1\n")),
        ("[[integrations]]", BASE.replace("id = \"4711\"", "id = \"4711\"\nzz_probe = 1")),
        ("[integrations.auth] basic", BASE.replace("type = \"basic\"", "type = \"basic\"\nzz_probe = 1")),
        (
            "[integrations.auth] oauth",
            BASE.replace(
                "type = \"basic\"\nusername = \"reader\"\npassword = \"pw\"",
                "type = \"oauth\"\nclient_id = \"c\"\nclient_secret = \"s\"\ngrant = \"client_credentials\"\nzz_probe = 1",
            ),
        ),
        (
            "[integrations.metadata]",
            format!("{BASE}\n[integrations.metadata]\nzz_probe = 1\n"),
        ),
        ("[sei]", format!("{BASE}\n[sei]\nzz_probe = 1\n")),
        ("[telemetry]", format!("{BASE}\n[telemetry]\nzz_probe = 1\n")),
        ("[http]", format!("{BASE}\n[http]\nzz_probe = 1\n")),
        ("[fetcher]", format!("{BASE}\n[fetcher]\nzz_probe = 1\n")),
        ("[normalizer]", format!("{BASE}\n[normalizer]\nzz_probe = 1\n")),
        ("[sink]", format!("{BASE}\n[sink]\nzz_probe = 1\n")),
    ];
    let mut missing = Vec::new();
    for (section, text) in probes {
        let fields = accepted_fields(&text);
        assert!(!fields.is_empty(), "{section}: no fields listed");
        for field in fields {
            if field != "type" && !documented(&field) {
                missing.push(format!("{section}: {field}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from examples/nowstream.toml: {missing:#?}"
    );
}
