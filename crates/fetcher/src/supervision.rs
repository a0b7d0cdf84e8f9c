//! Keeping a long-running task alive: every run is its own tokio task, so a panic ends that
//! run only; the supervisor sees it through the run's `JoinHandle`, as it sees an error or an
//! unexpected return, and starts the task again after the pause its caller decides.
//!
//! Without this, a unit whose code panicked (a bug, a broken invariant on odd input) would be
//! gone for good while the process, its other units and its readiness looked healthy.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How one run of a supervised task ended, when it did not end because it was cancelled.
#[derive(Debug)]
pub enum Exit<E> {
    /// The run returned an error.
    Failed(E),
    /// The run panicked; the panic message, when it was a string.
    Panicked(String),
    /// The run returned `Ok` although nobody cancelled it: supervised tasks are meant to run
    /// until cancelled, so this is a bug worth a restart rather than a silent stop.
    Ended,
}

/// What to do after a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Start a new run after this pause (cut short by cancellation).
    RestartAfter(Duration),
    /// Do not start it again.
    Stop,
}

/// Runs `start()` as a task until `cancel` fires, starting it again whenever it fails, panics
/// or ends; `decide` hears of each such exit and says whether and when to start over.
///
/// A run is expected to return `Ok(())` soon after `cancel` fires; the supervisor then
/// returns. Dropping the supervisor aborts the current run, so no run outlives it.
pub async fn supervise<Start, Run, E, Decide>(
    mut start: Start,
    cancel: CancellationToken,
    mut decide: Decide,
) where
    Start: FnMut() -> Run,
    Run: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
    Decide: FnMut(Exit<E>) -> Next,
{
    loop {
        let mut run = AbortOnDrop(tokio::spawn(start()));
        let exit = match (&mut run.0).await {
            Ok(_) | Err(_) if cancel.is_cancelled() => return,
            Ok(Ok(())) => Exit::Ended,
            Ok(Err(error)) => Exit::Failed(error),
            Err(error) if error.is_panic() => Exit::Panicked(panic_message(error.into_panic())),
            // Aborted: nothing but this supervisor holds the handle, so it cannot happen
            // while the supervisor runs.
            Err(_) => return,
        };
        match decide(exit) {
            Next::Stop => return,
            Next::RestartAfter(pause) => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Aborts the run when the supervisor is dropped (e.g. a shutdown deadline passed).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    const PAUSE: Duration = Duration::from_secs(30);

    /// Records each exit with the (paused) time it was seen, and restarts after [`PAUSE`].
    fn recorder(
        log: Arc<Mutex<Vec<(Duration, String)>>>,
        origin: tokio::time::Instant,
    ) -> impl FnMut(Exit<String>) -> Next {
        move |exit| {
            let what = match exit {
                Exit::Failed(error) => format!("failed: {error}"),
                Exit::Panicked(message) => format!("panicked: {message}"),
                Exit::Ended => "ended".to_owned(),
            };
            log.lock().unwrap().push((origin.elapsed(), what));
            Next::RestartAfter(PAUSE)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_panics_is_started_again_after_the_pause() {
        let runs = Arc::new(AtomicU32::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let origin = tokio::time::Instant::now();
        let supervisor = tokio::spawn(supervise(
            {
                let runs = runs.clone();
                let cancel = cancel.clone();
                move || {
                    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    let cancel = cancel.clone();
                    async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if run < 3 {
                            panic!("run {run} broke an invariant");
                        }
                        cancel.cancelled().await;
                        Ok::<(), String>(())
                    }
                }
            },
            cancel.clone(),
            recorder(log.clone(), origin),
        ));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two panics, two restarts");
        let seen = log.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (
                    Duration::from_secs(1),
                    "panicked: run 1 broke an invariant".to_owned()
                ),
                (
                    Duration::from_secs(32),
                    "panicked: run 2 broke an invariant".to_owned()
                ),
            ]
        );
        cancel.cancel();
        supervisor
            .await
            .expect("the supervisor itself never panics");
        assert_eq!(runs.load(Ordering::SeqCst), 3, "no restart after cancel");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_ends_or_fails_uncancelled_is_started_again() {
        let runs = Arc::new(AtomicU32::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let origin = tokio::time::Instant::now();
        let supervisor = tokio::spawn(supervise(
            {
                let runs = runs.clone();
                move || {
                    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        match run {
                            1 => Ok(()),
                            2 => Err(format!("run {run}: HTTP 403")),
                            _ => std::future::pending().await,
                        }
                    }
                }
            },
            cancel.clone(),
            recorder(log.clone(), origin),
        ));
        tokio::time::sleep(Duration::from_secs(100)).await;
        let seen: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, what)| what.clone())
            .collect();
        assert_eq!(seen, ["ended", "failed: run 2: HTTP 403"]);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        supervisor.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_during_the_pause_ends_the_supervisor_without_a_new_run() {
        let runs = Arc::new(AtomicU32::new(0));
        let cancel = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(
            {
                let runs = runs.clone();
                move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    async { Err::<(), _>("always failing".to_owned()) }
                }
            },
            cancel.clone(),
            |_| Next::RestartAfter(Duration::from_secs(3600)),
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), supervisor)
            .await
            .expect("the supervisor ends at once")
            .expect("no panic");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_supervisor() {
        let runs = Arc::new(AtomicU32::new(0));
        supervise(
            {
                let runs = runs.clone();
                move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    async { Err::<(), _>("wrong password".to_owned()) }
                }
            },
            CancellationToken::new(),
            |_| Next::Stop,
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
