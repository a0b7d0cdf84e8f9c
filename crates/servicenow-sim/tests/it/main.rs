//! The integration tests of nowstream-servicenow-sim, built as one test binary (one link, one process).

mod acls_and_zones;
mod common;
mod faults;
mod generator;
mod filters;
mod keyset;
mod oauth;
mod table_api;
