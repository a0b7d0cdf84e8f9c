//! A tansu broker process with its own SQLite file, started on a free loopback port.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use nowstream_runtime::KafkaConfig;

/// The version the project pins; the README and `scripts/install-tansu` install exactly this one.
pub const TANSU_VERSION: &str = "0.6.0";

/// What to run when tansu is not installed.
pub const TANSU_INSTALL_HINT: &str = "run `scripts/install-tansu` (it does: cargo install tansu \
     --version 0.6.0 --features libsql --locked --root ~/.cache/nowstream/tansu-0.6.0), or set \
     NOWSTREAM_TANSU_BIN to a tansu binary";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("tansu broker binary not found (looked at {looked_at}); {hint}", hint = TANSU_INSTALL_HINT)]
    NotInstalled { looked_at: String },
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] std::io::Error),
    #[error("cannot create the broker's data directory: {0}")]
    DataDir(#[source] std::io::Error),
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tansu exited during start-up ({status}); its log ends with:\n{log_tail}")]
    Exited { status: String, log_tail: String },
    #[error("tansu did not answer on {addr} within {timeout:?}; its log ends with:\n{log_tail}")]
    NotReady {
        addr: SocketAddr,
        timeout: Duration,
        log_tail: String,
    },
}

/// A running tansu broker. Killed when dropped; its data lives in a temporary directory that
/// outlives restarts, so [`TansuBroker::restart`] keeps every committed record.
#[derive(Debug)]
pub struct TansuBroker {
    binary: PathBuf,
    addr: SocketAddr,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl TansuBroker {
    /// Starts a broker on a free port and waits until it answers a metadata request.
    pub fn start() -> Result<Self, BrokerError> {
        let binary = locate_binary()?;
        let addr = free_port()?;
        let data_dir = tempfile::Builder::new()
            .prefix("nowstream-tansu-")
            .tempdir()
            .map_err(BrokerError::DataDir)?;
        let mut broker = Self {
            binary,
            addr,
            data_dir,
            child: None,
            starts: 0,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.addr.to_string()
    }

    /// A `[kafka]` config section pointing at this broker.
    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.bootstrap_servers(),
            topic_prefix: String::new(),
            properties: Default::default(),
        }
    }

    /// Kills the broker process (SIGKILL: no clean shutdown, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and the same SQLite file.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.kill();
        self.spawn()
    }

    /// Stops the broker; a later [`TansuBroker::restart`] brings it back.
    pub fn stop(&mut self) {
        self.kill();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir
            .path()
            .join(format!("tansu-{}.log", self.starts))
    }

    fn spawn(&mut self) -> Result<(), BrokerError> {
        self.starts += 1;
        let url = format!("tcp://{}", self.addr);
        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path).map_err(BrokerError::DataDir)?;
        let log_err = log.try_clone().map_err(BrokerError::DataDir)?;
        let mut command = Command::new(&self.binary);
        command
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            // tansu resolves the SQLite path against its working directory (an absolute path
            // gets the directory prepended again), so run it inside its data directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.data_dir.path())
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command.spawn().map_err(|source| BrokerError::Spawn {
            binary: self.binary.display().to_string(),
            source,
        })?;
        self.child = Some(child);
        self.wait_until_ready(&log_path)
    }

    fn wait_until_ready(&mut self, log: &Path) -> Result<(), BrokerError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(BrokerError::Exited {
                    status: status.to_string(),
                    log_tail: log_tail(log),
                });
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
                && answers_metadata(&self.bootstrap_servers())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(BrokerError::NotReady {
            addr: self.addr,
            timeout: STARTUP_TIMEOUT,
            log_tail: log_tail(log),
        })
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last lines of the broker's log: the log file lives in a temporary directory that is gone
/// once the harness is dropped, so errors carry the text itself.
fn log_tail(log: &Path) -> String {
    let text =
        std::fs::read_to_string(log).unwrap_or_else(|error| format!("(unreadable: {error})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn answers_metadata(bootstrap: &str) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create();
    consumer
        .map(|consumer| {
            consumer
                .fetch_metadata(None, Duration::from_secs(2))
                .is_ok()
        })
        .unwrap_or(false)
}

fn free_port() -> Result<SocketAddr, BrokerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(BrokerError::Port)?;
    listener.local_addr().map_err(BrokerError::Port)
}

/// `NOWSTREAM_TANSU_BIN`, then the cached install, then `tansu` on PATH.
fn locate_binary() -> Result<PathBuf, BrokerError> {
    locate_binary_in(&|name| std::env::var_os(name))
}

/// [`locate_binary`] over an explicit environment, so the lookup order is testable without
/// mutating the process environment.
fn locate_binary_in(env: &dyn Fn(&str) -> Option<OsString>) -> Result<PathBuf, BrokerError> {
    let mut looked_at = Vec::new();
    if let Some(path) = env("NOWSTREAM_TANSU_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        looked_at.push(format!("NOWSTREAM_TANSU_BIN={}", path.display()));
    }
    if let Some(home) = env("HOME") {
        let cached = PathBuf::from(home)
            .join(".cache/nowstream")
            .join(format!("tansu-{TANSU_VERSION}"))
            .join("bin/tansu");
        if cached.is_file() {
            return Ok(cached);
        }
        looked_at.push(cached.display().to_string());
    }
    if let Some(paths) = env("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    looked_at.push("tansu on PATH".into());
    Err(BrokerError::NotInstalled {
        looked_at: looked_at.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tansu_is_an_error_that_names_the_install_command() {
        let empty = tempfile::tempdir().expect("tempdir");
        let home = empty.path().as_os_str().to_owned();
        let error = locate_binary_in(&|name| match name {
            "HOME" | "PATH" => Some(home.clone()),
            _ => None,
        })
        .expect_err("nothing is installed in an empty directory");
        let message = error.to_string();
        assert!(message.contains("scripts/install-tansu"), "{message}");
        assert!(
            message.contains("cargo install tansu --version 0.6.0"),
            "{message}"
        );
        assert!(
            message.contains(".cache/nowstream/tansu-0.6.0"),
            "{message}"
        );
    }

    #[test]
    fn an_explicit_binary_wins_over_the_cache_and_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join("my-tansu");
        std::fs::write(&binary, b"").expect("write");
        let explicit = binary.as_os_str().to_owned();
        let found = locate_binary_in(&|name| match name {
            "NOWSTREAM_TANSU_BIN" => Some(explicit.clone()),
            _ => None,
        })
        .expect("explicit binary exists");
        assert_eq!(found, binary);
    }
}
