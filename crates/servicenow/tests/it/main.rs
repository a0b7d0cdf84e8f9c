//! The integration tests of nowstream-servicenow, built as one test binary (one link, one process).

mod common;
mod auth;
mod response_size;
mod retries;
mod scan;
