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
