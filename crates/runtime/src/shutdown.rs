//! Turning SIGTERM/SIGINT into a future, and that future into a token tasks can share.
//!
//! Stages take `run(config, shutdown: impl Future)`; on the signal they finish the work
//! in flight (and commit what was acknowledged) instead of dying mid-batch.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: the orchestrator stops the pod.
    Terminate,
    /// SIGINT: Ctrl-C at a terminal.
    Interrupt,
}

/// A future that resolves on the first SIGTERM or SIGINT.
///
/// The handlers are registered when this function is called, not when the future is
/// first polled, so a signal that arrives in between is not lost. From then on the
/// signals no longer kill the process by default: the caller must act on the future.
/// Must be called within a tokio runtime.
#[cfg(unix)]
pub fn signal() -> impl Future<Output = Signal> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};

    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let terminated = async {
            match terminate {
                Ok(mut stream) => {
                    stream.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT stops gracefully");
                    std::future::pending::<()>().await;
                }
            }
        };
        let interrupted = async {
            match interrupt {
                Ok(mut stream) => {
                    stream.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGINT; only SIGTERM stops gracefully");
                    std::future::pending::<()>().await;
                }
            }
        };
        let received = tokio::select! {
            () = terminated => Signal::Terminate,
            () = interrupted => Signal::Interrupt,
        };
        tracing::info!(signal = ?received, "shutdown requested");
        received
    }
}

/// A future that resolves on Ctrl-C (the only portable signal).
#[cfg(not(unix))]
pub fn signal() -> impl Future<Output = Signal> + Send + 'static {
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        Signal::Interrupt
    }
}

/// A token cancelled when `future` resolves, for handing shutdown to many tasks
/// (`token.cancelled()` in each `select!`, `token.child_token()` for sub-tasks).
/// Must be called within a tokio runtime; the waiting task ends with the future.
pub fn token_on<F>(future: F) -> CancellationToken
where
    F: Future + Send + 'static,
{
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = future => cancel.cancel(),
            // Nothing left to wait for once someone else cancelled the token.
            () = cancel.cancelled() => {}
        }
    });
    token
}

/// [`token_on`] the process's SIGTERM/SIGINT.
pub fn on_signal() -> CancellationToken {
    token_on(signal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn token_is_cancelled_when_the_future_resolves() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let token = token_on(rx);
        assert!(!token.is_cancelled());
        tx.send(()).unwrap();
        token.cancelled().await;
        assert!(token.is_cancelled());
    }

    #[tokio::test]
    async fn cancelling_the_token_directly_also_works() {
        let token = token_on(std::future::pending::<()>());
        let child = token.child_token();
        token.cancel();
        child.cancelled().await;
    }
}
