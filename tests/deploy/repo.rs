//! Where the repository's files are, and reading them with errors that name the file.

use std::path::{Path, PathBuf};

/// The workspace root (this package lives in its `tests/` folder).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test package lives inside the workspace")
        .to_path_buf()
}

/// A file's text; `relative` is relative to the workspace root unless absolute.
pub fn read(relative: impl AsRef<Path>) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}
