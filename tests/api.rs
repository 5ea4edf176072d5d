//! The library's public API, used as a program embedding b9 would: only
//! items of `b9`'s documented surface, no internals. Outputs are checked
//! with isoinfo and the `b9` executable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, ExitCode};

use std::sync::{Arc, Mutex};

use b9::{BuildFiles, BuildOptions, Config, Error, Event, Events, Overrides, Session};

#[path = "../examples/generate_and_check.rs"]
mod generate_and_check;

/// A session whose project root (and so build directory) is `root`.
fn session(root: &Path) -> Session {
    let mut overrides = Overrides::default();
    overrides.build_dir_root = Some(root.to_path_buf());
    Session::new(Config::default().with_overrides(&overrides)).unwrap()
}

fn no_notes(note: &str) {
    eprintln!("{note}");
}

#[test]
fn generate_and_check_example_checks_what_b9_check_accepts() {
    // The example's entry point reads the process's arguments: not run here.
    let _entry: fn() -> ExitCode = generate_and_check::main;
    let mut out = Vec::new();
    let n = generate_and_check::run(&["db-1", "web-1", "web-2"], &mut out).unwrap();
    assert_eq!(n, 3);
    let plan = String::from_utf8(out).unwrap();
    for host in ["db-1", "web-1", "web-2"] {
        assert!(plan.contains(&format!("    out/{host}.iso\n")), "{plan}");
    }
    // The executable agrees: the generated file passes `b9 check`.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("generated.b9");
    std::fs::write(&file, generate_and_check::build_file(&["db-1"])).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_b9"))
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .args(["check", "-f", "generated.b9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        "ok: 1 artifact instance in 1 build file\n"
    );
}

#[test]
fn check_reports_errors_as_located_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let files = BuildFiles::text(
        "broken.b9",
        "Artifact (IID \"x\")\n  (CloudInit [CI_ISO] \"${nowhere}/x\")\n",
    );
    let Err(Error::Invalid(problems)) = session(dir.path()).check(&files, &mut no_notes) else {
        panic!("an unbound variable was accepted");
    };
    let d = &problems[0];
    assert!(d.is_error());
    assert_eq!(d.severity(), b9::Severity::Error);
    assert!(d.message().contains("nowhere"), "{d}");
    let span = d.span().unwrap();
    assert_eq!((span.file, span.start.0), (Path::new("broken.b9"), 2));
    // What the CLI prints.
    assert!(d.to_string().starts_with("error: "), "{d}");
    assert!(d.to_string().contains("--> broken.b9:2:"), "{d}");
}

#[test]
fn a_build_through_the_api_writes_media_and_images_and_names_the_failed_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // An output inside a regular file cannot be written: only that
    // artifact fails.
    std::fs::write(dir.path().join("blocked"), "a file").unwrap();
    let text = format!(
        "Let []\n  [ Sources [ FromContent \"meta-data\" (FromString \"local-hostname: good\\n\") ]\n      \
         [ Artifact (IID \"good\") (CloudInit [CI_ISO, CI_DIR] {:?}) ]\n  \
         , Sources [ FromContent \"meta-data\" (FromString \"x\\n\") ]\n      \
         [ Artifact (IID \"bad\") (CloudInit [CI_DIR] {:?}) ]\n  \
         , Artifact (IID \"disk\") (VmImages [ImageTarget (LocalFile (Image {:?} QCow2 Ext4) KeepSize) \
         (EmptyImage \"data\" Ext4 Raw (ImageSize 16 MB)) (MountPoint \"/data\")] NoVmScript)\n  ]\n",
        out.join("good").display().to_string(),
        dir.path().join("blocked/bad").display().to_string(),
        out.join("disk.qcow2").display().to_string(),
    );
    let session = session(dir.path());
    let plan = session
        .expand(
            &BuildFiles::text(dir.path().join("api.b9"), text),
            &mut no_notes,
        )
        .unwrap();
    assert_eq!(plan.len(), 3);
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut options = BuildOptions::new();
    options.events = Events::new({
        let events = Arc::clone(&events);
        move |e: &Event| events.lock().unwrap().push(e.clone())
    });
    let Err(Error::Build(failures)) = session.build(&plan, &options) else {
        panic!("the blocked output did not fail the build");
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].instance, "bad");
    // What the events say agrees with the outcome: a finished artifact's
    // outputs exist, the failed one is reported failed.
    for event in events.lock().unwrap().iter() {
        match event {
            Event::BuildStarted { artifacts, .. } => assert_eq!(*artifacts, 3),
            Event::ArtifactFinished {
                instance,
                success,
                outputs,
                ..
            } => {
                assert_eq!(*success, instance != "bad", "{event:?}");
                for o in outputs {
                    let meta = std::fs::metadata(&o.path).unwrap();
                    assert_eq!(o.bytes, (!meta.is_dir()).then_some(meta.len()), "{event:?}");
                }
            }
            _ => {}
        }
    }
    // The medium, read by isoinfo.
    let meta = Command::new("isoinfo")
        .args(["-R", "-x", "/meta-data", "-i"])
        .arg(out.join("good.iso"))
        .output()
        .expect("isoinfo (genisoimage) is needed: run scripts/setup");
    assert_eq!(
        String::from_utf8_lossy(&meta.stdout),
        "local-hostname: good\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("good/meta-data")).unwrap(),
        "local-hostname: good\n"
    );
    // The image: qcow2 of 16 MiB holding a clean ext4 labelled "data".
    let raw = dir.path().join("disk.raw");
    let convert = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(out.join("disk.qcow2"))
        .arg(&raw)
        .status()
        .expect("qemu-img is needed: run scripts/setup");
    assert!(convert.success());
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 16 << 20);
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let label = Command::new("e2label").arg(&raw).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&label.stdout), "data\n");
    // The build directory is gone (unique build directories are not kept).
    assert!(!session.build_dir().exists());
}

#[test]
fn a_cancelled_token_stops_an_image_write_and_leaves_no_output() {
    use b9::image::{self, ImageFormat, ImageOptions};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("data.raw");
    std::fs::write(&input, vec![0x5a; 8 << 20]).unwrap();
    let output = dir.path().join("copy.qcow2");
    let options = ImageOptions::new(0);
    options.cancel.cancel();
    let Err(Error::Failed(d)) = image::convert(&input, &output, ImageFormat::Qcow2, &options)
    else {
        panic!("a cancelled convert succeeded");
    };
    assert!(d.message().contains("interrupted"), "{d}");
    assert!(!output.exists());
    // Not cancelled, the same convert succeeds; qemu-img reads the copy.
    image::convert(&input, &output, ImageFormat::Qcow2, &ImageOptions::new(0)).unwrap();
    let compare = Command::new("qemu-img")
        .args(["compare", "-q"])
        .arg(&input)
        .arg(&output)
        .status()
        .expect("qemu-img is needed: run scripts/setup");
    assert!(compare.success());
}

#[test]
fn shared_images_are_listed_and_cleaned_as_values() {
    use b9::image::ImageFormat;
    use b9::shared::{self, Source};
    let dir = tempfile::tempdir().unwrap();
    let mut overrides = Overrides::default();
    overrides.build_dir_root = Some(dir.path().to_path_buf());
    overrides.repository_cache = Some(dir.path().join("cache"));
    // No limit: clean-local keeps no version.
    let text = Config::default().to_ini().replace(
        "max_cached_shared_images: Just 2",
        "max_cached_shared_images: Nothing",
    );
    let config = Config::from_text("b9.conf", &text)
        .unwrap()
        .with_overrides(&overrides);
    let conf = dir.path().join("b9.conf");
    std::fs::write(&conf, config.to_ini()).unwrap();
    let session = Session::new(config).unwrap();
    let text =
        "Artifact (IID \"share\") (VmImages [ImageTarget (Share \"data-disk\" QCow2 KeepSize) \
                (EmptyImage \"data\" Ext4 Raw (ImageSize 8 MB)) NotMounted] NoVmScript)\n";
    let plan = session
        .plan(
            &BuildFiles::text(dir.path().join("share.b9"), text),
            &mut no_notes,
        )
        .unwrap();
    session.build(&plan, &BuildOptions::new()).unwrap();

    let listing = shared::list(&session).unwrap();
    let images_dir = dir.path().join("cache/local-repo/b9_shared_images");
    assert_eq!(listing.source, Source::Local(images_dir.clone()));
    assert!(listing.warnings.is_empty(), "{:?}", listing.warnings);
    let [image] = listing.images.as_slice() else {
        panic!("not one shared image: {listing:?}");
    };
    assert_eq!(
        (image.name.as_str(), image.build_id.as_str(), image.format),
        ("data-disk", session.build_id(), ImageFormat::Qcow2)
    );
    // The listing prints as `b9 list` does: the executable agrees.
    let list = Command::new(env!("CARGO_BIN_EXE_b9"))
        .env("HOME", dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("list")
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&list.stdout), listing.to_string());
    assert!(listing.to_string().contains(&format!(
        "data-disk {} {}",
        image.date,
        session.build_id()
    )));

    assert_eq!(shared::clean_local(&session).unwrap(), vec![image.clone()]);
    assert!(shared::list(&session).unwrap().images.is_empty());
    assert!(std::fs::read_dir(&images_dir).unwrap().next().is_none());
}

#[test]
fn reformat_says_whether_it_rewrote_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.b9");
    std::fs::write(
        &path,
        "Artifact   (IID \"x\")\n  (CloudInit [CI_ISO] \"out/x\")\n",
    )
    .unwrap();
    let first = b9::reformat(&path).unwrap();
    assert!(first.changed);
    assert_eq!(
        first.text,
        "Artifact (IID \"x\") (CloudInit [CI_ISO] \"out/x\")\n"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first.text);
    let again = b9::reformat(&path).unwrap();
    assert!(!again.changed);
    assert_eq!(again.text, first.text);
    // A file that does not parse: an input error with its place, the file
    // untouched.
    std::fs::write(&path, "Artifact (IID \"x\"\n").unwrap();
    let Err(Error::Invalid(problems)) = b9::reformat(&path) else {
        panic!("a broken file was reformatted");
    };
    assert_eq!(problems[0].span().unwrap().file, path.as_path());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "Artifact (IID \"x\"\n"
    );
}

#[test]
fn a_session_in_a_directory_resolves_every_relative_path_there() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meta-data.in"), "local-hostname: ${host}\n").unwrap();
    let text = r#"Let [("host", "there")]
  [ Sources [FromContent "meta-data" (FromTextFile (Source ExpandVariables "meta-data.in"))]
      [Artifact (IID "seed") (CloudInit [CI_DIR] "out/seed")]
  , Artifact (IID "fix")
      (VmImagesWithFixup
         [ ImageTarget (LocalFile (Image "out/data.raw" Raw Ext4) KeepSize)
             (EmptyImage "data" Ext4 Raw (ImageSize 8 MB)) NotMounted ]
         NoVmScript
         (Run "touch" ["post-fix-ran"]))
  ]
"#;
    // Not this process's working directory.
    let here = std::env::current_dir().unwrap();
    assert_ne!(here, dir.path());
    let session = Session::in_dir(Config::default(), dir.path()).unwrap();
    assert_eq!(session.project_root(), dir.path());
    // The build file too, named relative to the session's directory.
    std::fs::write(dir.path().join("in-dir.b9"), text).unwrap();
    let plan = session
        .plan(&BuildFiles::files(["in-dir.b9"]), &mut no_notes)
        .unwrap();
    session.build(&plan, &BuildOptions::new()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/seed/meta-data")).unwrap(),
        "local-hostname: there\n"
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("out/data.raw"))
            .unwrap()
            .len(),
        8 << 20
    );
    assert!(dir.path().join("post-fix-ran").exists());
    for written in ["out/seed", "out/data.raw", "post-fix-ran"] {
        assert!(!here.join(written).exists(), "{written} written here");
    }
}
