//! Logging: every line as `[ LEVEL ] HH:MM:SS - message`, with
//! the artifact instance id in front of messages logged while building it.
//!
//! Messages at or above the verbosity go to stderr (stdout stays free for
//! command output such as `b9 show --json`); with a log file, every message is
//! appended to it as well.

use std::fmt;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::LogLevel;
use crate::diag::Diagnostic;

/// The name of the span that marks work on one artifact instance; its field
/// `id` is printed in front of every message logged inside it.
pub const INSTANCE_SPAN: &str = "instance";

/// Installs the process-wide logger: stderr at `verbosity` (nothing when
/// `None`), and every message into `log_file` when given.
pub fn init(verbosity: Option<LogLevel>, log_file: Option<&Path>) -> Result<(), Diagnostic> {
    let stderr_level = match verbosity {
        None | Some(LogLevel::Off) => LevelFilter::OFF,
        Some(LogLevel::Trace) => LevelFilter::TRACE,
        Some(LogLevel::Debug) => LevelFilter::DEBUG,
        Some(LogLevel::Info) => LevelFilter::INFO,
        Some(LogLevel::Error) => LevelFilter::ERROR,
    };
    let stderr = tracing_subscriber::fmt::layer()
        .event_format(LineFormat)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_filter(stderr_level);
    let file = match log_file {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    Diagnostic::error(format!("cannot open log file {}: {e}", path.display()))
                })?;
            Some(
                tracing_subscriber::fmt::layer()
                    .event_format(LineFormat)
                    .with_ansi(false)
                    .with_writer(Mutex::new(f))
                    .with_filter(LevelFilter::TRACE),
            )
        }
        None => None,
    };
    let subscriber = tracing_subscriber::registry().with(stderr).with(file);
    // A second initialisation (tests running commands in one process) keeps the first.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

/// The original's line format.
struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => " INFO  ",
            Level::WARN => " WARN  ",
            Level::ERROR => " ERROR ",
        };
        let mut prefix = String::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if span.name() == INSTANCE_SPAN {
                    if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                        let id = fields.fields.trim_start_matches("id=").trim_matches('"');
                        prefix = format!("[{id}] ");
                    }
                }
            }
        }
        let mut message = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut message), event)?;
        let time = clock(std::time::SystemTime::now());
        for line in message.lines() {
            writeln!(writer, "[{level}] {time} - {prefix}{line}")?;
        }
        Ok(())
    }
}

/// `HH:MM:SS` (UTC) of a time.
fn clock(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let c = crate::civil::Civil::from_unix(secs);
    format!("{:02}:{:02}:{:02}", c.hour, c.minute, c.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_hours_minutes_seconds() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_681_914_705);
        assert_eq!(clock(t), "14:31:45");
    }
}
