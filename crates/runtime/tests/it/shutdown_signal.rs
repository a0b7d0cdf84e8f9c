//! SIGTERM and SIGINT end the shutdown future. The signals go to the whole test process, which
//! the other runtime tests share: none of them listens for signals, and the handlers are
//! installed before the first signal is sent, so the process is not terminated by it.

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
