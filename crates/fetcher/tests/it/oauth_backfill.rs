//! The binary backfills over OAuth with each grant type, and access tokens that expire in the
//! middle of a backfill are replaced without the units noticing.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{RawReader, Setup, oauth_auth, sim_config, sim_records, spawn_fetcher};
use nowstream_model::RecordOp;
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD,
    DEFAULT_INTEGRATION_USER, Fault, FaultRule, RunningSim, SimConfig, Simulator,
};
use nowstream_testkit::{KafkaBroker, StageProcess, unique};
use serde_json::json;

const TOKEN_PATH: &str = "/oauth_token.do";

fn password_grant() -> String {
    format!(
        "grant = \"password\"\nusername = \"{DEFAULT_INTEGRATION_USER}\"\npassword = \"{DEFAULT_INTEGRATION_PASSWORD}\""
    )
}

/// A refresh token for the integration user, obtained the way `oauth login` would end up
/// with one, written to `dir/refresh_token`.
async fn refresh_token_file(sim: &RunningSim, dir: &Path) -> std::path::PathBuf {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{}{TOKEN_PATH}", sim.base_url()))
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
    let token = response["refresh_token"].as_str().expect("a refresh token");
    let path = dir.join("refresh_token");
    std::fs::write(&path, format!("{token}\n")).expect("token file written");
    path
}

struct Run {
    _broker: &'static KafkaBroker,
    sim: RunningSim,
    _dir: tempfile::TempDir,
    fetcher: StageProcess,
    reader: RawReader,
}

/// Starts the binary with OAuth `auth` lines (built once the simulator and a temp dir exist).
async fn start(sim: SimConfig, auth: impl AsyncFnOnce(&RunningSim, &Path) -> String) -> Run {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = Simulator::start(sim).await.expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!("{}.", unique("oauth"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.auth = auth(&sim, dir.path()).await;
    // One stream per table: the expiries are spaced for requests that follow each other, and
    // a sliced backfill's concurrent pages could meet two of them in one request.
    setup.fetcher = "page_size = 10\nbackfill_slices = 1".to_owned();
    setup.json_logs = true;
    let config = setup.write(dir.path(), "fetcher.toml");
    let fetcher = spawn_fetcher(&config, "info");
    let reader = RawReader::new(broker, &prefix);
    Run {
        _broker: broker,
        sim,
        _dir: dir,
        fetcher,
        reader,
    }
}

impl Run {
    /// Every incident, change request and user reaches the raw topics, and no unit had to
    /// start over (an expired token is the client's business, not a unit failure).
    async fn assert_full_backfill(&mut self) {
        let complete = self
            .reader
            .read_all_of(&sim_records(&self.sim), Duration::from_secs(180))
            .await;
        assert!(
            complete,
            "backfill incomplete; fetcher output:\n{}",
            self.fetcher.text()
        );
        assert!(
            self.fetcher.is_running(),
            "the fetcher still runs:\n{}",
            self.fetcher.text()
        );
        self.assert_no_unit_failed();
    }

    fn assert_no_unit_failed(&self) {
        let started = self
            .fetcher
            .events()
            .iter()
            .filter(|event| event["message"] == "starting backfill")
            .count();
        assert_eq!(
            started, 5,
            "each unit started once (and the JSON log is read)"
        );
        let failures: Vec<serde_json::Value> = self
            .fetcher
            .events()
            .into_iter()
            .filter(|event| event["level"] == "WARN" || event["level"] == "ERROR")
            .filter(|event| {
                event["target"]
                    .as_str()
                    .is_some_and(|target| target.starts_with("nowstream"))
            })
            .collect();
        assert!(failures.is_empty(), "units failed: {failures:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_grant_backfills_fully_and_replaces_tokens_that_expire_mid_backfill() {
    let mut sim = sim_config(300, 60, 30, 0);
    // Spaced so that no request meets two expiries (one on its first try, one on the retry
    // with the renewed token): that is reported as wrong credentials, by design.
    sim.faults = vec![FaultRule::every_nth(12, Fault::ExpireToken).on_path("/api/now/table/")];
    let mut run = start(sim, async |_, _| {
        oauth_auth(DEFAULT_CLIENT_SECRET, &password_grant())
    })
    .await;
    run.assert_full_backfill().await;
    let expired = run.sim.faults()[0].fired;
    assert!(
        expired >= 2,
        "tokens expired {expired} times during the backfill"
    );
    assert!(
        run.sim.stats().count(TOKEN_PATH, 200) >= 2,
        "new tokens were issued: {:?}",
        run.sim.stats().by_path.get(TOKEN_PATH)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_credentials_grant_backfills_fully_with_tokens_shorter_lived_than_the_backfill()
{
    let mut sim = sim_config(300, 60, 30, 0);
    // Tokens live 3 s; slow pages stretch the backfill over several lifetimes.
    sim.access_token_lifetime_secs = 3;
    sim.faults = vec![FaultRule::always(Fault::Latency { millis: 150 }).on_path("/api/now/table/")];
    let mut run = start(sim, async |_, _| {
        oauth_auth(DEFAULT_CLIENT_SECRET, "grant = \"client_credentials\"")
    })
    .await;
    run.assert_full_backfill().await;
    let issued = run.sim.stats().count(TOKEN_PATH, 200);
    assert!(
        issued >= 2,
        "tokens were renewed as they expired ({issued} issued)"
    );

    // Every token dies at once while the fetcher polls: the next poll gets a new one.
    run.sim.expire_all_tokens();
    let created = run
        .sim
        .insert(
            "incident",
            json!({"short_description": "after the tokens expired"}),
        )
        .expect("insert");
    let created_id = created["sys_id"].clone();
    let found = run
        .reader
        .read_until(Duration::from_secs(60), |seen| {
            seen.ids("incident", RecordOp::Upsert).contains(&created_id)
        })
        .await;
    assert!(
        found,
        "a record created after every token expired is published"
    );
    run.assert_no_unit_failed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_token_grant_from_a_token_file_backfills_fully() {
    let mut sim = sim_config(300, 60, 30, 0);
    sim.faults = vec![FaultRule::every_nth(12, Fault::ExpireToken).on_path("/api/now/table/")];
    let mut run = start(sim, async |sim, dir| {
        let file = refresh_token_file(sim, dir).await;
        oauth_auth(
            DEFAULT_CLIENT_SECRET,
            &format!(
                "grant = \"refresh_token\"\nrefresh_token_file = \"{}\"",
                file.display()
            ),
        )
    })
    .await;
    run.assert_full_backfill().await;
    assert!(
        run.sim.faults()[0].fired >= 2,
        "tokens expired during the backfill"
    );
    // One token for the test's own login, then the fetcher's first token and its renewals.
    assert!(run.sim.stats().count(TOKEN_PATH, 200) >= 3);
}
