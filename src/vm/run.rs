//! The host side of one appliance run: start the VM, greet the agent, hand
//! it the job, stream what it reports, enforce the timeout and Ctrl-C, and
//! always stop the VM.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::vm::backend::{Hypervisor, Vm, VmError, VmSpec, VmState};
use b9_protocol::agent::{self as protocol, Frame, Job, Kind, ToAgent, ToHost};

/// How often the VM's state, the clock and Ctrl-C are looked at.
const TICK: Duration = Duration::from_millis(200);
/// How long the VM gets to end after `quit`/`destroy`.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Lines of the console log quoted in errors.
const CONSOLE_TAIL: usize = 25;

/// Limits of a run.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The whole run (`default_timeout_seconds` x `timeout_factor`).
    pub timeout: Option<Duration>,
    /// Until the agent says hello (the KVM probe uses a short one).
    pub hello: Duration,
}

/// What a run reports to its caller, as it happens.
pub trait Events {
    /// Command `index` started.
    fn started(&mut self, index: usize);
    /// Output of the running command.
    fn output(&mut self, kind: Kind, bytes: &[u8]);
    /// Command `index` ended with `status` after `millis`.
    fn exited(&mut self, index: usize, status: i32, millis: u64);
    /// A message of the agent itself.
    fn log(&mut self, line: &str);
    /// The agent paused after command `index`: the disks and overlay files
    /// of that checkpoint (`RunRequest::checkpoints`).
    fn checkpoint(&mut self, index: usize) -> Vec<(usize, PathBuf)> {
        let _ = index;
        Vec::new()
    }
}

/// What the agent did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Exit statuses of the commands that ran, in order.
    pub statuses: Vec<i32>,
    /// File systems resized, in order.
    pub resized: Vec<Resized>,
}

/// One file-system resize the agent carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resized {
    /// The disk's serial.
    pub serial: String,
    /// The new file-system size in bytes.
    pub bytes: u64,
    /// The file system now lives on the disk's scratch disk (a shrink).
    pub on_scratch: bool,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The hypervisor did not start.
    #[error("{0}")]
    Start(#[from] VmError),
    /// The agent never said hello (also how the KVM probe fails).
    #[error("the appliance did not come up within {0:?}{1}")]
    NoHello(Duration, Tail),
    /// The agent speaks another protocol version.
    #[error(
        "the appliance's agent speaks protocol {0}, this b9 speaks {1}: rebuild the appliance"
    )]
    Version(u32, u32),
    /// The agent could not do the job.
    #[error("the agent failed: {0}{1}")]
    Agent(String, Tail),
    /// The guest kernel panicked.
    #[error("the guest kernel panicked{0}")]
    Panicked(Tail),
    /// The VM or its connection went away.
    #[error("the VM ended unexpectedly ({0}){1}")]
    Gone(String, Tail),
    /// The run took too long.
    #[error("the VM was stopped after the timeout of {0:?}{1}")]
    Timeout(Duration, Tail),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted; the VM was stopped")]
    Interrupted,
    /// The disks' state after a command could not be kept.
    #[error("cannot keep the disks' state after command {0}: {1}")]
    Checkpoint(usize, VmError),
    /// The agent connection broke down.
    #[error("talking to the agent failed: {0}{1}")]
    Protocol(String, Tail),
}

/// The last lines of the guest console, for error messages.
#[derive(Debug, Default)]
pub struct Tail(pub String);

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, "\nlast lines of the guest console:\n{}", self.0)
    }
}

/// Boots `spec` with `backend`, runs `job`, and stops the VM whatever
/// happens. Command failures are not errors here: they are in the report's
/// statuses. `booted` tells whether the agent said hello (an error before
/// that may be the accelerator's).
pub fn run(
    backend: &dyn Hypervisor,
    spec: &VmSpec,
    job: &Job,
    limits: &Limits,
    events: &mut dyn Events,
    booted: &mut bool,
) -> Result<Report, RunError> {
    crate::interrupt::arm();
    let started = Instant::now();
    let mut vm = backend.start(spec)?;
    let result = drive(
        vm.as_mut(),
        spec,
        job,
        limits,
        events,
        started,
        booted,
    );
    if let Err(e) = vm.stop(STOP_GRACE) {
        tracing::warn!("stopping the VM: {e}");
    }
    let result = match result {
        Ok(report) => vm.collect().map(|()| report).map_err(RunError::Start),
        failed => failed,
    };
    drop(vm);
    let _ = std::fs::remove_file(&spec.agent_socket);
    result
}

/// Connects to the agent and follows the job to its end.
fn drive(
    vm: &mut dyn Vm,
    spec: &VmSpec,
    job: &Job,
    limits: &Limits,
    events: &mut dyn Events,
    started: Instant,
    booted: &mut bool,
) -> Result<Report, RunError> {
    let tail = || Tail(console_tail(&spec.console_log));
    let stream = connect(&spec.agent_socket, vm, tail)?;
    let mut writer = stream
        .try_clone()
        .map_err(|e| RunError::Protocol(e.to_string(), tail()))?;
    let frames = reader(stream);
    let mut watch = Watch {
        vm,
        started,
        limits,
        console: &spec.console_log,
    };
    let hello = watch.next(&frames, Some(limits.hello))?;
    match protocol::decode::<ToHost>(&hello) {
        Ok(ToHost::Hello { version, kernel }) if version == protocol::VERSION => {
            *booted = true;
            tracing::debug!(
                "appliance up (kernel {kernel}) after {:?}",
                started.elapsed()
            );
        }
        Ok(ToHost::Hello { version, .. }) => {
            let _ = protocol::send(
                &mut writer,
                &ToAgent::Abort {
                    reason: format!("protocol {version} is not {}", protocol::VERSION),
                },
            );
            return Err(RunError::Version(version, protocol::VERSION));
        }
        other => {
            return Err(RunError::Protocol(
                format!("expected hello, got {other:?}"),
                tail(),
            ))
        }
    }
    protocol::send(&mut writer, &ToAgent::Job(Box::new(job.clone())))
        .map_err(|e| RunError::Protocol(e.to_string(), tail()))?;
    if job.interactive {
        let stdin = writer
            .try_clone()
            .map_err(|e| RunError::Protocol(e.to_string(), tail()))?;
        crate::vm::interactive::forward_stdin(stdin);
    }
    follow(&mut watch, &frames, events, &mut writer)
}

/// Handles the agent's messages until it is done.
fn follow(
    watch: &mut Watch<'_>,
    frames: &Receiver<std::io::Result<Frame>>,
    events: &mut dyn Events,
    writer: &mut UnixStream,
) -> Result<Report, RunError> {
    let mut report = Report::default();
    loop {
        let frame = watch.next(frames, None)?;
        if frame.kind != Kind::Control {
            events.output(frame.kind, &frame.payload);
            continue;
        }
        let msg = protocol::decode::<ToHost>(&frame)
            .map_err(|e| RunError::Protocol(e.to_string(), watch.tail()))?;
        match msg {
            ToHost::Log { line } => events.log(&line),
            ToHost::Started { index } => events.started(index),
            ToHost::Exited {
                index,
                status,
                millis,
            } => {
                report.statuses.push(status);
                events.exited(index, status, millis);
            }
            ToHost::Resized {
                serial,
                bytes,
                on_scratch,
            } => report.resized.push(Resized {
                serial,
                bytes,
                on_scratch,
            }),
            ToHost::Paused { index } => {
                let overlays = events.checkpoint(index);
                watch
                    .vm
                    .checkpoint(&overlays)
                    .map_err(|e| RunError::Checkpoint(index + 1, e))?;
                protocol::send(writer, &ToAgent::Continue)
                    .map_err(|e| RunError::Protocol(e.to_string(), watch.tail()))?;
            }
            ToHost::Done => return Ok(report),
            ToHost::Failed { message } => return Err(RunError::Agent(message, watch.tail())),
            ToHost::Hello { .. } => {
                return Err(RunError::Protocol("a second hello".into(), watch.tail()))
            }
        }
    }
}

/// Waits for frames while watching the VM, the clock and Ctrl-C.
struct Watch<'a> {
    vm: &'a mut dyn Vm,
    started: Instant,
    limits: &'a Limits,
    console: &'a Path,
}

impl Watch<'_> {
    fn tail(&self) -> Tail {
        Tail(console_tail(self.console))
    }

    /// The next frame; `within` bounds the wait (for the hello).
    fn next(
        &mut self,
        frames: &Receiver<std::io::Result<Frame>>,
        within: Option<Duration>,
    ) -> Result<Frame, RunError> {
        let waiting = Instant::now();
        loop {
            match frames.recv_timeout(TICK) {
                Ok(Ok(frame)) => return Ok(frame),
                Ok(Err(e)) => {
                    return Err(self.gone_or(RunError::Protocol(e.to_string(), self.tail())))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let e =
                        RunError::Protocol("the agent closed the connection".into(), self.tail());
                    return Err(self.gone_or(e));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if crate::interrupt::cancelled() {
                return Err(RunError::Interrupted);
            }
            if let Some(limit) = self.limits.timeout {
                if self.started.elapsed() >= limit {
                    return Err(RunError::Timeout(limit, self.tail()));
                }
            }
            if let Some(w) = within {
                if waiting.elapsed() >= w {
                    return Err(RunError::NoHello(w, self.tail()));
                }
            }
            match self.vm.state() {
                VmState::Running => {}
                VmState::Panicked => return Err(RunError::Panicked(self.tail())),
                VmState::Gone(why) => return Err(RunError::Gone(why, self.tail())),
            }
        }
    }

    /// A broken connection is reported as what ended the VM, when it ended.
    fn gone_or(&mut self, e: RunError) -> RunError {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.vm.state() {
                VmState::Running => std::thread::sleep(Duration::from_millis(50)),
                VmState::Panicked => return RunError::Panicked(self.tail()),
                VmState::Gone(why) => return RunError::Gone(why, self.tail()),
            }
        }
        e
    }
}

/// Connects to the VM's agent socket (the VM listens; it may take a
/// moment); a failure quotes the console's `tail`.
fn connect(path: &Path, vm: &mut dyn Vm, tail: impl Fn() -> Tail) -> Result<UnixStream, RunError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let why = match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                Some(format!("cannot connect to {}: {e}", path.display()))
            }
            Err(_) => match vm.state() {
                VmState::Gone(why) => {
                    Some(format!("the VM ended before the agent connected ({why})"))
                }
                _ => None,
            },
        };
        if let Some(why) = why {
            return Err(RunError::Protocol(why, tail()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads frames on a thread; a read error or the end of the stream ends it.
fn reader(mut stream: UnixStream) -> Receiver<std::io::Result<Frame>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || loop {
        match protocol::read_frame(&mut stream) {
            Ok(Some(f)) => {
                if tx.send(Ok(f)).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    });
    rx
}

/// The last lines of the console log (empty when there is none).
pub fn console_tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(CONSOLE_TAIL);
    lines[from..].join("\n")
}
