//! Events as JSON lines (docs/EVENTS.md#json-lines): one object per line,
//! the schema version `v`, a sequence number `seq` and the time `time`
//! first, then the event's own fields; each line is flushed as it is
//! written.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::events::{Event, Events};

/// The version of the JSON event schema (`docs/events.schema.json`):
/// additive changes keep it, others raise it.
pub const VERSION: u32 = 1;

/// Events written as JSON lines to `out` (stdout for `b9 build --events
/// json`). Lines from concurrent artifacts never interleave; `seq` counts
/// them from 0 in the order they are written. A failed write is logged
/// once and the events that follow are dropped (the build goes on).
pub fn json_lines(out: impl Write + Send + 'static) -> Events {
    let state = Mutex::new(Writer {
        out: Box::new(out),
        seq: 0,
        broken: false,
    });
    Events::new(move |event| {
        if let Ok(mut w) = state.lock() {
            w.write(event);
        }
    })
}

/// The writer's state, behind the lock.
struct Writer {
    out: Box<dyn Write + Send>,
    seq: u64,
    broken: bool,
}

impl Writer {
    fn write(&mut self, event: &Event) {
        if self.broken {
            return;
        }
        let text = line(event, self.seq, SystemTime::now());
        self.seq += 1;
        if let Err(e) = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
        {
            self.broken = true;
            tracing::warn!("cannot write build events: {e}; no further events are written");
        }
    }
}

/// One event as a JSON line (with its newline).
pub fn line(event: &Event, seq: u64, at: SystemTime) -> String {
    // An internally tagged enum always serialises as an object, so its
    // fields follow the envelope's after the opening brace.
    let body = serde_json::to_string(event).unwrap_or_else(|e| {
        format!(
            "{{\"event\":\"warning\",\"instance\":null,\"message\":{},\"location\":null,\"notes\":[],\"hints\":[]}}",
            serde_json::Value::from(format!("an event could not be written: {e}"))
        )
    });
    let fields = body.strip_prefix('{').unwrap_or(&body);
    format!(
        "{{\"v\":{VERSION},\"seq\":{seq},\"time\":\"{}\",{fields}\n",
        rfc3339(at)
    )
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let c = crate::civil::Civil::from_unix(since.as_secs());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Output, OutputKind, Stream};
    use std::sync::Arc;
    use std::time::Duration;

    /// A `Write` the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn a_line_has_the_envelope_then_the_event() {
        let e = Event::CommandOutput {
            instance: "web".into(),
            number: 2,
            stream: Stream::Stderr,
            text: "caf\u{e9} \"x\"\n".into(),
            cached: false,
        };
        assert_eq!(
            line(&e, 7, at(1_709_210_096_042)),
            "{\"v\":1,\"seq\":7,\"time\":\"2024-02-29T12:34:56.042Z\",\
             \"event\":\"command_output\",\"instance\":\"web\",\"number\":2,\
             \"stream\":\"stderr\",\"text\":\"caf\u{e9} \\\"x\\\"\\n\",\"cached\":false}\n"
        );
    }

    #[test]
    fn absent_values_are_null_and_outputs_are_objects() {
        let e = Event::ArtifactFinished {
            instance: "m".into(),
            success: true,
            duration_ms: 3,
            outputs: vec![Output {
                path: "out/m".into(),
                kind: OutputKind::Directory,
                bytes: None,
            }],
            error: None,
        };
        let v: serde_json::Value = serde_json::from_str(&line(&e, 0, at(0))).unwrap_or_default();
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["error"], serde_json::Value::Null);
        assert_eq!(
            v["outputs"],
            serde_json::json!([{"path": "out/m", "kind": "directory", "bytes": null}])
        );
    }

    /// One event of each kind, with and without its optional values.
    fn samples() -> Vec<Event> {
        use crate::events::{Assembly, Direction, ResizeTarget, StepStart};
        let i = || "web".to_string();
        vec![
            Event::BuildStarted {
                build_id: "B".into(),
                artifacts: 2,
            },
            Event::BuildFinished {
                build_id: "B".into(),
                success: false,
                failed: 1,
                duration_ms: 9,
            },
            Event::ArtifactStarted {
                instance: i(),
                assembly: Assembly::VmImages,
            },
            Event::ArtifactStarted {
                instance: i(),
                assembly: Assembly::CloudInit,
            },
            Event::ArtifactFinished {
                instance: i(),
                success: true,
                duration_ms: 1,
                outputs: vec![
                    Output {
                        path: "a.iso".into(),
                        kind: OutputKind::File,
                        bytes: Some(4),
                    },
                    Output {
                        path: "s.qcow2".into(),
                        kind: OutputKind::SharedImage,
                        bytes: Some(4),
                    },
                ],
                error: None,
            },
            Event::ArtifactFinished {
                instance: i(),
                success: false,
                duration_ms: 1,
                outputs: vec![],
                error: Some("boom".into()),
            },
            Event::Warning {
                instance: None,
                message: "m".into(),
                location: Some("a.b9:1:2".into()),
                notes: vec!["n".into()],
                hints: vec![],
            },
            Event::Warning {
                instance: Some(i()),
                message: "m".into(),
                location: None,
                notes: vec![],
                hints: vec!["h".into()],
            },
            Event::GuestStepStarted {
                instance: i(),
                commands: 3,
                start: StepStart::Fresh,
                layer: None,
            },
            Event::GuestStepStarted {
                instance: i(),
                commands: 3,
                start: StepStart::Layer,
                layer: Some(2),
            },
            Event::CommandStarted {
                instance: i(),
                number: 1,
                line: "echo hi".into(),
                user: Some("root".into()),
                dir: None,
            },
            Event::CommandOutput {
                instance: i(),
                number: 1,
                stream: Stream::Stdout,
                text: "hi\n".into(),
                cached: true,
            },
            Event::CommandExited {
                instance: i(),
                number: 1,
                status: -1,
                ignored: true,
                duration_ms: 5,
            },
            Event::Resize {
                instance: i(),
                image: "0-root.raw".into(),
                target: ResizeTarget::FileSystem,
                bytes: 1 << 20,
            },
            Event::ExportWritten {
                instance: i(),
                path: "out/r.qcow2".into(),
                format: "qcow2".into(),
                bytes: 7,
            },
            Event::Transfer {
                instance: None,
                direction: Direction::Push,
                name: "img".into(),
                done: 1,
                total: 2,
            },
            Event::Transfer {
                instance: Some(i()),
                direction: Direction::Upload,
                name: "image-0.qcow2".into(),
                done: 0,
                total: 2,
            },
        ]
    }

    #[test]
    fn every_event_kind_matches_the_documented_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/events.schema.json")).unwrap_or_default();
        let validator = jsonschema::validator_for(&schema);
        assert!(validator.is_ok(), "{:?}", validator.err());
        let Ok(validator) = validator else { return };
        let samples = samples();
        for e in &samples {
            let text = line(e, 3, SystemTime::now());
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{text}: {errors:?}");
        }
        // Every kind of the schema is exercised, and a field too many fails.
        let kinds: std::collections::BTreeSet<String> = samples
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::to_value(e).unwrap_or_default();
                v["event"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        let documented = schema["oneOf"].as_array().map_or(0, Vec::len);
        assert_eq!(kinds.len(), documented);
        let mut extra: serde_json::Value =
            serde_json::from_str(&line(&samples[0], 0, SystemTime::now())).unwrap_or_default();
        extra["surprise"] = serde_json::Value::Bool(true);
        assert!(!validator.is_valid(&extra));
    }

    #[test]
    fn lines_are_numbered_in_the_order_written() {
        let out = Shared::default();
        let events = json_lines(out.clone());
        std::thread::scope(|s| {
            for t in 0..4 {
                let events = events.clone();
                s.spawn(move || {
                    for _ in 0..50 {
                        events.emit(Event::BuildStarted {
                            build_id: format!("t{t}"),
                            artifacts: t,
                        });
                    }
                });
            }
        });
        let bytes = out.0.lock().map(|v| v.clone()).unwrap_or_default();
        let text = String::from_utf8(bytes).unwrap_or_default();
        let seqs: Vec<u64> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                v["seq"].as_u64().unwrap_or(u64::MAX)
            })
            .collect();
        assert_eq!(seqs, (0..200).collect::<Vec<u64>>());
    }
}
