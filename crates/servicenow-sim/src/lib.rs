//! A ServiceNow simulator: Table API, OAuth, deterministic data and fault injection.
//!
//! Faithful enough that a fetcher written against it works against a real instance: same
//! URLs, parameters, JSON shapes, headers (`X-Total-Count`, `Link`), error bodies, reference
//! and display-value rendering, row ACLs filtering *after* the limit, and the failure modes a
//! production integration meets (429s, 5xx, cancelled transactions, expiring tokens).
//!
//! ```no_run
//! # async fn demo() -> Result<(), nowstream_servicenow_sim::SimError> {
//! use nowstream_servicenow_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default()).await?;
//! println!("ServiceNow at {}", sim.base_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod display;
pub mod faults;
pub mod generator;
pub mod http;
pub mod listing;
pub mod schema;
pub mod server;
pub mod stats;
pub mod store;

pub use config::{
    AUDIT_READ_ROLE, ConfigError, DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD, DEFAULT_INTEGRATION_USER,
    DEFAULT_TIME_ZONE, INTEGRATION_ROLES, OAuthClient, SimConfig, SimUser,
};
pub use faults::{Fault, FaultRule, RuleReport, Trigger};
pub use generator::GeneratorConfig;
pub use server::{RunningSim, SimError, Simulator};
pub use stats::{RequestRecord, Stats};
pub use store::{Record, StoreError};
