//! Cloud-init media writers checked with independent tools: isoinfo/isovfy
//! (genisoimage), fsck.vfat (dosfstools), mtools, blkid (util-linux).
//! A missing tool fails the test with the Debian package to install
//! (`scripts/setup` installs them all).

// Helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use b9::media::dir::write_dir;
use b9::media::iso::write_iso;
use b9::media::vfat::write_vfat;
use b9::media::MediaOptions;

const OPTS: MediaOptions = MediaOptions {
    timestamp: 1_700_000_000, // 2023-11-14T22:13:20Z
};

const META: &str = "instance-id: iid-local01\nlocal-hostname: cloudimg\n";
const USER: &str = "#cloud-config\npassword: passw0rd\nchpasswd: { expire: False }\n";
const SCRIPT: &str = "#!/bin/sh\necho hello\n";
const CONF: &str = "key: value\nnested:\n  - 1\n  - 2\n";
const LONG_NAME: &str = "a-file-with-a-rather-long-name-for-testing.yaml";

fn binary() -> Vec<u8> {
    (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The tree every test uses.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/app")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("meta-data"), META).unwrap();
    fs::write(root.join("user-data"), USER).unwrap();
    fs::write(root.join("run.sh"), SCRIPT).unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/app/conf.yaml"), CONF).unwrap();
    fs::set_permissions(
        root.join("etc/app/conf.yaml"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    fs::write(root.join(LONG_NAME), "long\n").unwrap();
    fs::write(root.join("blob.bin"), binary()).unwrap();
}

/// Runs a tool; a missing tool is a failure naming its Debian package.
fn tool(cmd: &str, package: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed for this test ({e}): install the Debian package {package} (scripts/setup does)")
    });
    out
}

fn ok(cmd: &str, package: &str, args: &[&str]) -> String {
    let out = tool(cmd, package, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok_bytes(cmd: &str, package: &str, args: &[&str]) -> Vec<u8> {
    let out = tool(cmd, package, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    tree: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    Fixture {
        tree,
        out,
        _tmp: tmp,
    }
}

// ---------------------------------------------------------------- ISO

fn iso_file(img: &Path, path: &str) -> Vec<u8> {
    ok_bytes("isoinfo", "genisoimage", &["-R", "-i", s(img), "-x", path])
}

fn joliet_file(img: &Path, path: &str) -> Vec<u8> {
    ok_bytes("isoinfo", "genisoimage", &["-J", "-i", s(img), "-x", path])
}

#[test]
fn iso_has_volume_id_rock_ridge_joliet_and_the_whole_tree() {
    let f = fixture();
    let img = f.out.join("cidata.iso");
    write_iso(&f.tree, &img, &OPTS).unwrap();

    let info = ok("isoinfo", "genisoimage", &["-d", "-i", s(&img)]);
    assert!(info.contains("Volume id: cidata\n"), "{info}");
    assert!(
        info.contains("Rock Ridge signatures version 1 found"),
        "{info}"
    );
    assert!(info.contains("Joliet with UCS level 3 found"), "{info}");
    // Volume creation and modification dates are the timestamp.
    let pvd = fs::read(&img).unwrap();
    assert_eq!(&pvd[16 * 2048 + 813..16 * 2048 + 829], b"2023111422132000");
    assert_eq!(&pvd[16 * 2048 + 830..16 * 2048 + 846], b"2023111422132000");

    let vfy = ok("isovfy", "genisoimage", &[s(&img)]);
    assert!(vfy.contains("No errors found"), "isovfy: {vfy}");

    assert_eq!(iso_file(&img, "/meta-data"), META.as_bytes());
    assert_eq!(iso_file(&img, "/user-data"), USER.as_bytes());
    assert_eq!(iso_file(&img, "/run.sh"), SCRIPT.as_bytes());
    assert_eq!(iso_file(&img, "/etc/app/conf.yaml"), CONF.as_bytes());
    assert_eq!(iso_file(&img, &format!("/{LONG_NAME}")), b"long\n");
    assert_eq!(iso_file(&img, "/blob.bin"), binary());
    assert_eq!(joliet_file(&img, "/etc/app/conf.yaml"), CONF.as_bytes());
    assert_eq!(joliet_file(&img, "/meta-data"), META.as_bytes());

    let listing = ok("isoinfo", "genisoimage", &["-R", "-l", "-i", s(&img)]);
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| {
                l.ends_with(&format!("[ 0] {name}"))
                    || l.contains(&format!(" {name} "))
                    || l.ends_with(name)
            })
            .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"))
            .to_string()
    };
    assert!(
        line("run.sh").starts_with("-rwxr-xr-x"),
        "{}",
        line("run.sh")
    );
    assert!(
        line("conf.yaml").starts_with("-rw-r-----"),
        "{}",
        line("conf.yaml")
    );
    assert!(
        line("meta-data").starts_with("-rw-r--r--"),
        "{}",
        line("meta-data")
    );
    assert!(line(LONG_NAME).starts_with("-rw-r--r--"));
    assert!(
        listing.contains("Directory listing of /empty/"),
        "{listing}"
    );
    assert!(
        listing.contains("Directory listing of /etc/app/"),
        "{listing}"
    );
    // owner and group 0, date = the timestamp
    let run = line("run.sh");
    let cols: Vec<_> = run.split_whitespace().collect();
    assert_eq!((cols[2], cols[3]), ("0", "0"), "{run}");
    assert!(run.contains("Nov 14 2023"), "{run}");
}

#[test]
fn iso_stores_symlinks() {
    let f = fixture();
    symlink("meta-data", f.tree.join("link")).unwrap();
    let img = f.out.join("l.iso");
    write_iso(&f.tree, &img, &OPTS).unwrap();
    let listing = ok("isoinfo", "genisoimage", &["-R", "-l", "-i", s(&img)]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.contains("link -> meta-data")),
        "{listing}"
    );
    let vfy = ok("isovfy", "genisoimage", &[s(&img)]);
    assert!(vfy.contains("No errors found"), "isovfy: {vfy}");
}

#[test]
fn iso_of_missing_tree_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("e.iso");
    write_iso(&tmp.path().join("missing"), &img, &OPTS).unwrap();
    let info = ok("isoinfo", "genisoimage", &["-d", "-i", s(&img)]);
    assert!(info.contains("Volume id: cidata"), "{info}");
    let files = ok("isoinfo", "genisoimage", &["-R", "-f", "-i", s(&img)]);
    assert_eq!(files.trim(), "", "{files}");
    let vfy = ok("isovfy", "genisoimage", &[s(&img)]);
    assert!(vfy.contains("No errors found"), "isovfy: {vfy}");
}

// ---------------------------------------------------------------- VFAT

fn mtype(img: &Path, path: &str) -> Vec<u8> {
    ok_bytes("mtype", "mtools", &["-i", s(img), &format!("::{path}")])
}

fn fsck_clean(img: &Path) {
    let out = tool("fsck.vfat", "dosfstools", &["-n", s(img)]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "fsck.vfat -n: {text}");
    assert!(!text.to_lowercase().contains("differ"), "{text}");
}

fn label(img: &Path) -> String {
    ok(
        "blkid",
        "util-linux",
        &["-o", "value", "-s", "LABEL", s(img)],
    )
    .trim()
    .to_string()
}

#[test]
fn vfat_is_clean_labelled_and_holds_the_whole_tree() {
    let f = fixture();
    let img = f.out.join("cidata.vfat");
    write_vfat(&f.tree, &img, &OPTS).unwrap();
    fsck_clean(&img);
    assert_eq!(label(&img), "cidata");
    let ty = ok(
        "blkid",
        "util-linux",
        &["-o", "value", "-s", "TYPE", s(&img)],
    );
    assert_eq!(ty.trim(), "vfat");

    assert_eq!(mtype(&img, "/meta-data"), META.as_bytes());
    assert_eq!(mtype(&img, "/user-data"), USER.as_bytes());
    assert_eq!(mtype(&img, "/run.sh"), SCRIPT.as_bytes());
    assert_eq!(mtype(&img, "/etc/app/conf.yaml"), CONF.as_bytes());
    assert_eq!(mtype(&img, &format!("/{LONG_NAME}")), b"long\n");
    assert_eq!(mtype(&img, "/blob.bin"), binary());
    let dir = ok("mdir", "mtools", &["-b", "-i", s(&img), "::/empty"]);
    assert_eq!(dir.trim(), "", "{dir}");
    let all = ok("mdir", "mtools", &["-/", "-b", "-i", s(&img), "::/"]);
    assert!(all.contains("::/etc/app/conf.yaml"), "{all}");
    let root = ok("mdir", "mtools", &["-i", s(&img), "::/"]);
    assert!(
        root.contains("2023-11-14") || root.contains("11-14-2023"),
        "{root}"
    );

    // Sized to fit: 1 MiB of data and some small files.
    let size = fs::metadata(&img).unwrap().len();
    assert!(size > 1 << 20 && size <= 2 << 20, "size {size}");
}

#[test]
fn vfat_copies_symlinks_inside_the_tree_and_refuses_others() {
    let f = fixture();
    symlink("etc/app/conf.yaml", f.tree.join("conf-link")).unwrap();
    let img = f.out.join("l.vfat");
    write_vfat(&f.tree, &img, &OPTS).unwrap();
    fsck_clean(&img);
    assert_eq!(mtype(&img, "/conf-link"), CONF.as_bytes());

    symlink("/etc/hostname", f.tree.join("outside")).unwrap();
    let err = write_vfat(&f.tree, &img, &OPTS).unwrap_err().to_string();
    assert!(
        err.contains("outside") && err.contains("points outside the tree"),
        "{err}"
    );
}

#[test]
fn vfat_of_missing_tree_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("e.vfat");
    write_vfat(&tmp.path().join("missing"), &img, &OPTS).unwrap();
    fsck_clean(&img);
    assert_eq!(label(&img), "cidata");
    assert_eq!(fs::metadata(&img).unwrap().len(), 1 << 20);
    let root = ok("mdir", "mtools", &["-b", "-i", s(&img), "::/"]);
    assert_eq!(root.trim(), "", "{root}");
}

#[test]
fn vfat_grows_past_fat12() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    for i in 0..40 {
        fs::write(
            tree.join(format!("d/file-number-{i:03}.dat")),
            vec![i as u8; 600_000],
        )
        .unwrap();
    }
    let img = tmp.path().join("big.vfat");
    write_vfat(&tree, &img, &OPTS).unwrap();
    fsck_clean(&img);
    assert_eq!(label(&img), "cidata");
    assert_eq!(mtype(&img, "/d/file-number-039.dat"), vec![39u8; 600_000]);
    let size = fs::metadata(&img).unwrap().len();
    assert!((24_000_000..28 << 20).contains(&size), "size {size}");
}

// ---------------------------------------------------------------- dir

#[test]
fn dir_copies_tree_with_modes_and_times() {
    let f = fixture();
    symlink("meta-data", f.tree.join("link")).unwrap();
    let out = f.out.join("cidata");
    write_dir(&f.tree, &out, &OPTS).unwrap();
    let mode = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(fs::read(out.join("meta-data")).unwrap(), META.as_bytes());
    assert_eq!(
        fs::read(out.join("etc/app/conf.yaml")).unwrap(),
        CONF.as_bytes()
    );
    assert_eq!(fs::read(out.join("blob.bin")).unwrap(), binary());
    assert_eq!(fs::read(out.join(LONG_NAME)).unwrap(), b"long\n");
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("etc/app/conf.yaml"), 0o640);
    assert!(out.join("empty").is_dir());
    assert_eq!(fs::read_dir(out.join("empty")).unwrap().count(), 0);
    assert_eq!(
        fs::read_link(out.join("link")).unwrap(),
        Path::new("meta-data")
    );
    for p in [
        "meta-data",
        "etc",
        "etc/app",
        "etc/app/conf.yaml",
        "empty",
        ".",
    ] {
        let m = fs::metadata(out.join(p)).unwrap();
        assert_eq!(m.mtime(), OPTS.timestamp as i64, "{p}");
    }

    let err = write_dir(&f.tree, &out, &OPTS).unwrap_err().to_string();
    assert!(
        err.contains("already exists") && err.contains("cidata"),
        "{err}"
    );
}

#[test]
fn dir_of_missing_tree_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d");
    write_dir(&tmp.path().join("missing"), &out, &OPTS).unwrap();
    assert!(out.is_dir());
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
}

// ---------------------------------------------------------------- all

#[test]
fn media_are_reproducible() {
    let a = fixture();
    // A second tree, made later, with different file times and creation order.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("other-tree");
        fs::create_dir(&tree).unwrap();
        fs::write(tree.join(LONG_NAME), "long\n").unwrap();
        make_tree(&tree);
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        Fixture {
            tree,
            out,
            _tmp: tmp,
        }
    };
    symlink("meta-data", a.tree.join("link")).unwrap();
    symlink("meta-data", b.tree.join("link")).unwrap();

    for (name, write) in [
        ("iso", write_iso as fn(&Path, &Path, &MediaOptions) -> _),
        ("vfat", write_vfat),
    ] {
        let x = a.out.join(name);
        let y = b.out.join(name);
        write(&a.tree, &x, &OPTS).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write(&b.tree, &y, &OPTS).unwrap();
        let (x, y) = (fs::read(&x).unwrap(), fs::read(&y).unwrap());
        assert!(x == y, "{name} images differ");
        // A different timestamp gives a different image.
        let z = b.out.join(format!("{name}-2"));
        write(
            &b.tree,
            &z,
            &MediaOptions {
                timestamp: OPTS.timestamp + 86_400,
            },
        )
        .unwrap();
        assert_ne!(fs::read(&z).unwrap(), x, "{name}");
    }
    // The vfat serial comes from the content.
    let serial = |p: &Path| ok("blkid", "util-linux", &["-o", "value", "-s", "UUID", s(p)]);
    assert_eq!(serial(&a.out.join("vfat")), serial(&b.out.join("vfat")));
    fs::write(b.tree.join("user-data"), "#cloud-config\n").unwrap();
    write_vfat(&b.tree, &b.out.join("vfat-3"), &OPTS).unwrap();
    assert_ne!(serial(&a.out.join("vfat")), serial(&b.out.join("vfat-3")));

    let (x, y) = (a.out.join("dir"), b.out.join("dir"));
    write_dir(&a.tree, &x, &OPTS).unwrap();
    write_dir(&b.tree, &y, &OPTS).unwrap();
    let st = |p: PathBuf| {
        let m = fs::symlink_metadata(&p).unwrap();
        (m.mode(), m.len())
    };
    for p in ["meta-data", "run.sh", "etc/app/conf.yaml", "blob.bin"] {
        assert_eq!(st(x.join(p)), st(y.join(p)), "{p}");
        assert_eq!(
            fs::read(x.join(p)).unwrap(),
            fs::read(a.tree.join(p)).unwrap()
        );
    }
}

#[test]
fn special_files_are_refused_by_name() {
    let f = fixture();
    let fifo = f.tree.join("etc/a-fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    for (name, r) in [
        ("iso", write_iso(&f.tree, &f.out.join("x.iso"), &OPTS)),
        ("vfat", write_vfat(&f.tree, &f.out.join("x.vfat"), &OPTS)),
        ("dir", write_dir(&f.tree, &f.out.join("x"), &OPTS)),
    ] {
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("a-fifo") && err.contains("named pipe"),
            "{name}: {err}"
        );
    }
}

#[test]
fn iso_handles_colliding_short_names_and_deep_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let deep = tree.join("a/b/c/d/e/f/g/h/i/j");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("deep-file.txt"), "deep\n").unwrap();
    for n in [
        "network-config",
        "network-config2",
        "network-configuration",
        "Network-Config",
    ] {
        fs::write(tree.join(n), n).unwrap();
    }
    let img = tmp.path().join("c.iso");
    write_iso(&tree, &img, &OPTS).unwrap();
    let vfy = ok("isovfy", "genisoimage", &[s(&img)]);
    assert!(vfy.contains("No errors found"), "isovfy: {vfy}");
    for n in [
        "network-config",
        "network-config2",
        "network-configuration",
        "Network-Config",
    ] {
        assert_eq!(iso_file(&img, &format!("/{n}")), n.as_bytes(), "{n}");
        assert_eq!(joliet_file(&img, &format!("/{n}")), n.as_bytes(), "{n}");
    }
    // Deeper than ISO9660's 8 levels: Rock Ridge relocates (CL/RE/PL), which
    // isoinfo does not follow but xorriso (like the Linux kernel) does.
    let deep_out = tmp.path().join("deep-out.txt");
    ok(
        "xorriso",
        "xorriso",
        &[
            "-indev",
            s(&img),
            "-osirrox",
            "on",
            "-extract",
            "/a/b/c/d/e/f/g/h/i/j/deep-file.txt",
            s(&deep_out),
        ],
    );
    assert_eq!(fs::read(&deep_out).unwrap(), b"deep\n");
    assert_eq!(
        joliet_file(&img, "/a/b/c/d/e/f/g/h/i/j/deep-file.txt"),
        b"deep\n"
    );

    let fat = tmp.path().join("c.vfat");
    // Network-Config and network-config are the same name on FAT.
    let err = write_vfat(&tree, &fat, &OPTS).unwrap_err().to_string();
    assert!(
        err.contains("network-config") && err.contains("exists"),
        "{err}"
    );
    fs::remove_file(tree.join("Network-Config")).unwrap();
    write_vfat(&tree, &fat, &OPTS).unwrap();
    fsck_clean(&fat);
    assert_eq!(mtype(&fat, "/a/b/c/d/e/f/g/h/i/j/deep-file.txt"), b"deep\n");
    assert_eq!(mtype(&fat, "/network-config2"), b"network-config2");
}
