//! The integration tests of nowstream-servicenow-sim, built as one test binary (one link, one process).

mod common;
mod acls_and_zones;
mod faults;
mod generator;
mod keyset;
mod oauth;
mod table_api;
