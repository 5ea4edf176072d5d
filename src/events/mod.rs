//! Build events: what a build reports as it goes, for programs that follow a
//! build without reading its log (docs/EVENTS.md). The pipeline emits them
//! through an [`Events`] handle; `b9 build --events json` writes them as JSON
//! lines on stdout (`json`).

pub mod json;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

/// One thing that happened during a build (docs/EVENTS.md lists every
/// event and field).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The build began.
    BuildStarted {
        /// The build id of the run.
        build_id: String,
        /// How many artifact instances it builds.
        artifacts: usize,
    },
    /// The build is over.
    BuildFinished {
        /// The build id of the run.
        build_id: String,
        /// Whether every artifact succeeded.
        success: bool,
        /// How many artifacts failed.
        failed: usize,
        /// How long the build took, in milliseconds.
        duration_ms: u64,
    },
    /// Work on one artifact instance began.
    ArtifactStarted {
        /// The instance id.
        instance: String,
        /// What it assembles.
        assembly: Assembly,
    },
    /// One artifact instance is done.
    ArtifactFinished {
        /// The instance id.
        instance: String,
        /// Whether it succeeded.
        success: bool,
        /// How long it took, in milliseconds.
        duration_ms: u64,
        /// The files it wrote (empty when it failed).
        outputs: Vec<Output>,
        /// Why it failed.
        error: Option<String>,
    },
    /// A warning of the checks or of the build.
    Warning {
        /// The instance it concerns, if any.
        instance: Option<String>,
        /// What is wrong, in one line.
        message: String,
        /// `file:line:col`, if it has a place.
        location: Option<String>,
        /// Further facts.
        notes: Vec<String>,
        /// What to do about it.
        hints: Vec<String>,
    },
    /// An artifact's guest step began.
    GuestStepStarted {
        /// The instance id.
        instance: String,
        /// How many commands the script has.
        commands: usize,
        /// Where its result comes from.
        start: StepStart,
        /// The commands taken from a cached layer (`start` is `layer`).
        layer: Option<usize>,
    },
    /// A script command began in the guest.
    CommandStarted {
        /// The instance id.
        instance: String,
        /// The command's number in the script, from 1.
        number: usize,
        /// The command line.
        line: String,
        /// The user it runs as (`As`).
        user: Option<String>,
        /// The directory it runs in (`In`).
        dir: Option<String>,
    },
    /// Output of a command.
    CommandOutput {
        /// The instance id.
        instance: String,
        /// The command's number in the script, from 1.
        number: usize,
        /// Which stream.
        stream: Stream,
        /// The bytes as text (invalid UTF-8 replaced, per chunk).
        text: String,
        /// Replayed from the step cache, not run now.
        cached: bool,
    },
    /// A command ended.
    CommandExited {
        /// The instance id.
        instance: String,
        /// The command's number in the script, from 1.
        number: usize,
        /// Its exit status.
        status: i32,
        /// A failure that `IgnoreErrors` lets pass.
        ignored: bool,
        /// How long it ran, in milliseconds.
        duration_ms: u64,
    },
    /// A build image or its file system got a new size.
    Resize {
        /// The instance id.
        instance: String,
        /// The build image.
        #[serde(serialize_with = "lossy")]
        image: PathBuf,
        /// What was resized.
        target: ResizeTarget,
        /// The new size in bytes.
        bytes: u64,
    },
    /// An image export is in place.
    ExportWritten {
        /// The instance id.
        instance: String,
        /// Where it is.
        #[serde(serialize_with = "lossy")]
        path: PathBuf,
        /// Its image format (`raw`, `qcow2`, `vmdk`).
        format: String,
        /// Its file size in bytes.
        bytes: u64,
    },
    /// Progress of a transfer: a shared image pushed or pulled, or a disk
    /// uploaded to or downloaded from a remote libvirt host.
    Transfer {
        /// The artifact instance whose guest step transfers (`upload`,
        /// `download`); `None` for a push or pull.
        instance: Option<String>,
        /// Its direction.
        direction: Direction,
        /// What is transferred.
        name: String,
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
}

/// What an artifact assembles.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Assembly {
    /// Cloud-init media.
    CloudInit,
    /// VM images.
    VmImages,
}

/// Where a guest step's result comes from.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStart {
    /// Every command runs.
    Fresh,
    /// The whole step is taken from the step cache; no VM runs.
    Cache,
    /// The first commands are taken from a cached layer, the rest run.
    Layer,
}

/// A command's output stream.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// What a resize changed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeTarget {
    /// The image file (its virtual size).
    Image,
    /// The file system inside it.
    FileSystem,
}

/// A transfer's direction.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// To a remote repository.
    Push,
    /// From a remote repository.
    Pull,
    /// A build disk or the appliance to a libvirt host of the farm.
    Upload,
    /// A build disk the guest wrote back from a libvirt host of the farm.
    Download,
}

/// A file or directory an artifact wrote.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Output {
    /// Where it is.
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    /// What it is.
    pub kind: OutputKind,
    /// A file's size in bytes (`None` for a directory).
    pub bytes: Option<u64>,
}

/// What kind of output.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A file (media, an exported image, a size or version file).
    File,
    /// A directory (`CI_DIR` media).
    Directory,
    /// An image added to the shared-image cache.
    SharedImage,
}

impl Output {
    /// The output at `path` as it is now (after its commit).
    pub(crate) fn of(path: &Path) -> Output {
        let meta = std::fs::metadata(path).ok();
        let dir = meta.as_ref().is_some_and(std::fs::Metadata::is_dir);
        Output {
            path: path.to_path_buf(),
            kind: if dir {
                OutputKind::Directory
            } else {
                OutputKind::File
            },
            bytes: meta.filter(|_| !dir).map(|m| m.len()),
        }
    }
}

/// Where a build's events go: a cheap, cloneable handle shared by every
/// thread of the build; the default sends them nowhere.
#[derive(Clone, Default)]
pub struct Events(Option<Arc<Sink>>);

/// What receives a build's events.
type Sink = dyn Fn(&Event) + Send + Sync;

impl Events {
    /// Events handed to `sink`, from whatever thread emits them.
    pub fn new(sink: impl Fn(&Event) + Send + Sync + 'static) -> Events {
        Events(Some(Arc::new(sink)))
    }

    /// Reports `event` (nothing when nobody listens).
    pub fn emit(&self, event: Event) {
        if let Some(sink) = &self.0 {
            sink(&event);
        }
    }

    /// Reports the event `make` gives; `make` runs only when somebody
    /// listens, so an unheard event costs nothing.
    pub(crate) fn emit_with(&self, make: impl FnOnce() -> Event) {
        if let Some(sink) = &self.0 {
            sink(&make());
        }
    }

    /// Whether somebody listens.
    pub(crate) fn is_heard(&self) -> bool {
        self.0.is_some()
    }

    /// A progress callback for push and pull and for a remote host's
    /// volumes (`(bytes_done, total)`) that reports [`Event::Transfer`]s: the first
    /// call, each further percent, and the end.
    pub(crate) fn transfer(
        &self,
        direction: Direction,
        instance: Option<&str>,
        name: &str,
    ) -> impl FnMut(u64, u64) + '_ {
        let name = name.to_string();
        let instance = instance.map(str::to_string);
        let mut pace = b9_protocol::libvirt::PerPercent::default();
        move |done, total| {
            if !pace.due(done, total) {
                return;
            }
            self.emit_with(|| Event::Transfer {
                instance: instance.clone(),
                direction,
                name: name.clone(),
                done,
                total,
            })
        }
    }

    /// Reports a check or build warning.
    pub(crate) fn warning(&self, instance: Option<&str>, d: &crate::diag::Diagnostic) {
        self.emit_with(|| Event::Warning {
            instance: instance.map(str::to_string),
            message: d.message.clone(),
            location: d.position(),
            notes: d.notes.clone(),
            hints: d.hints.clone(),
        });
    }

    /// Replays the logged lines of a cached guest run (`RUN LINE`,
    /// `> stdout`, `! stderr`, as `pipeline::guest` logs them) as
    /// [`Event::CommandOutput`]s marked cached.
    pub(crate) fn replay(&self, instance: &str, lines: &[String]) {
        if !self.is_heard() {
            return;
        }
        let mut number = 0;
        for line in lines {
            let (stream, text) = if line.starts_with("RUN ") {
                number += 1;
                continue;
            } else if let Some(t) = line.strip_prefix("> ") {
                (Stream::Stdout, t)
            } else if let Some(t) = line.strip_prefix("! ") {
                (Stream::Stderr, t)
            } else {
                continue;
            };
            self.emit(Event::CommandOutput {
                instance: instance.to_string(),
                number,
                stream,
                text: format!("{text}\n"),
                cached: true,
            });
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(sink)"
        } else {
            "Events(none)"
        })
    }
}

/// A path as text (bytes that are not UTF-8 replaced), so every event
/// serialises.
fn lossy<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// Milliseconds of a duration, saturated.
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn collect() -> (Events, Arc<Mutex<Vec<Event>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let events = Events::new(move |e| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.clone());
            }
        });
        (events, seen)
    }

    #[test]
    fn unheard_events_are_never_made() {
        let events = Events::default();
        let mut made = false;
        events.emit_with(|| {
            made = true;
            Event::BuildStarted {
                build_id: String::new(),
                artifacts: 0,
            }
        });
        assert!(!made && !events.is_heard());
    }

    #[test]
    fn replayed_output_is_numbered_by_command_and_cached() {
        let (events, seen) = collect();
        let lines: Vec<String> = [
            "RUN echo a",
            "> a",
            "exit status 0 after 0.1 s",
            "RUN x",
            "! b",
        ]
        .map(String::from)
        .to_vec();
        events.replay("i", &lines);
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            *seen,
            vec![
                Event::CommandOutput {
                    instance: "i".into(),
                    number: 1,
                    stream: Stream::Stdout,
                    text: "a\n".into(),
                    cached: true
                },
                Event::CommandOutput {
                    instance: "i".into(),
                    number: 2,
                    stream: Stream::Stderr,
                    text: "b\n".into(),
                    cached: true
                }
            ]
        );
    }

    #[test]
    fn transfer_progress_becomes_events() {
        let (events, seen) = collect();
        let mut progress = events.transfer(Direction::Pull, None, "img");
        // One event per percent: 1,000 small steps of 1 MB give 101.
        for step in 0..=1000u64 {
            progress(step << 20, 1000 << 20);
        }
        drop(progress);
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(seen.len(), 101);
        let Event::Transfer { done: first, .. } = seen[0] else {
            panic!("{:?}", seen[0]);
        };
        assert_eq!(first, 0);
        assert_eq!(
            seen[100],
            Event::Transfer {
                instance: None,
                direction: Direction::Pull,
                name: "img".into(),
                done: 1000 << 20,
                total: 1000 << 20
            }
        );
    }
}
