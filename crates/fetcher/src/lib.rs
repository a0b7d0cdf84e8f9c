//! The fetcher: polls ServiceNow incrementally and publishes each record, as the Table API
//! returned it, to `servicenow.raw.<table>`.

pub mod checkpoints;
pub mod coordination;
mod error;
pub mod units;

pub use error::FetchError;
