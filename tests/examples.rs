//! The examples in `examples/`: they pass `b9 check` without a warning, and
//! the cloud-init media they build hold the substituted values, read back
//! with independent tools (isoinfo, mtools, cloud-init's NoCloud reader).
//! No VM is needed: the guest-script example's seed is built alone, through
//! the library's public API (`Plan::retain`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::fixture::copy_tree;

/// A copy of `examples/` with its own HOME and configuration.
struct Examples {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    dir: PathBuf,
}

impl Examples {
    fn new() -> Examples {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let dir = tmp.path().join("examples");
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
            &dir,
        );
        // `scripts/example` leaves its outputs in `examples/out` (ignored by
        // git): start without them, as a fresh clone does.
        let _ = std::fs::remove_dir_all(dir.join("out"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            dir.join("test.conf"),
            "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Nothing\nunique_build_dirs: True\nverbosity: Just LogInfo\n",
        )
        .unwrap();
        Examples {
            _tmp: tmp,
            home,
            dir,
        }
    }

    fn b9(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_b9"))
            .args(["-c", "test.conf"])
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }
}

/// Runs a tool; the test fails (naming the package) when it is missing.
fn tool(name: &str, package: &str, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} ({package}) is needed: {e}; run scripts/setup"));
    assert!(out.status.success(), "{name} {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file of an ISO image, through its Rock Ridge names.
fn iso_file(iso: &Path, path: &str) -> String {
    tool(
        "isoinfo",
        "genisoimage",
        &["-R", "-i", iso.to_str().unwrap(), "-x", path],
    )
}

#[test]
fn every_example_passes_check_without_warnings() {
    let ex = Examples::new();
    std::fs::create_dir_all(ex.dir.join("out")).unwrap();
    // The guest-script example copies this image (scripts/busybox-root
    // makes the real one); check only looks at it.
    let out = ex.b9(&[
        "image",
        "create",
        "--fs",
        "ext4",
        "--size",
        "16M",
        "out/busybox-root.raw",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ex.b9(&[
        "check",
        "-f",
        "guest-script.b9",
        "-f",
        "cloud-init.b9",
        "-f",
        "data-disk.b9",
        "--",
        "demo",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: 6 artifact instances in 3 build files\n"
    );
}

#[test]
fn cloud_init_example_media_hold_the_substituted_values() {
    let ex = Examples::new();
    let out = ex.b9(&["build", "-f", "cloud-init.b9", "--", "demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for host in ["web-1", "web-2", "web-3"] {
        let meta = format!("instance-id: {host}\nlocal-hostname: {host}.demo.example.org\n");
        let fqdn = format!("fqdn: {host}.demo.example.org");
        let iso = ex.dir.join(format!("out/{host}.iso"));
        assert_eq!(iso_file(&iso, "/meta-data"), meta);
        assert!(iso_file(&iso, "/user-data").contains(&fqdn));
        let vfat = ex.dir.join(format!("out/{host}.vfat"));
        let vfat = vfat.to_str().unwrap();
        assert_eq!(tool("mtype", "mtools", &["-i", vfat, "::/meta-data"]), meta);
        let user_data = tool("mtype", "mtools", &["-i", vfat, "::/user-data"]);
        assert!(user_data.contains(&fqdn), "{user_data}");
        assert!(user_data.contains("touch /var/lib/b9-ok"), "{user_data}");
        // cloud-init's own NoCloud reader on the directory output.
        let script = format!(
            "import cloudinit.util as u\nmd, ud, vd = u.read_seeded({:?})\nprint(md['instance-id'])\nprint(md['local-hostname'])",
            format!("{}/", ex.dir.join("out").join(host).display())
        );
        let read = tool("/usr/bin/python3", "cloud-init", &["-c", &script]);
        assert_eq!(read, format!("{host}\n{host}.demo.example.org\n"));
    }
}

#[test]
fn guest_script_example_seed_holds_the_host_name() {
    let ex = Examples::new();
    // Through the library's API, in the examples' directory (this
    // process's working directory stays where it is).
    let config = b9::Config::load(&[ex.dir.join("test.conf")]).unwrap();
    let session = b9::Session::in_dir(config, &ex.dir).unwrap();
    let files = b9::BuildFiles::files([ex.dir.join("guest-script.b9")]).with_args(["demo"]);
    // Expanded without the checks: the other artifact's source image
    // (`scripts/busybox-root`) is not made here.
    let mut plan = session
        .expand(&files, &mut |note| eprintln!("{note}"))
        .unwrap();
    // Only the seed: the other artifact needs a VM.
    plan.retain(|entry| entry.kind == b9::ArtifactKind::CloudInit);
    assert_eq!(plan.len(), 1);
    session
        .build(&plan, &b9::BuildOptions::new())
        .expect("the seed builds");
    // Everything relative resolved in the session's directory.
    let here = std::env::current_dir().unwrap();
    assert_ne!(here, ex.dir);
    assert!(!here.join("out/demo-vm-seed.iso").exists());
    let iso = ex.dir.join("out/demo-vm-seed.iso");
    assert_eq!(
        iso_file(&iso, "/meta-data"),
        "instance-id: demo-vm\nlocal-hostname: demo-vm\n"
    );
    assert_eq!(
        iso_file(&iso, "/motd"),
        "Welcome to demo-vm, built by b9.\n"
    );
}
