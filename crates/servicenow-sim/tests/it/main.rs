//! The integration tests of nowstream-servicenow-sim, built as one test binary (one link, one process).

mod acls_and_zones;
mod common;
mod faults;
mod filters;
mod generator;
mod keyset;
mod oauth;
mod table_api;
