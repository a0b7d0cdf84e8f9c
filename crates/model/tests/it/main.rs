//! The integration tests of nowstream-model, built as one test binary (one link, one process).

mod common;
mod compatibility;
mod openapi;
mod round_trip;
mod schemas;
mod single_object;
