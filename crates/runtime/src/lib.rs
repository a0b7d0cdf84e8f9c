//! nowstream-runtime
pub mod kafka_config;
pub use kafka_config::KafkaConfig;
