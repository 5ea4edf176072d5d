//! The appliance initramfs, built from the fixture kernel (Debian's generic
//! 6.1) and checked with the `cpio` and `modinfo` tools.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use b9::vm::appliance::{self, ApplianceError, ApplianceSource};
use common::guest::guest;

/// A small dynamically linked stand-in for the agent (Debian's `ls`, which
/// needs libselinux, which needs libpcre2), so the library resolution is
/// exercised, recursively.
fn stand_in_agent() -> PathBuf {
    PathBuf::from("/usr/bin/ls")
}

fn source() -> ApplianceSource {
    let g = guest();
    ApplianceSource {
        kernel: g.kernel.clone(),
        modules_dir: g.modules.clone(),
        agent: stand_in_agent(),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `cpio -itv` of the archive: one line per entry.
fn listing(img: &Path) -> Vec<String> {
    let file = std::fs::File::open(img).unwrap();
    let out = Command::new("cpio")
        .args(["-itv", "--quiet"])
        .stdin(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn entry<'a>(list: &'a [String], name: &str) -> &'a str {
    list.iter()
        .find(|l| l.split_whitespace().last() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in the archive:\n{}", list.join("\n")))
}

fn extract(img: &Path, into: &Path) {
    let file = std::fs::File::open(img).unwrap();
    let out = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(into)
        .stdin(file)
        .output()
        .unwrap();
    // Making /dev/console may fail without privileges; everything else must work.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.lines().all(|l| l.contains("dev/console")),
        "{err}"
    );
}

#[test]
fn the_initramfs_holds_init_libraries_and_modules_dependencies_first() {
    let cache = tempfile::tempdir().unwrap();
    let src = source();
    let started = Instant::now();
    let app = appliance::prepare(&src, cache.path()).unwrap();
    eprintln!(
        "cold build: {:?}, {} bytes",
        started.elapsed(),
        std::fs::metadata(&app.initrd).unwrap().len()
    );
    // The kernel booted is the fixture bzImage's uncompressed kernel
    // (XZ with the x86 BCJ filter), as xz itself decompresses it.
    assert_eq!(app.kernel.parent(), Some(cache.path()));
    assert!(
        app.kernel
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("vmlinux-"),
        "{}",
        app.kernel.display()
    );
    let vmlinux = std::fs::read(&app.kernel).unwrap();
    let image = std::fs::read(&src.kernel).unwrap();
    let at = image
        .windows(6)
        .position(|w| w == b"\xfd7zXZ\0")
        .expect("the fixture kernel is XZ-compressed");
    let payload = cache.path().join("payload.xz");
    std::fs::write(&payload, &image[at..]).unwrap();
    let out = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(std::fs::File::open(&payload).unwrap())
        .output()
        .unwrap();
    std::fs::remove_file(&payload).unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = out.stdout;
    assert!(vmlinux == out, "b9's vmlinux differs from xz's");
    assert_eq!(
        Some(app.kernel_release.as_str()),
        src.modules_dir.file_name().and_then(|n| n.to_str())
    );
    let name = app.initrd.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("appliance-") && name.ends_with(".img"),
        "{name}"
    );
    assert_eq!(app.initrd.parent(), Some(cache.path()));

    let list = listing(&app.initrd);
    assert!(entry(&list, "init").starts_with("-rwxr-xr-x"), "{list:?}");
    assert!(entry(&list, "dev/console").starts_with("crw-------"));
    assert!(entry(&list, "dev/console").contains("5,"));
    for dir in ["dev", "proc", "sys", "sysroot", "tmp", "run", "b9"] {
        assert!(entry(&list, dir).starts_with('d'), "{dir}");
    }
    assert!(entry(&list, "lib64/ld-linux-x86-64.so.2").starts_with("-rwx"));
    assert!(entry(&list, "lib/x86_64-linux-gnu/libc.so.6").starts_with("-rwx"));

    let root = tempfile::tempdir().unwrap();
    extract(&app.initrd, root.path());
    let r = root.path();
    assert_eq!(
        std::fs::read(r.join("init")).unwrap(),
        std::fs::read(stand_in_agent()).unwrap()
    );
    // Every library the agent needs (by ldd's account) is there, as a file.
    let ldd = run(Command::new("ldd").arg(stand_in_agent()));
    for line in ldd.lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .filter(|_| !line.contains("linux-vdso"));
        if let Some(lib) = lib {
            let name = Path::new(lib).file_name().unwrap();
            let found = ["lib/x86_64-linux-gnu", "lib64", "usr/lib/x86_64-linux-gnu"]
                .iter()
                .any(|d| r.join(d).join(name).is_file());
            assert!(found, "{lib} ({line}) missing from the appliance");
        }
    }

    // modules.order: every needed module, each after what it depends on
    // (by modinfo's account) and naming those dependencies (the agent loads
    // the others in parallel), every file present.
    let order = std::fs::read_to_string(r.join("b9/modules.order")).unwrap();
    let order: Vec<&str> = order.lines().collect();
    let norm = |s: &str| s.trim_end_matches(".ko").replace('-', "_");
    let builtin = std::fs::read_to_string(src.modules_dir.join("modules.builtin")).unwrap();
    let builtin: BTreeSet<String> = builtin
        .lines()
        .filter_map(|l| Path::new(l).file_name()?.to_str().map(norm))
        .collect();
    let mut loaded = BTreeSet::new();
    for line in &order {
        let (file, after) = line.split_once(": ").unwrap_or((line, ""));
        let after: BTreeSet<String> = after.split_whitespace().map(norm).collect();
        let path = r.join("b9/modules").join(file);
        assert!(path.is_file(), "{file} listed but missing");
        let deps = run(Command::new("modinfo").args(["-F", "depends"]).arg(&path));
        for dep in deps.trim().split(',').filter(|d| !d.is_empty()) {
            let dep = norm(dep);
            assert!(
                builtin.contains(&dep) || (loaded.contains(&dep) && after.contains(&dep)),
                "{file} is not loaded after its dependency {dep}: {order:?}"
            );
        }
        assert!(after.is_subset(&loaded), "{line}: {order:?}");
        loaded.insert(norm(file));
    }
    for m in appliance::MODULES {
        let m = norm(m);
        assert!(
            loaded.contains(&m) || builtin.contains(&m),
            "{m} missing: {order:?}"
        );
    }
    for m in [
        "ext4",
        "jbd2",
        "9pnet",
        "9p",
        "crc32c_generic",
        "fat",
        "vfat",
    ] {
        assert!(loaded.contains(m), "{m} missing: {order:?}");
    }
    let files = std::fs::read_dir(r.join("b9/modules")).unwrap().count();
    assert_eq!(files, order.len());
    eprintln!("modules.order: {}", order.join(" "));
}

#[test]
fn a_second_prepare_reuses_the_cached_initramfs() {
    let cache = tempfile::tempdir().unwrap();
    let first = appliance::prepare(&source(), cache.path()).unwrap();
    let meta = std::fs::metadata(&first.initrd).unwrap();
    let started = Instant::now();
    let second = appliance::prepare(&source(), cache.path()).unwrap();
    eprintln!("cached prepare: {:?}", started.elapsed());
    assert_eq!(first, second);
    let again = std::fs::metadata(&second.initrd).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.ino(), meta.mtime_nsec()),
        (again.ino(), again.mtime_nsec())
    );
    // The initramfs and the uncompressed kernel.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 2);

    // Another agent is another appliance.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("agent");
    std::fs::copy(stand_in_agent(), &other).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&other)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"))
        .unwrap();
    let changed = appliance::prepare(
        &ApplianceSource {
            agent: other,
            ..source()
        },
        cache.path(),
    )
    .unwrap();
    assert_ne!(changed.initrd, first.initrd);
}

#[test]
fn concurrent_prepares_never_see_a_partial_file() {
    let cache = tempfile::tempdir().unwrap();
    let src = source();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| appliance::prepare(&src, cache.path()).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expected = std::fs::metadata(&results[0].initrd).unwrap().len();
    for r in &results {
        assert_eq!(r.initrd, results[0].initrd);
        // Whoever returned first found the whole file in place.
        assert_eq!(std::fs::metadata(&r.initrd).unwrap().len(), expected);
    }
    assert!(listing(&results[0].initrd)
        .iter()
        .any(|l| l.ends_with(" init")));
    let names: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "temporary files left: {names:?}");
}

#[test]
fn missing_inputs_are_named_with_a_hint() {
    let cache = tempfile::tempdir().unwrap();
    let err = |src: &ApplianceSource| appliance::prepare(src, cache.path()).unwrap_err();

    let e = err(&ApplianceSource {
        kernel: "/boot/vmlinuz-none".into(),
        ..source()
    });
    assert!(matches!(e, ApplianceError::KernelNotFound { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("/boot/vmlinuz-none") && msg.contains("fixtures/guest-kernel"),
        "{msg}"
    );

    let e = err(&ApplianceSource {
        modules_dir: "/lib/modules/none".into(),
        ..source()
    });
    assert!(e.to_string().contains("/lib/modules/none"), "{e}");

    let e = err(&ApplianceSource {
        agent: "/no/b9-agent".into(),
        ..source()
    });
    assert!(e.to_string().contains("/no/b9-agent"), "{e}");

    // A modules tree without the modules.
    let empty = tempfile::tempdir().unwrap();
    let modules = empty.path().join("6.1.0-56-amd64");
    std::fs::create_dir_all(modules.join("kernel")).unwrap();
    std::fs::write(modules.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
    let e = err(&ApplianceSource {
        modules_dir: modules.clone(),
        ..source()
    });
    let msg = e.to_string();
    assert!(matches!(e, ApplianceError::ModuleNotFound { .. }), "{msg}");
    assert!(
        msg.contains("virtio_pci") && msg.contains(&*modules.to_string_lossy()),
        "{msg}"
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn modules_for_another_kernel_are_refused() {
    // The fixture's modules under a kernel image that claims another release.
    let dir = tempfile::tempdir().unwrap();
    let mut image = std::fs::read(&guest().kernel).unwrap();
    let ptr = u16::from_le_bytes([image[0x20E], image[0x20F]]) as usize + 0x200;
    image[ptr] = b'9';
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, &image).unwrap();
    let e = appliance::prepare(&ApplianceSource { kernel, ..source() }, dir.path()).unwrap_err();
    assert!(matches!(e, ApplianceError::ModuleRelease { .. }), "{e}");
}

#[test]
fn the_agent_is_found_through_b9_agent_or_next_to_the_executable() {
    // The only test here that touches B9_AGENT.
    std::env::set_var("B9_AGENT", stand_in_agent());
    assert_eq!(appliance::agent_binary().unwrap(), stand_in_agent());
    std::env::set_var("B9_AGENT", "/no/such/agent");
    let e = appliance::agent_binary().unwrap_err();
    assert!(e.to_string().contains("/no/such/agent"), "{e}");
    std::env::remove_var("B9_AGENT");
    // target/<profile>/deps/<test> -> target/<profile>/b9-agent, when built.
    let exe = std::env::current_exe().unwrap();
    let built = exe.parent().unwrap().parent().unwrap().join("b9-agent");
    match appliance::agent_binary() {
        Ok(p) => assert_eq!(p, built),
        Err(e) => {
            assert!(!built.exists());
            assert!(e.to_string().contains("B9_AGENT"), "{e}");
        }
    }
}

#[test]
fn the_agent_goes_in_without_its_debug_information() {
    let agent = common::companion::companion("b9-agent");
    let cache = tempfile::tempdir().unwrap();
    let app = appliance::prepare(
        &ApplianceSource {
            agent: agent.clone(),
            ..source()
        },
        cache.path(),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    extract(&app.initrd, root.path());
    let init = std::fs::read(root.path().join("init")).unwrap();
    let full = std::fs::read(&agent).unwrap();
    assert!(
        init.len() * 4 < full.len(),
        "{} of {} bytes",
        init.len(),
        full.len()
    );
    // The agent's first bytes, all that loading it reads, with no section
    // headers (e_shoff, e_shnum, e_shstrndx zeroed).
    let mut expected = full[..init.len()].to_vec();
    expected[40..48].fill(0);
    expected[60..64].fill(0);
    assert!(init == expected);
    let headers = run(Command::new("readelf")
        .args(["-lW"])
        .arg(root.path().join("init")));
    assert!(headers.contains("ld-linux-x86-64.so.2"), "{headers}");
}
