//! The guest fixture: Debian's generic kernel, its modules and a static
//! busybox, fetched and extracted once by `fixtures/guest-kernel` into its
//! cache (`$B9_FIXTURES`, default `~/.cache/b9-fixtures`).
//!
//! The tests that boot guests need it; CI has it (`scripts/setup` runs the
//! script), and a developer's first run fetches it (about 70 MB, once).
//! If the script fails, the test fails with its output: these tests are
//! not skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the fixture's files are.
#[derive(Clone, Debug)]
pub struct Guest {
    /// The kernel image (bzImage).
    pub kernel: PathBuf,
    /// Its modules directory (`.../lib/modules/<release>`).
    pub modules: PathBuf,
    /// A static busybox executable.
    pub busybox: PathBuf,
}

/// The fixture, fetched on first use (once per test process).
pub fn guest() -> &'static Guest {
    static GUEST: OnceLock<Guest> = OnceLock::new();
    GUEST.get_or_init(fetch)
}

fn fetch() -> Guest {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/guest-kernel");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        script.display(),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |key: &str| -> PathBuf {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{} printed no {key}=:\n{stdout}", script.display()))
    };
    Guest {
        kernel: get("KERNEL"),
        modules: get("MODULES"),
        busybox: get("BUSYBOX"),
    }
}
