//! Local secrets stay local: `.env` (compose reads SERVICENOW_*/SEI_* from it) and `secrets/`
//! (compose's secret files) are ignored by git, so they are never committed, and by docker, so
//! they never reach a build context or an image layer.

use super::repo;

/// The patterns of an ignore file, without comments and blank lines, and without the leading
/// and trailing `/` that only anchor them.
fn patterns(file: &str) -> Vec<String> {
    repo::read(file)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.trim_matches('/').to_owned())
        .collect()
}

#[test]
fn git_ignores_the_local_env_file_and_secret_files() {
    let patterns = patterns(".gitignore");
    for ignored in [".env", "secrets", "target"] {
        assert!(
            patterns.iter().any(|p| p == ignored),
            ".gitignore must list {ignored}: {patterns:?}"
        );
    }
    assert!(
        !patterns.iter().any(|p| p.starts_with('!')),
        "nothing may be taken back in: {patterns:?}"
    );
}

#[test]
fn docker_leaves_the_local_env_file_secret_files_build_output_and_git_out_of_the_context() {
    let patterns = patterns(".dockerignore");
    for ignored in [".env", "secrets", "target", ".git"] {
        assert!(
            patterns.iter().any(|p| p == ignored),
            ".dockerignore must list {ignored}: {patterns:?}"
        );
    }
    assert!(
        !patterns
            .iter()
            .any(|p| p.starts_with('!') && (p.contains(".env") || p.contains("secrets"))),
        "{patterns:?}"
    );
}
