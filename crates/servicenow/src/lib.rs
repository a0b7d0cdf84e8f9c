//! ServiceNow Table API: wire types and the client.
//!
//! The fetcher reads tables with [`client::Client`]. Queries are built with the encoded query
//! language of `nowstream_model::table_api::query`, which the simulator also parses and
//! evaluates, so both sides agree on what a query means.

pub mod client;
pub mod row;
pub mod table;
