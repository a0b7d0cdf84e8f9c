//! Shared set-up: a sei-local on 127.0.0.1:0 and a small client for its API.

#![allow(dead_code)]

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use nowstream_sei_local::{RunningSeiLocal, SeiLocal, SeiLocalConfig};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub const TENANT: &str = "acme";
pub const KEY: &str = "acme-secret-key";
pub const OTHER_TENANT: &str = "globex";
pub const OTHER_KEY: &str = "globex-secret-key";
pub const INTEGRATION: &str = "sn1";

/// Two tenants, in memory.
pub fn config() -> SeiLocalConfig {
    SeiLocalConfig::for_tenant(TENANT, KEY).with_api_key(OTHER_TENANT, OTHER_KEY)
}

pub async fn start() -> RunningSeiLocal {
    SeiLocal::start(config()).await.expect("sei-local starts")
}

/// A client acting as one tenant with its key.
#[derive(Debug, Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base_url: String,
    pub tenant: String,
    pub key: String,
}

impl Client {
    pub fn new(sei: &RunningSeiLocal) -> Self {
        Self::as_tenant(sei, TENANT, KEY)
    }

    pub fn as_tenant(sei: &RunningSeiLocal, tenant: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: sei.base_url().to_owned(),
            tenant: tenant.to_owned(),
            key: key.to_owned(),
        }
    }

    pub fn ingest_url(&self, entity: &str) -> String {
        format!(
            "{}/v1/ingest/servicenow/{INTEGRATION}/{entity}",
            self.base_url
        )
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("Authorization", format!("Apikey {}", self.key))
            .header("X-Tenant", &self.tenant)
    }

    /// POSTs a batch as plain JSON under `idempotency_key`.
    pub async fn ingest(&self, entity: &str, idempotency_key: &str, batch: &Value) -> Response {
        self.authorized(self.http.post(self.ingest_url(entity)))
            .header("Idempotency-Key", idempotency_key)
            .header("Content-Type", "application/json")
            .body(batch.to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs a batch gzip-compressed.
    pub async fn ingest_gzip(
        &self,
        entity: &str,
        idempotency_key: &str,
        batch: &Value,
    ) -> Response {
        self.authorized(self.http.post(self.ingest_url(entity)))
            .header("Idempotency-Key", idempotency_key)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(gzip(batch.to_string().as_bytes()))
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs a batch and expects 200; returns the result body.
    pub async fn ingest_ok(&self, entity: &str, idempotency_key: &str, batch: &Value) -> Value {
        let response = self.ingest(entity, idempotency_key, batch).await;
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn get(&self, path_and_query: &str) -> Response {
        self.authorized(self.http.get(format!("{}{path_and_query}", self.base_url)))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, path_and_query: &str) -> (StatusCode, Value) {
        let response = self.get(path_and_query).await;
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

pub fn batch(upserts: Vec<Value>, deletes: &[&str]) -> Value {
    json!({"upserts": upserts, "deletes": deletes})
}

/// A user record of integration sn1.
pub fn user(sys_id: &str, updated_on: &str, mod_count: i64, name: &str) -> Value {
    json!({
        "integration_id": INTEGRATION,
        "sys_id": sys_id,
        "sys_updated_on": updated_on,
        "sys_mod_count": mod_count,
        "name": name,
    })
}

/// An incident of integration sn1.
pub fn incident(sys_id: &str, updated_on: &str, mod_count: i64) -> Value {
    json!({
        "integration_id": INTEGRATION,
        "sys_id": sys_id,
        "sys_updated_on": updated_on,
        "sys_mod_count": mod_count,
        "number": format!("INC{sys_id}"),
    })
}
