//! ServiceNow Table API: wire types and the encoded query language.
//!
//! The fetcher builds its keyset queries with [`query`]; the simulator parses and
//! evaluates the same language, so both sides agree on what a query means.

pub mod query;
pub mod table;
