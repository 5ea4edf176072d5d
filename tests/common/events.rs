//! Build events as JSON lines (docs/EVENTS.md): parsed and checked against
//! `docs/events.schema.json`, their order, and the outputs they name.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::project::ok;

/// The lines of stdout, each parsed and checked against the schema and
/// the envelope's `seq`, in order.
pub fn parse(out: &Output) -> Vec<Value> {
    parse_lines(&String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8"))
}

/// JSON lines, each parsed and checked against the schema and the
/// envelope's `seq`, in order.
pub fn parse_lines(stdout: &str) -> Vec<Value> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(super::project::repo().join("docs/events.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(stdout.ends_with('\n'), "stdout: {stdout:?}");
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    for (i, e) in events.iter().enumerate() {
        let errors: Vec<String> = validator.iter_errors(e).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{e}: {errors:?}");
        assert_eq!(e["v"], 1);
        assert_eq!(e["seq"], i as u64, "{e}");
    }
    events
}

pub fn kind(e: &Value) -> &str {
    e["event"].as_str().unwrap()
}

pub fn of_kind<'a>(events: &'a [Value], k: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| kind(e) == k).collect()
}

/// The order docs/EVENTS.md promises: warnings of the checks, then
/// `build_started` ... `build_finished` last; each instance started once
/// and finished once after it, its own events in between; commands
/// started, then their output, then exited.
pub fn check_order(events: &[Value]) {
    let start = events
        .iter()
        .position(|e| kind(e) == "build_started")
        .expect("build_started");
    assert!(events[..start].iter().all(|e| kind(e) == "warning"));
    assert_eq!(kind(events.last().unwrap()), "build_finished");
    assert_eq!(of_kind(events, "build_finished").len(), 1);
    // Per instance: the state it is in (0 not begun, 1 running, 2 done).
    let mut state: HashMap<&str, u8> = HashMap::new();
    let mut command: HashMap<&str, (u64, bool)> = HashMap::new();
    for e in &events[start + 1..events.len() - 1] {
        let Some(i) = e["instance"].as_str() else {
            continue;
        };
        let s = state.entry(i).or_default();
        match kind(e) {
            "artifact_started" => {
                assert_eq!(*s, 0, "{i} started twice");
                *s = 1;
            }
            "artifact_finished" => {
                assert_eq!(*s, 1, "{i} finished without running");
                *s = 2;
            }
            "warning" => {}
            k => {
                assert_eq!(*s, 1, "{k} of {i} outside its artifact");
                let n = e["number"].as_u64();
                let c = command.entry(i).or_default();
                match k {
                    "command_started" => *c = (n.unwrap(), true),
                    "command_output" if e["cached"] == false => {
                        assert_eq!(*c, (n.unwrap(), true), "{e}")
                    }
                    "command_exited" => {
                        assert_eq!(*c, (n.unwrap(), true), "{e}");
                        c.1 = false;
                    }
                    // A remote host's uploads before the first command,
                    // its downloads after the last.
                    "transfer" => assert!(!c.1, "a transfer while a command ran: {e}"),
                    _ => {}
                }
            }
        }
    }
    assert!(state.values().all(|s| *s == 2), "{state:?}");
    assert_eq!(
        state.len(),
        of_kind(events, "artifact_finished").len(),
        "one artifact_finished per instance"
    );
}

/// Each output an event names exists with the size it gives.
pub fn check_outputs(events: &[Value]) {
    for e in of_kind(events, "artifact_finished") {
        for o in e["outputs"].as_array().unwrap() {
            let path = Path::new(o["path"].as_str().unwrap());
            let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{o}: {e}"));
            match o["kind"].as_str().unwrap() {
                "directory" => assert!(meta.is_dir() && o["bytes"].is_null(), "{o}"),
                _ => assert_eq!(o["bytes"], meta.len(), "{o}"),
            }
        }
    }
    for e in of_kind(events, "export_written") {
        let path = e["path"].as_str().unwrap();
        assert_eq!(e["bytes"], std::fs::metadata(path).unwrap().len(), "{e}");
        let info: Value =
            serde_json::from_str(&ok("qemu-img", &["info", "--output=json", path])).unwrap();
        assert_eq!(info["format"], e["format"], "{e}");
    }
}

/// The artifact_finished event of `instance`.
pub fn finished<'a>(events: &'a [Value], instance: &str) -> &'a Value {
    events
        .iter()
        .find(|e| kind(e) == "artifact_finished" && e["instance"] == instance)
        .unwrap_or_else(|| panic!("no artifact_finished for {instance}"))
}

/// What the commands of `instance` wrote on `stream`.
pub fn output(events: &[Value], instance: &str, stream: &str) -> String {
    events
        .iter()
        .filter(|e| {
            kind(e) == "command_output" && e["instance"] == instance && e["stream"] == stream
        })
        .map(|e| e["text"].as_str().unwrap())
        .collect()
}
