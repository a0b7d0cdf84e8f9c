//! The pipeline benchmark (issue 13): N incidents from the ServiceNow simulator to sei-local
//! through the three stage binaries on Apache Kafka, next to the broker's passthrough ceiling
//! and sei-local's ingest ceiling, with each stage's resident memory steady and while SEI is
//! down, and the freshness of live changes. See `tests/pipeline/mod.rs` for the phases and
//! docs/performance.md ("Pipeline benchmark") for how to read the figures.
//!
//! ```sh
//! cargo bench -p nowstream-e2e --bench pipeline                       # 200,000 incidents
//! cargo bench -p nowstream-e2e --bench pipeline -- --incidents 20000 --outage-secs 20 \
//!     --live-secs 20 --changes-per-sec 20
//! ```
//!
//! It builds the stage binaries and sei-local in the bench's own (release) profile first.
//! Under `cargo test` (no `--bench` argument) it does nothing: the smoke test in the package's
//! test binary runs the same code with tiny figures.

#[path = "../pipeline/mod.rs"]
mod pipeline;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|arg| arg == "--bench") {
        println!("pipeline bench: skipped outside `cargo bench`");
        return ExitCode::SUCCESS;
    }
    let options = match pipeline::Options::from_args(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("pipeline bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(pipeline::run(&options)) {
        Ok(report) => {
            println!(
                "\n== pipeline bench, {} incidents ==\n{report}",
                options.incidents
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pipeline bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
