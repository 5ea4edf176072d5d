//! The step cache of guest steps, end to end through the `b9` executable
//! (TCG guests): a hit gives the full run's outputs (qemu-img compare,
//! debugfs) without booting a VM; `b9 show` tells, without a VM, that a
//! change of each input kind misses (a byte of the source image with its
//! times put back, a shared file, the script, a mount point, the kernel);
//! a changed script and `--no-cache` really run; two b9 processes needing
//! the same step run it once; a script with its last command changed
//! boots on the cached layer and runs only that command (the same files as
//! a full run; `b9 show` says whole, layer N of M or runs, in text and
//! JSON), a damaged layer is detected, the layers before a failing
//! command are kept; the same resume on a local libvirt domain. Entry
//! checks, corruption, layer keys and eviction (chains kept whole) are
//! unit-tested in `src/stepcache`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::path::Path;
use std::process::Stdio;

mod common;

use common::project::*;

fn script(command: &str, mount: &str) -> String {
    format!(
        r#"Artifact (IID "cached")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/root.qcow2" QCow2 Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     , ImageTarget (LocalFile (Image "out/data.raw" Raw Ext4) KeepSize)
         (EmptyImage "data" Ext4 Raw (ImageSize 32 MB)) (MountPoint "{mount}")
     ]
     (VmScript X86_64
        [ SharedDirectoryRO "ro" (MountPoint "/mnt/ro")
        , SharedDirectory "rw" (MountPoint "/mnt/rw")
        ]
        (Begin
           [ Run "echo" ["{command}"]
           , Run "cp" ["/mnt/ro/input.txt", "{mount}/copied.txt"]
           , Run "touch" ["/etc/from-the-step"]
           , Run "echo" ["written by the guest", ">", "/mnt/rw/out.txt"]
           ])))
"#
    )
}

/// A project whose b9.conf boots a copy of the fixture kernel (so the
/// test can change it), with the shares' directories.
fn project() -> Project {
    project_on("qemu")
}

/// [`project`] on `backend` (`qemu`, or `libvirt` at `qemu:///system`).
fn project_on(backend: &str) -> Project {
    let p = Project::new(backend, "", 600);
    let conf = std::fs::read_to_string(p.p("b9.conf")).unwrap();
    let kernel = &fixture().kernel;
    std::fs::copy(kernel, p.p("kernel")).unwrap();
    let conf = conf.replace(
        &format!("kernel: {}", kernel.display()),
        &format!("kernel: {}", p.p("kernel").display()),
    );
    std::fs::write(p.p("b9.conf"), conf).unwrap();
    std::fs::create_dir_all(p.p("ro")).unwrap();
    std::fs::create_dir_all(p.p("rw")).unwrap();
    std::fs::write(p.p("ro/input.txt"), "from the host\n").unwrap();
    std::fs::write(p.p("cached.b9"), script("hello", "/data")).unwrap();
    p
}

/// `b9 show`'s verdict on the artifact.
fn verdict(p: &Project, file: &str) -> String {
    verdict_on(p, file, "cached")
}

/// `b9 show`'s verdict on the artifact `iid`.
fn verdict_on(p: &Project, file: &str, iid: &str) -> String {
    let out = p.b9(&["show", "-f", file]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let prefix = format!("step cache: {iid}: ");
    log.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no verdict: {log}"))
        .to_string()
}

/// `b9 show --json`'s verdict on the artifact `iid`.
fn json_verdict(p: &Project, file: &str, iid: &str) -> serde_json::Value {
    let out = p.b9(&["show", "--json", "-f", file]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["step_cache"][iid].clone()
}

fn hit(p: &Project, file: &str) -> bool {
    let v = verdict(p, file);
    assert!(
        v.starts_with("guest step from the cache") || v.starts_with("guest step runs"),
        "{v}"
    );
    v.starts_with("guest step from the cache")
}

/// Flips one byte of `path` at `offset` and puts its times back (`touch -r`).
fn flip_keeping_times(p: &Project, path: &Path, offset: u64) {
    let reference = p.p("times-ref");
    ok("touch", &["-r", &s(path), &s(&reference)]);
    let mut bytes = std::fs::read(path).unwrap();
    let i = usize::try_from(offset).unwrap();
    bytes[i] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
    ok("touch", &["-r", &s(&reference), &s(path)]);
}

/// `b9 build -f cached.b9 ARGS`, which must succeed; its log.
fn build(p: &Project, args: &[&str]) -> String {
    build_file(p, "cached.b9", args)
}

/// `b9 build -f FILE ARGS`, which must succeed; its log.
fn build_file(p: &Project, file: &str, args: &[&str]) -> String {
    let mut all = vec!["build", "-f", file];
    all.extend_from_slice(args);
    let out = p.b9(&all);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    log
}

fn booted(log: &str) -> bool {
    log.contains("starting the appliance")
}

#[test]
fn a_hit_matches_the_full_run_and_every_input_kind_misses() {
    let p = project();
    let first = build(&p, &[]);
    assert!(
        booted(&first) && first.contains("stored in the step cache"),
        "{first}"
    );
    for f in ["out/root.qcow2", "out/data.raw"] {
        std::fs::copy(p.p(f), p.p(&format!("{f}.first"))).unwrap();
    }
    // The read-write share as it was before the step: the same key.
    std::fs::remove_file(p.p("rw/out.txt")).unwrap();
    assert!(hit(&p, "cached.b9"), "b9 show sees the entry");

    let second = build(&p, &[]);
    assert!(!booted(&second), "a hit boots no VM: {second}");
    assert!(
        second.contains("taken from the step cache: run "),
        "{second}"
    );
    assert!(
        second.contains("(cached) > hello"),
        "the recorded output: {second}"
    );
    for f in ["out/root.qcow2", "out/data.raw"] {
        ok(
            "qemu-img",
            &["compare", &s(&p.p(&format!("{f}.first"))), &s(&p.p(f))],
        );
    }
    assert_eq!(
        std::fs::read_to_string(p.p("rw/out.txt")).unwrap(),
        "written by the guest\n",
        "what the step wrote into the share is restored"
    );
    let data = as_raw(&p.p("out/data.raw"));
    assert_eq!(debugfs_cat(&data, "/copied.txt"), "from the host\n");
    let root = as_raw(&p.p("out/root.qcow2"));
    e2fsck_clean(&root);
    assert!(debugfs_stat(&root, "/etc/from-the-step").contains("Type: regular"));
    std::fs::remove_file(p.p("rw/out.txt")).unwrap();

    // Each input kind, changed: a miss; put back: a hit again.
    let root_len = std::fs::metadata(p.p("root.raw")).unwrap().len();
    flip_keeping_times(&p, &p.p("root.raw"), root_len - 1);
    assert!(
        !hit(&p, "cached.b9"),
        "a byte of the source image, same times"
    );
    flip_keeping_times(&p, &p.p("root.raw"), root_len - 1);
    assert!(hit(&p, "cached.b9"));

    std::fs::write(p.p("ro/input.txt"), "from the host!\n").unwrap();
    assert!(!hit(&p, "cached.b9"), "a shared file");
    std::fs::write(p.p("ro/input.txt"), "from the host\n").unwrap();
    assert!(hit(&p, "cached.b9"));

    std::fs::write(p.p("mount.b9"), script("hello", "/data2")).unwrap();
    assert!(!hit(&p, "mount.b9"), "a mount point");

    let kernel_len = std::fs::metadata(p.p("kernel")).unwrap().len();
    flip_keeping_times(&p, &p.p("kernel"), kernel_len - 1);
    assert!(!hit(&p, "cached.b9"), "the kernel");
    flip_keeping_times(&p, &p.p("kernel"), kernel_len - 1);
    assert!(hit(&p, "cached.b9"));

    // A changed script misses and really runs; then it is cached too.
    std::fs::write(p.p("other.b9"), script("hello again", "/data")).unwrap();
    assert!(!hit(&p, "other.b9"), "the script");
    let out = p.b9(&["build", "-f", "other.b9"]);
    let changed = text(&out);
    assert!(out.status.success(), "{changed}");
    assert!(
        booted(&changed) && changed.contains("> hello again"),
        "{changed}"
    );
    std::fs::remove_file(p.p("rw/out.txt")).unwrap();
    assert!(hit(&p, "other.b9"));

    // --no-cache runs the step although it is cached.
    assert!(hit(&p, "cached.b9"));
    let forced = build(&p, &["--no-cache"]);
    assert!(booted(&forced), "{forced}");
    assert!(!forced.contains("step cache"), "{forced}");
    no_vm_left(&p);

    let list = text(&p.b9(&["cache", "list"]));
    assert!(list.contains("2 entries"), "{list}");
    let clean = text(&p.b9(&["cache", "clean"]));
    assert!(clean.contains("2 step cache entries removed"), "{clean}");
    assert!(!hit(&p, "cached.b9"));
}

#[test]
fn two_builds_of_the_same_step_run_it_once() {
    let (a, b) = (project(), project());
    let shared = tempfile::tempdir().unwrap();
    let start = |p: &Project| {
        p.command(&["build", "-f", "cached.b9"])
            .env("XDG_CACHE_HOME", shared.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (start(&a), start(&b));
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    let (la, lb) = (text(&oa), text(&ob));
    assert!(oa.status.success() && ob.status.success(), "{la}\n{lb}");
    assert_eq!(
        [booted(&la), booted(&lb)].iter().filter(|b| **b).count(),
        1,
        "one VM for both:\n{la}\n{lb}"
    );
    let taken = |l: &str| l.contains("taken from the step cache");
    assert!(
        taken(&la) != taken(&lb),
        "the other took the entry:\n{la}\n{lb}"
    );
    for f in ["out/root.qcow2", "out/data.raw"] {
        ok("qemu-img", &["compare", &s(&a.p(f)), &s(&b.p(f))]);
    }
    assert_eq!(
        std::fs::read_to_string(b.p("rw/out.txt")).unwrap(),
        std::fs::read_to_string(a.p("rw/out.txt")).unwrap()
    );
    no_vm_left(&a);
}

/// A four-command script over two disks (no read-write share, so it is
/// kept command by command) whose last command writes `last`.
fn layered(last: &str) -> String {
    layered_with("three", last)
}

/// [`layered`] with the third command writing `third`.
fn layered_with(third: &str, last: &str) -> String {
    format!(
        r#"Artifact (IID "layered")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/root.qcow2" QCow2 Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     , ImageTarget (LocalFile (Image "out/data.raw" Raw Ext4) KeepSize)
         (EmptyImage "data" Ext4 Raw (ImageSize 32 MB)) (MountPoint "/data")
     ]
     (VmScript X86_64
        [ SharedDirectoryRO "ro" (MountPoint "/mnt/ro") ]
        (Begin
           [ Run "echo" ["one", ">", "/etc/one"]
           , In "/data" [ Run "cp" ["/mnt/ro/input.txt", "copied.txt"] ]
           , Run "echo" ["{third}", ">", "/etc/three"]
           , Run "echo" ["{last}", ">", "/etc/last"]
           ])))
"#
    )
}

/// What a build left in the images, read with debugfs (both file systems
/// clean).
fn contents(p: &Project) -> Vec<String> {
    let root = as_raw(&p.p("out/root.qcow2"));
    let data = as_raw(&p.p("out/data.raw"));
    e2fsck_clean(&root);
    e2fsck_clean(&data);
    let mut out: Vec<String> = ["/etc/one", "/etc/three", "/etc/last"]
        .iter()
        .map(|f| debugfs_cat(&root, f))
        .collect();
    out.push(debugfs_cat(&data, "/copied.txt"));
    out
}

/// The layers in the project's step cache: (commands held, directory).
fn layers(p: &Project) -> Vec<(u64, std::path::PathBuf)> {
    let dir = p.p("home/.cache/b9/steps");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(path.join("manifest.json")) else {
            continue;
        };
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(n) = m["commands"].as_u64() {
            out.push((n, path));
        }
    }
    out.sort();
    out
}

#[test]
fn a_changed_last_command_boots_on_the_cached_layer() {
    let p = project();
    // The root without a journal (frozen at checkpoints), the data image
    // with one (synced: its journal is replayed on resume).
    ok("tune2fs", &["-O", "^has_journal", &s(&p.p("root.raw"))]);
    std::fs::write(p.p("layered.b9"), layered("four")).unwrap();
    let build = |args: &[&str]| build_file(&p, "layered.b9", args);
    let first = build(&[]);
    assert!(first.contains("RUN echo one > /etc/one"), "{first}");
    let kept: Vec<u64> = layers(&p).iter().map(|(n, _)| *n).collect();
    assert_eq!(kept, [1, 2, 3], "a layer after each command but the last");
    assert_eq!(contents(&p)[2], "four\n");
    let list = text(&p.b9(&["cache", "list"]));
    // Layer 1 holds whole images; each later one is an overlay of the one below.
    assert!(list.contains("layer after 1 command\n"), "{list}");
    for n in [2, 3] {
        assert!(
            list.contains(&format!("layer after {n} commands, on ")),
            "{list}"
        );
    }

    // b9 show tells the whole step, a resume from a layer, a fresh run.
    let v = verdict_on(&p, "layered.b9", "layered");
    assert!(v.starts_with("guest step from the cache (run "), "{v}");
    assert_eq!(json_verdict(&p, "layered.b9", "layered")["step"], "cached");
    std::fs::write(p.p("third.b9"), layered_with("3", "four")).unwrap();
    let v = verdict_on(&p, "third.b9", "layered");
    assert!(
        v.starts_with("guest step resumes from layer 2 of 4 commands (run "),
        "{v}"
    );
    ok("sed", &["-i", "s/one/uno/", &s(&p.p("third.b9"))]);
    let v = verdict_on(&p, "third.b9", "layered");
    assert_eq!(v, "guest step runs (not in the cache)");
    assert_eq!(
        json_verdict(&p, "third.b9", "layered"),
        serde_json::json!({"step": "runs", "why": "not in the cache"})
    );

    // Only the last command changed: boots on layer 3, runs one command.
    std::fs::write(p.p("layered.b9"), layered("changed")).unwrap();
    let v = verdict_on(&p, "layered.b9", "layered");
    assert!(
        v.starts_with("guest step resumes from layer 3 of 4 commands (run "),
        "{v}"
    );
    let j = json_verdict(&p, "layered.b9", "layered");
    assert_eq!(
        (&j["step"], &j["layer"], &j["commands"]),
        (&"resumes".into(), &3.into(), &4.into()),
        "{j}"
    );
    resumes_from_layer_3_like_a_full_run(&p);

    // A damaged layer 2 is detected: the run resumes from layer 1.
    let (_, two) = layers(&p).into_iter().find(|(n, _)| *n == 2).unwrap();
    let image = two.join("image-0.qcow2");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[0x30] ^= 1;
    std::fs::write(&image, bytes).unwrap();
    std::fs::write(p.p("layered.b9"), layered("again")).unwrap();
    let cut = build(&[]);
    assert!(cut.contains("discarding layer"), "{cut}");
    assert!(
        cut.contains("commands 1 to 1 taken from the step cache"),
        "{cut}"
    );
    assert_eq!(contents(&p)[2], "again\n");

    // A failing last command: the layers before it are kept, so the fixed
    // script resumes after the changed third command.
    std::fs::write(p.p("layered.b9"), layered_with("3", "x; exit 3")).unwrap();
    let failed = p.b9(&["build", "-f", "layered.b9"]);
    let log = text(&failed);
    assert!(!failed.status.success(), "{log}");
    assert!(
        log.contains("commands 1 to 2 taken from the step cache"),
        "{log}"
    );
    std::fs::write(p.p("layered.b9"), layered_with("3", "fixed")).unwrap();
    let fixed = build(&[]);
    assert!(
        fixed.contains("commands 1 to 3 taken from the step cache"),
        "{fixed}"
    );
    assert_eq!(contents(&p)[1..3], ["3\n", "fixed\n"]);
    no_vm_left(&p);
}

/// With only the last of `layered.b9`'s commands changed: the build boots
/// on layer 3, replays the cached output of commands 1 to 3 and runs only
/// the last; a full run (`--no-cache` bypasses the layers too) then gives
/// the same files.
fn resumes_from_layer_3_like_a_full_run(p: &Project) {
    let resumed = build_file(p, "layered.b9", &[]);
    assert!(booted(&resumed), "{resumed}");
    assert!(
        resumed.contains("commands 1 to 3 taken from the step cache"),
        "{resumed}"
    );
    assert!(
        resumed.contains("(cached) RUN echo three > /etc/three"),
        "{resumed}"
    );
    assert!(
        resumed.contains("] RUN echo changed > /etc/last"),
        "{resumed}"
    );
    for earlier in ["] RUN echo one", "] RUN cp", "] RUN echo three"] {
        assert!(!resumed.contains(earlier), "{earlier} ran again: {resumed}");
    }
    let from_layer = contents(p);

    let full = build_file(p, "layered.b9", &["--no-cache"]);
    assert!(full.contains("RUN echo one > /etc/one"), "{full}");
    assert!(!full.contains("step cache"), "{full}");
    assert_eq!(contents(p), from_layer);
    assert_eq!(
        from_layer,
        ["one\n", "three\n", "changed\n", "from the host\n"]
    );
}

/// libvirt at `qemu:///system` must be running (`virtlogd -d; libvirtd -d`).
fn require_libvirtd() {
    let out = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "version"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "libvirtd is not running: start it with `virtlogd -d; libvirtd -d`"
    );
}

#[test]
fn libvirt_a_changed_last_command_boots_on_the_cached_layer() {
    require_libvirtd();
    let p = project_on("libvirt");
    let build = |args: &[&str]| build_file(&p, "layered.b9", args);
    std::fs::write(p.p("layered.b9"), layered("four")).unwrap();
    let first = build(&[]);
    assert!(first.contains("RUN echo one > /etc/one"), "{first}");
    let kept: Vec<u64> = layers(&p).iter().map(|(n, _)| *n).collect();
    assert_eq!(kept, [1, 2, 3], "a layer after each command but the last");
    // Each layer after the first is an overlay of the one below, as b9
    // created it (libvirt's snapshot left the backing name alone).
    let all = layers(&p);
    for pair in all.windows(2) {
        let info = ok("qemu-img", &["info", &s(&pair[1].1.join("image-0.qcow2"))]);
        let below = pair[0]
            .1
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            info.contains(&format!("backing file: ../{below}/image-0.qcow2")),
            "{info}"
        );
    }

    std::fs::write(p.p("layered.b9"), layered("changed")).unwrap();
    resumes_from_layer_3_like_a_full_run(&p);
    no_vm_left(&p);
}
