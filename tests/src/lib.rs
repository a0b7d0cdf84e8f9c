//! End-to-end tests of nowstream as a whole; the tests themselves are this package's test
//! targets (see `Cargo.toml`). Cargo needs a library or binary target in every package, and this
//! one has nothing to export, so it stays empty.
