//! `b9 build --events json` end to end: stdout holds nothing but JSON
//! lines, each valid against `docs/events.schema.json`; the events agree
//! with the files the build wrote (sizes checked on disk, formats with
//! qemu-img), with the script's output and exit statuses, and come in the
//! documented order (docs/EVENTS.md). One project boots a TCG guest, then
//! takes the step from the step cache, then resumes from a cached layer,
//! then fails a script; one build is media only (no VM).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;

use common::events::{check_order, check_outputs, finished, of_kind, output, parse};
use common::project::{ok, text, Project};

const SEED: &str = r#"Artifact (IID "seed") (CloudInit [CI_ISO, CI_DIR] "out/seed")"#;

#[test]
fn guest_build_events_agree_with_its_outputs() {
    let p = Project::new("qemu", "", 600);
    let file = format!(
        r#"Let []
  [ {SEED}
  , Artifact (IID "guest")
      (VmImages
         [ ImageTarget (LocalFile (Image "out/root.qcow2" QCow2 Ext4) (ResizeImage (ImageSize 96 MB)))
             (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
         ]
         (VmScript X86_64 []
            (Begin
               [ Run "echo" ["hello events"]
               , In "/tmp" [IgnoreErrors True [Run "sh" ["-c", "'echo to stderr >&2; exit 4'"]]]
               ])))
  ]
"#
    );
    std::fs::write(p.p("events.b9"), &file).unwrap();
    // The step cache is the project's own (under its home).
    let out = p.b9(&["build", "--events", "json", "-f", "events.b9"]);
    assert!(out.status.success(), "{}", text(&out));
    let events = parse(&out);
    check_order(&events);
    check_outputs(&events);

    // The cloud-init seed without meta-data warns, with its place.
    let warning = of_kind(&events, "warning")
        .into_iter()
        .find(|w| w["message"].as_str().unwrap().contains("meta-data"))
        .expect("the meta-data warning");
    assert_eq!(warning["location"], "events.b9:2:27");

    let seed = finished(&events, "seed");
    assert_eq!(seed["success"], true);
    let paths: Vec<&str> = seed["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [p.p("out/seed.iso"), p.p("out/seed")].map(|p| p.to_string_lossy().into_owned())
    );

    let guest = finished(&events, "guest");
    assert_eq!(guest["success"], true, "{guest}");
    assert_eq!(guest["error"], Value::Null);
    let export = of_kind(&events, "export_written");
    assert_eq!(export.len(), 1);
    assert_eq!(export[0]["path"], p.p("out/root.qcow2").to_str().unwrap());
    assert_eq!(export[0]["format"], "qcow2");
    let info: Value = serde_json::from_str(&ok(
        "qemu-img",
        &[
            "info",
            "--output=json",
            p.p("out/root.qcow2").to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(info["virtual-size"], 96 << 20);
    let resize = of_kind(&events, "resize");
    assert!(
        resize
            .iter()
            .any(|r| r["target"] == "image" && r["bytes"] == 96u64 << 20),
        "{resize:?}"
    );

    let step = of_kind(&events, "guest_step_started");
    assert_eq!(step.len(), 1);
    assert_eq!(step[0]["start"], "fresh");
    assert_eq!(step[0]["commands"], 2);
    let started = of_kind(&events, "command_started");
    assert_eq!(started.len(), 2);
    assert_eq!(started[0]["line"], "echo hello events");
    assert_eq!(
        (&started[1]["dir"], &started[1]["user"]),
        (&Value::from("/tmp"), &Value::Null)
    );
    assert_eq!(output(&events, "guest", "stdout"), "hello events\n");
    assert_eq!(output(&events, "guest", "stderr"), "to stderr\n");
    let exited: Vec<(u64, i64, bool)> = of_kind(&events, "command_exited")
        .iter()
        .map(|e| {
            (
                e["number"].as_u64().unwrap(),
                e["status"].as_i64().unwrap(),
                e["ignored"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(exited, [(1, 0, false), (2, 4, true)]);
    let done = events.last().unwrap();
    assert_eq!(
        (done["success"].clone(), done["failed"].clone()),
        (true.into(), 0.into())
    );

    // Again: the step from the cache, its output replayed, no command run.
    let out = p.b9(&["build", "--events", "json", "-f", "events.b9"]);
    assert!(out.status.success(), "{}", text(&out));
    let events = parse(&out);
    check_order(&events);
    check_outputs(&events);
    let step = of_kind(&events, "guest_step_started");
    assert_eq!(
        (&step[0]["start"], &step[0]["commands"]),
        (&"cache".into(), &2.into())
    );
    assert!(of_kind(&events, "command_started").is_empty());
    let replayed = of_kind(&events, "command_output");
    assert!(replayed.iter().all(|e| e["cached"] == true), "{replayed:?}");
    assert_eq!(output(&events, "guest", "stdout"), "hello events\n");
    assert_eq!(output(&events, "guest", "stderr"), "to stderr\n");
    assert_eq!(finished(&events, "guest")["success"], true);

    // The last command changed: command 1 from its cached layer (its
    // output replayed), command 2 runs.
    std::fs::write(p.p("events.b9"), file.replace("exit 4", "exit 5")).unwrap();
    let out = p.b9(&["build", "--events", "json", "-f", "events.b9"]);
    assert!(out.status.success(), "{}", text(&out));
    let events = parse(&out);
    check_order(&events);
    let step = of_kind(&events, "guest_step_started");
    assert_eq!(
        (&step[0]["start"], &step[0]["layer"], &step[0]["commands"]),
        (&"layer".into(), &1.into(), &2.into())
    );
    let replayed: Vec<(&Value, &Value)> = of_kind(&events, "command_output")
        .iter()
        .filter(|e| e["cached"] == true)
        .map(|e| (&e["number"], &e["text"]))
        .collect();
    assert_eq!(replayed, [(&1.into(), &"hello events\n".into())]);
    let started: Vec<&Value> = of_kind(&events, "command_started")
        .iter()
        .map(|e| &e["number"])
        .collect();
    assert_eq!(started, [&Value::from(2)]);
    let exited = of_kind(&events, "command_exited");
    assert_eq!(
        (&exited[0]["number"], &exited[0]["status"]),
        (&2.into(), &5.into())
    );

    // A failing script: the artifact's error, the build's failure.
    let bad = r#"Artifact (IID "bad")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/bad.raw" Raw Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/") ]
     (VmScript X86_64 [] (Run "sh" ["-c", "'echo failing; exit 3'"])))
"#;
    std::fs::write(p.p("bad.b9"), bad).unwrap();
    let out = p.b9(&["build", "--no-cache", "--events", "json", "-f", "bad.b9"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let events = parse(&out);
    check_order(&events);
    let bad = finished(&events, "bad");
    assert_eq!(bad["success"], false);
    assert_eq!(bad["outputs"], Value::Array(vec![]));
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("exit status 3") || error.contains("status 3"),
        "{error}"
    );
    assert!(!p.p("out/bad.raw").exists());
    assert_eq!(output(&events, "bad", "stdout"), "failing\n");
    let exited = of_kind(&events, "command_exited");
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["status"], 3);
    let done = events.last().unwrap();
    assert_eq!(
        (done["success"].clone(), done["failed"].clone()),
        (false.into(), 1.into())
    );
}

/// A build without a guest (media, images exported to a file and to the
/// shared-image cache): the events and the files agree; a build file that
/// fails its checks writes no event.
#[test]
fn build_without_a_guest_events_agree_with_its_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::write(dir.join("b9.conf"), common::guest::global_section(60)).unwrap();
    std::fs::write(dir.join("meta-data"), "instance-id: i-1\n").unwrap();
    let file = format!(
        r#"Let []
  [ {SEED}
  , Artifact (IID "vfat") (CloudInit [CI_VFAT] "out/v")
  , Sources [FromContent "x" (FromTextFile (Source NoConversion "missing.txt"))]
      [Artifact (IID "late") (CloudInit [CI_DIR] "out/late")]
  , Artifact (IID "img")
      (VmImages
         [ ImageTarget (LocalFile (Image "out/data.vmdk" Vmdk Ext4) (ResizeImage (ImageSize 48 MB)))
             (EmptyImage "data" Ext4 Raw (ImageSize 32 MB)) NotMounted
         , ImageTarget (Share "base-os" QCow2 KeepSize)
             (EmptyImage "root" Ext4 Raw (ImageSize 16 MB)) NotMounted
         ]
         NoVmScript)
  ]
"#
    );
    std::fs::write(dir.join("media.b9"), &file).unwrap();
    // `--log-format` is another name of `--events`.
    let b9 = |flag: &str, file: &str| {
        Command::new(env!("CARGO_BIN_EXE_b9"))
            .arg("-c")
            .arg(dir.join("b9.conf"))
            .args(["build", flag, "json", "-f", file])
            .current_dir(dir)
            .env("HOME", dir.join("home"))
            .output()
            .unwrap()
    };
    // `missing.txt` is reported by the checks: no build, no events.
    let out = b9("--events", "media.b9");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));

    std::fs::write(dir.join("missing.txt"), "here now").unwrap();
    let out = b9("--log-format", "media.b9");
    assert!(out.status.success(), "{}", text(&out));
    let events = parse(&out);
    check_order(&events);
    check_outputs(&events);
    assert_eq!(events[of_kind(&events, "warning").len()]["artifacts"], 4);
    let mut kinds: Vec<&str> = of_kind(&events, "artifact_started")
        .iter()
        .map(|e| e["assembly"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["cloud_init", "cloud_init", "cloud_init", "vm_images"]
    );
    // The images: no guest step, the resize, both exports.
    assert!(of_kind(&events, "guest_step_started").is_empty());
    let resize = of_kind(&events, "resize");
    assert_eq!(resize.len(), 1);
    assert_eq!(
        (&resize[0]["target"], &resize[0]["bytes"]),
        (&"image".into(), &(48u64 << 20).into())
    );
    let exports: Vec<(&str, &str)> = of_kind(&events, "export_written")
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["format"].as_str().unwrap()))
        .collect();
    let shared = dir.join("home/.b9/repo-cache/local-repo/b9_shared_images");
    assert_eq!(exports.len(), 2, "{exports:?}");
    assert_eq!(
        exports[0],
        (dir.join("out/data.vmdk").to_str().unwrap(), "vmdk")
    );
    assert!(Path::new(exports[1].0).starts_with(&shared), "{exports:?}");
    assert_eq!(exports[1].1, "qcow2");
    let img: Vec<(&str, &str)> = finished(&events, "img")["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["path"].as_str().unwrap(), o["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        img,
        [(exports[0].0, "file"), (exports[1].0, "shared_image")]
    );
    let late = finished(&events, "late");
    assert_eq!(late["outputs"][0]["kind"], "directory");
    assert_eq!(
        std::fs::read_to_string(dir.join("out/late/x")).unwrap(),
        "here now"
    );
    let vfat = finished(&events, "vfat");
    assert_eq!(
        vfat["outputs"][0]["bytes"],
        std::fs::metadata(dir.join("out/v.vfat")).unwrap().len()
    );
    // Logs stay on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote"));
}
