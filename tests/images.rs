//! Disk images end to end through the `b9` executable: `b9 image` commands
//! and `VmImages` builds without a script, checked with qemu-img, e2fsck,
//! debugfs and sfdisk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        std::fs::create_dir_all(path.join("home")).unwrap();
        Dir { _tmp: tmp, path }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.p(name).to_string_lossy().into_owned()
    }

    fn b9(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_b9"))
            .args(args)
            .current_dir(&self.path)
            .env("HOME", self.p("home"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.b9(args);
        assert!(
            out.status.success(),
            "b9 {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn tool(name: &str, package: &str, args: &[&str]) -> Output {
    Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("{name} (Debian package {package}) is needed: {e}; run scripts/setup")
    })
}

fn check_ok(name: &str, package: &str, args: &[&str]) -> String {
    let out = tool(name, package, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} {args:?}:\n{text}");
    text
}

/// A 64 MiB sparse raw image with data scattered over it (some of it zero).
fn scattered_raw(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(64 << 20).unwrap();
    let mut seed = 0x1234_5678_u64;
    for i in 0..40u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = (seed >> 20) % (63 << 20);
        let len = 1 + (seed as usize % 200_000);
        let fill: Vec<u8> = (0..len).map(|j| ((j as u64 + i) % 251) as u8).collect();
        f.write_all_at(&fill, offset).unwrap();
    }
    f.write_all_at(&[0u8; 65536], 10 << 20).unwrap();
    f.write_all_at(b"end", (64 << 20) - 3).unwrap();
}

fn qemu_compare(a: &Path, b: &Path) {
    check_ok(
        "qemu-img",
        "qemu-utils",
        &["compare", a.to_str().unwrap(), b.to_str().unwrap()],
    );
}

fn qemu_check(img: &Path) {
    check_ok("qemu-img", "qemu-utils", &["check", img.to_str().unwrap()]);
}

fn virtual_size(img: &Path) -> u64 {
    let text = check_ok(
        "qemu-img",
        "qemu-utils",
        &["info", "--output=json", img.to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

#[test]
fn convert_between_all_formats_keeps_the_content() {
    let d = Dir::new();
    scattered_raw(&d.p("src.raw"));
    let steps: [(&str, &str, &[&str]); 6] = [
        ("src.raw", "a.qcow2", &[]),
        ("a.qcow2", "b.vmdk", &[]),
        ("b.vmdk", "c.vmdk", &["--subformat", "stream-optimized"]),
        ("c.vmdk", "d.raw", &[]),
        ("d.raw", "e.qcow2", &[]),
        ("e.qcow2", "f.raw", &["-O", "raw"]),
    ];
    for (input, output, extra) in steps {
        let mut args = vec!["image", "convert"];
        args.extend_from_slice(extra);
        let (i, o) = (d.s(input), d.s(output));
        args.push(&i);
        args.push(&o);
        d.ok(&args);
        if !output.ends_with(".raw") {
            qemu_check(&d.p(output));
        }
        qemu_compare(&d.p("src.raw"), &d.p(output));
    }
    // Outputs are sparse: the raw copy holds about as much as the data written.
    let used =
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(d.p("f.raw")).unwrap()) * 512;
    assert!(used < 16 << 20, "f.raw uses {used} bytes");
    // A streamOptimized vmdk is what its descriptor says.
    let info = check_ok("qemu-img", "qemu-utils", &["info", &d.s("c.vmdk")]);
    assert!(info.contains("streamOptimized"), "{info}");
}

#[test]
fn images_made_by_qemu_img_are_read_correctly() {
    let d = Dir::new();
    scattered_raw(&d.p("src.raw"));
    let qi = |args: &[&str]| check_ok("qemu-img", "qemu-utils", args);
    qi(&[
        "convert",
        "-O",
        "qcow2",
        "-c",
        &d.s("src.raw"),
        &d.s("zlib.qcow2"),
    ]);
    qi(&[
        "convert",
        "-O",
        "qcow2",
        "-o",
        "compat=0.10",
        &d.s("src.raw"),
        &d.s("v2.qcow2"),
    ]);
    qi(&[
        "convert",
        "-O",
        "vmdk",
        &d.s("src.raw"),
        &d.s("sparse.vmdk"),
    ]);
    qi(&[
        "convert",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        &d.s("src.raw"),
        &d.s("stream.vmdk"),
    ]);
    qi(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        &d.s("v2.qcow2"),
        "-F",
        "qcow2",
        &d.s("overlay.qcow2"),
    ]);
    for img in [
        "zlib.qcow2",
        "v2.qcow2",
        "sparse.vmdk",
        "stream.vmdk",
        "overlay.qcow2",
    ] {
        let out = format!("{img}.raw");
        d.ok(&["image", "convert", &d.s(img), &d.s(&out)]);
        qemu_compare(&d.p("src.raw"), &d.p(&out));
    }
    let info = d.ok(&["image", "info", "--json", &d.s("overlay.qcow2")]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["format"], "qcow2");
    assert_eq!(v["virtual_size"], 64 << 20);
    assert_eq!(v["backing_chain"][0]["format"], "qcow2");
    assert!(v["backing_chain"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("v2.qcow2"));
}

#[test]
fn reproducible_images_with_source_date_epoch() {
    let d = Dir::new();
    scattered_raw(&d.p("src.raw"));
    std::fs::create_dir_all(d.p("tree/etc")).unwrap();
    std::fs::write(d.p("tree/etc/hostname"), "web\n").unwrap();
    // Same output names in both rounds: a vmdk records its own file name.
    for round in ["1", "2"] {
        std::fs::create_dir_all(d.p(round)).unwrap();
        for ext in ["qcow2", "vmdk", "raw"] {
            d.ok(&[
                "image",
                "convert",
                &d.s("src.raw"),
                &d.s(&format!("{round}/conv.{ext}")),
            ]);
            d.ok(&[
                "image",
                "create",
                "--fs",
                "ext4",
                "--size",
                "64M",
                "--label",
                "data",
                "--from-dir",
                &d.s("tree"),
                &d.s(&format!("{round}/fs.{ext}")),
            ]);
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    for name in ["conv", "fs"] {
        for ext in ["qcow2", "vmdk", "raw"] {
            let a = std::fs::read(d.p(&format!("1/{name}.{ext}"))).unwrap();
            let b = std::fs::read(d.p(&format!("2/{name}.{ext}"))).unwrap();
            assert!(a == b, "{name}.{ext} differs between two runs");
        }
    }
}

#[test]
fn create_ext4_with_from_dir_passes_e2fsck_and_holds_the_files() {
    let d = Dir::new();
    std::fs::create_dir_all(d.p("tree/etc/app")).unwrap();
    std::fs::write(d.p("tree/etc/app/conf"), "key=value\n").unwrap();
    std::os::unix::fs::symlink("app/conf", d.p("tree/etc/conf-link")).unwrap();
    d.ok(&[
        "image",
        "create",
        "--fs",
        "ext4",
        "--size",
        "128M",
        "--label",
        "root",
        "--from-dir",
        &d.s("tree"),
        &d.s("fs.raw"),
    ]);
    check_ok("e2fsck", "e2fsprogs", &["-fn", &d.s("fs.raw")]);
    let cat = check_ok(
        "debugfs",
        "e2fsprogs",
        &["-R", "cat /etc/app/conf", &d.s("fs.raw")],
    );
    assert!(cat.contains("key=value"), "{cat}");
    let link = check_ok(
        "debugfs",
        "e2fsprogs",
        &["-R", "stat /etc/conf-link", &d.s("fs.raw")],
    );
    assert!(
        link.contains("Fast link dest: \"app/conf\"") || link.contains("app/conf"),
        "{link}"
    );
    let label = check_ok("dumpe2fs", "e2fsprogs", &["-h", &d.s("fs.raw")]);
    assert!(label.contains("Filesystem volume name:   root"), "{label}");
    // The same into qcow2 and vmdk containers.
    for ext in ["qcow2", "vmdk"] {
        let img = d.s(&format!("fs.{ext}"));
        d.ok(&[
            "image",
            "create",
            "--fs",
            "ext4",
            "--size",
            "128M",
            "--from-dir",
            &d.s("tree"),
            &img,
        ]);
        qemu_check(&d.p(&format!("fs.{ext}")));
        d.ok(&["image", "convert", &img, &d.s(&format!("back-{ext}.raw"))]);
        check_ok(
            "e2fsck",
            "e2fsprogs",
            &["-fn", &d.s(&format!("back-{ext}.raw"))],
        );
    }
    assert_eq!(virtual_size(&d.p("fs.qcow2")), 128 << 20);
}

#[test]
fn extract_partition_from_an_sfdisk_table() {
    let d = Dir::new();
    let disk = d.p("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg(&disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sfdisk (Debian package fdisk) is needed");
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\n2048,8192,83\n10240,16384,83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&[0xAA; 4096], 2048 * 512).unwrap();
    f.write_all_at(&[0xBB; 4096], 10240 * 512).unwrap();
    f.write_all_at(&[0xCC; 512], (10240 + 16384 - 1) * 512)
        .unwrap();
    d.ok(&[
        "image",
        "extract-partition",
        "2",
        &d.s("disk.raw"),
        &d.s("p2.qcow2"),
    ]);
    qemu_check(&d.p("p2.qcow2"));
    assert_eq!(virtual_size(&d.p("p2.qcow2")), 16384 * 512);
    d.ok(&["image", "convert", &d.s("p2.qcow2"), &d.s("p2.raw")]);
    let p2 = std::fs::read(d.p("p2.raw")).unwrap();
    assert_eq!(&p2[..4096], &[0xBB; 4096][..]);
    assert_eq!(&p2[p2.len() - 512..], &[0xCC; 512][..]);
    let info = d.ok(&["image", "info", &d.s("disk.raw")]);
    assert!(info.contains("partition table: MBR"), "{info}");
    let bad = d.b9(&[
        "image",
        "extract-partition",
        "3",
        &d.s("disk.raw"),
        &d.s("p3.raw"),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(!d.p("p3.raw").exists());
    let none = d.b9(&[
        "image",
        "extract-partition",
        "1",
        &d.s("p2.raw"),
        &d.s("x.raw"),
    ]);
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .to_lowercase()
            .contains("partition table"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}

fn sha(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn vm_images_build_without_a_script() {
    let d = Dir::new();
    scattered_raw(&d.p("base.raw"));
    check_ok(
        "qemu-img",
        "qemu-utils",
        &[
            "convert",
            "-O",
            "qcow2",
            &d.s("base.raw"),
            &d.s("base.qcow2"),
        ],
    );
    let before = sha(&d.p("base.qcow2"));
    std::fs::write(
        d.p("images.b9"),
        r#"Artifact (IID "img")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/data.qcow2" QCow2 Ext4) KeepSize)
         (EmptyImage "data" Ext4 Raw (ImageSize 64 MB)) (MountPoint "/data")
     , ImageTarget (LocalFile (Image "out/data.vmdk" Vmdk Ext4) (ResizeImage (ImageSize 128 MB)))
         (EmptyImage "more" Ext4 Raw (ImageSize 64 MB)) NotMounted
     , ImageTarget (LocalFile (Image "out/copy.vmdk" Vmdk NoFileSystem) KeepSize)
         (SourceImage (Image "base.qcow2" QCow2 NoFileSystem) NoPT (ResizeImage (ImageSize 96 MB))) NotMounted
     , ImageTarget (LocalFile (Image "out/cow.qcow2" QCow2 NoFileSystem) KeepSize)
         (CopyOnWrite (Image "base.qcow2" QCow2 NoFileSystem)) NotMounted
     , ImageTarget (LiveInstallerImage "box" "out/live" KeepSize)
         (EmptyImage "blank" NoFileSystem Raw (ImageSize 1 MB)) NotMounted
     , ImageTarget Transient (EmptyImage "scratch" NoFileSystem QCow2 (ImageSize 1 GB)) NotMounted
     ]
     NoVmScript)
"#,
    )
    .unwrap();
    d.ok(&["-u", "build", "-f", "images.b9"]);
    qemu_check(&d.p("out/data.qcow2"));
    d.ok(&["image", "convert", &d.s("out/data.qcow2"), &d.s("data.raw")]);
    check_ok("e2fsck", "e2fsprogs", &["-fn", &d.s("data.raw")]);
    qemu_check(&d.p("out/data.vmdk"));
    assert_eq!(virtual_size(&d.p("out/data.vmdk")), 128 << 20);
    assert_eq!(virtual_size(&d.p("out/copy.vmdk")), 96 << 20);
    d.ok(&["image", "convert", &d.s("out/copy.vmdk"), &d.s("copy.raw")]);
    let copy = std::fs::read(d.p("copy.raw")).unwrap();
    let base = std::fs::read(d.p("base.raw")).unwrap();
    assert!(copy[..base.len()] == base[..] && copy[base.len()..].iter().all(|&b| b == 0));
    // The overlay reads through to the untouched base image.
    let info = check_ok(
        "qemu-img",
        "qemu-utils",
        &["info", "--output=json", &d.s("out/cow.qcow2")],
    );
    assert!(info.contains("base.qcow2"), "{info}");
    qemu_compare(&d.p("base.raw"), &d.p("out/cow.qcow2"));
    assert!(
        sha(&d.p("base.qcow2")) == before,
        "the source image was modified"
    );
    let live = d.p("out/live/machines/box/disks/raw");
    assert_eq!(
        std::fs::read_to_string(live.join("0.size")).unwrap(),
        (1u64 << 20).to_string()
    );
    assert!(std::fs::read_to_string(live.join("VERSION"))
        .unwrap()
        .ends_with("-2023-11-14-22:13:20"));
    assert_eq!(
        std::fs::metadata(live.join("0.raw")).unwrap().len(),
        1 << 20
    );
    // Nothing but the outputs: no temporary files next to them.
    let names: Vec<String> = std::fs::read_dir(d.p("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn a_failing_image_build_exports_nothing() {
    let d = Dir::new();
    std::fs::write(
        d.p("broken.qcow2"),
        b"QFI\xfb this is not really a qcow2 image",
    )
    .unwrap();
    std::fs::write(
        d.p("bad.b9"),
        r#"Artifact (IID "bad")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/first.raw" Raw Ext4) KeepSize)
         (EmptyImage "first" Ext4 Raw (ImageSize 16 MB)) NotMounted
     , ImageTarget (LocalFile (Image "out/second.raw" Raw NoFileSystem) KeepSize)
         (SourceImage (Image "broken.qcow2" QCow2 NoFileSystem) NoPT KeepSize) NotMounted
     ]
     NoVmScript)
"#,
    )
    .unwrap();
    let out = d.b9(&["build", "-f", "bad.b9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("artifact `bad` failed") && err.contains("broken.qcow2"),
        "{err}"
    );
    assert!(!d.p("out/first.raw").exists() && !d.p("out/second.raw").exists());
}

const FIXUP: &str = r#"Artifact (IID "fix")
  (VmImagesWithFixup
     [ ImageTarget (LocalFile (Image "out/data.raw" Raw Ext4) KeepSize)
         (EmptyImage "data" Ext4 Raw (ImageSize 8 MB)) (MountPoint "/data")
     ]
     NoVmScript
     (Begin [Run "echo" ["$1", ">", "fixup-args.txt"], Run "STEP" []]))
"#;

#[test]
fn the_post_fix_script_runs_on_the_host_with_the_build_images() {
    let d = Dir::new();
    std::fs::write(d.p("fix.b9"), FIXUP.replace("STEP", "true")).unwrap();
    d.ok(&["build", "-f", "fix.b9"]);
    let args = std::fs::read_to_string(d.p("fixup-args.txt")).unwrap();
    assert!(
        args.trim_end().ends_with("/images/fix/0-data.raw"),
        "the post-fix script gets the build image, unsubstituted `$1`: {args}"
    );
    check_ok("e2fsck", "e2fsprogs", &["-fn", &d.s("out/data.raw")]);
}

#[test]
fn a_failing_post_fix_script_exports_nothing() {
    let d = Dir::new();
    std::fs::write(d.p("fix.b9"), FIXUP.replace("STEP", "false")).unwrap();
    let out = d.b9(&["build", "-f", "fix.b9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("post-fix script") && err.contains("status 1"),
        "{err}"
    );
    assert!(!d.p("out/data.raw").exists());
}

#[test]
fn share_then_build_from_the_cache() {
    let d = Dir::new();
    let conf = d.p("b9.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Just (Path \"{}\")\nunique_build_dirs: True\nverbosity: Nothing\nmax_cached_shared_images: Just 2\n",
            d.s("cache")
        ),
    )
    .unwrap();
    let conf = conf.to_string_lossy().into_owned();
    std::fs::write(
        d.p("share.b9"),
        r#"Artifact (IID "base")
  (VmImages [ ImageTarget (Share "base-os" QCow2 KeepSize) (EmptyImage "root" Ext4 Raw (ImageSize 32 MB)) NotMounted ]
     NoVmScript)
"#,
    )
    .unwrap();
    for _ in 0..3 {
        d.ok(&["-c", &conf, "build", "-f", "share.b9"]);
    }
    let images = d.p("cache/local-repo/b9_shared_images");
    let mut names: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".qcow2")).count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".b9si")).count(),
        2,
        "{names:?}"
    );
    let info =
        std::fs::read_to_string(images.join(names.iter().find(|n| n.ends_with(".b9si")).unwrap()))
            .unwrap();
    assert!(
        info.starts_with("SharedImage\n  (SharedImageName \"base-os\")"),
        "{info}"
    );
    for n in names.iter().filter(|n| n.ends_with(".qcow2")) {
        qemu_check(&images.join(n));
    }
    let list = d.ok(&["-c", &conf, "list"]);
    assert_eq!(list.matches("base-os").count(), 2, "{list}");

    std::fs::write(
        d.p("from.b9"),
        r#"Artifact (IID "derived")
  (VmImages [ ImageTarget (LocalFile (Image "out/derived.raw" Raw Ext4) KeepSize) (From "base-os" (ResizeImage (ImageSize 64 MB))) (MountPoint "/") ]
     NoVmScript)
"#,
    )
    .unwrap();
    d.ok(&["-c", &conf, "build", "-f", "from.b9"]);
    assert_eq!(
        std::fs::metadata(d.p("out/derived.raw")).unwrap().len(),
        64 << 20
    );
    check_ok("e2fsck", "e2fsprogs", &["-fn", &d.s("out/derived.raw")]);

    let missing = d.b9(&["-c", &conf, "build", "-f", "share.b9", "-f", "from.b9"]);
    assert!(
        missing.status.success(),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let cleaned = d.ok(&["-c", &conf, "clean-local"]);
    assert!(cleaned.contains("removed"), "{cleaned}");
    std::fs::write(d.p("nothing.b9"), "Artifact (IID \"x\") (VmImages [ImageTarget Transient (From \"nope\" KeepSize) NotMounted] NoVmScript)\n").unwrap();
    let out = d.b9(&["-c", &conf, "build", "-f", "nothing.b9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_shared_overlay_is_flattened() {
    let d = Dir::new();
    scattered_raw(&d.p("base.raw"));
    let conf = d.p("b9.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Just (Path \"{}\")\nunique_build_dirs: True\nverbosity: Nothing\n",
            d.s("cache")
        ),
    )
    .unwrap();
    std::fs::write(
        d.p("cow.b9"),
        "Artifact (IID \"c\") (VmImages [ImageTarget (Share \"cow\" QCow2 KeepSize) (CopyOnWrite (Image \"base.raw\" Raw NoFileSystem)) NotMounted] NoVmScript)\n",
    )
    .unwrap();
    d.ok(&["-c", &conf.to_string_lossy(), "build", "-f", "cow.b9"]);
    let dir = d.p("cache/local-repo/b9_shared_images");
    let img = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "qcow2"))
        .unwrap();
    let info = check_ok("qemu-img", "qemu-utils", &["info", img.to_str().unwrap()]);
    assert!(!info.contains("backing file"), "{info}");
    qemu_compare(&d.p("base.raw"), &img);
}
