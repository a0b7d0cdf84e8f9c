//! The integration tests of nowstream-servicenow, built as one test binary (one link, one process).

mod auth;
mod common;
mod response_size;
mod retries;
mod scan;
