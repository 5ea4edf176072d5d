//! See `main.rs`. Full disks (every writer against a small tmpfs), Ctrl-C
//! and SIGTERM during long writes, temporaries of converts and creates,
//! hostile images (backing files, special files).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::disk_env::{
    assert_full_disk_error, finish, random_file, stderr, temporaries, tool_ok, Dir, Tmpfs,
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
        let out = fs.p(name);
        std::fs::write(&out, OLD).unwrap();
        let input = d.p("in.raw");
        let mut args = vec!["image", "convert"];
        args.extend_from_slice(extra);
        args.extend([input.to_str().unwrap(), out.to_str().unwrap()]);
        let run = d.b9(&args);
        assert_full_disk_error(&run, &out, &fs.path);
        assert_eq!(std::fs::read(&out).unwrap(), OLD, "{name} was touched");
    }
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
    for (name, args) in [
        (
            "fs.raw",
            &["--fs", "ext4", "--size", "32M", "--from-dir", tree][..],
        ),
        (
            "fs.qcow2",
            &["--fs", "ext4", "--size", "32M", "--from-dir", tree][..],
        ),
        ("empty.vmdk", &["--size", "2T"][..]),
    ] {
        let out = fs.p(name);
        std::fs::write(&out, OLD).unwrap();
        let mut all = vec!["image", "create"];
        all.extend_from_slice(args);
        all.push(out.to_str().unwrap());
        let run = d.b9(&all);
        assert_full_disk_error(&run, &out, &fs.path);
        assert_eq!(std::fs::read(&out).unwrap(), OLD, "{name} was touched");
    }
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
        if ext.is_empty() {
            std::fs::create_dir(&target).unwrap();
            std::fs::write(target.join("old"), OLD).unwrap();
        } else {
            std::fs::write(&target, OLD).unwrap();
        }
        std::fs::write(
            d.p("ci.b9"),
            format!(
                "Sources [FromFile \"big.bin\" (Source NoConversion \"big.bin\")]\n  \
                 [Artifact (IID \"ci\") (CloudInit [{kind}] \"{}\")]\n",
                out.display()
            ),
        )
        .unwrap();
        let run = d.b9(&["build", "-f", "ci.b9"]);
        assert_full_disk_error(&run, &target, &fs.path);
        if ext.is_empty() {
            assert_eq!(std::fs::read(target.join("old")).unwrap(), OLD);
        } else {
            assert_eq!(std::fs::read(&target).unwrap(), OLD, "{kind}");
        }
    }
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

/// The first SIGTERM during a long convert stops it: b9 fails with
/// "interrupted" and removes its temporary. (It was ignored before: the
/// convert ran to its end and exited 0.)
#[test]
fn sigterm_stops_a_long_convert_and_removes_its_temporary() {
    let d = Dir::new();
    random_file(&d.p("in.raw"), 768);
    std::fs::create_dir(d.p("out")).unwrap();
    let out = d.p("out/big.vmdk");
    let args = [
        "image",
        "convert",
        "--subformat",
        "stream-optimized",
        d.p("in.raw").to_str().unwrap(),
        out.to_str().unwrap(),
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = d.command(&args).spawn().unwrap();
    let start = Instant::now();
    while temporaries(&d.p("out")).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let run = finish(child, &args);
    let err = stderr(&run);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!out.exists());
    assert_eq!(temporaries(&d.p("out")), Vec::<String>::new());
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

/// Two concurrent `image create --fs ext4 --from-dir` to one qcow2 output
/// both succeed and leave a valid file system (they shared an intermediate
/// raw file before, and one could exit 0 with a broken image).
#[test]
fn concurrent_creates_to_one_output_each_write_a_whole_image() {
    let d = Dir::new();
    std::fs::create_dir(d.p("tree")).unwrap();
    for i in 0..40 {
        random_file(&d.p(&format!("tree/f{i}")), 1);
    }
    let out = d.p("fs.qcow2");
    let args = [
        "image",
        "create",
        "--fs",
        "ext4",
        "--size",
        "128M",
        "--from-dir",
        d.p("tree").to_str().unwrap(),
        out.to_str().unwrap(),
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for round in 0..3 {
        let a = d.command(&args).spawn().unwrap();
        let b = d.command(&args).spawn().unwrap();
        for run in [finish(a, &args), finish(b, &args)] {
            assert!(run.status.success(), "round {round}: {}", stderr(&run));
        }
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
