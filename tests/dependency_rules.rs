//! The workspace's layering, checked over `cargo metadata` so a new `[dependencies]` line
//! that breaks it fails a test instead of a review.
//!
//! - The stages (fetcher, normalizer, sink) meet only through Kafka and the shared crates
//!   below them: no stage crate depends on another, not even for its tests.
//! - The model is the contract every crate shares; it links no Kafka, HTTP or async runtime
//!   crate, so the contract can be used (and its tests run) without any of them.
//! - The ServiceNow client (`nowstream-servicenow`, an HTTP client) is the fetcher's: the
//!   normalizer, the sink and the shared crates read ServiceNow's record shape and query
//!   language from the model instead, so they never link it.
//! - The test servers and the test harness (simulator, sei-local, testkit) never ship inside
//!   a product crate: product crates use them as dev-dependencies only. One exception, named
//!   in [`ALLOWED_TEST_SUPPORT`] with its reason: the `nowstream` demo command, whose whole
//!   point is to run the simulator and sei-local in one process.
//!
//! Only direct dependencies are read (`--no-deps`): every crate the rules name is either a
//! workspace crate or a crate a workspace crate would have to name itself.

use std::process::Command;

use serde_json::Value;

/// The pipeline's stage crates.
const STAGES: [&str; 3] = [
    "nowstream-fetcher",
    "nowstream-normalizer",
    "nowstream-sink",
];

/// The shared contract crate.
const MODEL: &str = "nowstream-model";

/// Crates the model must not depend on (any kind): Kafka, HTTP, async runtimes, and our crates
/// that wrap them.
const NOT_FOR_THE_MODEL: [&str; 14] = [
    "rdkafka",
    "rdkafka-sys",
    "reqwest",
    "hyper",
    "axum",
    "tower",
    "tokio",
    "tokio-util",
    "nowstream-runtime",
    "nowstream-bus",
    "nowstream-servicenow",
    "nowstream-servicenow-sim",
    "nowstream-sei-local",
    "nowstream-testkit",
];

/// The ServiceNow HTTP client, and the crates allowed to link it as a normal dependency: the
/// fetcher, and the simulator (it answers in the client's wire types).
const SERVICENOW_CLIENT: &str = "nowstream-servicenow";
const SERVICENOW_CLIENT_USERS: [&str; 2] = ["nowstream-fetcher", "nowstream-servicenow-sim"];

/// Test servers and the test harness: dev-dependencies only, outside their own group.
const TEST_SUPPORT: [&str; 3] = [
    "nowstream-servicenow-sim",
    "nowstream-sei-local",
    "nowstream-testkit",
];

/// Workspace crates that are not product crates: the test support itself, the fault
/// schedule only the test servers use, and the end-to-end test crate.
const NOT_PRODUCT: [&str; 5] = [
    "nowstream-servicenow-sim",
    "nowstream-sei-local",
    "nowstream-testkit",
    "nowstream-faults",
    "nowstream-e2e",
];

/// (product crate, test-support crate, why) pairs allowed as normal dependencies.
const ALLOWED_TEST_SUPPORT: [(&str, &str, &str); 2] = [
    (
        "nowstream",
        "nowstream-servicenow-sim",
        "`nowstream demo` embeds the ServiceNow simulator to run the whole pipeline offline",
    ),
    (
        "nowstream",
        "nowstream-sei-local",
        "`nowstream demo` embeds sei-local as the SEI endpoint to run the whole pipeline offline",
    ),
];

/// One dependency line of a workspace crate.
#[derive(Debug)]
struct Dependency<'a> {
    /// The depending crate.
    from: &'a str,
    /// The package depended on (its real name, whatever it is renamed to).
    to: &'a str,
    /// `normal`, `dev` or `build`.
    kind: &'a str,
}

/// Every dependency of every package in `cargo metadata --no-deps` output.
fn dependencies(metadata: &Value) -> Vec<Dependency<'_>> {
    let packages = metadata["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    packages
        .iter()
        .flat_map(|package| {
            let from = package["name"].as_str().unwrap_or("(unnamed)");
            let deps = package["dependencies"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            deps.iter().map(move |dep| Dependency {
                from,
                to: dep["name"].as_str().unwrap_or("(unnamed)"),
                kind: dep["kind"].as_str().unwrap_or("normal"),
            })
        })
        .collect()
}

/// Names of the workspace's packages.
fn package_names(metadata: &Value) -> Vec<&str> {
    metadata["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|package| package["name"].as_str())
        .collect()
}

/// Every broken rule, one message each naming the crate and the offending dependency.
fn violations(metadata: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for dep in dependencies(metadata) {
        if STAGES.contains(&dep.from) && STAGES.contains(&dep.to) {
            found.push(format!(
                "stage crate {} depends on stage crate {} ({} dependency): stages meet only \
                 through Kafka and the shared crates (move what both need into nowstream-model)",
                dep.from, dep.to, dep.kind
            ));
        }
        if dep.from == MODEL && NOT_FOR_THE_MODEL.contains(&dep.to) {
            found.push(format!(
                "{MODEL} depends on {} ({} dependency): the model links no Kafka, HTTP or \
                 runtime crate",
                dep.to, dep.kind
            ));
        }
        if dep.to == SERVICENOW_CLIENT
            && dep.kind != "dev"
            && !SERVICENOW_CLIENT_USERS.contains(&dep.from)
        {
            found.push(format!(
                "{} depends on the ServiceNow client {} ({} dependency): only the fetcher talks \
                 to ServiceNow; the record shape and the query language are in nowstream-model",
                dep.from, dep.to, dep.kind
            ));
        }
        let allowed = ALLOWED_TEST_SUPPORT
            .iter()
            .any(|(from, to, _)| *from == dep.from && *to == dep.to);
        if !NOT_PRODUCT.contains(&dep.from)
            && TEST_SUPPORT.contains(&dep.to)
            && dep.kind != "dev"
            && !allowed
        {
            found.push(format!(
                "product crate {} depends on test support {} as a {} dependency: test servers \
                 and harnesses are dev-dependencies only",
                dep.from, dep.to, dep.kind
            ));
        }
    }
    found
}

/// Crates the rules name that are not in the workspace: a renamed crate would otherwise turn
/// its rule off without anyone noticing.
fn unknown_names(metadata: &Value) -> Vec<&'static str> {
    let names = package_names(metadata);
    STAGES
        .iter()
        .chain([MODEL].iter())
        .chain(TEST_SUPPORT.iter())
        .chain([SERVICENOW_CLIENT].iter())
        .chain(SERVICENOW_CLIENT_USERS.iter())
        .chain(NOT_PRODUCT.iter())
        .chain(ALLOWED_TEST_SUPPORT.iter().map(|(from, _, _)| from))
        .filter(|name| !names.contains(name))
        .copied()
        .collect()
}

fn workspace_metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn the_workspace_keeps_its_layering() {
    let metadata = workspace_metadata();
    assert_eq!(
        unknown_names(&metadata),
        Vec::<&str>::new(),
        "the dependency rules name crates the workspace does not have"
    );
    let broken = violations(&metadata);
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

/// One synthetic package: its name and its (dependency, kind) lines; `None` is a normal
/// dependency, as `cargo metadata` writes it.
type Package<'a> = (&'a str, &'a [(&'a str, Option<&'a str>)]);

/// A metadata document with the given packages.
fn synthetic(packages: &[Package<'_>]) -> Value {
    let packages: Vec<Value> = packages
        .iter()
        .map(|(name, deps)| {
            let deps: Vec<Value> = deps
                .iter()
                .map(|(dep, kind)| serde_json::json!({"name": dep, "kind": kind}))
                .collect();
            serde_json::json!({"name": name, "dependencies": deps})
        })
        .collect();
    serde_json::json!({ "packages": packages })
}

#[test]
fn a_stage_depending_on_another_stage_is_named_with_the_dependency_even_for_tests() {
    let metadata = synthetic(&[
        ("nowstream-fetcher", &[("nowstream-normalizer", None)]),
        ("nowstream-sink", &[("nowstream-normalizer", Some("dev"))]),
        ("nowstream-normalizer", &[("nowstream-model", None)]),
    ]);
    let broken = violations(&metadata);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(
        broken[0].contains(
            "stage crate nowstream-fetcher depends on stage crate nowstream-normalizer (normal"
        ),
        "{}",
        broken[0]
    );
    assert!(
        broken[1].contains("nowstream-sink depends on stage crate nowstream-normalizer (dev"),
        "{}",
        broken[1]
    );
}

#[test]
fn the_model_linking_kafka_http_or_a_runtime_is_named_with_the_dependency() {
    let metadata = synthetic(&[(
        "nowstream-model",
        &[
            ("serde", None),
            ("rdkafka", None),
            ("reqwest", None),
            ("tokio", Some("dev")),
            ("nowstream-runtime", None),
        ],
    )]);
    let broken = violations(&metadata);
    assert_eq!(broken.len(), 4, "{broken:?}");
    for (message, dependency) in
        broken
            .iter()
            .zip(["rdkafka", "reqwest", "tokio", "nowstream-runtime"])
    {
        assert!(
            message.contains(&format!("nowstream-model depends on {dependency} (")),
            "{message}"
        );
    }
}

#[test]
fn test_support_in_a_product_crate_is_refused_outside_dev_dependencies_and_the_demo_allowance() {
    let metadata = synthetic(&[
        (
            "nowstream-fetcher",
            &[
                ("nowstream-servicenow-sim", Some("dev")),
                ("nowstream-testkit", None),
            ],
        ),
        (
            "nowstream-servicenow",
            &[("nowstream-servicenow-sim", Some("build"))],
        ),
        (
            "nowstream",
            &[
                ("nowstream-servicenow-sim", None),
                ("nowstream-sei-local", None),
                ("nowstream-testkit", None),
            ],
        ),
        ("nowstream-e2e", &[("nowstream-testkit", None)]),
        ("nowstream-servicenow-sim", &[("nowstream-testkit", None)]),
    ]);
    let broken = violations(&metadata);
    assert_eq!(
        broken
            .iter()
            .map(|message| message.split(" as a ").next().unwrap_or_default())
            .collect::<Vec<_>>(),
        [
            "product crate nowstream-fetcher depends on test support nowstream-testkit",
            "product crate nowstream-servicenow depends on test support nowstream-servicenow-sim",
            "product crate nowstream depends on test support nowstream-testkit",
        ],
        "{broken:?}"
    );
}

#[test]
fn only_the_fetcher_links_the_servicenow_client_outside_tests() {
    let metadata = synthetic(&[
        ("nowstream-fetcher", &[("nowstream-servicenow", None)]),
        ("nowstream-runtime", &[("nowstream-servicenow", None)]),
        (
            "nowstream-normalizer",
            &[("nowstream-servicenow", Some("build"))],
        ),
        ("nowstream-sink", &[("nowstream-servicenow", Some("dev"))]),
    ]);
    let broken = violations(&metadata);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(
        broken[0].starts_with(
            "nowstream-runtime depends on the ServiceNow client nowstream-servicenow (normal"
        ),
        "{}",
        broken[0]
    );
    assert!(
        broken[1].starts_with(
            "nowstream-normalizer depends on the ServiceNow client nowstream-servicenow (build"
        ),
        "{}",
        broken[1]
    );
}

#[test]
fn a_rule_naming_a_crate_the_workspace_lacks_is_reported() {
    let metadata = synthetic(&[("nowstream-model", &[]), ("nowstream-fetcher", &[])]);
    let unknown = unknown_names(&metadata);
    assert!(unknown.contains(&"nowstream-sink"), "{unknown:?}");
    assert!(unknown.contains(&"nowstream"), "{unknown:?}");
    assert!(!unknown.contains(&"nowstream-model"), "{unknown:?}");
}
