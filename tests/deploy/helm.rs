//! The Helm chart `deploy/helm/nowstream`, checked without `helm`: values as YAML, templates as
//! text, and the default configuration with the stages' own loader.

use std::collections::{BTreeMap, BTreeSet};

use nowstream_runtime::{Config, ConfigLoader, Format};
use serde_json::Value as Json;
use yaml_rust2::Yaml;

use super::{repo, yaml};

/// The chart, relative to the workspace root.
pub(crate) const CHART: &str = "deploy/helm/nowstream";
/// How every per-stage template walks the stages.
const STAGE_LOOP: &str = r#"range $name := splitList " " (include "nowstream.stages" $)"#;

fn values() -> Yaml {
    yaml::parse(
        &repo::read(format!("{CHART}/values.yaml")),
        "the chart's values.yaml",
    )
}

/// Every file in `templates/`, by file name.
fn templates() -> BTreeMap<String, String> {
    let dir = repo::root().join(CHART).join("templates");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, repo::read(&path))
        })
        .collect()
}

fn template(name: &str) -> String {
    templates()
        .remove(name)
        .unwrap_or_else(|| panic!("the chart has no templates/{name}"))
}

/// The stages `_helpers.tpl` defines (`nowstream.stages`).
pub fn stages() -> Vec<String> {
    let helpers = template("_helpers.tpl");
    let start = helpers
        .find(r#"define "nowstream.stages""#)
        .expect("_helpers.tpl defines nowstream.stages");
    let body = &helpers[start..];
    let body = &body[body.find("}}").unwrap() + 2..];
    let body = &body[..body.find("{{").unwrap()];
    body.split_whitespace().map(str::to_owned).collect()
}

/// The key paths that follow `marker` in the text, e.g. `image.tag` for `.Values.image.tag`.
fn references(text: &str, marker: &str) -> BTreeSet<String> {
    text.match_indices(marker)
        .map(|(at, _)| {
            text[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect::<String>()
                .trim_end_matches('.')
                .to_owned()
        })
        .filter(|path| !path.is_empty())
        .collect()
}

fn all_references(marker: &str) -> BTreeSet<String> {
    templates()
        .values()
        .flat_map(|text| references(text, marker))
        .collect()
}

/// The lines under the first line that ends with `key:`, indented deeper than it.
fn block(text: &str, key: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim_end().ends_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no `{key}:` in the template"));
    let indent = |line: &str| line.len() - line.trim_start().len();
    let own = indent(lines[start]);
    lines[start + 1..]
        .iter()
        .take_while(|line| line.trim().is_empty() || indent(line) > own)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what}: `{needle}` not found in:\n{haystack}"
    );
}

/// The `NOWSTREAM__…` names the chart sets (variables, and the keys of its Secrets, which become
/// secret files of the same names), with `{{ $index }}` taken as integration 0.
fn chart_variables() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for text in templates().values() {
        let text = text.replace("{{ $index }}", "0");
        for (at, _) in text.match_indices("NOWSTREAM__") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // Prose such as "a NOWSTREAM__… variable" names no variable.
            if name.len() > "NOWSTREAM__".len() {
                names.insert(name);
            }
        }
    }
    names
}

/// The default config as the chart mounts it.
fn default_config_text() -> String {
    yaml::scalar_at(&values(), "config.toml")
}

/// Loads `text` as the chart would have a stage load it: `NOWSTREAM__HTTP__LISTEN` is a
/// variable, every other name the key of a Secret mounted as a file in the secrets directory.
fn load_with(text: &str, names: &[&str]) -> Config {
    let port = yaml::scalar_at(&values(), "http.port");
    let secrets = tempfile::tempdir().unwrap();
    let mut env = Vec::new();
    for name in names {
        if *name == "NOWSTREAM__HTTP__LISTEN" {
            env.push(((*name).to_owned(), format!("0.0.0.0:{port}")));
        } else {
            std::fs::write(secrets.path().join(name), format!("value-of-{name}\n")).unwrap();
        }
    }
    ConfigLoader::new()
        .text(text, Format::Toml)
        .env_vars(env)
        .secrets_dir(secrets.path())
        .load()
        .unwrap_or_else(|error| panic!("the chart's config does not load: {error}"))
}

#[test]
fn chart_metadata_names_a_helm3_application_at_the_workspace_version() {
    let chart = yaml::parse(&repo::read(format!("{CHART}/Chart.yaml")), "Chart.yaml");
    assert_eq!(yaml::scalar_at(&chart, "apiVersion"), "v2");
    assert_eq!(yaml::scalar_at(&chart, "name"), "nowstream");
    assert_eq!(yaml::scalar_at(&chart, "type"), "application");
    assert!(!yaml::scalar_at(&chart, "version").is_empty());
    // The image tag defaults to appVersion: it must be the release the workspace builds.
    assert_eq!(
        yaml::scalar_at(&chart, "appVersion"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(templates().contains_key("NOTES.txt"));
}

#[test]
fn the_chart_has_one_deployment_hpa_pdb_and_optional_scaled_object_per_stage() {
    assert_eq!(stages(), ["fetcher", "normalizer", "sink"]);
    let values = values();
    for (file, kind, api_version) in [
        ("deployment.yaml", "Deployment", "apps/v1"),
        ("hpa.yaml", "HorizontalPodAutoscaler", "autoscaling/v2"),
        ("pdb.yaml", "PodDisruptionBudget", "policy/v1"),
        ("keda-scaledobject.yaml", "ScaledObject", "keda.sh/v1alpha1"),
    ] {
        let text = template(file);
        assert_contains(&text, STAGE_LOOP, file);
        assert_contains(&text, &format!("kind: {kind}\n"), file);
        assert_contains(&text, &format!("apiVersion: {api_version}\n"), file);
    }
    for stage in stages() {
        for switch in [
            "enabled",
            "autoscaling.enabled",
            "pdb.enabled",
            "keda.enabled",
        ] {
            assert!(
                yaml::at(&values, &format!("{stage}.{switch}")).is_some(),
                "values.yaml has no {stage}.{switch}"
            );
        }
        assert_eq!(
            yaml::scalar_at(&values, &format!("{stage}.enabled")),
            "true"
        );
        assert_eq!(
            yaml::scalar_at(&values, &format!("{stage}.pdb.enabled")),
            "true",
            "{stage} has a PodDisruptionBudget by default"
        );
        assert_eq!(
            yaml::scalar_at(&values, &format!("{stage}.keda.enabled")),
            "false",
            "KEDA is off by default for {stage}"
        );
    }
}

#[test]
fn every_value_a_template_reads_has_a_default() {
    let values = values();
    for path in all_references(".Values.") {
        assert!(
            yaml::at(&values, &path).is_some(),
            "templates read .Values.{path}, which values.yaml lacks"
        );
    }
    for stage in stages() {
        for path in all_references("$stage.") {
            assert!(
                yaml::at(&values, &format!("{stage}.{path}")).is_some(),
                "templates read $stage.{path}, which values.yaml lacks for {stage}"
            );
        }
    }
}

/// Which value paths the templates read: `.Values.…` and, for every stage, `$stage.…`.
struct Readers {
    stages: Vec<String>,
    global: BTreeSet<String>,
    per_stage: BTreeSet<String>,
}

impl Readers {
    fn of_the_templates() -> Self {
        Readers {
            stages: stages(),
            global: all_references(".Values."),
            per_stage: all_references("$stage."),
        }
    }

    /// A path is read when a template reads it, a parent of it (passed on with toYaml), or a
    /// child of it.
    fn read(&self, path: &str) -> bool {
        let used = |path: &str, references: &BTreeSet<String>| {
            references.iter().any(|reference| {
                path == reference
                    || path.starts_with(&format!("{reference}."))
                    || reference.starts_with(&format!("{path}."))
            })
        };
        let (first, rest) = path.split_once('.').unwrap_or((path, ""));
        if self.stages.iter().any(|stage| stage == first) {
            rest.is_empty() || used(rest, &self.per_stage)
        } else {
            used(path, &self.global)
        }
    }
}

#[test]
fn every_default_in_values_is_read_by_a_template() {
    let readers = Readers::of_the_templates();
    for path in yaml::key_paths(&values()) {
        assert!(
            readers.read(&path),
            "values.yaml sets `{path}`, which no template reads"
        );
    }
}

/// The chart's `values.schema.json`.
fn schema() -> Json {
    let text = repo::read(format!("{CHART}/values.schema.json"));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("values.schema.json is not JSON: {error}"))
}

/// `node`, or what its `$ref` names under `definitions` (the only references the schema uses).
fn resolved<'a>(schema: &'a Json, node: &'a Json) -> &'a Json {
    match node.get("$ref").and_then(Json::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("values.schema.json: unsupported $ref {reference}"));
            let target = &schema["definitions"][name];
            assert!(
                !target.is_null(),
                "values.schema.json: no definition {name}"
            );
            resolved(schema, target)
        }
        None => node,
    }
}

/// Every object the schema types key by key (it has `properties`), by value path; a list's
/// items count as the list's path. `$ref`s are followed, so each stage appears under its name.
fn schema_blocks<'a>(
    schema: &'a Json,
    node: &'a Json,
    path: &str,
    out: &mut Vec<(String, &'a Json)>,
) {
    let node = resolved(schema, node);
    if let Some(items) = node.get("items") {
        schema_blocks(schema, items, path, out);
    }
    if let Some(properties) = node.get("properties").and_then(Json::as_object) {
        out.push((path.to_owned(), node));
        for (key, child) in properties {
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            schema_blocks(schema, child, &child_path, out);
        }
    }
}

fn all_schema_blocks(schema: &Json) -> Vec<(String, &Json)> {
    let mut blocks = Vec::new();
    schema_blocks(schema, schema, "", &mut blocks);
    blocks
}

#[test]
fn the_schema_is_draft_07_and_closes_every_block_it_types_key_by_key() {
    let schema = schema();
    assert_eq!(
        schema["$schema"], "http://json-schema.org/draft-07/schema#",
        "helm validates values against a draft-07 schema"
    );
    let blocks = all_schema_blocks(&schema);
    for stage in stages() {
        assert!(
            blocks
                .iter()
                .any(|(path, _)| *path == format!("{stage}.pdb")),
            "the schema does not type {stage} key by key"
        );
    }
    for (path, block) in &blocks {
        assert_eq!(
            block["additionalProperties"],
            Json::Bool(false),
            "values.schema.json: `{path}` lists its keys but lets a misspelt one through"
        );
    }
}

#[test]
fn every_value_in_values_has_a_type_in_the_schema() {
    let schema = schema();
    let values = values();
    for path in yaml::key_paths(&values) {
        // Walk down the schema; an open object (no `properties`) types everything below it.
        let mut node = resolved(&schema, &schema);
        let mut typed_by_open_parent = false;
        for key in path.split('.') {
            let Some(properties) = node.get("properties") else {
                typed_by_open_parent = true;
                break;
            };
            let child = properties.get(key).unwrap_or_else(|| {
                panic!("values.yaml sets `{path}`, which values.schema.json does not declare")
            });
            node = resolved(&schema, child);
        }
        if typed_by_open_parent {
            continue;
        }
        let typed = node.get("type").is_some() || node.get("anyOf").is_some();
        assert!(typed, "values.schema.json declares `{path}` without a type");
    }
}

#[test]
fn every_key_the_schema_allows_is_read_by_a_template() {
    let readers = Readers::of_the_templates();
    let schema = schema();
    for (path, block) in all_schema_blocks(&schema) {
        for key in block["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, _)| key)
        {
            let key_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            assert!(
                readers.read(&key_path),
                "values.schema.json allows `{key_path}`, which no template reads"
            );
        }
    }
}

#[test]
fn deployments_probe_healthz_and_readyz_on_the_port_the_stage_listens_on() {
    let deployment = template("deployment.yaml");
    let liveness = block(&deployment, "livenessProbe");
    assert_contains(&liveness, "path: /healthz", "livenessProbe");
    assert_contains(&liveness, "port: http", "livenessProbe");
    let readiness = block(&deployment, "readinessProbe");
    assert_contains(&readiness, "path: /readyz", "readinessProbe");
    assert_contains(&readiness, "port: http", "readinessProbe");
    let ports = block(&deployment, "ports");
    assert_contains(&ports, "- name: http", "ports");
    assert_contains(&ports, "containerPort: {{ $.Values.http.port }}", "ports");
    // The stage listens where the probes knock: [http] listen comes from the same value.
    let env = block(&deployment, "env");
    assert_contains(&env, "- name: NOWSTREAM__HTTP__LISTEN", "env");
    assert_contains(&env, r#"printf "0.0.0.0:%v" $.Values.http.port"#, "env");
}

#[test]
fn pods_carry_prometheus_scrape_annotations() {
    let deployment = template("deployment.yaml");
    let annotations = block(&deployment, "annotations");
    assert_contains(
        &annotations,
        "if $.Values.metrics.prometheusScrape",
        "pod annotations",
    );
    assert_contains(
        &annotations,
        r#"prometheus.io/scrape: "true""#,
        "pod annotations",
    );
    assert_contains(
        &annotations,
        "prometheus.io/port: {{ $.Values.http.port | quote }}",
        "pod annotations",
    );
    assert_contains(
        &annotations,
        "prometheus.io/path: /metrics",
        "pod annotations",
    );
    assert_eq!(
        yaml::scalar_at(&values(), "metrics.prometheusScrape"),
        "true"
    );
}

#[test]
fn every_stage_declares_cpu_and_memory_requests_and_a_memory_limit() {
    assert_contains(
        &block(&template("deployment.yaml"), "resources"),
        "toYaml $stage.resources",
        "container resources",
    );
    let values = values();
    for stage in stages() {
        for key in ["requests.cpu", "requests.memory", "limits.memory"] {
            assert!(
                !yaml::scalar_at(&values, &format!("{stage}.resources.{key}")).is_empty(),
                "{stage}.resources.{key} is empty"
            );
        }
    }
}

#[test]
fn containers_run_as_non_root_on_a_read_only_filesystem_without_capabilities() {
    let deployment = template("deployment.yaml");
    assert_contains(
        &deployment,
        "toYaml $.Values.podSecurityContext | nindent 8",
        "pod securityContext",
    );
    assert_contains(
        &deployment,
        "toYaml $.Values.securityContext | nindent 12",
        "container securityContext",
    );
    assert_contains(
        &deployment,
        "automountServiceAccountToken: false",
        "pod spec",
    );
    let values = values();
    for (path, expected) in [
        ("podSecurityContext.runAsNonRoot", "true"),
        ("podSecurityContext.seccompProfile.type", "RuntimeDefault"),
        ("securityContext.runAsNonRoot", "true"),
        ("securityContext.readOnlyRootFilesystem", "true"),
        ("securityContext.allowPrivilegeEscalation", "false"),
        ("securityContext.seccompProfile.type", "RuntimeDefault"),
    ] {
        assert_eq!(yaml::scalar_at(&values, path), expected, "{path}");
    }
    let dropped = yaml::strings(yaml::at(&values, "securityContext.capabilities.drop").unwrap());
    assert_eq!(dropped, ["ALL"]);
    for path in ["podSecurityContext.runAsUser", "securityContext.runAsUser"] {
        let uid: u32 = yaml::scalar_at(&values, path)
            .parse()
            .expect("a numeric uid");
        assert_ne!(uid, 0, "{path} must not be root");
    }
    // With a read-only root, the places a stage may write are volumes.
    let mounts = block(&deployment, "volumeMounts");
    assert_contains(&mounts, "mountPath: /var/lib/nowstream", "volumeMounts");
    assert_contains(&mounts, "mountPath: /tmp", "volumeMounts");
}

/// The value of the `podSecurityContext.runAsUser` default (the Dockerfile test compares it).
pub fn run_as_user() -> String {
    yaml::scalar_at(&values(), "podSecurityContext.runAsUser")
}

#[test]
fn the_chart_and_an_existing_secret_are_alternatives() {
    let servicenow = template("secret-servicenow.yaml");
    assert!(
        servicenow.starts_with("{{- if not .Values.servicenow.existingSecret }}"),
        "the chart renders its ServiceNow Secret only without servicenow.existingSecret"
    );
    let sei = template("secret-sei.yaml");
    assert!(
        sei.starts_with("{{- if and (not .Values.sei.existingSecret) .Values.sei.apiKey }}"),
        "the chart renders its SEI Secret only with sei.apiKey and without sei.existingSecret"
    );
    let helpers = template("_helpers.tpl");
    for (helper, existing) in [
        (
            "nowstream.servicenowSecretName",
            ".Values.servicenow.existingSecret",
        ),
        ("nowstream.seiSecretName", ".Values.sei.existingSecret"),
        ("nowstream.seiSecretKey", ".Values.sei.existingSecretKey"),
    ] {
        let start = helpers
            .find(&format!(r#"define "{helper}""#))
            .unwrap_or_else(|| panic!("_helpers.tpl lacks {helper}"));
        let body =
            &helpers[start..start + helpers[start..].find("{{- end }}\n{{- end }}").unwrap()];
        assert_contains(body, existing, helper);
    }
    // Both kinds of Secret reach the stage that reads them the same way: as mounted files.
    let start = helpers
        .find(r#"define "nowstream.secretSources""#)
        .expect("_helpers.tpl defines nowstream.secretSources");
    let sources = &helpers[start..start + helpers[start..].find("{{- end }}\n\n").unwrap()];
    for needle in [
        r#"name: {{ include "nowstream.servicenowSecretName" $root }}"#,
        r#"name: {{ include "nowstream.seiSecretName" $root }}"#,
        r#"- key: {{ include "nowstream.seiSecretKey" $root }}"#,
        "path: NOWSTREAM__SEI__API_KEY",
    ] {
        assert_contains(sources, needle, "nowstream.secretSources");
    }
}

#[test]
fn the_default_config_loads_with_the_variables_the_chart_sets() {
    let set_by_chart = chart_variables();
    let text = default_config_text();

    // Basic authentication, as the default config has it.
    let basic = [
        "NOWSTREAM__HTTP__LISTEN",
        "NOWSTREAM__SEI__API_KEY",
        "NOWSTREAM__INTEGRATIONS__0__AUTH__PASSWORD",
    ];
    let config = load_with(&text, &basic);
    let port: u16 = yaml::scalar_at(&values(), "http.port").parse().unwrap();
    assert_eq!(config.http.listen.port(), port);
    assert!(config.fetcher.group_id.len() > 1);
    assert!(
        config.normalizer.problems().is_empty(),
        "{:?}",
        config.normalizer.problems()
    );
    assert!(
        config.sink.problems().is_empty(),
        "{:?}",
        config.sink.problems()
    );

    // OAuth with the password grant uses every credential the chart can set.
    let oauth_text = text.replace(
        "type = \"basic\"",
        "type = \"oauth\"\nclient_id = \"nowstream\"\ngrant = \"password\"",
    );
    assert_ne!(
        oauth_text, text,
        "the default config has a basic-auth integration"
    );
    let oauth = [
        "NOWSTREAM__HTTP__LISTEN",
        "NOWSTREAM__SEI__API_KEY",
        "NOWSTREAM__INTEGRATIONS__0__AUTH__PASSWORD",
        "NOWSTREAM__INTEGRATIONS__0__AUTH__CLIENT_SECRET",
    ];
    load_with(&oauth_text, &oauth);

    let checked: BTreeSet<String> = basic
        .iter()
        .chain(&oauth)
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(
        set_by_chart, checked,
        "every variable the chart sets must be loaded by this test"
    );
}

#[test]
fn keda_watches_the_consumer_groups_the_stages_join() {
    let config = load_with(
        &default_config_text(),
        &[
            "NOWSTREAM__SEI__API_KEY",
            "NOWSTREAM__INTEGRATIONS__0__AUTH__PASSWORD",
        ],
    );
    let values = values();
    for (stage, group) in [
        ("fetcher", &config.fetcher.group_id),
        ("normalizer", &config.normalizer.group_id),
        ("sink", &config.sink.group_id),
    ] {
        assert_eq!(
            &yaml::scalar_at(&values, &format!("{stage}.keda.consumerGroup")),
            group,
            "{stage}"
        );
    }
    let keda = template("keda-scaledobject.yaml");
    assert_contains(&keda, "type: kafka", "ScaledObject trigger");
    assert_contains(
        &keda,
        "consumerGroup: {{ $stage.keda.consumerGroup | quote }}",
        "ScaledObject trigger",
    );
    assert_contains(
        &keda,
        "required",
        "kedaKafka.bootstrapServers must be required",
    );
}

#[test]
fn an_hpa_or_keda_owns_the_replica_count_never_both() {
    let hpa = template("hpa.yaml");
    assert_contains(
        &hpa,
        "if and $stage.enabled $stage.autoscaling.enabled (not $stage.keda.enabled)",
        "hpa.yaml",
    );
    assert_contains(
        &hpa,
        "kind: Deployment",
        "the HPA scales the stage's Deployment",
    );
    let deployment = template("deployment.yaml");
    assert_contains(
        &deployment,
        "{{- if not (or $stage.autoscaling.enabled $stage.keda.enabled) }}\n  replicas: {{ $stage.replicaCount }}",
        "deployment.yaml sets replicas only without an autoscaler",
    );
}

#[test]
fn pod_disruption_budgets_select_exactly_their_stages_pods() {
    let pdb = template("pdb.yaml");
    let deployment = template("deployment.yaml");
    let selector = r#"{{- include "nowstream.selectorLabels" $ctx | nindent 6 }}"#;
    assert_contains(&block(&pdb, "matchLabels"), selector, "pdb.yaml");
    assert_contains(
        &block(&deployment, "matchLabels"),
        selector,
        "deployment.yaml",
    );
    assert_contains(
        &template("_helpers.tpl"),
        "app.kubernetes.io/component: {{ .stage }}",
        "selector labels",
    );
}

#[test]
fn each_stage_runs_its_own_binary_with_the_mounted_config() {
    let deployment = template("deployment.yaml");
    assert_contains(
        &deployment,
        r#"command: [{{ printf "nowstream-%s" $name | quote }}]"#,
        "container",
    );
    let args = block(&deployment, "args");
    assert_contains(
        &args,
        "- --config\n            - /etc/nowstream/nowstream.toml",
        "args",
    );
    let mounts = block(&deployment, "volumeMounts");
    assert_contains(
        &mounts,
        "- name: config\n              mountPath: /etc/nowstream",
        "volumeMounts",
    );
    assert_contains(
        &template("configmap.yaml"),
        "nowstream.toml: |\n    {{- .Values.config.toml | nindent 4 }}",
        "configmap.yaml",
    );
}
