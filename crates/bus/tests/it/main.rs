//! The integration tests of nowstream-bus, built as one test binary (one link, one process).

mod client_config;
mod on_kafka;
mod topic_config;
