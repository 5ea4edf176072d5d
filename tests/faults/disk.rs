//! See `main.rs`. Full disks (every writer against a small tmpfs), Ctrl-C
//! and SIGTERM during long writes, temporaries of converts and creates,
//! hostile images (backing files, special files).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::disk_env::{
    assert_full_disk_error, finish, random_file, stderr, temporaries, tool_ok, Dir, Tmpfs, DEADLINE,
};

/// What an older output at the destination holds; it must survive a failed write.
const OLD: &[u8] = b"an older output that must stay intact";

/// `b9 image convert` into a full file system, for every output format:
/// b9 ends with the OS error and the path, nothing stays under a temporary
/// name, the older output is untouched. (Hung before: the reader thread
/// waited for buffers the failed writer never gave back.)
#[test]
fn convert_into_a_full_disk_fails_promptly_for_every_format() {
    let d = Dir::new();
    random_file(&d.p("in.raw"), 12);
    let fs = Tmpfs::new(4);
    for (name, extra) in [
        ("out.raw", &[][..]),
        ("out.qcow2", &[][..]),
        ("out.vmdk", &[][..]),
        ("stream.vmdk", &["--subformat", "stream-optimized"][..]),
    ] {
        let input = d.p("in.raw");
        let mut args = vec!["convert"];
        args.extend_from_slice(extra);
        args.push(input.to_str().unwrap());
        image_command_into_full_disk(&d, &fs, name, &args);
    }
}

/// `b9 image ARGS OUTPUT` with OUTPUT on the full `fs`, where an older
/// output lies: b9 fails with the OS error and the path, leaves no
/// temporary, and the older output is intact.
fn image_command_into_full_disk(d: &Dir, fs: &Tmpfs, name: &str, args: &[&str]) {
    let out = fs.p(name);
    std::fs::write(&out, OLD).unwrap();
    let mut all = vec!["image"];
    all.extend_from_slice(args);
    all.push(out.to_str().unwrap());
    let run = d.b9(&all);
    assert_full_disk_error(&run, &out, &fs.path);
    assert_eq!(std::fs::read(&out).unwrap(), OLD, "{name} was touched");
}

/// `b9 image create` into a full file system: ext4 with a tree too big for
/// it (raw and through the qcow2 conversion), and an empty vmdk whose grain
/// tables do not fit.
#[test]
fn create_into_a_full_disk_fails_promptly() {
    let d = Dir::new();
    std::fs::create_dir(d.p("tree")).unwrap();
    random_file(&d.p("tree/big"), 8);
    let fs = Tmpfs::new(4);
    let tree = d.p("tree");
    let tree = tree.to_str().unwrap();
    let ext4 = [
        "create",
        "--fs",
        "ext4",
        "--size",
        "32M",
        "--from-dir",
        tree,
    ];
    image_command_into_full_disk(&d, &fs, "fs.raw", &ext4);
    image_command_into_full_disk(&d, &fs, "fs.qcow2", &ext4);
    image_command_into_full_disk(&d, &fs, "empty.vmdk", &["create", "--size", "64T"]);
}

/// Cloud-init media (ISO, VFAT, directory) written into a full file
/// system: the OS error and the path (the ISO writer said "Other"), no
/// temporary, the older output intact.
#[test]
fn cloud_init_media_into_a_full_disk_fail_with_the_os_error() {
    let d = Dir::new();
    random_file(&d.p("big.bin"), 6);
    let fs = Tmpfs::new(4);
    let out = fs.p("ci");
    for (kind, ext) in [("CI_ISO", "iso"), ("CI_VFAT", "vfat"), ("CI_DIR", "")] {
        let target = if ext.is_empty() {
            out.clone()
        } else {
            out.with_extension(ext)
        };
        let build = |source: &str| {
            std::fs::write(
                d.p("ci.b9"),
                format!(
                    "Sources [{source}]\n  \
                     [Artifact (IID \"ci\") (CloudInit [{kind}] \"{}\")]\n",
                    out.display()
                ),
            )
            .unwrap();
            d.b9(&["build", "-f", "ci.b9"])
        };
        // An older output, made by b9 (only those may be replaced).
        let old = build("FromContent \"old\" (FromString \"older output\")");
        assert!(old.status.success(), "{}", stderr(&old));
        let before = tree_bytes(&target);
        let run = build("FromFile \"big.bin\" (Source NoConversion \"big.bin\")");
        assert_full_disk_error(&run, &target, &fs.path);
        assert_eq!(
            tree_bytes(&target),
            before,
            "{kind}: the older output changed"
        );
    }
}

/// The contents of a file, or of every file of a directory tree by path.
fn tree_bytes(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if !path.is_dir() {
        return vec![(path.to_path_buf(), std::fs::read(path).unwrap())];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).unwrap() {
        out.extend(tree_bytes(&e.unwrap().path()));
    }
    out.sort();
    out
}

/// `VmImages` exports into a full file system (a `LocalFile` in two formats)
/// and a `Share` into a cache on a full file system.
#[test]
fn image_exports_and_shares_into_a_full_disk_fail_promptly() {
    let d = Dir::new();
    random_file(&d.p("base.raw"), 12);
    let fs = Tmpfs::new(4);
    for (name, ty) in [("out.raw", "Raw"), ("out.qcow2", "QCow2")] {
        let out = fs.p(name);
        std::fs::write(&out, OLD).unwrap();
        std::fs::write(
            d.p("img.b9"),
            format!(
                "Artifact (IID \"img\") (VmImages [ImageTarget (LocalFile (Image \"{}\" {ty} NoFileSystem) KeepSize) \
                 (SourceImage (Image \"base.raw\" Raw NoFileSystem) NoPT KeepSize) NotMounted] NoVmScript)\n",
                out.display()
            ),
        )
        .unwrap();
        let run = d.b9(&["build", "-f", "img.b9"]);
        assert_full_disk_error(&run, &out, &fs.path);
        assert_eq!(std::fs::read(&out).unwrap(), OLD, "{name} was touched");
    }
    std::fs::write(
        d.p("share.b9"),
        "Artifact (IID \"img\") (VmImages [ImageTarget (Share \"big\" Raw KeepSize) \
         (SourceImage (Image \"base.raw\" Raw NoFileSystem) NoPT KeepSize) NotMounted] NoVmScript)\n",
    )
    .unwrap();
    let cache = fs.p("cache");
    let run = d.b9(&[
        "--repo-cache",
        cache.to_str().unwrap(),
        "build",
        "-f",
        "share.b9",
    ]);
    let err = stderr(&run);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("big"), "{err}");
    let images = cache.join("local-repo/b9_shared_images");
    if images.exists() {
        let left: Vec<_> = std::fs::read_dir(&images).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// The first SIGTERM during a long convert or ext4 create stops it: b9
/// fails with "interrupted" and removes its temporary. (It was ignored
/// before: the write ran to its end and exited 0.)
#[test]
fn sigterm_stops_a_long_convert_or_create_and_removes_its_temporary() {
    let d = Dir::new();
    random_file(&d.p("in.raw"), 768);
    std::fs::create_dir(d.p("tree")).unwrap();
    for i in 0..384 {
        random_file(&d.p(&format!("tree/f{i}")), 1);
    }
    std::fs::create_dir(d.p("out")).unwrap();
    let input = d.p("in.raw");
    let tree = d.p("tree");
    let convert = [
        "convert",
        "--subformat",
        "stream-optimized",
        input.to_str().unwrap(),
    ];
    let create = [
        "create",
        "--fs",
        "ext4",
        "--size",
        "1G",
        "--from-dir",
        tree.to_str().unwrap(),
    ];
    for (name, args) in [("big.vmdk", &convert[..]), ("fs.qcow2", &create[..])] {
        let out = d.p("out").join(name);
        let mut all = vec!["image"];
        all.extend_from_slice(args);
        all.push(out.to_str().unwrap());
        let child = d.command(&all).spawn().unwrap();
        let start = Instant::now();
        while temporaries(&d.p("out")).is_empty() {
            assert!(start.elapsed() < DEADLINE, "no temporary appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let run = finish(child, &all);
        let err = stderr(&run);
        assert!(!run.status.success(), "{name}: {err}");
        assert!(err.contains("interrupted"), "{name}: {err}");
        assert!(!out.exists());
        assert_eq!(temporaries(&d.p("out")), Vec::<String>::new());
    }
}

/// A temporary left by a killed convert (its process is gone) is removed by
/// the next b9 writing into that directory; one of a live process is kept.
#[test]
fn leftovers_of_killed_writers_are_swept() {
    let d = Dir::new();
    random_file(&d.p("in.raw"), 1);
    std::fs::create_dir(d.p("out")).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let dead = [
        format!(".disk.raw.b9-tmp-{gone_pid}"),
        format!(".other.qcow2.b9-tmp-{gone_pid}.3"),
    ];
    let alive = format!(".disk.raw.b9-tmp-{}.0", std::process::id());
    for n in dead.iter().chain([&alive]) {
        std::fs::write(d.p("out").join(n), b"half-written").unwrap();
    }
    d.ok(&[
        "image",
        "convert",
        d.p("in.raw").to_str().unwrap(),
        d.p("out/disk.raw").to_str().unwrap(),
    ]);
    assert_eq!(temporaries(&d.p("out")), vec![alive]);
}

/// Two concurrent `image create --fs ext4 --from-dir` to one qcow2 output:
/// each succeeds or fails at once because the other is writing it, and the
/// output is a valid file system (they shared an intermediate raw file
/// before, and one could exit 0 with a broken image).
#[test]
fn concurrent_creates_to_one_output_each_write_a_whole_image() {
    let d = Dir::new();
    std::fs::create_dir(d.p("tree")).unwrap();
    for i in 0..40 {
        random_file(&d.p(&format!("tree/f{i}")), 1);
    }
    let out = d.p("fs.qcow2");
    let tree = d.p("tree");
    let mut args: Vec<&str> = "image create --fs ext4 --size 128M --from-dir"
        .split(' ')
        .collect();
    args.extend([tree.to_str().unwrap(), out.to_str().unwrap()]);
    // The second starts a little later each round, so the two overlap at
    // different stages (format, population, conversion, rename).
    for round in 0..6 {
        let a = d.command(&args).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(60 * round));
        let b = d.command(&args).spawn().unwrap();
        let runs = [finish(a, &args), finish(b, &args)];
        for run in &runs {
            assert!(
                run.status.success() || stderr(run).contains("is writing"),
                "round {round}: {}",
                stderr(run)
            );
        }
        assert!(runs.iter().any(|r| r.status.success()), "round {round}");
        let raw = d.p("fs.raw");
        tool_ok(
            "qemu-img",
            &[
                "convert",
                "-O",
                "raw",
                out.to_str().unwrap(),
                raw.to_str().unwrap(),
            ],
        );
        tool_ok("e2fsck", &["-fn", raw.to_str().unwrap()]);
        assert_eq!(temporaries(&d.path), Vec::<String>::new());
    }
}

/// Creates a qcow2 overlay at `overlay` whose backing file is recorded as `backing`.
fn overlay_on(overlay: &Path, backing: &str) {
    tool_ok(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            backing,
            "-F",
            "raw",
            overlay.to_str().unwrap(),
            "1M",
        ],
    );
}

/// A `[global]` section for `HOME/.b9/b9.conf`, with `extra` keys.
fn write_config(d: &Dir, extra: &str) {
    std::fs::create_dir_all(d.p("home/.b9")).unwrap();
    std::fs::write(
        d.p("home/.b9/b9.conf"),
        format!(
            "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\n\
             repository: Nothing\nrepository_cache: Just (InB9UserDir \"repo-cache\")\n\
             unique_build_dirs: True\nverbosity: Just LogInfo\n{extra}"
        ),
    )
    .unwrap();
}

/// `b9 check` of a `VmImages` artifact built from the image source `source`.
fn check_image_source(d: &Dir, source: &str) -> std::process::Output {
    std::fs::write(
        d.p("img.b9"),
        format!(
            "Artifact (IID \"img\") (VmImages [ImageTarget (LocalFile (Image \"out.raw\" Raw NoFileSystem) KeepSize) \
             ({source}) NotMounted] NoVmScript)\n"
        ),
    )
    .unwrap();
    d.b9(&["check", "-f", "img.b9"])
}

/// Asserts that b9 refused an image naming a file outside its directory.
fn assert_escape_refused(out: &std::process::Output, what: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: b9 accepted it: {err}");
    assert!(
        err.contains("outside the image's directory") && err.contains("trusted_image_dirs"),
        "{what}: {err}"
    );
    assert!(!err.contains("TOPSECRET"), "{what}: {err}");
}

/// qcow2 backing files (absolute, `../`, a symbolic link out of the
/// directory) and vmdk extents outside the image's directory are refused by
/// `image info`, `image convert` and `b9 check` (they were followed, and the
/// host file's bytes went into the output); inside the directory, or in a
/// directory b9.conf trusts, they work.
#[test]
fn files_named_by_an_image_must_lie_in_its_directory() {
    let d = Dir::new();
    let mut secret = b"TOPSECRET".to_vec();
    secret.resize(1 << 20, b'#');
    std::fs::write(d.p("secret.raw"), &secret).unwrap();
    std::fs::create_dir(d.p("images")).unwrap();
    std::fs::write(d.p("images/base.raw"), vec![7u8; 1 << 20]).unwrap();
    std::os::unix::fs::symlink("../secret.raw", d.p("images/link.raw")).unwrap();
    let abs = d.p("secret.raw");
    let hostile = [
        ("abs.qcow2", abs.to_str().unwrap()),
        ("dotdot.qcow2", "../secret.raw"),
        ("link.qcow2", "link.raw"),
    ];
    for (name, backing) in hostile {
        overlay_on(&d.p(&format!("images/{name}")), backing);
    }
    overlay_on(&d.p("images/good.qcow2"), "base.raw");
    std::fs::write(
        d.p("images/flat.vmdk"),
        "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"../secret.raw\" 0\n",
    )
    .unwrap();
    let images = d.p("images");
    let out = d.p("out.raw");
    for name in ["abs.qcow2", "dotdot.qcow2", "link.qcow2", "flat.vmdk"] {
        let image = images.join(name);
        let image = image.to_str().unwrap();
        assert_escape_refused(&d.b9(&["image", "info", image]), name);
        let relative = format!("images/{name}");
        assert_escape_refused(&d.b9(&["image", "info", &relative]), name);
        let run = d.b9(&["image", "convert", image, out.to_str().unwrap()]);
        assert_escape_refused(&run, name);
        assert!(!out.exists(), "{name}: an output was written");
        for source in [
            format!("SourceImage (Image \"images/{name}\" Raw NoFileSystem) NoPT KeepSize"),
            format!("CopyOnWrite (Image \"images/{name}\" QCow2 NoFileSystem)"),
        ] {
            assert_escape_refused(&check_image_source(&d, &source), &source);
        }
    }
    let convert = |name: &str| {
        let image = images.join(name);
        d.ok(&[
            "image",
            "convert",
            image.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        std::fs::read(&out).unwrap()
    };
    assert_eq!(convert("good.qcow2"), vec![7u8; 1 << 20]);
    // b9.conf trusts the directory: the absolute backing file is read.
    write_config(
        &d,
        &format!("trusted_image_dirs: [\"{}\"]\n", d.path.display()),
    );
    assert_eq!(convert("abs.qcow2"), secret);
}

/// FIFOs, character devices and directories are refused as images at once,
/// by `image info`, `image convert` and `b9 check` (a FIFO blocked `open`
/// forever; `/dev/zero` read as an empty raw image).
#[test]
fn special_files_are_refused_as_images_without_blocking() {
    let d = Dir::new();
    tool_ok("mkfifo", &[d.p("fifo").to_str().unwrap()]);
    std::fs::create_dir(d.p("dir")).unwrap();
    let out = d.p("out.raw");
    for (path, kind) in [
        (d.p("fifo"), "FIFO"),
        (Path::new("/dev/zero").to_path_buf(), "character device"),
        (d.p("dir"), "directory"),
    ] {
        let path = path.to_str().unwrap();
        for args in [
            vec!["image", "info", path],
            vec!["image", "convert", path, out.to_str().unwrap()],
        ] {
            let run = d.b9(&args);
            let err = stderr(&run);
            assert!(!run.status.success(), "{args:?}: {err}");
            assert!(
                err.contains(kind) && err.contains("not a regular file"),
                "{args:?}: {err}"
            );
        }
        assert!(!out.exists());
        let source = format!("SourceImage (Image \"{path}\" Raw NoFileSystem) NoPT KeepSize");
        let run = check_image_source(&d, &source);
        let err = stderr(&run);
        assert!(!run.status.success() && err.contains(kind), "{err}");
    }
}
