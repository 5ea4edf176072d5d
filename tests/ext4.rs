//! ext4 image creation (`b9::disk::ext4`), checked with independent tools:
//! e2fsck, dumpe2fs and debugfs (Debian package e2fsprogs) and the kernel's
//! own ext4 driver through a read-only loop mount (util-linux `mount`;
//! needs root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

use b9::disk::ext4::{capacity, create, Ext4Spec};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const T0: u64 = 1_700_000_000;

/// Runs an external tool; a missing tool fails the test naming its package.
fn tool(name: &str, package: &str, args: &[&OsStr]) -> Output {
    let mut found = None;
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            found = Some(p);
            break;
        }
    }
    let Some(exe) = found else {
        panic!("`{name}` not found: install the Debian package {package}");
    };
    Command::new(&exe)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
}

fn e2fsck_clean(img: &Path) {
    let out = tool("e2fsck", "e2fsprogs", &["-fn".as_ref(), img.as_os_str()]);
    assert!(
        out.status.success(),
        "e2fsck -fn {} failed ({:?}):\n{}{}",
        img.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dumpe2fs -h` as key -> value.
fn superblock(img: &Path) -> BTreeMap<String, String> {
    superblock_with(img, &[])
}

/// `dumpe2fs -h` with extra options (e.g. to read a backup superblock).
fn superblock_with(img: &Path, options: &[&str]) -> BTreeMap<String, String> {
    let mut args: Vec<&OsStr> = options.iter().map(OsStr::new).collect();
    args.extend(["-h".as_ref(), img.as_os_str()]);
    let out = tool("dumpe2fs", "e2fsprogs", &args);
    assert!(out.status.success(), "dumpe2fs -h failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn features(img: &Path) -> Vec<String> {
    superblock(img)["Filesystem features"]
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// `debugfs -R "stat <path>"` output.
fn debugfs_stat(img: &Path, path: &str) -> String {
    let cmd = format!("stat \"{path}\"");
    let out = tool(
        "debugfs",
        "e2fsprogs",
        &["-R".as_ref(), cmd.as_ref(), img.as_os_str()],
    );
    assert!(out.status.success(), "debugfs stat failed: {out:?}");
    // Whitespace collapsed: column widths are not the point.
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn make(img: &Path, size: u64, label: &str, feats: &[&str], from: Option<&Path>) {
    let feats: Vec<String> = feats.iter().map(|s| s.to_string()).collect();
    create(
        img,
        &Ext4Spec {
            size,
            label,
            features: &feats,
            populate_from: from,
            timestamp: T0,
        },
    )
    .unwrap_or_else(|e| panic!("create {}: {e}", img.display()));
    assert_eq!(fs::metadata(img).unwrap().len(), size, "image length");
}

#[test]
fn default_features_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("root.raw");
    make(&img, 64 * MIB, "root", &[], None);
    e2fsck_clean(&img);
    let sb = superblock(&img);
    assert_eq!(sb["Filesystem volume name"], "root");
    assert_eq!(sb["Block size"], "1024");
    assert_eq!(sb["Inode size"], "256");
    assert_eq!(sb["Block count"], "65536");
    assert_eq!(sb["Filesystem created"], "Tue Nov 14 22:13:20 2023");
    let f = features(&img);
    for want in [
        "has_journal",
        "ext_attr",
        "dir_index",
        "filetype",
        "extent",
        "sparse_super",
        "large_file",
        "huge_file",
        "dir_nlink",
        "extra_isize",
        "metadata_csum",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} missing in {f:?}");
    }
    assert!(!f.iter().any(|x| x == "64bit"), "{f:?}");
    // The journal superblock carries the file-system UUID, as mke2fs does.
    let out = tool(
        "debugfs",
        "e2fsprogs",
        &["-R".as_ref(), "bmap <8> 0".as_ref(), img.as_os_str()],
    );
    let block: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let bytes = fs::read(&img).unwrap();
    let jsb = &bytes[block as usize * 1024..][..64];
    assert_eq!(jsb[..4], [0xc0, 0x3b, 0x39, 0x98]);
    let uuid: String = sb["Filesystem UUID"].replace('-', "");
    let jsb_uuid: String = jsb[48..64].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(jsb_uuid, uuid);
    // The backup superblocks carry what was set after formatting.
    let backup = superblock_with(&img, &["-o", "superblock=8193", "-o", "blocksize=1024"]);
    for key in [
        "Filesystem volume name",
        "Filesystem UUID",
        "Directory Hash Seed",
        "Filesystem features",
        "Errors behavior",
        "Maximum mount count",
        "Default mount options",
        "Free blocks",
        "Free inodes",
    ] {
        assert_eq!(backup.get(key), sb.get(key), "{key}");
    }
    // 8 groups: too few for the writer's flex_bg.
    assert!(!f.iter().any(|x| x == "flex_bg"), "{f:?}");
}

#[test]
fn without_metadata_csum() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.raw");
    make(&img, 64 * MIB, "nocsum", &["^metadata_csum"], None);
    e2fsck_clean(&img);
    let f = features(&img);
    assert!(!f.iter().any(|x| x == "metadata_csum"), "{f:?}");
    assert!(f.iter().any(|x| x == "has_journal"), "{f:?}");
}

#[test]
fn with_64bit() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.raw");
    make(&img, 64 * MIB, "b64", &["64bit"], None);
    e2fsck_clean(&img);
    let f = features(&img);
    assert!(f.iter().any(|x| x == "64bit"), "{f:?}");
    assert!(f.iter().any(|x| x == "metadata_csum"), "{f:?}");
    assert_eq!(superblock(&img)["Group descriptor size"], "64");
}

#[test]
fn without_64bit_and_the_original_test_combination() {
    let dir = tempfile::tempdir().unwrap();
    // b9.conf without ext4_attributes means ["^64bit"].
    let img = dir.path().join("a.raw");
    make(&img, 64 * MIB, "n64", &["^64bit"], None);
    e2fsck_clean(&img);
    assert!(!features(&img).iter().any(|x| x == "64bit"));
    // The original b9's DiskImageBuilderSpec: 10 MB, ["^metadata_csum", "64bit"].
    let img = dir.path().join("b.raw");
    make(&img, 10 * MIB, "test", &["^metadata_csum", "64bit"], None);
    e2fsck_clean(&img);
    let f = features(&img);
    assert!(f.iter().any(|x| x == "64bit"), "{f:?}");
    assert!(!f.iter().any(|x| x == "metadata_csum"), "{f:?}");
}

/// Allocated bytes of a file.
fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn ten_gib_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.raw");
    make(&img, 10 * GIB, "big", &[], None);
    assert!(
        allocated(&img) < 8 * MIB,
        "10 GiB image allocates {} bytes",
        allocated(&img)
    );
    e2fsck_clean(&img);
    let sb = superblock(&img);
    assert_eq!(sb["Block size"], "4096");
    assert_eq!(sb["Block count"], "2621440");
    // 80 groups: flex_bg with units of 16, like mke2fs.
    assert_eq!(sb["Flex block group size"], "16");
    assert_eq!(sb["Total journal blocks"], "16384");
}

#[test]
fn one_tib_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("huge.raw");
    make(&img, 1 << 40, "huge", &["64bit"], None);
    // Lazy groups: descriptor tables (512 KiB, 19 copies) and one block
    // bitmap per flex unit.
    assert!(
        allocated(&img) < 16 * MIB,
        "1 TiB image allocates {} bytes",
        allocated(&img)
    );
    e2fsck_clean(&img);
}

#[test]
fn error_cases() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.raw");
    let err = |size: u64, label: &str, feats: &[&str]| {
        let feats: Vec<String> = feats.iter().map(|s| s.to_string()).collect();
        create(
            &img,
            &Ext4Spec {
                size,
                label,
                features: &feats,
                populate_from: None,
                timestamp: T0,
            },
        )
        .expect_err("must fail")
        .to_string()
    };
    let e = err(64 * MIB, "seventeen-bytes!!", &[]);
    assert!(e.contains("at most 16 bytes"), "{e}");
    let e = err(64 * MIB, "x", &["64bit", "frobnicate"]);
    assert!(e.contains("`frobnicate`"), "{e}");
    let e = err(64 * MIB, "x", &["^has_journal"]);
    assert!(e.contains("has_journal"), "{e}");
    let e = err(64 * MIB, "x", &["resize_inode"]);
    assert!(e.contains("resize_inode"), "{e}");
    let e = err(MIB, "x", &[]);
    assert!(e.contains("too small"), "{e}");
    let e = err(17 << 40, "x", &[]);
    assert!(e.contains("too large"), "{e}");
    // Populating from something that is not a directory.
    let e = create(
        &img,
        &Ext4Spec {
            size: 64 * MIB,
            label: "x",
            features: &[],
            populate_from: Some(&dir.path().join("missing")),
            timestamp: T0,
        },
    )
    .expect_err("must fail")
    .to_string();
    assert!(e.contains("missing"), "{e}");
    // A tree that does not fit.
    let src = dir.path().join("src");
    source_tree(&src);
    let e = create(
        &img,
        &Ext4Spec {
            size: 3 * MIB,
            label: "x",
            features: &[],
            populate_from: Some(&src),
            timestamp: T0,
        },
    )
    .expect_err("must fail")
    .to_string();
    assert!(e.contains("x.raw"), "{e}");
    assert!(e.contains("no free data blocks"), "{e}");
}

/// A source tree exercising everything population must keep.
fn source_tree(root: &Path) {
    let set_mtime = |p: &Path, secs: u64| {
        let f = fs::File::open(p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    };
    fs::create_dir_all(root.join("etc/empty")).unwrap();
    fs::create_dir_all(root.join("home/user/.ssh")).unwrap();
    fs::create_dir_all(root.join("big/dir")).unwrap();
    fs::write(root.join("etc/hostname"), "b9-test\n").unwrap();
    fs::write(root.join("etc/secret"), "s3cr3t").unwrap();
    fs::set_permissions(root.join("etc/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        root.join("home/user/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA\n",
    )
    .unwrap();
    std::os::unix::fs::chown(root.join("home/user"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(root.join("home/user/.ssh"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(
        root.join("home/user/.ssh/authorized_keys"),
        Some(1234),
        Some(5678),
    )
    .unwrap();
    fs::set_permissions(
        root.join("home/user/.ssh"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let tool_path = root.join("usr-bin-tool");
    fs::write(&tool_path, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&tool_path, fs::Permissions::from_mode(0o4755)).unwrap();
    // 3 MiB + 5 bytes of non-repeating content, and a file with a hole.
    let data: Vec<u8> = (0..3 * MIB as u32 + 5)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(root.join("big/blob"), &data).unwrap();
    {
        let f = fs::File::create(root.join("big/holey")).unwrap();
        f.set_len(5 * MIB).unwrap();
        use std::io::{Seek, SeekFrom, Write};
        let mut f = f;
        f.seek(SeekFrom::Start(2 * MIB)).unwrap();
        f.write_all(b"in the middle").unwrap();
    }
    // Many entries: directory spanning several blocks.
    for i in 0..400 {
        fs::write(root.join(format!("big/dir/file-{i:04}")), format!("{i}\n")).unwrap();
    }
    // Links.
    symlink("hostname", root.join("etc/fast-link")).unwrap();
    let long_target = format!("/{}/target", "very-long-directory-name".repeat(5));
    symlink(&long_target, root.join("etc/slow-link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    fs::hard_link(root.join("etc/hostname"), root.join("home/hostname-link")).unwrap();
    fs::hard_link(root.join("etc/hostname"), root.join("big/hostname-link2")).unwrap();
    // Special files.
    let mknod = |args: &[&str]| {
        let out = tool(
            args[0],
            "coreutils",
            &args[1..].iter().map(OsStr::new).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let fifo = root.join("fifo");
    let null = root.join("null");
    mknod(&["mkfifo", fifo.to_str().unwrap()]);
    mknod(&["mknod", null.to_str().unwrap(), "c", "1", "3"]);
    // Non-UTF-8 name.
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9")), "latin-1 name").unwrap();
    // Times last: creating entries changes directory mtimes.
    for (p, t) in [
        ("etc/hostname", 1_600_000_000),
        ("etc/secret", 1_500_000_000),
        ("big/blob", 1_400_000_000),
        ("etc/empty", 1_300_000_000),
        ("home/user", 1_200_000_000),
        ("etc", 1_100_000_000),
    ] {
        set_mtime(&root.join(p), t);
    }
    set_mtime(root, 1_000_000_000);
}

/// Everything observable about a tree, keyed by relative path.
#[derive(Debug, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    nlink: u64,
    rdev: u64,
    content: Vec<u8>,
}

fn snapshot(root: &Path) -> (BTreeMap<PathBuf, Entry>, BTreeMap<PathBuf, u64>) {
    let mut out = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<PathBuf, Entry>,
        inodes: &mut BTreeMap<PathBuf, u64>,
    ) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new("lost+found") {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let (kind, content) = if ft.is_dir() {
                walk(root, &p, out, inodes);
                ("dir", Vec::new())
            } else if ft.is_file() {
                ("file", fs::read(&p).unwrap())
            } else if ft.is_symlink() {
                let t = fs::read_link(&p).unwrap();
                ("symlink", t.as_os_str().as_bytes().to_vec())
            } else {
                ("special", Vec::new())
            };
            inodes.insert(rel.clone(), md.ino());
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    mtime: md.mtime(),
                    nlink: md.nlink(),
                    rdev: md.rdev(),
                    content,
                },
            );
        }
    }
    walk(root, root, &mut out, &mut inodes);
    (out, inodes)
}

/// A loop mount (read-only unless `rw`), unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn new(img: &Path, at: &Path) -> Mount {
        Mount::with(img, at, "loop,ro")
    }

    fn with(img: &Path, at: &Path, options: &str) -> Mount {
        fs::create_dir_all(at).unwrap();
        let out = tool(
            "mount",
            "mount",
            &[
                "-t".as_ref(),
                "ext4".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                img.as_os_str(),
                at.as_os_str(),
            ],
        );
        assert!(
            out.status.success(),
            "mount -o {options} {} failed (needs root and a kernel with ext4): {}",
            img.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = tool("umount", "mount", &[self.0.as_os_str()]);
    }
}

fn populated_round_trip(feats: &[&str], size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let img = dir.path().join("pop.raw");
    make(&img, size, "populated", feats, Some(&src));
    e2fsck_clean(&img);

    let (want, _) = snapshot(&src);
    let mnt = dir.path().join("mnt");
    let (got, inodes) = {
        let _m = Mount::new(&img, &mnt);
        let root_md = fs::metadata(&mnt).unwrap();
        assert_eq!(
            root_md.mode() & 0o7777,
            fs::metadata(&src).unwrap().mode() & 0o7777
        );
        assert_eq!(root_md.mtime(), 1_000_000_000);
        assert!(mnt.join("lost+found").is_dir());
        snapshot(&mnt)
    };
    assert_eq!(want.len(), got.len());
    for (path, w) in &want {
        let g = got
            .get(path)
            .unwrap_or_else(|| panic!("{} missing in image", path.display()));
        assert_eq!(w, g, "{}", path.display());
    }
    // Hard links share one inode.
    let h = inodes[Path::new("etc/hostname")];
    assert_eq!(inodes[Path::new("home/hostname-link")], h);
    assert_eq!(inodes[Path::new("big/hostname-link2")], h);
    assert_eq!(got[Path::new("etc/hostname")].nlink, 3);
    assert_ne!(inodes[Path::new("etc/secret")], h);
    // Spot checks, in case both trees were wrong the same way.
    let a = &got[Path::new("home/user/.ssh/authorized_keys")];
    assert_eq!((a.uid, a.gid), (1234, 5678));
    assert_eq!(got[Path::new("usr-bin-tool")].mode, 0o104755);
    assert_eq!(got[Path::new("etc/secret")].mtime, 1_500_000_000);
    assert_eq!(got[Path::new("etc/empty")].kind, "dir");
    assert_eq!(got[Path::new("null")].rdev, 0x103);

    // debugfs as a second oracle.
    let s = debugfs_stat(&img, "/home/user/.ssh/authorized_keys");
    assert!(s.contains("User: 1234 Group: 5678"), "{s}");
    assert!(s.contains("Mode: 0644"), "{s}");
    let s = debugfs_stat(&img, "/etc/hostname");
    assert!(s.contains("Links: 3"), "{s}");
    assert!(s.contains("mtime: 0x5f5e1000"), "{s}");
    let s = debugfs_stat(&img, "/etc/slow-link");
    assert!(s.contains("Type: symlink"), "{s}");
    assert!(
        s.contains("EXTENTS") || s.contains("BLOCKS"),
        "slow symlink has a block: {s}"
    );
    let s = debugfs_stat(&img, "/etc/fast-link");
    assert!(s.contains("Fast link dest: \"hostname\""), "{s}");
    let s = debugfs_stat(&img, "/fifo");
    assert!(s.contains("Type: FIFO"), "{s}");
}

#[test]
fn populated_default_features() {
    populated_round_trip(&[], 64 * MIB);
}

#[test]
fn populated_64bit_without_csum_4k_blocks_flex_bg() {
    populated_round_trip(&["64bit", "^metadata_csum"], 2 * GIB);
}

#[test]
fn reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let a = dir.path().join("a.raw");
    let b = dir.path().join("b.raw");
    make(&a, 64 * MIB, "same", &[], Some(&src));
    make(&b, 64 * MIB, "same", &[], Some(&src));
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "images differ"
    );
    let sb = superblock(&a);
    let uuid = sb["Filesystem UUID"].clone();
    let seed = sb["Directory Hash Seed"].clone();
    // Another time stamp: other ids.
    let feats: Vec<String> = Vec::new();
    create(
        &b,
        &Ext4Spec {
            size: 64 * MIB,
            label: "same",
            features: &feats,
            populate_from: Some(&src),
            timestamp: T0 + 1,
        },
    )
    .unwrap();
    let sb = superblock(&b);
    assert_ne!(sb["Filesystem UUID"], uuid);
    assert_ne!(sb["Directory Hash Seed"], seed);
    assert_ne!(seed, uuid);
}

/// Whether the tests run as root (needed for loop mounts).
fn root() -> bool {
    let out = Command::new("id").arg("-u").output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `dumpe2fs` group lines (`Group N: (Blocks a-b) csum 0x.. [FLAGS]`),
/// as (group, flags).
fn group_flags(img: &Path) -> Vec<(u32, String)> {
    let out = tool("dumpe2fs", "e2fsprogs", &[img.as_os_str()]);
    assert!(out.status.success(), "dumpe2fs failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Group "))
        .filter_map(|l| {
            let (n, rest) = l.split_once(':')?;
            let flags = rest.split_once('[').map_or("", |(_, f)| f);
            Some((n.parse().ok()?, flags.trim_end_matches(']').to_string()))
        })
        .collect()
}

/// Creates an empty file system of `size` with `feats` and checks it with
/// e2fsck, dumpe2fs and (as root) the kernel: lazy groups where metadata
/// checksums allow them, the journal, free counts, a file written and read
/// back through a read-write mount, e2fsck clean again afterwards. Returns
/// the image's features.
fn empty_fs(dir: &Path, size: u64, feats: &[&str]) -> Vec<String> {
    let img = dir.join("empty.raw");
    make(&img, size, "empty", feats, None);
    // Metadata only: the image stays sparse.
    assert!(
        allocated(&img) < 16 * MIB,
        "{size}: {} bytes allocated",
        allocated(&img)
    );
    e2fsck_clean(&img);
    let sb = superblock(&img);
    let blocks: u64 = sb["Block count"].parse().unwrap();
    let block_size: u64 = sb["Block size"].parse().unwrap();
    assert_eq!(block_size, if size < 512 * MIB { 1024 } else { 4096 });
    assert!(sb.contains_key("Journal size") || sb.contains_key("Total journal size"));
    assert_eq!(sb["Free inodes"].parse::<u64>().unwrap(), {
        let inodes: u64 = sb["Inode count"].parse().unwrap();
        inodes - 11
    });
    let f: Vec<String> = sb["Filesystem features"]
        .split_whitespace()
        .map(String::from)
        .collect();
    let groups = group_flags(&img);
    assert_eq!(groups.len() as u64, blocks.div_ceil(block_size * 8));
    if f.iter().any(|x| x == "metadata_csum") {
        // The superblock's copy of the journal inode's block map.
        assert_eq!(sb["Journal backup"], "inode blocks");
        for (g, flags) in &groups {
            assert!(flags.contains("ITABLE_ZEROED"), "group {g}: {flags}");
            assert_eq!(
                flags.contains("INODE_UNINIT"),
                *g != 0,
                "group {g}: {flags}"
            );
        }
        let (last, flags) = groups.last().unwrap();
        assert!(
            !flags.contains("BLOCK_UNINIT"),
            "last group {last}: {flags}"
        );
        if groups.len() > 16 {
            let lazy = groups
                .iter()
                .filter(|(_, f)| f.contains("BLOCK_UNINIT"))
                .count();
            assert!(lazy > groups.len() / 2, "{lazy} of {}", groups.len());
        }
    }
    if root() {
        let mnt = dir.join("mnt");
        {
            let _m = Mount::with(&img, &mnt, "loop");
            assert!(mnt.join("lost+found").is_dir());
            fs::write(mnt.join("hello"), b"written after mount\n").unwrap();
        }
        {
            let _m = Mount::new(&img, &mnt);
            assert_eq!(
                fs::read(mnt.join("hello")).unwrap(),
                b"written after mount\n"
            );
        }
        e2fsck_clean(&img);
    } else {
        eprintln!("not root: the mount checks of {size} bytes are skipped");
    }
    fs::remove_file(&img).unwrap();
    f
}

#[test]
fn empty_small_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for size in [2 * MIB, 64 * MIB, GIB] {
        empty_fs(dir.path(), size, &[]);
    }
}

#[test]
fn empty_large_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for size in [8 * GIB, 100 * GIB, 1 << 40] {
        let f = empty_fs(dir.path(), size, &[]);
        assert!(f.iter().any(|x| x == "flex_bg"), "{f:?}");
    }
}

#[test]
fn empty_feature_combinations() {
    let dir = tempfile::tempdir().unwrap();
    let has = |f: &[String], name: &str| f.iter().any(|x| x == name);
    for size in [64 * MIB, 8 * GIB] {
        let f = empty_fs(dir.path(), size, &["^metadata_csum"]);
        assert!(!has(&f, "metadata_csum"), "{f:?}");
        let f = empty_fs(dir.path(), size, &["^flex_bg"]);
        assert!(!has(&f, "flex_bg"), "{f:?}");
        let f = empty_fs(dir.path(), size, &["64bit"]);
        assert!(has(&f, "64bit"), "{f:?}");
        let f = empty_fs(dir.path(), size, &["sparse_super2"]);
        assert!(
            has(&f, "sparse_super2") && !has(&f, "sparse_super"),
            "{f:?}"
        );
        let f = empty_fs(dir.path(), size, &["^sparse_super"]);
        assert!(!has(&f, "sparse_super"), "{f:?}");
        let f = empty_fs(dir.path(), size, &["metadata_csum_seed"]);
        assert!(has(&f, "metadata_csum_seed"), "{f:?}");
        let f = empty_fs(dir.path(), size, &["inline_data"]);
        assert!(has(&f, "inline_data"), "{f:?}");
    }
}

#[test]
fn empty_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    for size in [64 * MIB, 2 * GIB] {
        let a = dir.path().join("a.raw");
        let b = dir.path().join("b.raw");
        make(&a, size, "same", &[], None);
        make(&b, size, "same", &[], None);
        assert!(
            fs::read(&a).unwrap() == fs::read(&b).unwrap(),
            "{size}: images differ"
        );
    }
}

#[test]
fn capacity_is_the_free_space_of_a_new_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("c.raw");
    for size in [2 * MIB, 64 * MIB, 2 * GIB, 100 * GIB, 1 << 40] {
        make(&img, size, "c", &[], None);
        let sb = superblock(&img);
        let c = capacity(size).unwrap();
        assert_eq!(c.block_size.to_string(), sb["Block size"], "{size}");
        assert_eq!(c.blocks_count.to_string(), sb["Block count"], "{size}");
        assert_eq!(c.free_blocks.to_string(), sb["Free blocks"], "{size}");
        assert_eq!(c.free_inodes.to_string(), sb["Free inodes"], "{size}");
    }
}
