//! Helpers shared by the integration tests: a simulator on 127.0.0.1:0 and a reqwest client.
#![allow(dead_code)]

use nowstream_servicenow_sim::{
    DEFAULT_INTEGRATION_PASSWORD, DEFAULT_INTEGRATION_USER, GeneratorConfig, RunningSim, SimConfig,
    Simulator,
};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

/// A config with small data so tests start fast.
pub fn small_config() -> SimConfig {
    SimConfig {
        data: GeneratorConfig {
            incidents: 120,
            change_requests: 30,
            users: 15,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    }
}

pub async fn start(config: SimConfig) -> RunningSim {
    Simulator::start(config).await.expect("simulator starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Authenticate as the default integration user.
pub fn as_integration(request: RequestBuilder) -> RequestBuilder {
    request.basic_auth(DEFAULT_INTEGRATION_USER, Some(DEFAULT_INTEGRATION_PASSWORD))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn rows(&self) -> &Vec<Value> {
        self.body["result"].as_array().expect("result array")
    }
}

pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET {base}/api/now/table/{path_and_query}` as the integration user.
pub async fn get(sim: &RunningSim, path_and_query: &str) -> Reply {
    send(as_integration(client().get(format!(
        "{}/api/now/table/{path_and_query}",
        sim.base_url()
    ))))
    .await
}
