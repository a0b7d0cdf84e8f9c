//! The integration tests of nowstream-sei-local, built as one test binary (one link, one process).

mod auth_and_limits;
mod common;
mod dashboard;
mod dora;
mod faults;
mod ingest;
mod mttr;
mod persistence;
