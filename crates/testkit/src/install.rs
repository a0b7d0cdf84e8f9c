//! Where the Apache Kafka installation lives and how to run its JVM.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::node::BrokerError;

/// The version the project pins: `scripts/kafka/pom.xml` installs it and `docker-compose.yml`
/// runs it; `scripts/install-kafka` refuses to run when those two disagree.
pub const KAFKA_VERSION: &str = "4.1.1";

/// What to run when Kafka is not installed.
pub const KAFKA_INSTALL_HINT: &str = "run `scripts/install-kafka` (it copies Apache Kafka 4.1.1 \
     from Maven Central into ~/.cache/nowstream/kafka-4.1.1), or set NOWSTREAM_KAFKA_HOME to \
     such a directory";

/// An installed Kafka: its jars and the logging configuration the brokers start with.
#[derive(Debug, Clone)]
pub struct KafkaInstall {
    pub home: PathBuf,
    pub java: PathBuf,
}

impl KafkaInstall {
    /// `NOWSTREAM_KAFKA_HOME`, then `~/.cache/nowstream/kafka-<version>`; Java from `JAVA_HOME`,
    /// then `java` on `PATH`.
    pub fn locate() -> Result<Self, BrokerError> {
        locate_in(&|name| std::env::var_os(name))
    }

    /// The JVM class path: every jar of the installation.
    pub fn class_path(&self) -> String {
        format!("{}/*", self.home.join("libs").display())
    }

    pub fn log_config(&self) -> PathBuf {
        self.home.join("log4j2.xml")
    }
}

/// [`KafkaInstall::locate`] over an explicit environment, so the lookup is testable without
/// mutating the process environment.
fn locate_in(env: &dyn Fn(&str) -> Option<OsString>) -> Result<KafkaInstall, BrokerError> {
    let mut looked_at = Vec::new();
    let mut candidates = Vec::new();
    if let Some(home) = env("NOWSTREAM_KAFKA_HOME") {
        candidates.push(PathBuf::from(home));
    }
    if let Some(home) = env("HOME") {
        candidates.push(
            PathBuf::from(home)
                .join(".cache/nowstream")
                .join(format!("kafka-{KAFKA_VERSION}")),
        );
    }
    let mut found = None;
    for candidate in candidates {
        let jar = candidate
            .join("libs")
            .join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
        if jar.is_file() {
            found = Some(candidate);
            break;
        }
        looked_at.push(jar.display().to_string());
    }
    let Some(home) = found else {
        return Err(BrokerError::NotInstalled {
            looked_at: looked_at.join(", "),
        });
    };
    let java = env("JAVA_HOME")
        .map(|java_home| PathBuf::from(java_home).join("bin/java"))
        .filter(|java| java.is_file())
        .or_else(|| {
            env("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("java"))
                    .find(|java| java.is_file())
            })
        })
        .ok_or(BrokerError::NoJava)?;
    Ok(KafkaInstall { home, java })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_kafka_is_an_error_that_names_the_install_command() {
        let empty = tempfile::tempdir().expect("tempdir");
        let home = empty.path().as_os_str().to_owned();
        let error = locate_in(&|name| match name {
            "HOME" | "PATH" => Some(home.clone()),
            _ => None,
        })
        .expect_err("nothing is installed in an empty directory");
        let message = error.to_string();
        assert!(message.contains("scripts/install-kafka"), "{message}");
        assert!(message.contains(".cache/nowstream/kafka-4.1.1"), "{message}");
    }

    #[test]
    fn an_explicit_kafka_home_wins_over_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("libs")).expect("libs");
        std::fs::write(
            dir.path()
                .join("libs")
                .join(format!("kafka_2.13-{KAFKA_VERSION}.jar")),
            b"",
        )
        .expect("jar");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::write(bin.join("java"), b"").expect("java");
        let explicit = dir.path().as_os_str().to_owned();
        let found = locate_in(&|name| match name {
            "NOWSTREAM_KAFKA_HOME" | "JAVA_HOME" => Some(explicit.clone()),
            _ => None,
        })
        .expect("explicit installation exists");
        assert_eq!(found.home, dir.path());
        assert_eq!(found.java, bin.join("java"));
    }

    #[test]
    fn an_installation_without_java_says_java_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("libs")).expect("libs");
        std::fs::write(
            dir.path()
                .join("libs")
                .join(format!("kafka_2.13-{KAFKA_VERSION}.jar")),
            b"",
        )
        .expect("jar");
        let explicit = dir.path().as_os_str().to_owned();
        let error = locate_in(&|name| match name {
            "NOWSTREAM_KAFKA_HOME" | "PATH" => Some(explicit.clone()),
            _ => None,
        })
        .expect_err("no java anywhere");
        assert!(error.to_string().contains("Java"), "{error}");
    }
}
