//! A failing unit (integration × table) stays a local matter: ServiceNow refusing one table to
//! one integration, or refusing requests for a while, degrades that unit only; it backs off,
//! tries again, recovers by itself, and `/readyz` names it meanwhile.

use crate::common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{RawReader, Setup, sim_config, sim_records};
use nowstream_fetcher::FetchError;
use nowstream_runtime::{Config, Format, Health};
use nowstream_servicenow_sim::{Fault, FaultRule, RunningSim, SimUser, Simulator};
use nowstream_testkit::{KafkaBroker, unique};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CHANGE_REQUESTS: &str = "/api/now/table/change_request";
const INCIDENTS: &str = "/api/now/table/incident";

/// Fast pauses so that the test sees several tries of a refused unit.
const FAST_BACKOFF: &str = "page_size = 50\nunit_backoff_min = \"1s\"\nunit_backoff_max = \"4s\"";

/// A second integration on the same simulator, as the user `restricted`.
fn second_integration(sim: &RunningSim) -> String {
    format!(
        r#"
[[integrations]]
id = "4712"
url = "{url}"
allow_http = true
[integrations.auth]
type = "basic"
username = "restricted"
password = "restricted-password"
"#,
        url = sim.base_url()
    )
}

/// The fetcher running in-process on `config`, with the health state `/readyz` would serve.
struct Running {
    health: Health,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), FetchError>>,
}

impl Running {
    fn start(config: Config) -> Self {
        let health = Health::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(nowstream_fetcher::run(
            config,
            health.clone(),
            shutdown.clone(),
        ));
        Self {
            health,
            shutdown,
            task,
        }
    }

    /// Checks the fetcher is still running, stops it and checks it ended well.
    async fn stop(self) {
        assert!(!self.task.is_finished(), "the fetcher kept running");
        self.shutdown.cancel();
        self.task
            .await
            .expect("fetcher task")
            .expect("the fetcher stops cleanly");
    }

    /// Records, every few milliseconds, the `/readyz` reason of every unit listed as degraded.
    fn watch_degraded(&self) -> Arc<Mutex<Vec<(String, String)>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let health = self.health.clone();
        let stop = self.shutdown.clone();
        let into = seen.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let readiness = health.readiness();
                into.lock().expect("lock").extend(
                    readiness
                        .degraded
                        .into_iter()
                        .map(|degraded| (degraded.component, degraded.reason)),
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_forbidden_to_one_integration_degrades_only_that_unit_and_every_other_record_arrives()
 {
    let mut restricted = SimUser::integration();
    restricted.user_name = "restricted".to_owned();
    restricted.password = "restricted-password".to_owned().into();
    restricted.denied_tables.insert("change_request".to_owned());
    let mut config = sim_config(200, 40, 20, 0);
    config.users = vec![SimUser::integration(), restricted, SimUser::admin()];
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = Simulator::start(config).await.expect("simulator starts");
    let prefix = format!("{}.", unique("isolation"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.fetcher = FAST_BACKOFF.to_owned();
    let text = setup.text() + &second_integration(&sim);
    let fetcher = Running::start(Config::parse(&text, Format::Toml).expect("valid config"));

    let expected = sim_records(&sim);
    let mut reader = RawReader::new(broker, &prefix);
    let all_arrived = reader
        .read_until(Duration::from_secs(180), |seen| {
            expected.iter().all(|(table, ids)| {
                ids.is_subset(&seen.upserted_for("4711", table))
                    && (*table == "change_request"
                        || ids.is_subset(&seen.upserted_for("4712", table)))
            })
        })
        .await;
    for (table, ids) in &expected {
        for integration in ["4711", "4712"] {
            if integration == "4712" && *table == "change_request" {
                continue;
            }
            let missing = ids
                .difference(&reader.seen.upserted_for(integration, table))
                .count();
            assert_eq!(
                missing,
                0,
                "{missing} of {} {table} records of integration {integration} never arrived",
                ids.len()
            );
        }
    }
    assert!(all_arrived);
    assert!(
        reader
            .seen
            .upserted_for("4712", "change_request")
            .is_empty(),
        "the forbidden table published nothing"
    );

    // The refused unit keeps trying (with pauses), and /readyz names it and why.
    let tries = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let tries = sim.stats().count(CHANGE_REQUESTS, 403);
            if tries >= 3 {
                return tries;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the refused unit tries again after its pauses");
    eprintln!("{tries} tries of the forbidden table");
    let readiness = fetcher.health.readiness();
    assert!(
        readiness.ready,
        "one degraded unit keeps the replica ready: {readiness:?}"
    );
    let degraded: Vec<&str> = readiness
        .degraded
        .iter()
        .map(|unit| unit.component.as_str())
        .collect();
    let refused = readiness
        .degraded
        .iter()
        .find(|unit| unit.component == "fetcher unit 4712:change_request")
        .unwrap_or_else(|| panic!("/readyz names the refused unit: {readiness:?}"));
    assert!(
        refused.reason.contains("403") && refused.reason.contains("degraded"),
        "the reason says 403: {}",
        refused.reason
    );
    assert!(
        !refused.reason.contains("restricted-password"),
        "no secret in /readyz"
    );
    for healthy in [
        "4711:incident",
        "4711:change_request",
        "4711:sys_user",
        "4712:incident",
        "4712:sys_user",
    ] {
        assert!(
            !degraded.contains(&format!("fetcher unit {healthy}").as_str()),
            "{healthy} is not degraded: {degraded:?}"
        );
    }
    fetcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_401_on_one_table_backs_that_unit_off_and_it_recovers_without_a_restart() {
    let mut config = sim_config(300, 60, 30, 0);
    config.faults = vec![FaultRule::next(3, Fault::Unauthorized).on_path(INCIDENTS)];
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = Simulator::start(config).await.expect("simulator starts");
    let prefix = format!("{}.", unique("passing401"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.fetcher = FAST_BACKOFF.to_owned();
    let fetcher = Running::start(setup.config());
    let degraded_seen = fetcher.watch_degraded();

    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(180))
        .await;
    assert_eq!(
        sim.faults()
            .iter()
            .map(|rule| rule.fired)
            .collect::<Vec<_>>(),
        [3],
        "the incident unit was refused three times"
    );
    assert_eq!(sim.stats().count(INCIDENTS, 401), 3);

    let seen = degraded_seen.lock().expect("lock").clone();
    let units: HashSet<&str> = seen.iter().map(|(unit, _)| unit.as_str()).collect();
    assert_eq!(
        units,
        HashSet::from(["fetcher unit 4711:incident"]),
        "only the refused unit was ever degraded"
    );
    assert!(
        seen.iter().any(|(_, reason)| reason.contains("401")),
        "/readyz said why: {seen:?}"
    );
    let readiness = fetcher.health.readiness();
    assert!(
        readiness.ready && readiness.degraded.is_empty(),
        "the unit recovered by itself: {readiness:?}"
    );
    fetcher.stop().await;
}
