//! [`StageProcess`]: a stage binary (fetcher, normalizer, sink) run as its users run it, a child
//! process started with `--config <file>`, its output collected so a test can wait for log
//! lines, find its probe address and show its log when an assertion fails.
//!
//! The binary's path comes from the test (`env!("CARGO_BIN_EXE_nowstream-sink")`), because only
//! the test crate of the stage knows it; the harness stays free of the stages.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Why a stage process could not be started or did not show what a test waited for.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the log file {path}: {source}")]
    LogFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{binary} logged no probe address (`local_addr`) within {timeout:?}; its log:\n{log}")]
    NoProbeAddress {
        binary: String,
        timeout: Duration,
        log: String,
    },
}

/// How to start a stage binary: `--config <file>`, the environment, a copy of the log on disk.
///
/// `NOWSTREAM_CONFIG` is always removed, so the file given here is the one the stage reads.
#[derive(Debug)]
pub struct StageCommand {
    command: Command,
    binary: String,
    log_file: Option<PathBuf>,
}

impl StageCommand {
    /// `binary --config config`, stdin closed.
    pub fn new(binary: impl AsRef<Path>, config: &Path) -> Self {
        let binary = binary.as_ref();
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(config)
            .env_remove("NOWSTREAM_CONFIG")
            .stdin(Stdio::null());
        Self {
            command,
            binary: binary
                .file_name()
                .unwrap_or(binary.as_os_str())
                .to_string_lossy()
                .into_owned(),
            log_file: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Also writes every output line to `path`, so the log survives the test for reading.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    pub fn spawn(mut self) -> Result<StageProcess, ProcessError> {
        let file = match &self.log_file {
            Some(path) => Some(File::create(path).map_err(|source| ProcessError::LogFile {
                path: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let output = Output {
            lines: Arc::new(Mutex::new(Vec::new())),
            file: file.map(|file| Arc::new(Mutex::new(file))),
        };
        if let Some(stdout) = child.stdout.take() {
            output.collect(stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            output.collect(stderr);
        }
        Ok(StageProcess {
            binary: self.binary,
            child,
            output,
            probe_addr: OnceLock::new(),
        })
    }
}

/// Where a process's output goes: in memory, line by line, and optionally to a file.
#[derive(Debug, Clone)]
struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    file: Option<Arc<Mutex<File>>>,
}

impl Output {
    /// Reads `stream` on a thread of its own until the process closes it.
    fn collect(&self, stream: impl Read + Send + 'static) {
        let output = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(file) = &output.file {
                    let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                    let _ = writeln!(file, "{line}");
                }
                output
                    .lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first line `found` maps to something, without copying the output: a stage logs
    /// thousands of lines, and a copy under the lock would stall the reader threads and then,
    /// through a full pipe, the stage itself.
    fn find_map<T>(&self, found: impl FnMut(&String) -> Option<T>) -> Option<T> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find_map(found)
    }
}

/// A stage binary running as a child process, stdout and stderr collected line by line.
/// Killed (SIGKILL) when dropped, so a failing test leaves no stage behind.
#[derive(Debug)]
pub struct StageProcess {
    binary: String,
    child: Child,
    output: Output,
    /// Found once, then kept: scrapers ask for it many times a second.
    probe_addr: OnceLock<SocketAddr>,
}

impl StageProcess {
    /// Starts `binary --config config` with the environment of the test process.
    pub fn spawn(binary: impl AsRef<Path>, config: &Path) -> Result<Self, ProcessError> {
        StageCommand::new(binary, config).spawn()
    }

    /// A command to adjust (environment, arguments, log file) before [`StageCommand::spawn`].
    pub fn command(binary: impl AsRef<Path>, config: &Path) -> StageCommand {
        StageCommand::new(binary, config)
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or an OOM kill would end it: no chance to finish or commit
    /// anything. Waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod; returns at once (see [`Self::wait_exit`]).
    ///
    /// # Panics
    /// When `kill -TERM` cannot be run or fails: the test could not stop its stage.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status();
        assert!(
            status.as_ref().is_ok_and(ExitStatus::success),
            "kill -TERM {} ({}) failed: {status:?}",
            self.id(),
            self.binary
        );
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub async fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            self.terminate();
        }
        self.wait_exit(timeout).await
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` while it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                // Let the reader threads drain what the process wrote last.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// How the process ended, once it has; `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything written to stdout and stderr so far, one entry per line.
    pub fn lines(&self) -> Vec<String> {
        self.output.lines()
    }

    /// The output so far as one text, for failure messages and searches.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// The lines that are JSON log events (with `log_format = "json"`).
    pub fn events(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits up to `timeout` for a JSON log event `found` accepts; returns it.
    pub async fn wait_for_event(
        &self,
        timeout: Duration,
        found: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events().into_iter().find(|event| found(event)) {
                return Some(event);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where the probe server listens, from the JSON line the stage logs once it is up
    /// (`local_addr`, at the top level or under `fields`): tests listen on port 0.
    pub fn logged_probe_addr(&self) -> Option<SocketAddr> {
        if let Some(addr) = self.probe_addr.get() {
            return Some(*addr);
        }
        let addr = self.output.find_map(|line| {
            if !line.contains("local_addr") {
                return None;
            }
            let event: Value = serde_json::from_str(line).ok()?;
            let fields = event.get("fields").unwrap_or(&event);
            fields
                .get("local_addr")
                .or_else(|| event.get("local_addr"))?
                .as_str()?
                .parse()
                .ok()
        })?;
        Some(*self.probe_addr.get_or_init(|| addr))
    }

    /// Waits up to `timeout` for [`Self::logged_probe_addr`].
    pub async fn probe_addr(&self, timeout: Duration) -> Result<SocketAddr, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(addr) = self.logged_probe_addr() {
                return Ok(addr);
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::NoProbeAddress {
                    binary: self.binary.clone(),
                    timeout,
                    log: self.text(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
