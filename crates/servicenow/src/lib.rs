//! ServiceNow Table API: wire types, the encoded query language, and the client.
//!
//! The fetcher builds its keyset queries with [`query`] and reads tables with
//! [`client::Client`]; the simulator parses and evaluates the same query language, so both
//! sides agree on what a query means.

pub mod client;
pub mod query;
pub mod table;
