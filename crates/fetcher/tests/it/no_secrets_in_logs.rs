//! Even at `RUST_LOG=trace`, with JSON logs, nothing the fetcher writes contains a password, a
//! client secret or an OAuth token — through a full backfill, token refreshes and failed logins.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{RawReader, Setup, basic_auth, oauth_auth, sim_config, sim_records, spawn_fetcher};
use nowstream_model::RecordOp;
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD,
    DEFAULT_INTEGRATION_USER, Fault, FaultRule, RunningSim, Simulator,
};
use nowstream_testkit::{KafkaBroker, StageProcess, unique};
use serde_json::json;

/// Length of the tokens the simulator issues (random alphanumerics).
const SIM_TOKEN_LENGTH: usize = 64;

/// `user:password` as an HTTP basic `Authorization` header carries it.
fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Every run of ASCII letters and digits at least as long as a simulator token: an access or
/// refresh token the test could not read from the simulator would show up as one.
fn token_shaped_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|run| run.len() >= SIM_TOKEN_LENGTH)
        .collect()
}

/// Asserts that `output` contains none of `secrets`, raw or as a basic-auth header, and
/// nothing token-shaped.
fn assert_no_secret(output: &str, secrets: &[String], what: &str) {
    for secret in secrets {
        assert!(
            !output.contains(secret.as_str()),
            "{what}: the log contains {secret:?}"
        );
    }
    let runs = token_shaped_runs(output);
    assert!(
        runs.is_empty(),
        "{what}: the log contains token-shaped strings {runs:?}"
    );
}

/// A token response for the integration user: (access token, refresh token).
async fn login(sim: &RunningSim) -> (String, String) {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/oauth_token.do", sim.base_url()))
        .form(&[
            ("grant_type", "password"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("username", DEFAULT_INTEGRATION_USER),
            ("password", DEFAULT_INTEGRATION_PASSWORD),
        ])
        .send()
        .await
        .expect("token request")
        .error_for_status()
        .expect("token granted")
        .json()
        .await
        .expect("token response");
    let field = |name: &str| response[name].as_str().expect("token field").to_owned();
    (field("access_token"), field("refresh_token"))
}

fn write_token(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("refresh_token");
    std::fs::write(&path, token).expect("token file written");
    path
}

/// The secrets every run must keep out of its logs.
fn known_secrets(extra: &[&str]) -> Vec<String> {
    let mut secrets = vec![
        DEFAULT_INTEGRATION_PASSWORD.to_owned(),
        DEFAULT_CLIENT_SECRET.to_owned(),
        basic_header(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD),
        basic_header(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    ];
    for secret in extra {
        secrets.push((*secret).to_owned());
        secrets.push(basic_header(DEFAULT_INTEGRATION_USER, secret));
        secrets.push(basic_header(DEFAULT_CLIENT_ID, secret));
    }
    secrets
}

async fn wait_for_backfill(reader: &mut RawReader, sim: &RunningSim, fetcher: &StageProcess) {
    let complete = reader
        .read_all_of(&sim_records(sim), Duration::from_secs(180))
        .await;
    assert!(
        complete,
        "backfill incomplete; fetcher output ends:\n{}",
        tail(&fetcher.text())
    );
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test]
async fn the_checks_would_see_a_leaked_token_or_basic_auth_header() {
    let sim = Simulator::start(sim_config(1, 1, 1, 0))
        .await
        .expect("simulator starts");
    let (access_token, refresh_token) = login(&sim).await;
    assert_eq!(
        token_shaped_runs(&format!("{{\"token\":\"{access_token}\"}}")),
        [access_token.as_str()]
    );
    assert_eq!(
        token_shaped_runs(&format!("Bearer {refresh_token}\n")),
        [refresh_token.as_str()]
    );
    let header = format!(
        "authorization: Basic {}",
        basic_header(DEFAULT_INTEGRATION_USER, DEFAULT_INTEGRATION_PASSWORD)
    );
    let leaked =
        std::panic::catch_unwind(|| assert_no_secret(&header, &known_secrets(&[]), "self-check"));
    assert!(
        leaked.is_err(),
        "a basic-auth header is recognised as a leak"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_backfills_with_token_refreshes_log_no_secret_even_at_trace_level() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let mut config = sim_config(100, 20, 10, 0);
    // Spaced so that no request meets two expiries (one on its first try, one on the retry
    // with the renewed token): that is reported as wrong credentials, by design.
    config.faults = vec![FaultRule::every_nth(12, Fault::ExpireToken).on_path("/api/now/table/")];
    let sim = Simulator::start(config).await.expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let (test_access_token, refresh_token) = login(&sim).await;
    let secrets = known_secrets(&[&test_access_token, &refresh_token]);

    // Password grant: tokens expire early (401, then a new token), and then all at once.
    let prefix = format!("{}.", unique("secrets"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.json_logs = true;
    // One stream per table: the expiries are spaced for requests that follow each other, and
    // a sliced backfill's concurrent pages could meet two of them in one request.
    setup.fetcher = "page_size = 10\nbackfill_slices = 1".to_owned();
    setup.auth = oauth_auth(
        DEFAULT_CLIENT_SECRET,
        &format!(
            "grant = \"password\"\nusername = \"{DEFAULT_INTEGRATION_USER}\"\npassword = \"{DEFAULT_INTEGRATION_PASSWORD}\""
        ),
    );
    let mut fetcher = spawn_fetcher(&setup.write(dir.path(), "password.toml"), "trace");
    let mut reader = RawReader::new(broker, &prefix);
    wait_for_backfill(&mut reader, &sim, &fetcher).await;
    sim.expire_all_tokens();
    let created = sim
        .insert("incident", json!({"short_description": "after expiry"}))
        .expect("insert");
    let created_id = created["sys_id"].clone();
    assert!(
        reader
            .read_until(Duration::from_secs(60), |seen| seen
                .ids("incident", RecordOp::Upsert)
                .contains(&created_id))
            .await,
        "polling goes on with a new token"
    );
    fetcher.kill();
    let output = fetcher.text();
    assert!(
        output
            .lines()
            .filter(|line| line.contains("\"TRACE\""))
            .count()
            > 100,
        "the run logged at trace level:\n{}",
        tail(&output)
    );
    assert!(sim.faults()[0].fired >= 2, "tokens expired during the run");
    assert_no_secret(&output, &secrets, "password grant");

    // Refresh-token grant from a file: the refresh token itself must stay out of the logs.
    let prefix = format!("{}.", unique("secrets"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.json_logs = true;
    // One stream per table, as above: with four slices at once a loaded machine met two expiries
    // in one request often enough to back the units off past the deadline.
    setup.fetcher = "page_size = 20\nbackfill_slices = 1".to_owned();
    let token_file = write_token(dir.path(), &refresh_token);
    setup.auth = oauth_auth(
        DEFAULT_CLIENT_SECRET,
        &format!(
            "grant = \"refresh_token\"\nrefresh_token_file = \"{}\"",
            token_file.display()
        ),
    );
    let mut fetcher = spawn_fetcher(&setup.write(dir.path(), "refresh.toml"), "trace");
    let mut reader = RawReader::new(broker, &prefix);
    wait_for_backfill(&mut reader, &sim, &fetcher).await;
    fetcher.kill();
    assert_no_secret(&fetcher.text(), &secrets, "refresh-token grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_log_no_secret_even_at_trace_level() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = Simulator::start(sim_config(20, 5, 5, 0))
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let wrong_password = "wrong-password-5f3a";
    let wrong_secret = "wrong-client-secret-9c1d";
    // Kafka client properties may hold secrets too (SASL passwords); they are handed to
    // librdkafka and must not be echoed by it or by the fetcher.
    let kafka_secret = "kafka-sasl-secret-4e2b";
    let secrets = known_secrets(&[wrong_password, wrong_secret, kafka_secret]);

    let attempts = [
        ("basic", basic_auth(wrong_password)),
        (
            "oauth-password",
            oauth_auth(
                DEFAULT_CLIENT_SECRET,
                &format!(
                    "grant = \"password\"\nusername = \"{DEFAULT_INTEGRATION_USER}\"\npassword = \"{wrong_password}\""
                ),
            ),
        ),
        (
            "oauth-client",
            oauth_auth(wrong_secret, "grant = \"client_credentials\""),
        ),
    ];
    for (name, auth) in attempts {
        let mut setup = Setup::new(broker, &sim, &format!("{}.", unique("secrets")));
        setup.json_logs = true;
        setup.auth = auth;
        setup.kafka_properties = format!("\"sasl.password\" = \"{kafka_secret}\"");
        let mut fetcher = spawn_fetcher(&setup.write(dir.path(), &format!("{name}.toml")), "trace");
        let status = fetcher
            .wait_exit(Duration::from_secs(120))
            .await
            .unwrap_or_else(|| panic!("{name}: the fetcher kept running with wrong credentials"));
        assert!(!status.success(), "{name}: exit status {status}");
        let output = fetcher.text();
        assert!(
            output.contains("401"),
            "{name}: the failure is reported:\n{}",
            tail(&output)
        );
        assert_no_secret(&output, &secrets, name);
    }
}
