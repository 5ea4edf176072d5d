//! A whole build through the public API alone, as a program embedding b9
//! does it: the `build_events` example builds a cloud-init seed and an image
//! made by a script in a TCG guest; its JSON event lines validate against
//! `docs/events.schema.json` and agree with what the build wrote (isoinfo,
//! qemu-img, e2fsck, debugfs). One test in this binary: it points the
//! appliance and step caches at its own directories through the environment.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::io::Write;
use std::sync::{Arc, Mutex};

use b9::{CancelToken, Config, Overrides};

mod common;

#[path = "../examples/build_events.rs"]
#[allow(dead_code)] // the example's `main` is not called here
mod build_events;

use common::events::{check_order, check_outputs, finished, of_kind, output, parse_lines};
use common::project::{as_raw, debugfs_cat, e2fsck_clean, ok, repo, s, Project};

/// What the example writes, kept for the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_guest_build_through_the_api_reports_events_that_agree_with_its_outputs() {
    let p = Project::new("qemu", "", 600);
    // The only test of this binary: nothing else reads the environment.
    std::env::set_var("B9_CACHE_DIR", repo().join("target/vm-test-cache"));
    std::env::set_var("XDG_CACHE_HOME", p.p("xdg-cache"));
    let file = p.p("api.b9");
    std::fs::write(
        &file,
        format!(
            r#"Let []
  [ Let [("host", "api-guest")]
      [ Sources [ FromContent "meta-data" (FromTextFile (Source ExpandVariables "{meta}")) ]
          [ Artifact (IID "seed") (CloudInit [CI_ISO] "{seed}") ] ]
  , Artifact (IID "guest")
      (VmImages
         [ ImageTarget (LocalFile (Image "{image}" QCow2 Ext4) KeepSize)
             (SourceImage (Image "{root}" Raw Ext4) NoPT KeepSize) (MountPoint "/")
         ]
         (VmScript X86_64 []
            (Begin [ Run "sh" ["-c", "'echo built by the api > /api.txt'"], Run "cat" ["/api.txt"] ])))
  ]
"#,
            meta = s(&p.p("meta-data.in")),
            seed = s(&p.p("out/seed")),
            image = s(&p.p("out/guest.qcow2")),
            root = s(&p.p("root.raw")),
        ),
    )
    .unwrap();
    std::fs::write(
        p.p("meta-data.in"),
        "instance-id: ${host}\nlocal-hostname: ${host}\n",
    )
    .unwrap();
    let mut overrides = Overrides::default();
    overrides.build_dir_root = Some(p.path.clone());
    let config = Config::load(&[p.p("b9.conf")])
        .unwrap()
        .with_overrides(&overrides);
    let captured = Captured::default();
    build_events::build(config, &file, &[], CancelToken::new(), captured.clone()).unwrap();

    let stdout = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let events = parse_lines(&stdout);
    check_order(&events);
    check_outputs(&events);
    for instance in ["seed", "guest"] {
        assert_eq!(finished(&events, instance)["success"], true, "{stdout}");
    }
    assert_eq!(output(&events, "guest", "stdout"), "built by the api\n");
    let exited: Vec<i64> = of_kind(&events, "command_exited")
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(exited, [0, 0]);
    let done = events.last().unwrap();
    assert_eq!(done["event"], "build_finished");
    assert_eq!(done["success"], true);

    // The outputs the events name, read by independent tools.
    let iso = p.p("out/seed.iso");
    assert_eq!(
        ok("isoinfo", &["-R", "-x", "/meta-data", "-i", &s(&iso)]),
        "instance-id: api-guest\nlocal-hostname: api-guest\n"
    );
    let image = p.p("out/guest.qcow2");
    let export = of_kind(&events, "export_written");
    assert_eq!(export.len(), 1);
    assert_eq!(export[0]["path"], s(&image));
    let raw = as_raw(&image);
    e2fsck_clean(&raw);
    assert_eq!(debugfs_cat(&raw, "/api.txt"), "built by the api\n");
}
