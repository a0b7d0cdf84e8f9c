//! Plumbing every nowstream binary shares, so the binaries stay thin: configuration
//! ([`Config`]), logging ([`telemetry`]), the probe and metrics listener ([`server`],
//! [`health`], [`prometheus`], [`process_memory`]) and the shutdown signal ([`shutdown`]).
//!
//! A binary does, in order: [`allocator::apply`] (before the async runtime starts),
//! [`Config::load`], [`telemetry::init`],
//! [`prometheus::install`] (before anything records a metric), [`server::serve`], and then
//! the stage's `run(config, shutdown)`.
//!
//! This crate deliberately does not depend on rdkafka: [`KafkaConfig`] is plain data,
//! and the `bus` crate turns it into client settings.

pub mod allocator;
pub mod config;
pub mod health;
pub mod process_memory;
pub mod prometheus;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use config::{
    AuthConfig, BasicAuth, Config, ConfigError, ConfigLoader, DeletionDetection, FetcherConfig,
    Format, HttpConfig, IntegrationConfig, IntegrationMetadata, KafkaConfig, LogFormat,
    NormalizerConfig, OAuthConfig, OAuthGrant, Problem, SECRETS_DIR_VARIABLE, Satellite,
    SecretScope, SeiConfig, SinkConfig, TelemetryConfig, ValidationErrors,
};
pub use health::{Health, ReadinessHandle};
pub use server::{ServeError, ServeHandle, serve};
pub use service::{Service, ServiceError, load_for_command};
