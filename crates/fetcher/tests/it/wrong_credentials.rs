//! Wrong credentials stop the binary at once with an error an operator can act on, instead of
//! retrying against the instance (which would only lock the integration account).

use crate::common;

use std::time::Duration;

use common::{Setup, basic_auth, oauth_auth, spawn_fetcher, start_sim, table_api_requests};
use nowstream_servicenow_sim::{DEFAULT_INTEGRATION_PASSWORD, DEFAULT_INTEGRATION_USER};
use nowstream_testkit::{KafkaBroker, unique};

/// Few enough requests to be one per unit plus a token request or two: not a retry storm.
const A_HANDFUL: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_fetcher_with_an_error_naming_the_integration_and_401() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = start_sim(50, 10, 5, 0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut setup = Setup::new(broker, &sim, &format!("{}.", unique("creds")));
    setup.auth = basic_auth("not-the-password");
    let config = setup.write(dir.path(), "fetcher.toml");

    let mut fetcher = spawn_fetcher(&config, "info");
    let status = fetcher
        .wait_exit(Duration::from_secs(120))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the fetcher kept running with a wrong password:\n{}",
                fetcher.text()
            )
        });
    let output = fetcher.text();
    assert!(!status.success(), "exit status {status}:\n{output}");
    let report: String = output
        .lines()
        .skip_while(|line| !line.starts_with("Error:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        report.contains("4711"),
        "the error names the integration:\n{report}"
    );
    assert!(
        report.contains("401") && report.contains("authentication"),
        "the error says authentication failed (401):\n{report}"
    );
    assert!(
        !output.contains("not-the-password"),
        "the password is not echoed:\n{output}"
    );

    let requests = table_api_requests(&sim);
    assert!(
        (1..=A_HANDFUL).contains(&requests),
        "{requests} Table API requests with a wrong password: {:?}",
        sim.stats().by_path
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_oauth_client_secret_stops_the_fetcher_without_a_retry_storm() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = start_sim(50, 10, 5, 0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut setup = Setup::new(broker, &sim, &format!("{}.", unique("creds")));
    setup.auth = oauth_auth(
        "not-the-client-secret",
        &format!(
            "grant = \"password\"\nusername = \"{DEFAULT_INTEGRATION_USER}\"\npassword = \"{DEFAULT_INTEGRATION_PASSWORD}\""
        ),
    );
    let config = setup.write(dir.path(), "fetcher.toml");

    let mut fetcher = spawn_fetcher(&config, "info");
    let status = fetcher
        .wait_exit(Duration::from_secs(120))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the fetcher kept running with a wrong client secret:\n{}",
                fetcher.text()
            )
        });
    let output = fetcher.text();
    assert!(!status.success(), "exit status {status}:\n{output}");
    let report: String = output
        .lines()
        .skip_while(|line| !line.starts_with("Error:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        report.contains("4711"),
        "the error names the integration:\n{report}"
    );
    assert!(
        report.contains("401") && report.contains("OAuth"),
        "the error says the OAuth grant was refused (401):\n{report}"
    );
    for secret in ["not-the-client-secret", DEFAULT_INTEGRATION_PASSWORD] {
        assert!(
            !output.contains(secret),
            "{secret} is not echoed:\n{output}"
        );
    }

    let stats = sim.stats();
    let token_requests = stats.requests_to("/oauth_token.do");
    assert!(
        (1..=A_HANDFUL).contains(&token_requests),
        "{token_requests} token requests with a wrong client secret"
    );
    assert_eq!(
        table_api_requests(&sim),
        0,
        "no Table API request without a token"
    );
}
