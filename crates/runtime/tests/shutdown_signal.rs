//! SIGTERM and SIGINT end the shutdown future. This file is its own test process with a
//! single test, so the signals sent here reach no other test.

use std::time::Duration;

use nowstream_runtime::shutdown::{self, Signal};

fn send(signal: &str) {
    let output = std::process::Command::new("kill")
        .args([signal, &std::process::id().to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[tokio::test]
async fn sigterm_and_sigint_each_resolve_the_signal_future_and_cancel_the_token() {
    let terminated = shutdown::signal();
    let token = shutdown::on_signal();
    send("-TERM");
    let received = tokio::time::timeout(Duration::from_secs(30), terminated)
        .await
        .unwrap();
    assert_eq!(received, Signal::Terminate);
    tokio::time::timeout(Duration::from_secs(30), token.cancelled())
        .await
        .unwrap();

    let interrupted = shutdown::signal();
    send("-INT");
    let received = tokio::time::timeout(Duration::from_secs(30), interrupted)
        .await
        .unwrap();
    assert_eq!(received, Signal::Interrupt);
}
