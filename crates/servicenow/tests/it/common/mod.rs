//! Shared setup: a ServiceNow simulator on 127.0.0.1:0 and clients pointed at it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nowstream_servicenow::client::{
    Auth, Client, ClientConfig, KeysetScan, OAuthGrant, RetryEvent, RetryObserver, ScanPage,
};
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD,
    DEFAULT_INTEGRATION_USER, GeneratorConfig, RunningSim, SimConfig, Simulator,
};
use secrecy::SecretString;
use serde_json::{Map, Value};
use url::Url;

pub const INCIDENT_PATH: &str = "/api/now/table/incident";
pub const TOKEN_PATH: &str = "/oauth_token.do";

/// A simulator config with `incidents` incidents, the first `same_second` of them updated
/// in the same second.
pub fn sim_config(incidents: usize, same_second: usize) -> SimConfig {
    SimConfig {
        data: GeneratorConfig {
            incidents,
            same_second,
            change_requests: 5,
            users: 5,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    }
}

pub async fn start(config: SimConfig) -> RunningSim {
    Simulator::start(config).await.expect("simulator starts")
}

fn base(sim: &RunningSim) -> Url {
    Url::parse(sim.base_url()).expect("simulator URL")
}

/// Test-friendly settings: plain http to the simulator, millisecond backoff.
pub fn config_with(sim: &RunningSim, auth: Auth) -> ClientConfig {
    let mut config = ClientConfig::new(base(sim), auth);
    config.allow_http = true;
    config.initial_backoff = Duration::from_millis(5);
    config.max_backoff = Duration::from_millis(50);
    config.request_timeout = Duration::from_secs(20);
    config.max_retries = 4;
    config
}

pub fn basic_auth(password: &str) -> Auth {
    Auth::Basic {
        username: DEFAULT_INTEGRATION_USER.to_owned(),
        password: SecretString::from(password.to_owned()),
    }
}

pub fn basic_config(sim: &RunningSim) -> ClientConfig {
    config_with(sim, basic_auth(DEFAULT_INTEGRATION_PASSWORD))
}

pub fn oauth_auth(grant: OAuthGrant) -> Auth {
    Auth::OAuth {
        client_id: DEFAULT_CLIENT_ID.to_owned(),
        client_secret: SecretString::from(DEFAULT_CLIENT_SECRET),
        grant,
        token_url: None,
        scope: None,
    }
}

pub fn password_grant(password: &str) -> OAuthGrant {
    OAuthGrant::Password {
        username: DEFAULT_INTEGRATION_USER.to_owned(),
        password: SecretString::from(password.to_owned()),
    }
}

pub fn oauth_config(sim: &RunningSim, grant: OAuthGrant) -> ClientConfig {
    config_with(sim, oauth_auth(grant))
}

/// Retry events a client reported.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<RetryEvent>>>);

impl Events {
    pub fn attach(config: &mut ClientConfig) -> Events {
        let events = Events::default();
        let sink = events.0.clone();
        config.retry_observer = Some(RetryObserver::new(move |event| {
            sink.lock().unwrap().push(event.clone());
        }));
        events
    }

    pub fn all(&self) -> Vec<RetryEvent> {
        self.0.lock().unwrap().clone()
    }
}

pub fn client(config: ClientConfig) -> Client {
    Client::new(config).expect("client builds")
}

/// Every page of a scan.
pub async fn drain(mut scan: KeysetScan) -> Vec<ScanPage> {
    let mut pages = Vec::new();
    while let Some(page) = scan.next_page().await.expect("scan page") {
        assert!(!page.records.is_empty(), "scans never yield empty pages");
        pages.push(page);
    }
    assert!(scan.is_finished());
    pages
}

pub fn value<'a>(record: &'a Map<String, Value>, field: &str) -> &'a str {
    record[field]["value"]
        .as_str()
        .expect("display_value=all field")
}

/// Every record of `pages`, in scan order, read into maps.
pub fn maps(pages: &[ScanPage]) -> Vec<Map<String, Value>> {
    pages
        .iter()
        .flat_map(|page| page.records.iter())
        .map(|row| row.to_map().expect("a record of fields"))
        .collect()
}

/// sys_ids of scanned records, asserting none came twice.
pub fn unique_sys_ids(pages: &[ScanPage]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for record in maps(pages) {
        {
            let sys_id = value(&record, "sys_id").to_owned();
            assert!(seen.insert(sys_id.clone()), "{sys_id} returned twice");
        }
    }
    seen
}

/// sys_ids stored in the simulator's table.
pub fn stored_sys_ids(sim: &RunningSim, table: &str) -> BTreeSet<String> {
    sim.snapshot(table)
        .expect("table exists")
        .into_iter()
        .map(|r| r["sys_id"].clone())
        .collect()
}

/// Requests the simulator saw for `path`.
pub fn requests_to(sim: &RunningSim, path: &str) -> u64 {
    sim.stats().requests_to(path)
}
