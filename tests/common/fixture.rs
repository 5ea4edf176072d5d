//! Running a fixture script (`fixtures/*`) and reading the `KEY=path` lines
//! it prints, and copying a fixture tree into a test's directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `KEY=path` lines a fixture script printed.
pub struct Printed {
    script: PathBuf,
    stdout: String,
}

impl Printed {
    /// The path printed for `key`; panics naming the script when missing.
    pub fn get(&self, key: &str) -> PathBuf {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "{} printed no {key}=:\n{}",
                    self.script.display(),
                    self.stdout
                )
            })
    }
}

/// Runs `fixtures/NAME` (no input); panics with its output when it fails.
pub fn run(name: &str) -> Printed {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        script.display(),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    Printed { script, stdout }
}

/// Copies the tree `from` (regular files and directories) to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for e in entries {
        let e = e.unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target)
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        }
    }
}
