//! Where the tests find a guest kernel, its modules and a static busybox.
//!
//! One place to change: `B9_TEST_KERNEL` (+ `B9_TEST_MODULES`,
//! `B9_TEST_BUSYBOX`) wins; else the output of `fixtures/guest-kernel`
//! (`KERNEL=`, `MODULES=`, `BUSYBOX=` lines) when that script exists; else
//! the files unpacked under `/tmp/kdl`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A guest kernel with its module tree and a static busybox.
#[derive(Clone, Debug)]
pub struct GuestKernel {
    /// The kernel image (`vmlinuz-...`).
    pub kernel: PathBuf,
    /// `lib/modules/<release>` of that kernel.
    pub modules: PathBuf,
    /// A statically linked busybox.
    pub busybox: PathBuf,
}

/// Finds the guest kernel, or panics saying how to provide one.
pub fn guest_kernel() -> GuestKernel {
    let found = from_env()
        .or_else(from_fixture)
        .unwrap_or_else(from_tmp_kdl);
    for path in [&found.kernel, &found.modules, &found.busybox] {
        assert!(
            path.exists(),
            "guest kernel fixture missing: {} (set B9_TEST_KERNEL, B9_TEST_MODULES, \
             B9_TEST_BUSYBOX or run fixtures/guest-kernel)",
            path.display()
        );
    }
    found
}

fn from_env() -> Option<GuestKernel> {
    let kernel = PathBuf::from(std::env::var_os("B9_TEST_KERNEL")?);
    let modules = std::env::var_os("B9_TEST_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| modules_next_to(&kernel));
    let busybox = std::env::var_os("B9_TEST_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/kdl/bb/bin/busybox"));
    Some(GuestKernel {
        kernel,
        modules,
        busybox,
    })
}

/// `.../boot/vmlinuz-R` -> `.../lib/modules/R`.
fn modules_next_to(kernel: &Path) -> PathBuf {
    let name = kernel.file_name().unwrap().to_string_lossy();
    let release = name.trim_start_matches("vmlinuz-");
    let root = kernel.parent().and_then(Path::parent).unwrap();
    root.join("lib/modules").join(release)
}

fn from_fixture() -> Option<GuestKernel> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/guest-kernel");
    if !script.exists() {
        return None;
    }
    let out = Command::new(&script)
        .output()
        .expect("run fixtures/guest-kernel");
    assert!(
        out.status.success(),
        "fixtures/guest-kernel failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| PathBuf::from(v.trim()))
    };
    Some(GuestKernel {
        kernel: value("KERNEL")?,
        modules: value("MODULES")?,
        busybox: value("BUSYBOX")?,
    })
}

fn from_tmp_kdl() -> GuestKernel {
    let kernel = std::fs::read_dir("/tmp/kdl/k/boot")
        .ok()
        .and_then(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().contains("vmlinuz-"))
        })
        .unwrap_or_else(|| PathBuf::from("/tmp/kdl/k/boot/vmlinuz"));
    GuestKernel {
        modules: modules_next_to(&kernel),
        kernel,
        busybox: PathBuf::from("/tmp/kdl/bb/bin/busybox"),
    }
}
