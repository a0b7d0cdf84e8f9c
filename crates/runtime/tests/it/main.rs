//! The integration tests of nowstream-runtime, built as one test binary (one link, one process).

mod config_loading;
mod probe_server;
mod reference_is_complete;
mod satellite_file;
mod secret_files;
mod shutdown_signal;
mod validation;
