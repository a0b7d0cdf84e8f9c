//! Against an OAuth provider that rotates refresh tokens (a new one with every renewal, the old
//! one revoked), the fetcher writes each new refresh token back to `refresh_token_file`, so a
//! fetcher started later begins from a token that still works.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{RawReader, Setup, oauth_auth, sim_config, sim_records, spawn_fetcher};
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD,
    DEFAULT_INTEGRATION_USER, Fault, FaultRule, RunningSim, Simulator,
};
use nowstream_testkit::{KafkaBroker, StageProcess, unique};

const TOKEN_PATH: &str = "/oauth_token.do";
const STORED: &str = "stored the rotated OAuth refresh token";

/// Posts a grant to the simulator's token endpoint; returns the status and the JSON body.
async fn token_request(sim: &RunningSim, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut form = form.to_vec();
    form.extend([
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ]);
    let response = reqwest::Client::new()
        .post(format!("{}{TOKEN_PATH}", sim.base_url()))
        .form(&form)
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// A refresh token for the integration user, as `oauth login` would end up with one.
async fn first_refresh_token(sim: &RunningSim) -> String {
    let (status, body) = token_request(
        sim,
        &[
            ("grant_type", "password"),
            ("username", DEFAULT_INTEGRATION_USER),
            ("password", DEFAULT_INTEGRATION_PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// Whether the simulator accepts `refresh_token`. On a rotating simulator an accepted token is
/// used up, so this is only asked about tokens nobody needs afterwards.
async fn refresh_grant_status(sim: &RunningSim, refresh_token: &str) -> u16 {
    token_request(
        sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
    .0
}

fn file_mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("token file exists")
        .permissions()
        .mode()
        & 0o777
}

fn read_token(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("token file reads")
        .trim()
        .to_owned()
}

/// One fetcher process on its own topics, authenticating with the token in `token_file`.
struct Run {
    fetcher: StageProcess,
    reader: RawReader,
}

impl Run {
    fn start(broker: &KafkaBroker, sim: &RunningSim, dir: &Path, token_file: &Path) -> Run {
        let prefix = format!("{}.", unique("rotation"));
        let mut setup = Setup::new(broker, sim, &prefix);
        setup.auth = oauth_auth(
            DEFAULT_CLIENT_SECRET,
            &format!(
                "grant = \"refresh_token\"\nrefresh_token_file = \"{}\"",
                token_file.display()
            ),
        );
        // One stream per table: the expiries are spaced for requests that follow each other,
        // and a sliced backfill's concurrent pages could meet two of them in one request.
        setup.fetcher = "page_size = 10\nbackfill_slices = 1".to_owned();
        setup.json_logs = true;
        let config = setup.write(dir, &format!("{}.toml", prefix.trim_end_matches('.')));
        Run {
            fetcher: spawn_fetcher(&config, "info"),
            reader: RawReader::new(broker, &prefix),
        }
    }

    /// Every incident, change request and user reaches this run's raw topics.
    async fn assert_full_backfill(&mut self, sim: &RunningSim) {
        let complete = self
            .reader
            .read_all_of(&sim_records(sim), Duration::from_secs(180))
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
    }

    /// How many rotated refresh tokens the fetcher reported storing.
    fn stored(&self) -> usize {
        self.fetcher
            .events()
            .iter()
            .filter(|event| event["message"] == STORED)
            .count()
    }

    /// Waits up to 60 s until `done` holds for the number of stored tokens.
    async fn wait_stored(&self, done: impl Fn(usize) -> bool) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self.stored()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stored()
    }

    /// Warnings and errors the fetcher itself logged.
    fn complaints(&self) -> Vec<serde_json::Value> {
        self.fetcher
            .events()
            .into_iter()
            .filter(|event| event["level"] == "WARN" || event["level"] == "ERROR")
            .filter(|event| {
                event["target"]
                    .as_str()
                    .is_some_and(|target| target.starts_with("nowstream"))
            })
            .collect()
    }

    async fn stop(&mut self) {
        self.fetcher.terminate();
        assert!(
            self.fetcher
                .wait_exit(Duration::from_secs(60))
                .await
                .is_some(),
            "the fetcher stops on SIGTERM"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_written_back_so_a_restarted_fetcher_can_authenticate() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let mut config = sim_config(150, 30, 20, 0);
    config.rotate_refresh_tokens = true;
    // Spaced so that no request meets two expiries (see oauth_backfill.rs).
    config.faults = vec![FaultRule::every_nth(12, Fault::ExpireToken).on_path("/api/now/table/")];
    let sim = Simulator::start(config).await.expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("refresh_token");
    let original = first_refresh_token(&sim).await;
    // Group-readable, as an operator's copy might be: the write-back must make it private.
    std::fs::write(&token_file, format!("{original}\n")).expect("token file written");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o640))
        .expect("mode set");

    let mut first = Run::start(broker, &sim, dir.path(), &token_file);
    first.assert_full_backfill(&sim).await;
    // The first token and at least two renewals, every one of them a rotation.
    let stored = first.wait_stored(|stored| stored >= 3).await;
    assert!(
        stored >= 3,
        "the fetcher renewed by refresh token at least twice ({stored} tokens stored):\n{}",
        first.fetcher.text()
    );
    // No more expiries; then every token the fetcher was issued (all but the test's own one)
    // must have reached the file before the fetcher is stopped.
    sim.set_faults(Vec::new());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let issued = || sim.stats().count(TOKEN_PATH, 200) as usize - 1;
    let stored = first.wait_stored(|stored| stored == issued()).await;
    assert_eq!(stored, issued(), "each rotated token was stored");
    first.stop().await;
    assert_eq!(first.complaints(), Vec::<serde_json::Value>::new());
    assert_eq!(
        sim.stats().count(TOKEN_PATH, 401),
        0,
        "no token was refused"
    );

    let newest = read_token(&token_file);
    assert_ne!(newest, original, "the file holds a rotated token");
    assert_eq!(file_mode(&token_file), 0o600, "the file is private");
    assert!(
        !first.fetcher.text().contains(&newest) && !first.fetcher.text().contains(&original),
        "no refresh token reaches the log"
    );
    // What a restart without the write-back would have started from is dead.
    assert_eq!(refresh_grant_status(&sim, &original).await, 401);

    let mut second = Run::start(broker, &sim, dir.path(), &token_file);
    second.assert_full_backfill(&sim).await;
    assert_eq!(
        sim.stats().count(TOKEN_PATH, 401),
        1,
        "only the test's probe of the original token was refused:\n{}",
        second.fetcher.text()
    );
    assert!(
        second.wait_stored(|stored| stored >= 1).await >= 1,
        "the second run's first renewal rotated and was stored too"
    );
    second.stop().await;
    assert_eq!(second.complaints(), Vec::<serde_json::Value>::new());
    let latest = read_token(&token_file);
    assert_ne!(latest, newest);
    assert_eq!(file_mode(&token_file), 0o600);
    assert_eq!(
        refresh_grant_status(&sim, &latest).await,
        200,
        "the file holds the one valid token"
    );
}
