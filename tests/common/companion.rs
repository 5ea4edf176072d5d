//! b9's companion programs (`b9-agent`, `b9-libvirt`): workspace members
//! built next to `b9` by `cargo build` / `cargo test` at the root.

use std::path::PathBuf;

/// The path of companion program `name`, which must have been built.
pub fn companion(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_b9")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build the whole workspace (`cargo build`, or `cargo test` at the repository root)",
        path.display()
    );
    path
}
