//! A real distribution end to end (README, "A real distribution: Debian"):
//! the Debian system of `fixtures/debian-rootfs` made into an image with
//! `b9 image create --from-dir`, customised by `examples/debian.b9` in b9's
//! appliance, then the resulting image booted under plain QEMU (TCG) with its
//! own kernel and initramfs and each of b9's NoCloud seeds (ISO and VFAT, the
//! two boots side by side): the serial console must show that cloud-init
//! applied the meta-data (the host name) and the user-data (the runcmd
//! marker), and that the unit the script enabled ran. The image is also
//! checked with e2fsck and debugfs (the user, the packages, the unit).
//!
//! Long (a few minutes, needs root for mmdebstrap and Debian's archive the
//! first time): ignored by `cargo test`; `.ci/run` runs it with
//! `cargo test -p b9 --test debian -- --ignored`.
//! `B9_TEST_DEBIAN_NETWORK=1` also gives the script a network (QEMU
//! user-mode networking), so its `apt-get update && apt-get install` runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::project::*;

/// The host name the example is built for.
const HOST: &str = "b9-debian-test";
/// How long one boot may take to reach cloud-init's final stage (TCG on a
/// busy machine; about a minute on an idle one).
const BOOT_LIMIT: Duration = Duration::from_secs(600);

/// The fixture's root file system directory and its .deb directory.
fn debian_fixture() -> (PathBuf, PathBuf) {
    let printed = common::fixture::run("debian-rootfs");
    (printed.get("DEBIAN_ROOTFS"), printed.get("DEBIAN_DEBS"))
}

/// Copies `examples/debian.b9` and `examples/debian/` into the project.
fn copy_example(p: &Project) {
    let examples = repo().join("examples");
    std::fs::copy(examples.join("debian.b9"), p.p("debian.b9")).unwrap();
    std::fs::create_dir_all(p.p("debian")).unwrap();
    for entry in std::fs::read_dir(examples.join("debian")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), p.p("debian").join(entry.file_name())).unwrap();
    }
}

/// The one file in the image's `/boot` whose name starts with `prefix`,
/// dumped into `dir` (debugfs: b9 has no tool to read files out of images).
fn dump_boot_file(raw: &Path, prefix: &str, dir: &Path) -> PathBuf {
    let listing = ok("debugfs", &["-R", "ls -p /boot", &s(raw)]);
    // `ls -p` lines: /inode/mode/uid/gid/name/size/
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert_eq!(names.len(), 1, "one /boot/{prefix}* expected:\n{listing}");
    let out = dir.join(names[0]);
    ok(
        "debugfs",
        &[
            "-R",
            &format!("dump /boot/{} {}", names[0], s(&out)),
            &s(raw),
        ],
    );
    assert!(
        std::fs::metadata(&out).unwrap().len() > 0,
        "{} is empty",
        out.display()
    );
    out
}

/// A QEMU process, killed when dropped.
struct Qemu {
    child: Child,
    console: PathBuf,
    what: String,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Qemu {
    /// Boots `disk` (through a qcow2 overlay, so the image stays as b9
    /// made it) with its kernel and initramfs and `seed` as a second disk.
    fn boot(dir: &Path, disk: &Path, kernel: &Path, initrd: &Path, seed: &Path) -> Qemu {
        let name = seed.extension().unwrap().to_string_lossy().into_owned();
        let overlay = dir.join(format!("boot-{name}.qcow2"));
        ok(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                &s(disk),
                &s(&overlay),
            ],
        );
        let console = dir.join(format!("console-{name}.log"));
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "1024", "-smp", "1", "-nodefaults"])
            .args(["-display", "none", "-no-reboot", "-monitor", "none"])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", "root=/dev/vda rw console=ttyS0"])
            .arg("-drive")
            .arg(format!("file={},format=qcow2,if=virtio", s(&overlay)))
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio,readonly=on", s(seed)))
            .arg("-serial")
            .arg(format!("file:{}", s(&console)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64 is needed (scripts/setup)");
        Qemu {
            child,
            console,
            what: format!("the boot with the {name} seed"),
        }
    }

    /// The console so far.
    fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Fails saying why and what is missing, with the console's tail.
    fn fail(&self, why: &str) -> ! {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!(
            "{}: {why}; still missing {:?}\nlast console lines ({}):\n{tail}",
            self.what,
            missing(&console),
            self.console.display()
        );
    }
}

/// Time the console gets, after cloud-init said it finished, to show the
/// rest (the login prompt, the unit's line) before the boot fails.
const AFTER_CLOUD_INIT: Duration = Duration::from_secs(30);

/// What the console must show: cloud-init's last line naming the NoCloud
/// seed (the second disk), the host name from meta-data in the login prompt
/// and in the runcmd line, the runcmd marker from user-data, and the line of
/// the unit the script enabled.
fn expected() -> Vec<String> {
    vec![
        "Datasource DataSourceNoCloud [seed=/dev/vdb]".to_string(),
        format!("B9-DEBIAN-USER-DATA {HOST} host={HOST}"),
        format!("{HOST} login:"),
        "B9-DEBIAN-SERVICE: hello from b9's example unit".to_string(),
    ]
}

/// Whether cloud-init's final stage is over (its "finished at" line).
fn cloud_init_finished(console: &str) -> bool {
    console
        .lines()
        .any(|l| l.contains("Cloud-init v. ") && l.contains(" finished at "))
}

fn missing(console: &str) -> Vec<String> {
    expected()
        .into_iter()
        .filter(|e| !console.contains(e.as_str()))
        .collect()
}

/// Waits until every boot's console shows everything expected; fails when
/// QEMU ends, the time is up, or cloud-init finished a while ago without it.
fn wait_for_consoles(vms: &mut [Qemu]) {
    let deadline = Instant::now() + BOOT_LIMIT;
    let mut finished: Vec<Option<Instant>> = vec![None; vms.len()];
    loop {
        let mut done = true;
        for (vm, finished) in vms.iter_mut().zip(finished.iter_mut()) {
            let console = vm.console();
            if missing(&console).is_empty() {
                continue;
            }
            done = false;
            if cloud_init_finished(&console) {
                let since = *finished.get_or_insert_with(Instant::now);
                if since.elapsed() > AFTER_CLOUD_INIT {
                    vm.fail("cloud-init finished without it");
                }
            }
            if let Some(status) = vm.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = vm.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                vm.fail(&format!("QEMU ended ({status}) {err}"));
            }
            if Instant::now() > deadline {
                vm.fail(&format!("not there after {} s", BOOT_LIMIT.as_secs()));
            }
        }
        if done {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Checks the image b9 made with independent tools: e2fsck, debugfs.
fn check_image(raw: &Path, online: bool) {
    e2fsck_clean(raw);
    let passwd = debugfs_cat(raw, "/etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("demo:") && l.ends_with(":/home/demo:/bin/bash")),
        "useradd's user missing:\n{passwd}"
    );
    let status = debugfs_cat(raw, "/var/lib/dpkg/status");
    let mut packages = vec!["hello", "tree"];
    if online {
        packages.push("sl");
    }
    for pkg in packages {
        let entry = status
            .split("\n\n")
            .find(|e| e.starts_with(&format!("Package: {pkg}\n")))
            .unwrap_or_else(|| panic!("{pkg} is not in dpkg's status"));
        assert!(entry.contains("Status: install ok installed"), "{entry}");
    }
    assert!(debugfs_stat(raw, "/usr/bin/tree").contains("Type: regular"));
    let wants = debugfs_stat(
        raw,
        "/etc/systemd/system/multi-user.target.wants/b9-hello.service",
    );
    assert!(
        wants.contains("Type: symlink"),
        "systemctl enable made no link:\n{wants}"
    );
    assert!(debugfs_cat(raw, "/etc/systemd/system/b9-hello.service").contains("B9-DEBIAN-SERVICE"));
    assert_eq!(
        debugfs_cat(raw, "/etc/motd"),
        format!("Welcome to {HOST}: Debian customised by b9.\n")
    );
    assert_eq!(debugfs_cat(raw, "/home/demo/hello.txt"), "Hello, world!\n");
    assert!(debugfs_stat(raw, "/home/demo/hello.txt").contains("User:  1000"));
}

#[test]
#[ignore = "long: builds and boots a Debian system; .ci/run runs it (cargo test --test debian -- --ignored)"]
fn a_debian_system_customised_by_b9_boots_and_reads_its_seeds() {
    let (rootfs, debs) = debian_fixture();
    let online = std::env::var_os("B9_TEST_DEBIAN_NETWORK").is_some_and(|v| v == "1");
    let p = Project::with_network("qemu", "", 1800, if online { "default" } else { "" });
    copy_example(&p);
    std::fs::create_dir_all(p.p("out")).unwrap();

    let out = p.b9(&[
        "image",
        "create",
        "--fs",
        "ext4",
        "--size",
        "2G",
        "--from-dir",
        &s(&rootfs),
        "out/debian-root.raw",
    ]);
    assert!(out.status.success(), "image create: {}", text(&out));
    let out = p.b9(&["build", "-f", "debian.b9", "--", HOST, &s(&debs)]);
    let log = text(&out);
    assert!(out.status.success(), "b9 build: {log}");
    if !online {
        assert!(
            log.contains("no network interface: apt-get skipped"),
            "{log}"
        );
    }
    no_vm_left(&p);

    let image = p.p(&format!("out/{HOST}.qcow2"));
    let raw = as_raw(&image);
    check_image(&raw, online);
    let boot = p.p("boot");
    std::fs::create_dir_all(&boot).unwrap();
    let kernel = dump_boot_file(&raw, "vmlinuz-", &boot);
    let initrd = dump_boot_file(&raw, "initrd.img-", &boot);
    std::fs::remove_file(&raw).unwrap();

    let mut vms: Vec<Qemu> = ["iso", "vfat"]
        .iter()
        .map(|ext| {
            let seed = p.p(&format!("out/{HOST}-seed.{ext}"));
            Qemu::boot(&boot, &image, &kernel, &initrd, &seed)
        })
        .collect();
    wait_for_consoles(&mut vms);
}
