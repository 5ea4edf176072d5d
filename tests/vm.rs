//! `VmScript`s in real guests (TCG), end to end through the `b9` executable,
//! with both backends: outputs checked with qemu-img, e2fsck and debugfs,
//! failures, timeouts and a killed QEMU cleaned up, resizes, `b9 run`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::project::*;

const FULL_SCRIPT: &str = r#"
Artifact (IID "full")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/root.qcow2" QCow2 Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     , ImageTarget (LocalFile (Image "out/data.vmdk" Vmdk Ext4) KeepSize)
         (EmptyImage "data" Ext4 Raw (ImageSize 32 MB)) (MountPoint "/data")
     ]
     (VmScript X86_64
        [ SharedDirectoryRO "ro" (MountPoint "/mnt/ro")
        , SharedDirectory "rw" (MountPoint "/mnt/rw")
        ]
        (Begin
           [ Run "echo" ["hello from the guest"]
           , Run "cp" ["/mnt/ro/input.txt", "/data/copied.txt"]
           , In "/data" [Run "pwd" [">", "where.txt"]]
           , As "builder" [Run "id" ["-u", ">", "/tmp/uid"], Run "id" ["-G", ">", "/tmp/groups"]]
           , Run "cp" ["/tmp/uid", "/tmp/groups", "/data/"]
           , As "builder" [In "/home/builder" [Run "touch" ["mine"]]]
           , IgnoreErrors True [Run "false" []]
           , Verbosity Quiet [Run "echo" ["this line is not shown"]]
           , Run "echo" ["$$HOME", ">", "/data/home.txt"]
           , Run "echo" ["written by the guest", ">", "/mnt/rw/out.txt"]
           , IgnoreErrors True [Run "touch" ["/mnt/ro/forbidden"]]
           ])))
"#;

fn full_build(backend: &str) {
    let p = Project::new(backend, "", 600);
    std::fs::create_dir_all(p.p("ro")).unwrap();
    std::fs::write(p.p("ro/input.txt"), "from the host\n").unwrap();
    let before = sha(&p.p("root.raw"));
    let out = p.build("full.b9", FULL_SCRIPT);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("hello from the guest"), "{log}");
    assert!(
        log.contains("[full]"),
        "output lines carry the instance id: {log}"
    );
    assert!(!log.contains("> this line is not shown"), "{log}");
    assert_eq!(
        sha(&p.p("root.raw")),
        before,
        "the source image is unchanged"
    );
    assert_eq!(
        std::fs::read_to_string(p.p("rw/out.txt")).unwrap(),
        "written by the guest\n"
    );
    assert!(
        !p.p("ro/forbidden").exists(),
        "the read-only share stays read-only"
    );
    for img in ["out/root.qcow2", "out/data.vmdk"] {
        ok("qemu-img", &["check", &s(&p.p(img))]);
    }
    let vmdk = ok("qemu-img", &["info", &s(&p.p("out/data.vmdk"))]);
    assert!(vmdk.contains("vmdk"), "{vmdk}");
    let data = as_raw(&p.p("out/data.vmdk"));
    e2fsck_clean(&data);
    assert_eq!(debugfs_cat(&data, "/copied.txt"), "from the host\n");
    assert_eq!(debugfs_cat(&data, "/where.txt"), "/data\n");
    assert_eq!(debugfs_cat(&data, "/uid"), "1000\n");
    assert_eq!(debugfs_cat(&data, "/groups"), "1000 50\n");
    assert_eq!(debugfs_cat(&data, "/home.txt"), "/root\n");
    let root = as_raw(&p.p("out/root.qcow2"));
    e2fsck_clean(&root);
    let mine = debugfs_stat(&root, "/home/builder/mine");
    assert!(mine.contains("User:  1000"), "{mine}");
    no_vm_left(&p);
}

#[test]
fn a_script_runs_in_a_qemu_guest() {
    full_build("qemu");
}

#[test]
fn a_script_runs_in_a_libvirt_guest() {
    full_build("libvirt");
}

fn single(script: &str, dest: &str) -> String {
    format!(
        r#"Artifact (IID "one")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/root.qcow2" QCow2 Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     , ImageTarget {dest}
         (EmptyImage "data" Ext4 Raw (ImageSize 64 MB)) (MountPoint "/data")
     ]
     (VmScript X86_64 [] {script}))"#
    )
}

/// The size of the ext4 file system in an image, from its superblock.
fn fs_bytes(raw: &std::path::Path) -> u64 {
    let stats = ok("dumpe2fs", &["-h", &s(raw)]);
    let field = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing: {stats}"))
            .trim()
            .parse()
            .unwrap()
    };
    field("Block count:") * field("Block size:")
}

/// A project whose build file `slow.b9` runs `sleep 600` in the guest.
fn sleeping(timeout: u64) -> Project {
    let p = Project::new("qemu", "", timeout);
    std::fs::write(
        p.p("slow.b9"),
        single(
            r#"(Run "sleep" ["600"])"#,
            r#"(LocalFile (Image "out/data.raw" Raw Ext4) KeepSize)"#,
        ),
    )
    .unwrap();
    p
}

#[test]
fn a_failing_script_exports_nothing_and_names_the_command() {
    let p = Project::new("qemu", "", 600);
    let out = p.build(
        "fail.b9",
        &single(
            r#"(Begin [Run "echo" ["about to fail"], Run "sh" ["-c", "'exit 7'"], Run "echo" ["never"]])"#,
            r#"(LocalFile (Image "out/data.raw" Raw Ext4) KeepSize)"#,
        ),
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("exited with status 7"), "{log}");
    assert!(log.contains("sh -c 'exit 7'"), "{log}");
    assert!(log.contains("about to fail"), "{log}");
    assert!(!log.contains("> never"), "{log}");
    assert!(!p.p("out/root.qcow2").exists() && !p.p("out/data.raw").exists());
    no_vm_left(&p);
}

#[test]
fn a_timeout_stops_the_vm_and_exports_nothing() {
    let p = sleeping(25);
    let out = p.b9(&["build", "-f", "slow.b9"]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("timeout"), "{log}");
    assert!(!p.p("out/data.raw").exists());
    no_vm_left(&p);
}

#[test]
fn a_killed_qemu_is_reported_and_cleaned_up() {
    let p = sleeping(600);
    let child = p
        .command(&["build", "-f", "slow.b9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let pid = loop {
        let ps = ok("ps", &["-eo", "pid,args"]);
        if let Some(line) = ps
            .lines()
            .find(|l| l.contains("qemu-system") && l.contains(&*s(&p.path)))
        {
            break line.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "QEMU never started");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the script start, then kill QEMU under b9's feet.
    std::thread::sleep(Duration::from_secs(8));
    ok("kill", &["-9", &pid]);
    let out = child.wait_with_output().unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("ended unexpectedly"), "{log}");
    assert!(!p.p("out/data.raw").exists());
    no_vm_left(&p);
}

#[test]
fn file_systems_are_grown_and_shrunk_in_the_guest() {
    let p = Project::new("qemu", "", 600);
    let out = p.build(
        "resize.b9",
        r#"Artifact (IID "resize")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/root.qcow2" QCow2 Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT (Resize (ImageSize 160 MB))) (MountPoint "/")
     , ImageTarget (LocalFile (Image "out/small.raw" Raw Ext4) ShrinkToMinimum)
         (EmptyImage "small" Ext4 Raw (ImageSize 256 MB)) (MountPoint "/small")
     , ImageTarget (LocalFile (Image "out/big.raw" Raw Ext4) (Resize (ImageSize 200 MB)))
         (EmptyImage "big" Ext4 Raw (ImageSize 64 MB)) (MountPoint "/big")
     , ImageTarget (LocalFile (Image "out/roomy.raw" Raw Ext4) (Resize (ImageSize 96 MB)))
         (SourceImage (Image "root.raw" Raw Ext4) NoPT (ResizeImage (ImageSize 128 MB)))
         (MountPoint "/roomy")
     ]
     (VmScript X86_64 []
        (Begin
           [ Run "dd" ["if=/dev/zero", "of=/filler", "bs=1M", "count=100"]
           , Run "rm" ["/filler"]
           , Run "seq" ["1", "200000", ">", "/small/numbers"]
           , Run "mkdir" ["-p", "/small/dir/sub"]
           , Run "ln" ["-s", "../numbers", "/small/dir/link"]
           , Run "ln" ["/small/numbers", "/small/dir/hard"]
           , Run "chown" ["1000:50", "/small/dir/sub"]
           , Run "chmod" ["4750", "/small/dir/sub"]
           , Run "seq" ["1", "1000", ">", "/big/numbers"]
           ])))"#,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let small = p.p("out/small.raw");
    let size = std::fs::metadata(&small).unwrap().len();
    assert!(size < 64 << 20, "shrunk to {size} bytes");
    e2fsck_clean(&small);
    let numbers: String = (1..=200000).map(|i| format!("{i}\n")).collect();
    assert_eq!(debugfs_cat(&small, "/numbers"), numbers);
    assert_eq!(debugfs_cat(&small, "/dir/hard"), numbers);
    let stat = debugfs_stat(&small, "/dir/hard");
    assert!(stat.contains("Links: 2"), "{stat}");
    let link = debugfs_stat(&small, "/dir/link");
    assert!(link.contains("Fast link dest: \"../numbers\""), "{link}");
    let sub = debugfs_stat(&small, "/dir/sub");
    assert!(
        sub.contains("Mode:  04750") && sub.contains("User:  1000") && sub.contains("Group:    50"),
        "{sub}"
    );
    let big = p.p("out/big.raw");
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 200 << 20);
    e2fsck_clean(&big);
    assert_eq!(fs_bytes(&big), 200 << 20);
    // A 64 MiB file system in a 128 MiB container grows to 96 MiB in place.
    let roomy = p.p("out/roomy.raw");
    e2fsck_clean(&roomy);
    assert_eq!(fs_bytes(&roomy), 96 << 20);
    assert_eq!(debugfs_cat(&roomy, "/etc/issue"), "b9 busybox root\n");
    let root = as_raw(&p.p("out/root.qcow2"));
    e2fsck_clean(&root);
    assert_eq!(
        fs_bytes(&root),
        160 << 20,
        "the source's Resize grew / before the script"
    );
    assert_eq!(debugfs_cat(&big, "/numbers").lines().count(), 1000);
}

/// The inode flags (`chattr`) of `file` in a raw ext4 image.
fn inode_flags(raw: &std::path::Path, file: &str) -> u32 {
    let stat = debugfs_stat(raw, file);
    let hex = stat
        .split("Flags: 0x")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no flags for {file}: {stat}"));
    u32::from_str_radix(hex, 16).unwrap()
}

#[test]
fn file_systems_of_unmounted_images_are_resized_without_a_script() {
    let p = Project::new("qemu", "", 600);
    // Immutable /etc/issue, no-dump /etc: a shrink keeps inode flags.
    let root = p.p("root.raw");
    for (file, add) in [("/etc/issue", 0x10), ("/etc", 0x40)] {
        let flags = inode_flags(&root, file) | add;
        ok(
            "debugfs",
            &[
                "-w",
                "-R",
                &format!("set_inode_field {file} flags {flags:#x}"),
                &s(&root),
            ],
        );
    }
    e2fsck_clean(&root);
    let before = sha(&root);
    let out = p.build(
        "offline.b9",
        r#"Artifact (IID "offline")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/grown.raw" Raw Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT (Resize (ImageSize 100 MB))) NotMounted
     , ImageTarget (LocalFile (Image "out/min.qcow2" QCow2 Ext4) ShrinkToMinimum)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) NotMounted
     ]
     NoVmScript)"#,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let grown = p.p("out/grown.raw");
    e2fsck_clean(&grown);
    assert_eq!(fs_bytes(&grown), 100 << 20);
    assert_eq!(debugfs_cat(&grown, "/etc/issue"), "b9 busybox root\n");
    let min = as_raw(&p.p("out/min.qcow2"));
    e2fsck_clean(&min);
    assert!(fs_bytes(&min) < 32 << 20, "{} bytes", fs_bytes(&min));
    assert_eq!(debugfs_cat(&min, "/etc/issue"), "b9 busybox root\n");
    assert_eq!(inode_flags(&min, "/etc/issue") & 0x10, 0x10);
    assert_eq!(inode_flags(&min, "/etc") & 0x40, 0x40);
    assert_eq!(inode_flags(&min, "/etc/passwd") & 0x50, 0);
    assert_eq!(sha(&p.p("root.raw")), before, "the source is unchanged");
}

#[test]
fn b9_run_executes_a_command_in_a_transient_copy() {
    let p = Project::new("qemu", "", 600);
    std::fs::write(p.p("hello.txt"), "shared cwd\n").unwrap();
    let before = sha(&p.p("root.raw"));
    let out = p.b9(&[
        "run",
        "root.raw",
        "cat",
        "hello.txt;",
        "touch",
        "/etc/changed",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("shared cwd"),
        "{}",
        text(&out)
    );
    assert_eq!(
        sha(&p.p("root.raw")),
        before,
        "b9 run leaves the image alone"
    );
    let out = p.b9(&["run", "root.raw", "exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    no_vm_left(&p);
}

/// A `b9 build` of `slow.b9` whose script is running: the child, the
/// rest of its stderr, and the log so far.
fn sleeping_build(
    p: &Project,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    String,
) {
    use std::io::{BufRead, BufReader};
    let mut child = p
        .command(&["build", "-f", "slow.b9"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("RUN sleep") {
            break;
        }
    }
    assert!(log.contains("RUN sleep"), "{log}");
    (child, lines, log)
}

#[test]
fn ctrl_c_stops_the_vm_and_cleans_up() {
    let p = sleeping(600);
    let (mut child, lines, mut log) = sleeping_build(&p);
    let pid = child.id();
    let runtime = std::env::temp_dir().join(format!("b9.{pid}.0"));
    assert!(runtime.exists(), "the run's socket directory {runtime:?}");
    ok("kill", &["-INT", &pid.to_string()]);
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert!(!runtime.exists(), "sockets removed");
    assert!(!p.p("out/data.raw").exists());
    no_vm_left(&p);
}

#[test]
fn a_killed_b9_leaves_no_vm_and_the_next_run_removes_its_sockets() {
    let p = sleeping(600);
    let (mut child, _lines, _log) = sleeping_build(&p);
    let runtime = std::env::temp_dir().join(format!("b9.{}.0", child.id()));
    assert!(runtime.exists(), "{runtime:?}");
    // SIGKILL: b9 cannot stop the VM; the agent sees the port close and
    // powers the guest off, so QEMU ends.
    child.kill().unwrap();
    child.wait().unwrap();
    no_vm_left(&p);
    // Its run directory (sockets) is left; the next run (this one, or one
    // of a test running in parallel) removes it.
    std::fs::write(p.p("one.b9"), single(r#"(Run "true" [])"#, "Transient")).unwrap();
    let out = p
        .command(&["build", "-f", "one.b9"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!runtime.exists(), "{runtime:?} left");
}

#[test]
fn auto_accel_is_probed_once_and_remembered() {
    let p = Project::new("qemu", "accel: auto", 600);
    let cache = p.p("cache");
    std::fs::write(p.p("one.b9"), single(r#"(Run "true" [])"#, "Transient")).unwrap();
    let build = || {
        let out = p
            // Both builds boot: the second is not taken from the step cache.
            .command(&["build", "-f", "one.b9", "--no-cache"])
            .env("B9_CACHE_DIR", &cache)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    build();
    let chosen = std::fs::read_to_string(cache.join("accel")).unwrap();
    assert!(chosen == "kvm" || chosen == "tcg", "{chosen:?}");
    let second = build();
    assert!(!second.contains("trying TCG"), "probed again: {second}");
}
