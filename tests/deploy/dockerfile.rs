//! The `Dockerfile`, parsed into build stages and instructions (no engine to build it here).

use std::collections::BTreeSet;
use std::process::Command;

use super::{compose, helm, repo};

/// One instruction, with line continuations joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    arguments: String,
}

/// Instructions from one `FROM` to the next.
#[derive(Debug)]
struct Stage {
    /// The image after `FROM`.
    base: String,
    /// The name after `AS`, if any.
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |instruction| instruction.keyword == keyword)
            .map(|instruction| instruction.arguments.as_str())
    }
}

/// Splits the Dockerfile into stages. Comment lines are dropped (also inside continued
/// instructions, as Docker does); a trailing `\` continues an instruction.
fn stages() -> Vec<Stage> {
    let text = repo::read("Dockerfile");
    let mut logical = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(continued) => {
                pending.push_str(continued);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                logical.push(std::mem::take(&mut pending));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, arguments) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let arguments = arguments.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = arguments.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_keyword, name] if as_keyword.eq_ignore_ascii_case("as") => {
                    Some((*name).to_owned())
                }
                _ => None,
            };
            stages.push(Stage {
                base: words.first().copied().unwrap_or_default().to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(Instruction { keyword, arguments });
        }
    }
    stages
}

fn builder_and_runtime() -> (Stage, Stage) {
    let mut stages = stages();
    assert!(stages.len() >= 2, "the Dockerfile is a multi-stage build");
    let runtime = stages.pop().unwrap();
    let builder = stages
        .into_iter()
        .find(|stage| stage.name.as_deref() == Some("builder"))
        .expect("a stage named `builder` compiles the binaries");
    (builder, runtime)
}

/// Words of the builder's `ARG BINARIES="…"` list.
fn listed_binaries(builder: &Stage) -> BTreeSet<String> {
    let list = builder
        .all("ARG")
        .find_map(|arg| arg.strip_prefix("BINARIES="))
        .expect("the builder declares ARG BINARIES");
    list.trim_matches('"')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Binary targets of the workspace's packages, from `cargo metadata`.
fn workspace_binaries() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(repo::root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|package| package["targets"].as_array().unwrap())
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
        })
        .filter_map(|target| target["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_rust_stage_builds_and_a_slim_debian_stage_runs() {
    let (builder, runtime) = builder_and_runtime();
    assert!(
        builder.base.starts_with("rust:"),
        "builder FROM {}",
        builder.base
    );
    assert!(
        runtime.base.starts_with("debian:") && runtime.base.contains("-slim"),
        "runtime FROM {}",
        runtime.base
    );
    // Builder and runtime share the Debian release, so the glibc the binaries link against is there.
    assert!(
        builder.base.ends_with("-${DEBIAN_RELEASE}"),
        "builder FROM {}",
        builder.base
    );
    assert!(
        runtime.base.starts_with("debian:${DEBIAN_RELEASE}"),
        "runtime FROM {}",
        runtime.base
    );
}

#[test]
fn the_release_build_uses_the_lock_file() {
    let (builder, _) = builder_and_runtime();
    let build = builder
        .all("RUN")
        .find(|run| run.contains("cargo build"))
        .expect("the builder runs cargo build");
    assert!(build.contains("--release"), "{build}");
    assert!(build.contains("--locked"), "{build}");
}

#[test]
fn the_runtime_has_ca_certificates_and_the_curl_the_compose_health_checks_call() {
    let (_, runtime) = builder_and_runtime();
    let installed: Vec<&str> = runtime
        .all("RUN")
        .filter(|run| run.contains("apt-get install"))
        .collect();
    assert!(
        installed.iter().any(|run| run.contains("ca-certificates")),
        "{installed:?}"
    );
    assert!(
        installed.iter().any(|run| run.contains(" curl")),
        "{installed:?}"
    );
}

#[test]
fn the_runtime_runs_as_the_numeric_non_root_user_the_chart_expects() {
    let (_, runtime) = builder_and_runtime();
    let user = runtime
        .all("USER")
        .last()
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    let uid: u32 = uid.parse().unwrap_or_else(|_| {
        panic!("USER {user} is not numeric: Kubernetes' runAsNonRoot needs a uid")
    });
    assert_ne!(uid, 0, "the image must not run as root");
    assert_eq!(
        uid.to_string(),
        helm::run_as_user(),
        "the chart's runAsUser differs from the image's"
    );
    assert!(
        runtime.all("RUN").any(|run| run.contains("/etc/nowstream")),
        "the runtime creates /etc/nowstream, where compose and the chart mount the config"
    );
}

#[test]
fn every_binary_compose_and_the_chart_run_is_built_and_copied_into_the_image() {
    let (builder, runtime) = builder_and_runtime();
    let listed = listed_binaries(&builder);
    let built = workspace_binaries();
    let mut needed = compose::nowstream_binaries();
    needed.extend(
        helm::stages()
            .iter()
            .map(|stage| format!("nowstream-{stage}")),
    );
    for binary in &needed {
        assert!(
            built.contains(binary),
            "{binary} is not a binary of the workspace ({built:?})"
        );
        assert!(
            listed.contains(binary),
            "the image does not carry {binary} ({listed:?})"
        );
    }
    let build = builder
        .all("RUN")
        .find(|run| run.contains("cargo build"))
        .unwrap();
    assert!(
        build.contains("--bin ${binary}")
            && build.contains("cp \"target/release/${binary}\" /out/"),
        "{build}"
    );
    assert!(
        runtime
            .all("COPY")
            .any(|copy| copy.starts_with("--from=builder /out/")),
        "the runtime copies the builder's /out/"
    );
}

#[test]
fn the_build_context_leaves_out_build_output_but_keeps_the_sources() {
    let patterns: Vec<String> = repo::read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.trim_end_matches('/').to_owned())
        .collect();
    assert!(
        patterns.iter().any(|p| p == "target"),
        "target/ must not be sent to the daemon"
    );
    for needed in ["crates", "schemas", "tests", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !patterns.iter().any(|p| p == needed || p == "*"),
            "the build needs {needed}"
        );
    }
}
