//! libvirt build farms (issue 14) for real on one machine: two hosts that
//! share nothing with b9 (`fixtures/libvirt-hosts`: session libvirtds of
//! two users reached over `qemu+ssh`), b9 running as a third user in a
//! 0700 home. Builds under TCG; outputs checked with qemu-img, e2fsck and
//! debugfs; afterwards neither host has a domain or build volume left.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

mod common;

use common::events::{check_order, check_outputs, of_kind, parse};
use common::farm::*;
use common::project::{as_raw, debugfs_cat, debugfs_stat, e2fsck_clean, ok, s, sha, text};

/// `tests/vm.rs`'s full script: RO and RW shares, `In`, `As`, qcow2 and
/// vmdk outputs.
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
           [ Run "cp" ["/mnt/ro/input.txt", "/data/copied.txt"]
           , In "/data" [Run "pwd" [">", "where.txt"]]
           , As "builder" [Run "id" ["-u", ">", "/tmp/uid"]]
           , Run "cp" ["/tmp/uid", "/data/"]
           , As "builder" [In "/home/builder" [Run "touch" ["mine"]]]
           , Run "echo" ["written by the guest", ">", "/mnt/rw/out.txt"]
           , IgnoreErrors True [Run "touch" ["/mnt/ro/forbidden"]]
           ])))
"#;

/// One artifact `NAME` whose script is `script`, with a raw output.
fn single(name: &str, script: &str) -> String {
    format!(
        r#"Artifact (IID "{name}")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/{name}.raw" Raw Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     ]
     (VmScript X86_64 [] {script}))"#
    )
}

#[test]
fn a_build_on_a_remote_host_with_shares_and_outputs() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    let p = ClientProject::new(&format!("connection: {}\n", h.a));
    assert!(
        !readable_by("b9hosta", &p.path),
        "the host can read b9's files"
    );
    std::fs::create_dir_all(p.p("ro")).unwrap();
    std::fs::create_dir_all(p.p("rw")).unwrap();
    std::fs::write(p.p("ro/input.txt"), "from the host\n").unwrap();
    let before = sha(&p.p("root.raw"));
    std::fs::write(p.p("full.b9"), FULL_SCRIPT).unwrap();
    p.chown();
    let out = p
        .command(&["build", "--no-cache", "--events", "json", "-f", "full.b9"])
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    // The events: each disk uploaded and each written one downloaded,
    // reported from 0 to its whole size (docs/EVENTS.md#transfer).
    let events = parse(&out);
    check_order(&events);
    check_outputs(&events);
    let mut ended: Vec<(&str, &str)> = of_kind(&events, "transfer")
        .into_iter()
        .filter(|e| e["done"] == e["total"])
        .map(|e| {
            assert_eq!(e["instance"], "full", "{e}");
            (
                e["direction"].as_str().unwrap(),
                e["name"].as_str().unwrap(),
            )
        })
        .collect();
    ended.sort();
    ended.dedup();
    let uploads: Vec<&str> = ended
        .iter()
        .filter(|(d, _)| *d == "upload")
        .map(|(_, n)| *n)
        .collect();
    let downloads: Vec<&str> = ended
        .iter()
        .filter(|(d, _)| *d == "download")
        .map(|(_, n)| *n)
        .collect();
    // Two build images and two share images (and the appliance's kernel
    // and initramfs when the host had none).
    assert!(uploads.len() >= 4, "{ended:?}");
    assert_eq!(
        downloads.len(),
        3,
        "the build images and the RW share: {ended:?}"
    );
    assert!(downloads.iter().all(|d| uploads.contains(d)), "{ended:?}");
    assert_eq!(
        sha(&p.p("root.raw")),
        before,
        "the source image is unchanged"
    );
    assert_eq!(
        std::fs::read_to_string(p.p("rw/out.txt")).unwrap(),
        "written by the guest\n",
        "the RW share is written back"
    );
    assert!(
        !p.p("ro/forbidden").exists(),
        "the RO share stays read-only"
    );
    for img in ["out/root.qcow2", "out/data.vmdk"] {
        ok("qemu-img", &["check", &s(&p.p(img))]);
    }
    let data = as_raw(&p.p("out/data.vmdk"));
    e2fsck_clean(&data);
    assert_eq!(debugfs_cat(&data, "/copied.txt"), "from the host\n");
    assert_eq!(debugfs_cat(&data, "/where.txt"), "/data\n");
    assert_eq!(debugfs_cat(&data, "/uid"), "1000\n");
    let root = as_raw(&p.p("out/root.qcow2"));
    e2fsck_clean(&root);
    assert!(debugfs_stat(&root, "/home/builder/mine").contains("User:  1000"));
    let volumes = virsh(&h.a, &["vol-list", "b9"]);
    assert!(
        volumes.contains("b9-appliance-"),
        "the appliance stays: {volumes}"
    );
    nothing_left();
}

#[test]
fn artifacts_spread_over_both_hosts_and_a_down_host_is_skipped() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    // Port 1: nothing listens, the host is down.
    let down = h.a.replace(":2229/", ":1/");
    let p = ClientProject::new(&format!("hosts: {down} {} {}\nvms_per_host: 1\n", h.a, h.b));
    let artifacts: Vec<String> = (0..4)
        .map(|i| single(&format!("a{i}"), r#"(Run "touch" ["/built"])"#))
        .collect();
    let build = format!("Let [] [{}]", artifacts.join(",\n"));
    let out = p.build("many.b9", &build);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains(&format!("skipping libvirt host {down}")),
        "{log}"
    );
    for uri in [&h.a, &h.b] {
        assert!(
            log.contains(&format!("running on libvirt host {uri}")),
            "{log}"
        );
    }
    for i in 0..4 {
        let raw = p.p(&format!("out/a{i}.raw"));
        e2fsck_clean(&raw);
        assert!(debugfs_stat(&raw, "/built").contains("Type: regular"));
    }
    nothing_left();
}

#[test]
fn a_failing_script_and_ctrl_c_leave_nothing_on_the_hosts() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    let p = ClientProject::new(&format!("connection: {}\n", h.b));
    let out = p.build("fail.b9", &single("bad", r#"(Run "false" [])"#));
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("false"), "{log}");
    assert!(!p.p("out/bad.raw").exists());
    nothing_left();

    std::fs::write(p.p("slow.b9"), single("slow", r#"(Run "sleep" ["600"])"#)).unwrap();
    p.chown();
    let mut child = p
        .command(&["build", "--no-cache", "-f", "slow.b9"])
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
    ok("kill", &["-INT", &child.id().to_string()]);
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    assert_eq!(child.wait().unwrap().code(), Some(1), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    nothing_left();
}

/// Builds `build` in `p` and cuts the connections to the host a run is
/// on each time a run there reaches `RUN sleep`, `cuts` times; the log.
fn build_cutting_hosts(p: &ClientProject, build: &str, cuts: usize) -> (Option<i32>, String) {
    std::fs::write(p.p("lost.b9"), build).unwrap();
    p.chown();
    let mut child = p
        .command(&["build", "--no-cache", "-f", "lost.b9"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut on = String::new();
    let mut cut = 0;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((_, uri)) = line.split_once("running on libvirt host ") {
            on = uri.trim().to_string();
        }
        if line.contains("RUN sleep") && cut < cuts {
            assert!(cut_connections(host_user(&on)) > 0, "no connection to {on}");
            cut += 1;
        }
        log.push_str(&line);
        log.push('\n');
    }
    assert_eq!(cut, cuts, "the runs never reached `RUN sleep`:\n{log}");
    (child.wait().unwrap().code(), log)
}

/// An artifact that sleeps a little (time to cut its host) and then
/// marks its root.
fn sleeper() -> String {
    single(
        "lost",
        r#"(Begin [Run "sleep" ["5"], Run "touch" ["/built"]])"#,
    )
}

#[test]
fn a_host_lost_during_a_run_gets_the_artifact_retried_on_the_other() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    let p = ClientProject::new(&format!("hosts: {} {}\n", h.a, h.b));
    let before = sha(&p.p("root.raw"));
    let (code, log) = build_cutting_hosts(&p, &sleeper(), 1);
    assert_eq!(code, Some(0), "{log}");
    let lost = log
        .lines()
        .find_map(|l| l.split_once("lost libvirt host ")?.1.split_once(' '))
        .map(|(uri, _)| uri.to_string())
        .unwrap_or_else(|| panic!("no host lost:\n{log}"));
    let other = if lost == h.a { &h.b } else { &h.a };
    assert!(
        log.contains(&format!("running on libvirt host {other}")),
        "{log}"
    );
    let raw = p.p("out/lost.raw");
    e2fsck_clean(&raw);
    assert!(debugfs_stat(&raw, "/built").contains("Type: regular"));
    assert_eq!(
        sha(&p.p("root.raw")),
        before,
        "the source image is unchanged"
    );
    nothing_left();
}

#[test]
fn both_hosts_lost_fails_the_build_naming_the_host_and_cause() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    let p = ClientProject::new(&format!("hosts: {} {}\n", h.a, h.b));
    let (code, log) = build_cutting_hosts(&p, &sleeper(), 2);
    assert_eq!(code, Some(1), "{log}");
    let second = log
        .lines()
        .filter_map(|l| {
            l.split_once("running on libvirt host ")
                .map(|(_, u)| u.trim())
        })
        .nth(1)
        .unwrap_or_else(|| panic!("not retried:\n{log}"))
        .to_string();
    assert!(
        log.contains(&format!(
            "lost libvirt host {second} during the retried run: lost the connection to libvirt"
        )),
        "{log}"
    );
    assert!(!p.p("out/lost.raw").exists());
    nothing_left();
}

/// `Let [] [...]` of `n` artifacts `PREFIX0..` that mark their root.
fn several(prefix: &str, n: usize) -> String {
    let artifacts: Vec<String> = (0..n)
        .map(|i| single(&format!("{prefix}{i}"), r#"(Run "touch" ["/built"])"#))
        .collect();
    format!("Let [] [{}]", artifacts.join(",\n"))
}

/// How many times the log says KVM was probed on `uri`.
fn probes(log: &str, uri: &str) -> usize {
    log.matches(&format!("probing KVM on {uri}\n")).count()
}

#[test]
fn accel_auto_is_probed_once_per_host_and_remembered() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    let p = ClientProject::new(&format!("hosts: {}\nvms_per_host: 2\n", h.a));
    let auto = |libvirt: &str| {
        let conf = std::fs::read_to_string(p.p("b9.conf")).unwrap();
        let conf = conf.replace("accel: tcg", "accel: auto");
        let (head, _) = conf.split_once("[libvirt]\n").unwrap();
        std::fs::write(p.p("b9.conf"), format!("{head}[libvirt]\n{libvirt}")).unwrap();
    };
    auto(&format!("hosts: {}\nvms_per_host: 2\n", h.a));
    let cache = h.home.join(".cache/b9");
    for entry in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("accel") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    // Two runs at once on one host: one probes, the other waits for it.
    let out = p.build("two.b9", &several("k", 2));
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(probes(&log, &h.a), 1, "{log}");
    assert!(
        log.contains(&format!("using TCG on {} from now on", h.a)),
        "{log}"
    );
    // The answer is the first host's only: the second is probed once.
    auto(&format!("hosts: {} {}\nvms_per_host: 2\n", h.a, h.b));
    let out = p.build("four.b9", &several("m", 4));
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(probes(&log, &h.a), 0, "{log}");
    assert_eq!(probes(&log, &h.b), 1, "{log}");
    assert!(
        log.contains(&format!("running on libvirt host {}", h.b)),
        "{log}"
    );
    for i in 0..4 {
        let raw = p.p(&format!("out/m{i}.raw"));
        assert!(debugfs_stat(&raw, "/built").contains("Type: regular"));
    }
    nothing_left();
}

#[test]
fn a_copy_on_write_image_builds_on_a_remote_host() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    let p = ClientProject::new(&format!("connection: {}\n", h.a));
    let before = sha(&p.p("root.raw"));
    let out = p.build(
        "cow.b9",
        r#"Artifact (IID "cow")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/cow.qcow2" QCow2 Ext4) KeepSize)
         (CopyOnWrite (Image "root.raw" Raw Ext4)) (MountPoint "/")
     ]
     (VmScript X86_64 [] (Run "touch" ["/built"])))"#,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    ok("qemu-img", &["check", &s(&p.p("out/cow.qcow2"))]);
    let root = as_raw(&p.p("out/cow.qcow2"));
    e2fsck_clean(&root);
    assert!(debugfs_stat(&root, "/built").contains("Type: regular"));
    assert_eq!(
        sha(&p.p("root.raw")),
        before,
        "the backing image is unchanged"
    );
    nothing_left();
}

#[test]
fn two_b9_processes_uploading_the_appliance_at_once_both_build() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    for volume in appliance_volumes(&h.a) {
        virsh(&h.a, &["vol-delete", "--pool", "b9", &volume]);
    }
    let projects: Vec<ClientProject> = (0..2)
        .map(|_| ClientProject::new(&format!("connection: {}\n", h.a)))
        .collect();
    let children: Vec<_> = projects
        .iter()
        .map(|p| {
            std::fs::write(p.p("one.b9"), single("one", r#"(Run "touch" ["/built"])"#)).unwrap();
            p.chown();
            p.command(&["build", "--no-cache", "-f", "one.b9"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (p, child) in projects.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        let log = text(&out);
        assert!(out.status.success(), "{log}");
        assert!(debugfs_stat(&p.p("out/one.raw"), "/built").contains("Type: regular"));
    }
    let complete = complete_appliance(&projects[0]);
    // A half-uploaded appliance (its uploader killed, or still at it): the
    // right names and sizes, no content. Never used: the build replaces it.
    for volume in appliance_volumes(&h.a) {
        virsh(&h.a, &["vol-delete", "--pool", "b9", &volume]);
    }
    for (volume, size) in &complete {
        virsh(&h.a, &["vol-create-as", "b9", volume, &size.to_string()]);
    }
    let out = projects[1].build("one.b9", &single("one", r#"(Run "touch" ["/built"])"#));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(complete_appliance(&projects[0]), complete);
    nothing_left();
}

/// The appliance's kernel and initramfs volumes on the first host, checked
/// byte for byte against the client's appliance cache; with their sizes.
fn complete_appliance(p: &ClientProject) -> Vec<(String, u64)> {
    let h = hosts();
    let volumes = appliance_volumes(&h.a);
    let cache = h.home.join(".cache/b9/appliance");
    let mut found = Vec::new();
    for part in ["kernel", "initrd"] {
        let volume = volumes
            .iter()
            .find(|v| v.ends_with(&format!("-{part}")))
            .unwrap_or_else(|| panic!("no appliance {part} on the host: {volumes:?}"));
        let copy = p.p(&format!("{part}.check"));
        let out = as_client("virsh")
            .args([
                "-c",
                &h.a,
                "vol-download",
                "--pool",
                "b9",
                volume,
                &s(&copy),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let got = sha(&copy);
        assert!(
            std::fs::read_dir(&cache)
                .unwrap()
                .any(|f| sha(&f.unwrap().path()) == got),
            "the {part} volume {volume} is not the client's appliance"
        );
        found.push((volume.clone(), std::fs::metadata(&copy).unwrap().len()));
        std::fs::remove_file(&copy).unwrap();
    }
    found
}

#[test]
fn a_guest_on_a_remote_host_reaches_the_host_over_user_networking() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    // The host side of user networking (10.0.2.2) is the host's loopback:
    // this machine's, where the test serves one file.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 19\r\n\r\nfrom the host side\n");
        }
    });
    let p = ClientProject::new(&format!("connection: {}\nnetwork: user\n", h.a));
    let script = format!(r#"(Run "wget" ["-O", "/got", "http://10.0.2.2:{port}/file"])"#);
    let out = p.build("net.b9", &single("net", &script));
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let raw = p.p("out/net.raw");
    assert_eq!(debugfs_cat(&raw, "/got"), "from the host side\n");
    nothing_left();
}

#[test]
fn a_missing_pool_names_the_host_and_the_command_that_makes_it() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    let p = ClientProject::new(&format!("connection: {}\npool: nope\n", h.a));
    let out = p.build("one.b9", &single("one", r#"(Run "true" [])"#));
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains(&h.a), "{log}");
    assert!(log.contains("pool-define-as nope dir"), "{log}");
}

#[test]
fn b9_farm_shows_each_host() {
    let _one_at_a_time = exclusive();
    let h = hosts();
    let down = h.a.replace(":2229/", ":1/");
    let p = ClientProject::new(&format!("hosts: {} {} {down}\n", h.a, h.b));
    let out = p.command(&["farm"]).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for uri in [&h.a, &h.b] {
        assert!(shown.contains(&format!("{uri}: reachable")), "{shown}");
    }
    assert!(shown.contains(&format!("{down}: unreachable")), "{shown}");
    assert!(shown.contains("libvirt 9."), "{shown}");
    assert!(shown.contains("pool b9: "), "{shown}");
    assert!(shown.contains("b9 domains running: 0"), "{shown}");
}
