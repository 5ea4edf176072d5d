//! The VM backends boot a real guest (TCG) with every device of a
//! `VmSpec`: a tiny busybox initramfs loads the virtio modules, then writes
//! a marker with what it sees to the agent port and to the console.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

#[path = "common/companion.rs"]
mod companion;
#[path = "common/guest_kernel.rs"]
mod guest_kernel;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use b9::disk::Format;
use b9::vm::backend::{Accelerator, Hypervisor, Vm, VmDisk, VmError, VmShare, VmSpec, VmState};
use b9::vm::libvirt::{self, Libvirt};
use b9::vm::qemu::Qemu;
use b9_protocol::libvirt as wire;
use guest_kernel::{guest_kernel, GuestKernel};

/// Modules the test init loads (their dependencies are added).
const MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_console", "pvpanic-mmio"];

/// How long a TCG boot may take on a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
echo "B9-CONSOLE-MARKER"
if grep -q b9test=panic /proc/cmdline; then echo c > /proc/sysrq-trigger; fi
for p in /sys/class/virtio-ports/*; do
  [ "$(cat $p/name)" = org.b9.agent.0 ] && port=/dev/${p##*/}
done
ids=$(cat /sys/bus/virtio/devices/*/device | tr '\n' ' ')
echo "B9-AGENT-MARKER serial=$(cat /sys/block/vda/serial) ro=$(cat /sys/block/vdb/ro) devices=$ids" > $port
sleep 3600
"#;

// ---------------------------------------------------------------- fixtures

/// A module file by name (`-` and `_` are the same).
fn find_module(root: &Path, name: &str) -> PathBuf {
    let wanted = format!("{}.ko", name.replace('-', "_"));
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().replace('-', "_") == wanted {
                return path;
            }
        }
    }
    panic!("module {name} not found under {}", root.display());
}

/// `names` and their dependencies (from `modinfo -F depends`), in load
/// order; modules built into the kernel are left out.
fn modules_in_order(kernel: &GuestKernel, names: &[&str]) -> Vec<(String, PathBuf)> {
    let builtin =
        std::fs::read_to_string(kernel.modules.join("modules.builtin")).unwrap_or_default();
    let builtin: HashSet<String> = builtin
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|f| f.trim_end_matches(".ko").replace('-', "_"))
        .collect();
    let mut order = Vec::new();
    for name in names {
        add_module(kernel, &builtin, &name.replace('-', "_"), &mut order);
    }
    order
}

fn add_module(
    kernel: &GuestKernel,
    builtin: &HashSet<String>,
    name: &str,
    order: &mut Vec<(String, PathBuf)>,
) {
    if builtin.contains(name) || order.iter().any(|(n, _)| n == name) {
        return;
    }
    let path = find_module(&kernel.modules, name);
    let out = Command::new("modinfo")
        .args(["-F", "depends"])
        .arg(&path)
        .output()
        .expect("modinfo (kmod) is needed by the backend tests");
    let depends = String::from_utf8_lossy(&out.stdout).trim().to_string();
    for dep in depends.split(',').filter(|d| !d.is_empty()) {
        add_module(kernel, builtin, &dep.replace('-', "_"), order);
    }
    order.push((name.to_string(), path));
}

/// Writes the test initramfs (newc) to `out`.
fn write_initramfs(kernel: &GuestKernel, out: &Path) {
    let modules = modules_in_order(kernel, MODULES);
    let order: String = modules.iter().map(|(n, _)| format!("{n}\n")).collect();
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![
        ("init".into(), 0o100755, INIT.as_bytes().to_vec()),
        (
            "bin/busybox".into(),
            0o100755,
            std::fs::read(&kernel.busybox).unwrap(),
        ),
        ("lib/modules/order".into(), 0o100644, order.into_bytes()),
    ];
    for (name, path) in &modules {
        files.push((
            format!("lib/modules/{name}.ko"),
            0o100644,
            std::fs::read(path).unwrap(),
        ));
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    for dir in ["bin", "lib", "lib/modules"] {
        w = cpio::newc::Builder::new(dir)
            .mode(0o40755)
            .nlink(2)
            .write(w, 0)
            .finish()
            .unwrap();
    }
    for (name, mode, data) in files {
        let mut entry = cpio::newc::Builder::new(&name)
            .mode(mode)
            .write(w, data.len() as u32);
        entry.write_all(&data).unwrap();
        w = entry.finish().unwrap();
    }
    cpio::newc::trailer(w).unwrap().flush().unwrap();
}

/// A test VM's files under one temp dir.
struct Fixture {
    dir: tempfile::TempDir,
    spec: VmSpec,
}

/// A spec with a raw read-write disk, a qcow2 read-only disk and a share,
/// all under a fresh temp dir of mode 0700 (as `mkdtemp` makes it).
fn fixture(test: &str, cmdline_extra: &str) -> Fixture {
    let kernel = guest_kernel();
    let dir = tempfile::Builder::new().prefix("b9vm").tempdir().unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let build = root.join("build");
    std::fs::create_dir(&build).unwrap();
    write_initramfs(&kernel, &build.join("initrd"));
    let raw = build.join("a.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let qcow2 = build.join("b.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&qcow2)
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success());
    let share = build.join("share");
    std::fs::create_dir(&share).unwrap();
    let spec = VmSpec {
        name: format!("b9-test-{}-{test}", std::process::id()),
        kernel: kernel.kernel.clone(),
        initrd: build.join("initrd"),
        cmdline: format!("console=ttyS0 panic=-1 quiet {cmdline_extra}"),
        memory_mb: 256,
        cpus: 1,
        accel: Accelerator::Tcg,
        disks: vec![
            VmDisk {
                path: raw,
                format: Format::Raw,
                serial: "b9-disk-a".into(),
                read_only: false,
            },
            VmDisk {
                path: qcow2,
                format: Format::Qcow2,
                serial: "b9-disk-b".into(),
                read_only: true,
            },
        ],
        shares: vec![VmShare {
            path: share,
            tag: "b9share".into(),
            read_only: true,
        }],
        agent_socket: root.join("agent.sock"),
        runtime_dir: root.join("run"),
        console_log: build.join("console.log"),
        network: false,
        instance: test.to_string(),
        events: b9::Events::default(),
    };
    Fixture { dir, spec }
}

// ---------------------------------------------------------------- checks

/// PIDs of processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// The first line the guest writes to the agent port.
fn read_agent_line(socket: &Path) -> String {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// Waits until `file` contains `needle`.
fn wait_for_text(file: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::read_to_string(file).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Polls `state()` until it is not `Running`.
fn wait_not_running(vm: &mut dyn Vm, timeout: Duration) -> VmState {
    let deadline = Instant::now() + timeout;
    loop {
        let state = vm.state();
        if state != VmState::Running || Instant::now() >= deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Boots, checks markers and devices, stops, checks nothing is left.
fn boot_and_check(backend: &dyn Hypervisor, fx: &Fixture) {
    let spec = &fx.spec;
    let t0 = Instant::now();
    let mut vm = backend.start(spec).unwrap();
    let started = t0.elapsed();
    assert!(spec.agent_socket.exists());
    assert_eq!(vm.state(), VmState::Running);
    let line = read_agent_line(&spec.agent_socket);
    eprintln!(
        "{}: start() {:?}, agent marker after {:?}",
        backend.name(),
        started,
        t0.elapsed()
    );
    assert!(line.starts_with("B9-AGENT-MARKER"), "{line:?}");
    assert!(line.contains("serial=b9-disk-a"), "{line:?}");
    assert!(line.contains("ro=1"), "vdb is read-only: {line:?}");
    // virtio ids: 2 block (twice), 3 console, 9 9p.
    for id in ["0x0002", "0x0003", "0x0009"] {
        assert!(line.contains(id), "virtio device {id} missing: {line:?}");
    }
    assert!(wait_for_text(
        &spec.console_log,
        "B9-CONSOLE-MARKER",
        Duration::from_secs(10)
    ));
    assert_eq!(vm.state(), VmState::Running);

    vm.stop(Duration::from_secs(10)).unwrap();
    assert!(matches!(vm.state(), VmState::Gone(_)), "{:?}", vm.state());
    vm.stop(Duration::from_secs(1)).unwrap(); // idempotent
    drop(vm);
    assert!(
        processes_with(&spec.name).is_empty(),
        "the hypervisor is still running"
    );
    assert!(!spec.agent_socket.exists(), "agent socket left behind");
    let left: Vec<_> = std::fs::read_dir(&spec.runtime_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime files left behind: {left:?}");
    // The console log stays, for the build directory.
    assert!(spec.console_log.exists());
    let _ = &fx.dir;
}

// ---------------------------------------------------------------- qemu

#[test]
fn qemu_boots_with_all_devices_and_cleans_up() {
    let fx = fixture("qemu-boot", "");
    boot_and_check(&Qemu::default(), &fx);
}

#[test]
fn qemu_bad_disk_path_quotes_qemu() {
    let mut fx = fixture("qemu-bad-disk", "");
    fx.spec.disks[0].path = fx.dir.path().join("no-such-disk.raw");
    let err = match Qemu::default().start(&fx.spec) {
        Ok(_) => panic!("a missing disk must fail the start"),
        Err(e) => e,
    };
    assert!(matches!(err, VmError::Start(_)), "{err:?}");
    let msg = err.to_string();
    eprintln!("qemu, bad disk: {msg}");
    assert!(msg.contains("no-such-disk.raw"), "{msg}");
    assert!(
        msg.contains("No such file or directory"),
        "QEMU's own words: {msg}"
    );
    assert!(processes_with(&fx.spec.name).is_empty());
    assert!(!fx.spec.agent_socket.exists());
}

#[test]
fn qemu_missing_binary_is_a_start_error() {
    let fx = fixture("qemu-no-binary", "");
    let qemu = Qemu {
        binary: "qemu-system-nonexistent".into(),
    };
    let msg = qemu.start(&fx.spec).err().unwrap().to_string();
    assert!(msg.contains("not found in PATH"), "{msg}");
}

/// SIGKILLs the one QEMU process of the VM named `name`; returns the state
/// the backend then reports.
fn kill_the_qemu(name: &str, vm: &mut dyn Vm) -> VmState {
    let pids = processes_with(name);
    assert_eq!(pids.len(), 1, "{pids:?}");
    let st = Command::new("kill")
        .arg("-9")
        .arg(pids[0].to_string())
        .status()
        .unwrap();
    assert!(st.success());
    wait_not_running(vm, Duration::from_secs(10))
}

#[test]
fn qemu_killed_process_is_gone() {
    let fx = fixture("qemu-kill", "");
    let mut vm = Qemu::default().start(&fx.spec).unwrap();
    let state = kill_the_qemu(&fx.spec.name, vm.as_mut());
    eprintln!("qemu, killed: {state:?}");
    match state {
        VmState::Gone(reason) => assert!(reason.contains("SIGKILL"), "{reason}"),
        other => panic!("expected Gone, got {other:?}"),
    }
    vm.stop(Duration::from_secs(1)).unwrap();
    drop(vm);
    assert!(!fx.spec.agent_socket.exists());
}

#[test]
fn qemu_guest_panic_is_reported() {
    let fx = fixture("qemu-panic", "b9test=panic");
    let t0 = Instant::now();
    let mut vm = Qemu::default().start(&fx.spec).unwrap();
    let state = wait_not_running(vm.as_mut(), BOOT_TIMEOUT);
    eprintln!("qemu: panic seen after {:?}", t0.elapsed());
    assert_eq!(state, VmState::Panicked, "console: {}", console(&fx));
    drop(vm);
    assert!(processes_with(&fx.spec.name).is_empty());
}

// ---------------------------------------------------------------- libvirt

/// libvirt at `qemu:///system` (`.ci/run` starts `virtlogd -d; libvirtd -d`).
fn libvirt() -> Libvirt {
    let up = Command::new("virsh")
        .args(["-c", "qemu:///system", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        up,
        "libvirtd is not running: start it with `virtlogd -d; libvirtd -d`"
    );
    Libvirt::default()
}

#[test]
fn libvirt_boots_with_all_devices_and_cleans_up() {
    // The fixture lives under a 0700 temp dir: QEMU only gets in through
    // the domain's seclabel (QEMU as the calling user).
    let fx = fixture("libvirt-boot", "");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(fx.dir.path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    boot_and_check(&libvirt(), &fx);
    assert!(!domain_exists(&fx.spec.name), "domain left behind");
}

/// Whether libvirt at `qemu:///system` has a domain called `name`.
fn domain_exists(name: &str) -> bool {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "list", "--all", "--name"])
        .output()
        .unwrap();
    assert!(out.status.success(), "virsh list: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == name)
}

/// Waits until the domain `name` is gone; false after `limit`.
fn domain_goes_away(name: &str, limit: Duration) -> bool {
    let t0 = Instant::now();
    while domain_exists(name) {
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The helper `b9-libvirt` started by hand, with the fixture's domain
/// created: what b9 does in `Libvirt::start`.
fn helper_with_domain(fx: &Fixture) -> std::process::Child {
    libvirt();
    let mut helper = Command::new(companion::companion("b9-libvirt"))
        .args(["--protocol", &wire::VERSION.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = wire::Request::Start {
        uri: libvirt::DEFAULT_URI.into(),
        xml: Libvirt::default().domain_xml(&fx.spec).unwrap(),
        relay: None,
    };
    wire::send(helper.stdin.as_mut().unwrap(), &start).unwrap();
    let mut from = BufReader::new(helper.stdout.take().unwrap());
    let reply: Option<wire::Reply> = wire::receive(&mut from).unwrap();
    assert_eq!(reply, Some(wire::Reply::Started));
    assert!(domain_exists(&fx.spec.name));
    helper
}

#[test]
fn libvirt_helper_destroys_its_domain_when_b9_goes_away() {
    let fx = fixture("libvirt-eof", "");
    let mut helper = helper_with_domain(&fx);
    // b9 ends (or is killed): the helper's stdin closes.
    drop(helper.stdin.take());
    assert!(helper.wait().unwrap().success());
    assert!(!domain_exists(&fx.spec.name), "domain left behind");
    assert!(processes_with(&fx.spec.name).is_empty());
}

#[test]
fn libvirt_destroys_the_domain_of_a_killed_helper() {
    let fx = fixture("libvirt-helper-kill", "");
    let mut helper = helper_with_domain(&fx);
    helper.kill().unwrap();
    helper.wait().unwrap();
    // Auto-destroy: libvirtd ends the domain when its connection closes.
    assert!(
        domain_goes_away(&fx.spec.name, Duration::from_secs(30)),
        "domain left behind"
    );
}

#[test]
fn libvirt_guest_panic_is_reported() {
    let fx = fixture("libvirt-panic", "b9test=panic");
    let t0 = Instant::now();
    let mut vm = libvirt().start(&fx.spec).unwrap();
    let state = wait_not_running(vm.as_mut(), BOOT_TIMEOUT);
    eprintln!("libvirt: panic seen after {:?}", t0.elapsed());
    assert_eq!(state, VmState::Panicked, "console: {}", console(&fx));
    drop(vm);
    assert!(processes_with(&fx.spec.name).is_empty());
}

#[test]
fn libvirt_killed_qemu_is_gone() {
    let fx = fixture("libvirt-kill", "");
    let mut vm = libvirt().start(&fx.spec).unwrap();
    let state = kill_the_qemu(&fx.spec.name, vm.as_mut());
    eprintln!("libvirt, killed: {state:?}");
    assert!(matches!(state, VmState::Gone(_)), "{state:?}");
    vm.stop(Duration::from_secs(1)).unwrap();
    drop(vm);
    assert!(!fx.spec.agent_socket.exists());
}

#[test]
fn libvirt_bad_disk_path_quotes_libvirt() {
    let mut fx = fixture("libvirt-bad-disk", "");
    fx.spec.disks[0].path = fx.dir.path().join("no-such-disk.raw");
    let msg = libvirt().start(&fx.spec).err().unwrap().to_string();
    eprintln!("libvirt, bad disk: {msg}");
    assert!(msg.contains("no-such-disk.raw"), "{msg}");
    assert!(processes_with(&fx.spec.name).is_empty());
}

#[test]
fn libvirt_unreachable_daemon_is_a_clear_error() {
    let fx = fixture("libvirt-no-daemon", "");
    let uri = "qemu:///system?socket=/nonexistent/libvirt-sock";
    let libvirt = Libvirt {
        uri: uri.into(),
        network: None,
    };
    let msg = libvirt.start(&fx.spec).err().unwrap().to_string();
    eprintln!("libvirt, no daemon: {msg}");
    assert!(msg.contains(uri), "{msg}");
    assert!(msg.contains("libvirtd -d"), "{msg}");
}

#[test]
fn libvirt_network_without_a_configured_network_is_an_error() {
    let mut fx = fixture("libvirt-no-net", "");
    fx.spec.network = true;
    let msg = Libvirt::default()
        .start(&fx.spec)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("no libvirt network is configured"), "{msg}");
}

fn console(fx: &Fixture) -> String {
    std::fs::read_to_string(&fx.spec.console_log).unwrap_or_default()
}
