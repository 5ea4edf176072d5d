//! The guest fixture: Debian's generic kernel, its modules and a static
//! busybox, fetched and extracted once by `fixtures/guest-kernel` into its
//! cache (`$B9_FIXTURES`, default `~/.cache/b9-fixtures`).
//!
//! The tests that boot guests need it; CI has it (`scripts/setup` runs the
//! script), and a developer's first run fetches it (about 70 MB, once).
//! If the script fails, the test fails with its output: these tests are
//! not skipped.

use std::path::PathBuf;
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
    let printed = super::fixture::run("guest-kernel");
    let get = |key: &str| printed.get(key);
    Guest {
        kernel: get("KERNEL"),
        modules: get("MODULES"),
        busybox: get("BUSYBOX"),
    }
}

/// The `[global]` section of a guest test's or bench's `b9.conf`: no
/// repository, build directories removed, a private shared-image cache,
/// and `timeout_seconds` for each guest run.
pub fn global_section(timeout_seconds: u64) -> String {
    format!(
        "[global]\nbuild_dir_root: Nothing\ndefault_timeout_seconds: {timeout_seconds}\n\
         ext4_attributes: []\nkeep_temp_dirs: False\nlog_file: Nothing\n\
         max_cached_shared_images: Just 2\nrepository: Nothing\n\
         repository_cache: Just (InB9UserDir \"repo-cache\")\nunique_build_dirs: True\n\
         verbosity: Just LogInfo\n\n"
    )
}
