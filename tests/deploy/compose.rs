//! `docker-compose.yml`: resolved by docker-compose itself, then checked service by service,
//! with each stage's configuration loaded by the stages' own loader.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use nowstream_model::Entity;
use nowstream_model::topics::TopicNames;
use nowstream_runtime::{AuthConfig, Config, ConfigError, ConfigLoader, Format, SecretScope};
use secrecy::ExposeSecret;
use yaml_rust2::Yaml;

use super::{repo, yaml};

const COMPOSE_FILE: &str = "docker-compose.yml";
/// Both profiles are enabled so that every service is resolved.
const PROFILES: [&str; 2] = ["simulator", "real-servicenow"];
/// Services that run a pipeline stage: they mount the config file and serve /healthz.
pub const STAGE_SERVICES: [&str; 4] = ["fetcher", "fetcher-real", "normalizer", "sink"];
/// Services that are always started, whatever the profile.
const CORE_SERVICES: [&str; 5] = ["kafka", "kafka-topics", "normalizer", "sink", "sei-local"];
/// What a user exports before `docker compose --profile real-servicenow up` (the password is a
/// file: [`real_password_file`]).
const REAL_INSTANCE: [(&str, &str); 2] = [
    ("SERVICENOW_URL", "https://acme.service-now.com"),
    ("SERVICENOW_USERNAME", "sei.reader"),
];
/// Where compose mounts a service's secret `<name>` (compose's fixed place).
const SECRETS_MOUNT: &str = "/run/secrets/";
/// The raw tables the fetcher publishes (its `RECORD_TABLES`, docs/architecture.md).
const RAW_TABLES: [&str; 4] = ["incident", "change_request", "sys_user", "sys_dictionary"];
/// The fetcher's coordination topic (never carries a message; docs/fetcher.md).
const COORDINATION_TOPIC: &str = "servicenow.fetcher.coordination";
/// Partitions the fetcher gives the checkpoint topic when it creates it.
const CHECKPOINT_PARTITIONS: u32 = 3;

/// The compose file as docker-compose resolves it with no variables set (the demo defaults).
pub fn with_defaults() -> &'static Yaml {
    static RENDERED: OnceLock<Yaml> = OnceLock::new();
    RENDERED.get_or_init(|| render(&[]))
}

/// A password file for the real instance, as a user would write it (kept for the whole run).
fn real_password_file() -> &'static Path {
    static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("servicenow-password");
        std::fs::write(&path, "not-a-real-password\n").unwrap();
        path
    })
}

/// The compose file resolved with a real instance's URL, user and password file exported.
fn with_real_instance() -> &'static Yaml {
    static RENDERED: OnceLock<Yaml> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let password = real_password_file().display().to_string();
        let mut variables = REAL_INSTANCE.to_vec();
        variables.push(("SERVICENOW_PASSWORD_FILE", password.as_str()));
        render(&variables)
    })
}

/// Runs `docker-compose config` in a clean environment (so the machine's variables cannot
/// change the result) plus `variables`.
fn render(variables: &[(&str, &str)]) -> Yaml {
    let mut command = Command::new("docker-compose");
    for profile in PROFILES {
        command.args(["--profile", profile]);
    }
    command
        .args(["-f", COMPOSE_FILE, "config"])
        .current_dir(repo::root())
        .env_clear();
    for inherited in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(inherited) {
            command.env(inherited, value);
        }
    }
    command.envs(variables.iter().copied());
    let output = match command.output() {
        Ok(output) => output,
        Err(error) if error.kind() == ErrorKind::NotFound => panic!(
            "docker-compose is not installed: install it with `apt-get install docker-compose` \
             (Debian's docker-compose 1.29 validates a compose file without a Docker engine)"
        ),
        Err(error) => panic!("cannot run docker-compose: {error}"),
    };
    assert!(
        output.status.success(),
        "docker-compose rejected {COMPOSE_FILE}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    yaml::parse(
        &String::from_utf8_lossy(&output.stdout),
        "the output of docker-compose config",
    )
}

pub fn service<'a>(rendered: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &rendered["services"][name];
    assert!(
        !service.is_badvalue(),
        "{COMPOSE_FILE} has no service `{name}`"
    );
    service
}

pub fn service_names(rendered: &Yaml) -> Vec<String> {
    yaml::keys(&rendered["services"])
}

fn items(node: &Yaml) -> &[Yaml] {
    node.as_vec().map_or(&[], Vec::as_slice)
}

/// The command as a list of arguments.
pub fn command(service: &Yaml) -> Vec<String> {
    match &service["command"] {
        Yaml::String(line) => line.split_whitespace().map(str::to_owned).collect(),
        other => yaml::strings(other),
    }
}

/// The service's environment, as docker-compose resolved it.
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    match &service["environment"] {
        Yaml::Hash(hash) => hash
            .iter()
            .filter_map(|(name, value)| Some((yaml::scalar(name)?, yaml::scalar(value)?)))
            .collect(),
        Yaml::Array(entries) => entries
            .iter()
            .filter_map(yaml::scalar)
            .filter_map(|entry| {
                let (name, value) = entry.split_once('=')?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `(source, target)` of every volume, in the short (`src:target:mode`) or long syntax.
fn mounts(service: &Yaml) -> Vec<(String, String)> {
    let Yaml::Array(volumes) = &service["volumes"] else {
        return Vec::new();
    };
    volumes
        .iter()
        .filter_map(|volume| match volume {
            Yaml::String(short) => {
                let mut parts = short.split(':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            long => Some((
                yaml::scalar(&long["source"])?,
                yaml::scalar(&long["target"])?,
            )),
        })
        .collect()
}

/// The services this one waits for, with the condition (`service_started` for the short form).
fn depends_on(service: &Yaml) -> BTreeMap<String, String> {
    match &service["depends_on"] {
        Yaml::Hash(hash) => hash
            .iter()
            .filter_map(|(name, spec)| {
                let condition = yaml::scalar(&spec["condition"])
                    .unwrap_or_else(|| "service_started".to_owned());
                Some((yaml::scalar(name)?, condition))
            })
            .collect(),
        other => yaml::strings(other)
            .into_iter()
            .map(|name| (name, "service_started".to_owned()))
            .collect(),
    }
}

fn profiles(service: &Yaml) -> Vec<String> {
    yaml::strings(&service["profiles"])
}

/// The value given to `--flag` as `--flag value` or `--flag=value`.
fn argument(command: &[String], flag: &str) -> Option<String> {
    let inline = format!("{flag}=");
    command.iter().enumerate().find_map(|(index, arg)| {
        if arg == flag {
            command.get(index + 1).cloned()
        } else {
            arg.strip_prefix(&inline).map(str::to_owned)
        }
    })
}

/// The config file a stage service mounts at the path its `--config` names.
fn mounted_config_file(service_name: &str, service: &Yaml) -> String {
    let command = command(service);
    let target = argument(&command, "--config")
        .unwrap_or_else(|| panic!("{service_name}: the command has no --config: {command:?}"));
    let (source, _) = mounts(service)
        .into_iter()
        .find(|(_, mounted_at)| *mounted_at == target)
        .unwrap_or_else(|| {
            panic!("{service_name}: nothing is mounted at {target}, which --config names")
        });
    source
}

/// The service's compose secrets: mount path (`/run/secrets/<name>`) to the host file.
fn secret_files(rendered: &Yaml, service: &Yaml) -> BTreeMap<String, String> {
    let Yaml::Array(entries) = &service["secrets"] else {
        return BTreeMap::new();
    };
    entries
        .iter()
        .map(|entry| {
            let source = yaml::scalar(entry)
                .or_else(|| yaml::scalar(&entry["source"]))
                .expect("a secret names its source");
            let target = yaml::scalar(&entry["target"]).unwrap_or_else(|| source.clone());
            let file = yaml::scalar(&rendered["secrets"][source.as_str()]["file"])
                .unwrap_or_else(|| panic!("secret {source} names no file"));
            (format!("{SECRETS_MOUNT}{target}"), file)
        })
        .collect()
}

/// The secrets a stage service's process reads (`SecretScope`), by the binary it runs.
fn scope_of(service: &Yaml) -> SecretScope {
    match command(service).first().map(String::as_str) {
        Some("nowstream-fetcher") => SecretScope::FETCHER,
        Some("nowstream-normalizer") => SecretScope::NORMALIZER,
        Some("nowstream-sink") => SecretScope::SINK,
        other => panic!("not a stage: {other:?}"),
    }
}

/// Loads a stage's configuration exactly as the process would: the mounted file, then the
/// service's environment, whose secret file paths point where compose mounts the service's
/// secrets (here: their host files), reading only the stage's own secrets.
fn stage_config(rendered: &Yaml, service_name: &str) -> Result<Config, ConfigError> {
    let service = service(rendered, service_name);
    let text = repo::read(mounted_config_file(service_name, service));
    let files = secret_files(rendered, service);
    let mut environment = environment(service);
    for value in environment.values_mut() {
        if let Some(file) = files.get(value.as_str()) {
            *value = file.clone();
        }
    }
    ConfigLoader::new()
        .text(text, Format::Toml)
        .env_vars(environment)
        .secret_scope(scope_of(service))
        .load()
}

fn loaded(rendered: &Yaml, service_name: &str) -> Config {
    stage_config(rendered, service_name).unwrap_or_else(|error| {
        panic!("{service_name}: its config file and environment do not load: {error}")
    })
}

/// `host` and `port` of an `http://host:port/…` URL or a `host:port` address.
fn host_and_port(address: &str) -> (String, u16) {
    let without_scheme = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = without_scheme.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("`{address}` names no port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("`{address}` has no numeric port"));
    (host.to_owned(), port)
}

fn uses_nowstream_image(service: &Yaml) -> bool {
    yaml::scalar(&service["image"]).is_some_and(|image| image.starts_with("nowstream"))
}

/// The binaries the compose file runs from the nowstream image.
pub fn nowstream_binaries() -> BTreeSet<String> {
    let rendered = with_defaults();
    service_names(rendered)
        .iter()
        .map(|name| service(rendered, name))
        .filter(|service| uses_nowstream_image(service))
        .filter_map(|service| command(service).into_iter().next())
        .collect()
}

#[test]
fn every_stage_and_what_it_needs_is_a_service() {
    let rendered = with_defaults();
    let expected = [
        ("kafka", None),
        ("kafka-topics", None),
        ("servicenow-sim", Some("nowstream-servicenow-sim")),
        ("sei-local", Some("nowstream-sei-local")),
        ("fetcher", Some("nowstream-fetcher")),
        ("fetcher-real", Some("nowstream-fetcher")),
        ("normalizer", Some("nowstream-normalizer")),
        ("sink", Some("nowstream-sink")),
    ];
    for (name, binary) in expected {
        let service = service(rendered, name);
        if let Some(binary) = binary {
            assert!(
                uses_nowstream_image(service),
                "{name} must run the nowstream image"
            );
            assert_eq!(
                command(service).first().map(String::as_str),
                Some(binary),
                "{name} runs the wrong binary"
            );
        }
    }
    assert_eq!(
        yaml::scalar_at(service(rendered, "kafka"), "image")
            .split(':')
            .next(),
        Some("apache/kafka"),
        "Kafka is the official apache/kafka image"
    );
}

#[test]
fn the_normalizer_runs_two_replicas() {
    let normalizer = service(with_defaults(), "normalizer");
    assert_eq!(yaml::scalar_at(normalizer, "deploy.replicas"), "2");
}

#[test]
fn every_long_running_service_has_a_health_check() {
    let rendered = with_defaults();
    for name in service_names(rendered) {
        if name == "kafka-topics" {
            continue; // one-shot: it exits once the topics exist
        }
        let test = yaml::strings(&service(rendered, &name)["healthcheck"]["test"]);
        assert!(
            test.first()
                .is_some_and(|kind| kind == "CMD" || kind == "CMD-SHELL")
                && test.len() > 1,
            "{name} has no health check command: {test:?}"
        );
    }
}

#[test]
fn stage_health_checks_call_healthz_on_the_configured_probe_port() {
    let rendered = with_defaults();
    for name in STAGE_SERVICES {
        let test = yaml::strings(&service(rendered, name)["healthcheck"]["test"]);
        assert_eq!(
            test.get(1).map(String::as_str),
            Some("curl"),
            "{name}: {test:?}"
        );
        let url = test
            .iter()
            .find(|arg| arg.starts_with("http://"))
            .unwrap_or_else(|| panic!("{name}: the health check names no URL: {test:?}"));
        assert!(
            url.ends_with("/healthz"),
            "{name} checks {url}, not /healthz"
        );
        let (_, port) = host_and_port(url);
        // fetcher-real cannot load without SERVICENOW_URL; the file and the other keys are
        // the same for every stage.
        let config = loaded(with_real_instance(), name);
        assert_eq!(
            port,
            config.http.listen.port(),
            "{name}: probe port and [http] listen differ"
        );
    }
}

#[test]
fn stages_start_after_the_topics_exist_and_the_topics_after_a_healthy_broker() {
    let rendered = with_defaults();
    for name in STAGE_SERVICES {
        assert_eq!(
            depends_on(service(rendered, name))
                .get("kafka-topics")
                .map(String::as_str),
            Some("service_completed_successfully"),
            "{name}"
        );
    }
    assert_eq!(
        depends_on(service(rendered, "kafka-topics"))
            .get("kafka")
            .map(String::as_str),
        Some("service_healthy")
    );
    assert_eq!(
        depends_on(service(rendered, "fetcher"))
            .get("servicenow-sim")
            .map(String::as_str),
        Some("service_healthy")
    );
    assert_eq!(
        depends_on(service(rendered, "sink"))
            .get("sei-local")
            .map(String::as_str),
        Some("service_healthy")
    );
}

#[test]
fn the_real_servicenow_profile_runs_the_pipeline_without_the_simulator() {
    let rendered = with_defaults();
    assert_eq!(profiles(service(rendered, "servicenow-sim")), ["simulator"]);
    assert_eq!(profiles(service(rendered, "fetcher")), ["simulator"]);
    assert_eq!(
        profiles(service(rendered, "fetcher-real")),
        ["real-servicenow"]
    );
    for name in CORE_SERVICES {
        assert!(
            profiles(service(rendered, name)).is_empty(),
            "{name} must run in every profile"
        );
    }
    // What starts with --profile real-servicenow must not need the simulator.
    let started: Vec<String> = service_names(rendered)
        .into_iter()
        .filter(|name| {
            let profiles = profiles(service(rendered, name));
            profiles.is_empty() || profiles.iter().any(|p| p == "real-servicenow")
        })
        .collect();
    assert!(!started.iter().any(|name| name == "servicenow-sim"));
    for name in &started {
        for dependency in depends_on(service(rendered, name)).keys() {
            assert!(
                started.contains(dependency),
                "{name} depends on {dependency}, which the real-servicenow profile does not start"
            );
        }
    }
}

#[test]
fn the_mounted_config_file_parses_with_the_real_loader() {
    let rendered = with_defaults();
    let sources: BTreeSet<String> = STAGE_SERVICES
        .iter()
        .map(|name| mounted_config_file(name, service(rendered, name)))
        .collect();
    assert_eq!(
        sources.len(),
        1,
        "every stage reads the same file: {sources:?}"
    );
    for source in sources {
        assert!(
            Path::new(&source).ends_with("deploy/compose/nowstream.toml"),
            "unexpected config file {source}"
        );
        // The file holds no secret (compose hands each stage its own as files), so it loads
        // on its own for a stage that reads none.
        let config = ConfigLoader::new()
            .text(repo::read(&source), Format::Toml)
            .secret_scope(SecretScope::NORMALIZER)
            .load()
            .unwrap_or_else(|error| panic!("{source} does not load: {error}"));
        assert!(config.fetcher.raw_topic_partitions > 0);
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
    }
}

#[test]
fn every_stage_loads_its_file_and_environment() {
    let rendered = with_defaults();
    for name in ["fetcher", "normalizer", "sink"] {
        let config = loaded(rendered, name);
        assert_eq!(config.integrations.len(), 1, "{name}");
        assert_eq!(config.integrations[0].id, "sim", "{name}");
    }
}

#[test]
fn the_real_fetcher_takes_the_instance_from_the_environment() {
    let config = loaded(with_real_instance(), "fetcher-real");
    let integration = &config.integrations[0];
    assert_eq!(integration.url, "https://acme.service-now.com");
    assert!(
        !integration.allow_http,
        "a real instance is reached over https only"
    );
    match &integration.auth {
        AuthConfig::Basic(basic) => {
            assert_eq!(basic.username, "sei.reader");
            assert_eq!(basic.password.expose_secret(), "not-a-real-password");
        }
        other => panic!("expected basic auth, got {other:?}"),
    }
    // The other stages agree on the integration id.
    for name in ["normalizer", "sink"] {
        assert_eq!(
            loaded(with_real_instance(), name).integrations[0].id,
            integration.id
        );
    }
}

#[test]
fn published_ports_listen_on_loopback_unless_nowstream_bind_widens_them() {
    // Each published port as `host_ip:published:target`; docker-compose renders a port
    // without a host address in the long syntax, which then shows an empty `host_ip`.
    let published = |rendered: &Yaml| -> BTreeMap<String, Vec<String>> {
        service_names(rendered)
            .into_iter()
            .filter_map(|name| {
                let ports: Vec<String> = items(&service(rendered, &name)["ports"])
                    .iter()
                    .map(|port| {
                        yaml::scalar(port).unwrap_or_else(|| {
                            let field = |key: &str| yaml::scalar(&port[key]).unwrap_or_default();
                            format!(
                                "{}:{}:{}",
                                field("host_ip"),
                                field("published"),
                                field("target")
                            )
                        })
                    })
                    .collect();
                (!ports.is_empty()).then_some((name, ports))
            })
            .collect()
    };
    let defaults = published(with_defaults());
    assert_eq!(
        defaults.keys().map(String::as_str).collect::<Vec<_>>(),
        ["kafka", "sei-local", "servicenow-sim"],
        "{defaults:?}"
    );
    for (name, ports) in &defaults {
        for port in ports {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name} publishes {port} beyond the loopback interface"
            );
        }
    }
    let widened = published(&render(&[("NOWSTREAM_BIND", "0.0.0.0")]));
    for (name, ports) in &widened {
        for port in ports {
            assert!(port.starts_with("0.0.0.0:"), "{name}: {port}");
        }
    }
}

#[test]
fn each_stage_gets_only_its_own_secrets_and_as_files_not_variables() {
    let rendered = with_real_instance();
    for (name, expected) in [
        ("fetcher", vec!["/run/secrets/servicenow-sim-password"]),
        ("fetcher-real", vec!["/run/secrets/servicenow-password"]),
        ("normalizer", vec![]),
        ("sink", vec!["/run/secrets/sei-api-key"]),
    ] {
        let service = service(rendered, name);
        let files = secret_files(rendered, service);
        assert_eq!(
            files.keys().map(String::as_str).collect::<Vec<_>>(),
            expected,
            "{name}"
        );
        for (variable, value) in environment(service) {
            let secret = ["PASSWORD", "API_KEY", "CLIENT_SECRET", "SECRET"]
                .iter()
                .any(|suffix| variable.ends_with(suffix));
            assert!(!secret, "{name}: {variable} passes a secret as a variable");
            if variable.ends_with("_FILE") {
                assert!(files.contains_key(&value), "{name}: {variable}={value}");
            }
        }
    }
    // The real instance's password reaches the fetcher from the user's file.
    assert_eq!(
        secret_files(rendered, service(rendered, "fetcher-real"))["/run/secrets/servicenow-password"],
        real_password_file().display().to_string()
    );
}

#[test]
fn the_real_fetcher_stops_at_start_up_when_the_instance_is_not_given() {
    let error = stage_config(with_defaults(), "fetcher-real")
        .expect_err("an unset SERVICENOW_URL must not fall back to the simulator");
    let message = error.to_string();
    assert!(message.contains("integrations[0].url"), "{message}");
    // Its password file (secrets/servicenow-password) is not there either.
    assert!(
        message.contains("integrations[0].auth.password_file"),
        "{message}"
    );
}

#[test]
fn the_fetcher_reaches_the_simulator_it_waits_for() {
    let rendered = with_defaults();
    let config = loaded(rendered, "fetcher");
    let (host, port) = host_and_port(&config.integrations[0].url);
    assert_eq!(host, "servicenow-sim");
    let sim_port = argument(&command(service(rendered, "servicenow-sim")), "--port")
        .expect("the simulator's command names its --port");
    assert_eq!(port.to_string(), sim_port);
}

#[test]
fn sei_local_accepts_the_sinks_target_and_credentials() {
    let rendered = with_defaults();
    let config = loaded(rendered, "sink");
    let sei = config.sei.expect("the sink has an SEI target");
    let (host, port) = host_and_port(&sei.url);
    assert_eq!(host, "sei-local");
    let sei_local = service(rendered, "sei-local");
    let listen = argument(&command(sei_local), "--listen").expect("sei-local names --listen");
    assert_eq!(host_and_port(&listen).1, port);
    let accepted = environment(sei_local)
        .remove("SEI_LOCAL_API_KEYS")
        .expect("sei-local gets its keys from SEI_LOCAL_API_KEYS");
    let expected = format!("{}={}", sei.tenant, sei.api_key.expose_secret());
    assert!(
        accepted.split(',').any(|entry| entry == expected),
        "sei-local does not accept the sink's tenant and key"
    );
}

#[test]
fn every_stage_reaches_kafka_on_an_advertised_listener() {
    let rendered = with_defaults();
    let advertised = environment(service(rendered, "kafka"))
        .remove("KAFKA_ADVERTISED_LISTENERS")
        .unwrap_or_default();
    for name in ["fetcher", "normalizer", "sink"] {
        let config = loaded(rendered, name);
        for server in config.kafka.bootstrap_servers.split(',') {
            assert!(
                advertised
                    .split(',')
                    .any(|listener| listener.ends_with(&format!("://{server}"))),
                "{name} uses {server}, which Kafka does not advertise ({advertised})"
            );
        }
    }
}

/// One `kafka-topics.sh --create` call as the stand-in recorded it.
#[derive(Debug)]
struct CreatedTopic {
    bootstrap: String,
    partitions: u32,
    replication: u32,
    configs: Vec<String>,
    if_not_exists: bool,
}

/// Runs the kafka-topics service's script against a stand-in `kafka-topics.sh` that records
/// its arguments, with the service's environment.
fn run_topic_script() -> BTreeMap<String, CreatedTopic> {
    let topics = service(with_defaults(), "kafka-topics");
    let command = command(topics);
    let script_target = command.last().expect("kafka-topics has a command");
    let (script, _) = mounts(topics)
        .into_iter()
        .find(|(_, target)| target == script_target)
        .unwrap_or_else(|| panic!("kafka-topics runs {script_target}, which is not mounted"));

    let scratch = tempfile::tempdir().unwrap();
    let calls = scratch.path().join("calls");
    let stand_in = scratch.path().join("kafka-topics.sh");
    std::fs::write(
        &stand_in,
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$CALLS\"\n",
    )
    .unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg("chmod +x \"$0\" && exec bash \"$1\"")
        .arg(&stand_in)
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(environment(topics))
        .env("KAFKA_TOPICS", &stand_in)
        .env("CALLS", &calls)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut created = BTreeMap::new();
    for line in std::fs::read_to_string(&calls).unwrap().lines() {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let value =
            |flag: &str| argument(&args, flag).unwrap_or_else(|| panic!("no {flag} in `{line}`"));
        let configs = args
            .iter()
            .enumerate()
            .filter(|(_, arg)| *arg == "--config")
            .filter_map(|(index, _)| args.get(index + 1).cloned())
            .collect();
        let topic = CreatedTopic {
            bootstrap: value("--bootstrap-server"),
            partitions: value("--partitions").parse().unwrap(),
            replication: value("--replication-factor").parse().unwrap(),
            configs,
            if_not_exists: args.iter().any(|arg| arg == "--if-not-exists"),
        };
        assert!(
            args.iter().any(|arg| arg == "--create"),
            "`{line}` does not create"
        );
        created.insert(value("--topic"), topic);
    }
    created
}

#[test]
fn kafka_topics_creates_every_topic_the_stages_use_with_their_settings() {
    let created = run_topic_script();
    let config = loaded(with_defaults(), "sink");
    let names = TopicNames::new(config.kafka.topic_prefix.clone()).unwrap();
    let topic_env = environment(service(with_defaults(), "kafka-topics"));
    assert_eq!(
        topic_env
            .get("TOPIC_PREFIX")
            .map(String::as_str)
            .unwrap_or_default(),
        config.kafka.topic_prefix
    );

    let raw: Vec<String> = RAW_TABLES
        .iter()
        .map(|table| names.raw(table).unwrap())
        .collect();
    let entities: Vec<String> = Entity::ALL
        .iter()
        .map(|entity| names.entity(*entity))
        .collect();
    let coordination = format!("{}{COORDINATION_TOPIC}", config.kafka.topic_prefix);
    let mut expected: BTreeSet<String> = raw.iter().chain(&entities).cloned().collect();
    expected.extend([
        names.checkpoints(),
        names.dlq(),
        names.fetcher_dlq(),
        coordination.clone(),
    ]);
    assert_eq!(created.keys().cloned().collect::<BTreeSet<_>>(), expected);

    let compacted = |name: &str| {
        created[name]
            .configs
            .iter()
            .any(|c| c == "cleanup.policy=compact")
    };
    for name in &raw {
        assert_eq!(
            created[name].partitions, config.fetcher.raw_topic_partitions as u32,
            "{name}"
        );
        assert!(
            compacted(name),
            "{name} keeps the newest version of each record"
        );
    }
    assert_eq!(
        created[&names.checkpoints()].partitions,
        CHECKPOINT_PARTITIONS
    );
    assert!(compacted(&names.checkpoints()), "checkpoints are compacted");
    assert_eq!(
        created[&coordination].partitions,
        config.fetcher.coordination_partitions as u32
    );
    for name in entities.iter().chain([&names.dlq()]) {
        assert_eq!(
            created[name].partitions, config.sink.topic_partitions as u32,
            "{name}"
        );
        assert_eq!(
            created[name].partitions, config.normalizer.topic_partitions as u32,
            "{name}"
        );
    }
    for name in &entities {
        assert!(
            compacted(name),
            "{name} is compacted, as the normalizer creates it"
        );
    }
    assert!(!compacted(&names.dlq()), "the DLQ keeps every failure");
    let fetcher_dlq = &created[&names.fetcher_dlq()];
    assert_eq!(fetcher_dlq.partitions, 3, "as the fetcher creates it");
    assert!(
        fetcher_dlq
            .configs
            .iter()
            .any(|c| c == "retention.ms=1209600000"),
        "the fetcher DLQ is kept 14 days, as the fetcher creates it"
    );

    for (name, topic) in &created {
        assert!(
            topic.if_not_exists,
            "{name}: existing topics must be left alone"
        );
        assert_eq!(topic.bootstrap, config.kafka.bootstrap_servers, "{name}");
        assert_eq!(
            topic.replication, config.fetcher.replication_factor as u32,
            "{name}"
        );
        assert_eq!(
            topic.replication, config.sink.replication_factor as u32,
            "{name}"
        );
        assert_eq!(
            topic.replication, config.normalizer.replication_factor as u32,
            "{name}"
        );
    }
}

#[test]
fn kafka_topics_gives_every_topic_the_configs_the_stages_would_create_it_with() {
    use nowstream_bus::{TopicSpec, topic_configs};

    let created = run_topic_script();
    let config = loaded(with_defaults(), "sink");
    let names = TopicNames::new(config.kafka.topic_prefix.clone()).unwrap();
    let mut specs: Vec<TopicSpec> = RAW_TABLES
        .iter()
        .map(|table| names.raw(table).unwrap())
        .chain(Entity::ALL.iter().map(|entity| names.entity(*entity)))
        .chain([names.checkpoints()])
        .map(|name| TopicSpec::compacted(name, 1))
        .collect();
    specs.extend(
        [names.dlq(), names.fetcher_dlq()]
            .into_iter()
            .map(|name| TopicSpec::dead_letters(name, 1)),
    );
    specs.push(TopicSpec::new(
        format!("{}{COORDINATION_TOPIC}", config.kafka.topic_prefix),
        1,
    ));
    assert_eq!(specs.len(), created.len(), "one spec per created topic");
    for spec in specs {
        let topic = &created[&spec.name];
        let spec = spec.with_replication_factor(topic.replication as i32);
        let expected: BTreeSet<String> = topic_configs(&config.kafka, &spec)
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let given: BTreeSet<String> = topic.configs.iter().cloned().collect();
        assert_eq!(given, expected, "{}", spec.name);
    }
}
