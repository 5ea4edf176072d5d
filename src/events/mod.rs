//! Build events: what a build reports as it goes, for programs that follow a
//! build without reading its log (docs/EVENTS.md). The pipeline emits them
//! through an [`Events`] handle; `b9 build --events json` writes them as JSON
//! lines on stdout.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

/// One thing that happened during a build.
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
    /// Work on one artifact instance began.
    ArtifactStarted {
        /// The instance id.
        instance: String,
    },
    /// One artifact instance is done.
    ArtifactFinished {
        /// The instance id.
        instance: String,
        /// Whether it succeeded.
        success: bool,
        /// The files it wrote (empty when it failed).
        outputs: Vec<PathBuf>,
        /// Why it failed.
        error: Option<String>,
    },
}

/// Where a build's events go: a cheap, cloneable handle shared by every
/// thread of the build; the default sends them nowhere.
#[derive(Clone, Default)]
pub struct Events(Option<Arc<Sink>>);

/// What receives the events.
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
