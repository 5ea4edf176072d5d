//! The guest part of a `VmImages` build: the build images
//! attached to the appliance, the script run, file systems resized, shrunk
//! file systems put in place of their build images.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::disk::{self, CreateOptions, Format};
use crate::events::{Event, ResizeTarget, StepStart, Stream};
use crate::lang::syntax::*;
use crate::pipeline::error::BuildError;
use crate::pipeline::layered::{self, LayerRun};
use crate::pipeline::script::flatten;
use crate::pipeline::vm_images::{bytes, resized, Built};
use crate::stepcache::key::KeyBuilder;
use crate::stepcache::StepCache;
use crate::vm::backend::{VmDisk, VmShare};
use crate::vm::launch::Launcher;
use crate::vm::request::{
    Checkpoint, FsResize, GuestCommand, ResizeHow, RunDisk, RunRequest, RunShare,
};
use crate::vm::run::Events;
use b9_protocol::agent::Kind;

/// Lines of a failed command's output quoted in the error.
const OUTPUT_TAIL: usize = 20;

/// A build image as the guest sees it.
pub struct GuestImage<'a> {
    /// The build image.
    pub built: &'a mut Built,
    /// Where it is mounted.
    pub mount: &'a MountPoint,
    /// The source's `Resize`: a growing one runs before the script, so the
    /// script has the space; a shrinking one runs after it, first.
    pub source_resize: Option<u64>,
    /// File-system resizes after the script, in order.
    pub resizes: Vec<&'a ImageResize>,
}

/// Where a run's host paths are.
pub struct GuestDirs<'a> {
    /// The artifact's build-image directory (console log, scratch disks).
    pub dir: &'a Path,
    /// Relative shared directories are resolved here.
    pub cwd: &'a Path,
    /// The instance directory (`SharedSources`).
    pub sources: &'a Path,
}

/// The run an artifact asks of the appliance: its build images attached,
/// its script lowered, its file-system resizes; `None` when it asks
/// nothing (no command, no resize).
pub fn request(
    iid: &str,
    script: &VmScript,
    images: &[GuestImage<'_>],
    dirs: &GuestDirs<'_>,
) -> Option<RunRequest> {
    let commands = match script {
        VmScript::VmScript(_, _, body) => flatten(&body.value),
        VmScript::NoVmScript => Vec::new(),
    };
    let resizes = images
        .iter()
        .any(|i| i.source_resize.is_some() || !i.resizes.is_empty());
    (!commands.is_empty() || resizes).then(|| RunRequest {
        name: iid.to_string(),
        commands,
        console_log: dirs.dir.join("console.log"),
        ..RunRequest::default()
    })
}

/// Boots the appliance with the build images, runs the script and the
/// file-system resizes, and swaps shrunk file systems in; returns the
/// output lines as they were logged. With `layers` (the step cache and
/// the key base of the step's layers), the run resumes from the longest
/// cached prefix of the script and keeps a layer after each command
/// (`pipeline::layered`).
#[allow(clippy::too_many_arguments)]
pub fn run(
    launcher: &Launcher,
    mut request: RunRequest,
    script: &VmScript,
    images: &mut [GuestImage<'_>],
    dirs: &GuestDirs<'_>,
    create: &CreateOptions,
    layers: Option<(&StepCache, &KeyBuilder)>,
    events: &crate::events::Events,
) -> Result<Vec<String>, BuildError> {
    request.events = events.clone();
    attach_disks(images, &mut request, dirs.dir, create, events)?;
    if !request.commands.is_empty() && !request.has_root() {
        return Err(BuildError::NoRoot);
    }
    attach_shares(script, dirs, &mut request)?;
    let disks: Vec<usize> = (0..images.len())
        .filter_map(|i| {
            let serial = serial(i);
            request.disks.iter().position(|d| d.disk.serial == serial)
        })
        .collect();
    let label = request.name.clone();
    let layered = layers
        .and_then(|(cache, base)| layered::prepare(cache, base, &label, &mut request, &disks));
    let skipped = layered.as_ref().map_or(0, LayerRun::skipped);
    events.emit_with(|| Event::GuestStepStarted {
        instance: label.clone(),
        commands: skipped + request.commands.len(),
        start: if skipped > 0 {
            StepStart::Layer
        } else {
            StepStart::Fresh
        },
        layer: (skipped > 0).then_some(skipped),
    });
    if let Some(l) = &layered {
        events.replay(&label, l.cached_output());
    }
    tracing::info!(
        "starting the appliance ({}) with {} disk(s), {} command(s)",
        launcher.hypervisor_name(),
        request.disks.len(),
        request.commands.len()
    );
    let mut log = LogEvents::new(&request, skipped, events);
    let report = launcher
        .run(&request, &mut log)
        .map_err(|source| BuildError::Vm {
            source,
            console_log: request.console_log.clone(),
        })?;
    if let Err(e) = log.verdict(&report.statuses) {
        if let Some(l) = layered {
            l.keep(images, &log.logged, &log.marks, log.paused, create);
        }
        return Err(e);
    }
    let output = match layered {
        Some(l) => l.finish(images, &log.logged, &log.marks, create)?,
        None => log.logged,
    };
    // Grown file systems stay where they are; shrunk ones were copied.
    for r in report.resized.iter().filter(|r| r.on_scratch) {
        swap_in(images, &r.serial, r.bytes, dirs.dir)?;
    }
    for r in &report.resized {
        if let Some((_, img)) = images
            .iter()
            .enumerate()
            .find(|(i, _)| serial(*i) == r.serial)
        {
            resized(
                events,
                &label,
                &img.built.path,
                ResizeTarget::FileSystem,
                r.bytes,
            );
        }
    }
    Ok(output)
}

/// The serial of build image `i` and of its scratch disk.
fn serial(i: usize) -> String {
    format!("b9-{i}")
}

fn scratch_serial(i: usize) -> String {
    format!("b9-s{i}")
}

fn scratch_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("scratch-{i}.raw"))
}

/// Attaches every build image with its mount point; grows containers for
/// growing resizes; adds scratch disks for shrinks.
fn attach_disks(
    images: &mut [GuestImage<'_>],
    request: &mut RunRequest,
    dir: &Path,
    create: &CreateOptions,
    events: &crate::events::Events,
) -> Result<(), BuildError> {
    for (i, img) in images.iter_mut().enumerate() {
        let path = &img.built.path;
        let size = disk::open(path)?.size();
        // The container only ever grows before the boot; the largest size
        // is also what a scratch disk must hold.
        let mut current = size;
        let mut after: Vec<ResizeHow> = Vec::new();
        let to = |bytes| ResizeHow::To {
            bytes,
            scratch: scratch_serial(i),
        };
        if let Some(want) = img.source_resize {
            if want >= current {
                current = want;
                request.grow_first.push(FsResize {
                    serial: serial(i),
                    how: to(want),
                });
            } else {
                after.push(to(want));
            }
        }
        for r in &img.resizes {
            after.push(match r {
                ImageResize::Resize(s) => {
                    let want = bytes(s);
                    current = current.max(want);
                    to(want)
                }
                ImageResize::ShrinkToMinimum => ResizeHow::Minimum {
                    extra: 0,
                    scratch: scratch_serial(i),
                },
                ImageResize::ShrinkToMinimumAndIncrease(s) => ResizeHow::Minimum {
                    extra: bytes(s),
                    scratch: scratch_serial(i),
                },
                ImageResize::ResizeImage(_) | ImageResize::KeepSize => continue,
            });
        }
        if current > size {
            disk::resize_file(path, current, create)?;
            resized(events, &request.name, path, ResizeTarget::Image, current);
        }
        let scratch_size = current;
        let needs_scratch = !after.is_empty();
        request
            .resizes
            .extend(after.into_iter().map(|how| FsResize {
                serial: serial(i),
                how,
            }));
        request.disks.push(RunDisk {
            disk: VmDisk {
                path: path.clone(),
                format: img.built.format,
                serial: serial(i),
                read_only: false,
            },
            mount_point: match img.mount {
                MountPoint::MountPoint(mp) => Some(mp.value.clone()),
                MountPoint::NotMounted => None,
            },
        });
        if needs_scratch {
            let scratch = scratch_path(dir, i);
            disk::create(&scratch, disk::Target::Raw, scratch_size, create)
                .and_then(|w| w.finish())?;
            request.disks.push(RunDisk {
                disk: VmDisk {
                    path: scratch,
                    format: Format::Raw,
                    serial: scratch_serial(i),
                    read_only: false,
                },
                mount_point: None,
            });
        }
    }
    Ok(())
}

/// A shared directory of a script as the guest gets it.
pub struct ShareDir<'a> {
    /// Its position in the script's share list (the 9p tag's number).
    pub index: usize,
    /// The host directory (not yet canonical).
    pub path: PathBuf,
    /// The guest's mount point.
    pub mount_point: &'a str,
    /// Read-only for the guest.
    pub read_only: bool,
}

/// The script's shared directories that are mounted (`NotMounted` ones are
/// skipped), with their host directories.
pub fn share_dirs<'a>(script: &'a VmScript, dirs: &GuestDirs<'_>) -> Vec<ShareDir<'a>> {
    let shares = match script {
        VmScript::VmScript(_, shares, _) => &shares.value[..],
        VmScript::NoVmScript => &[][..],
    };
    shares
        .iter()
        .enumerate()
        .filter_map(|(index, share)| {
            let (path, mount, read_only) = match &share.value {
                SharedDirectory::SharedDirectory(p, m) => (dirs.cwd.join(&p.value), m, false),
                SharedDirectory::SharedDirectoryRO(p, m) => (dirs.cwd.join(&p.value), m, true),
                SharedDirectory::SharedSources(m) => (dirs.sources.to_path_buf(), m, true),
            };
            let MountPoint::MountPoint(mp) = &mount.value else {
                return None;
            };
            Some(ShareDir {
                index,
                path,
                mount_point: &mp.value,
                read_only,
            })
        })
        .collect()
}

/// Shares the script's directories over 9p (missing host directories are
/// created).
fn attach_shares(
    script: &VmScript,
    dirs: &GuestDirs<'_>,
    request: &mut RunRequest,
) -> Result<(), BuildError> {
    for ShareDir {
        index,
        path,
        mount_point,
        read_only,
    } in share_dirs(script, dirs)
    {
        std::fs::create_dir_all(&path)
            .and_then(|()| path.canonicalize())
            .map_err(BuildError::io("share", &path))
            .map(|path| {
                request.shares.push(RunShare {
                    share: VmShare {
                        path,
                        tag: format!("b9s{index}"),
                        read_only,
                    },
                    mount_point: mount_point.to_string(),
                });
            })?;
    }
    Ok(())
}

/// Puts a shrunk file system (on the scratch disk) in place of its build
/// image.
fn swap_in(
    images: &mut [GuestImage<'_>],
    serial: &str,
    size: u64,
    dir: &Path,
) -> Result<(), BuildError> {
    let Some(i) = (0..images.len()).find(|i| self::serial(*i) == serial) else {
        return Err(BuildError::UnknownDisk(serial.to_string()));
    };
    let scratch = scratch_path(dir, i);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&scratch)
        .map_err(BuildError::io("open", &scratch))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > len {
        return Err(BuildError::ScratchTooSmall { size, len });
    }
    file.set_len(size)
        .map_err(BuildError::io("truncate", &scratch))?;
    let built = &mut images[i].built;
    let _ = std::fs::remove_file(&built.path);
    built.path = built.path.with_extension("raw");
    built.format = Format::Raw;
    std::fs::rename(&scratch, &built.path).map_err(BuildError::io("move", &scratch))
}

/// Logs the script's progress and output line by line (inside the
/// instance's span, so every line carries the instance id), keeps the
/// last lines for the error message and every logged line for the step
/// cache (`marks`: how many lines were logged when each command ended),
/// and hands out the request's checkpoints.
struct LogEvents<'a> {
    commands: &'a [GuestCommand],
    checkpoints: &'a [Checkpoint],
    /// Commands before the first one run (taken from a cached layer).
    skipped: usize,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
    logged: Vec<String>,
    marks: Vec<usize>,
    /// Checkpoints taken so far.
    paused: usize,
    /// Where the build's events go, and the instance they are about.
    events: &'a crate::events::Events,
    instance: &'a str,
    /// The number in the script of the command running.
    number: usize,
}

impl<'a> LogEvents<'a> {
    fn new(request: &'a RunRequest, skipped: usize, events: &'a crate::events::Events) -> Self {
        LogEvents {
            commands: &request.commands,
            checkpoints: &request.checkpoints,
            events,
            instance: &request.name,
            number: skipped,
            skipped,
            partial: [Vec::new(), Vec::new()],
            tail: VecDeque::new(),
            logged: Vec::new(),
            marks: Vec::new(),
            paused: 0,
        }
    }

    /// Logs a line at info level and keeps it.
    fn info(&mut self, line: String) {
        tracing::info!("{line}");
        self.logged.push(line);
    }

    fn line(&mut self, kind: Kind, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        match kind {
            Kind::Stderr => self.info(format!("! {text}")),
            _ => self.info(format!("> {text}")),
        }
        if self.tail.len() == OUTPUT_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_string());
    }

    fn flush(&mut self) {
        for (i, kind) in [(0, Kind::Stdout), (1, Kind::Stderr)] {
            let rest = std::mem::take(&mut self.partial[i]);
            if !rest.is_empty() {
                self.line(kind, &rest);
            }
        }
    }

    /// The first failing command that was not ignored, as an error.
    fn verdict(&self, statuses: &[i32]) -> Result<(), BuildError> {
        for (i, (c, status)) in self.commands.iter().zip(statuses).enumerate() {
            if *status != 0 && !c.ignore_errors {
                let mut who = String::new();
                if let Some(u) = &c.user {
                    who.push_str(&format!(" as {u}"));
                }
                if let Some(d) = &c.dir {
                    who.push_str(&format!(" in {d}"));
                }
                let tail: Vec<&str> = self.tail.iter().map(String::as_str).collect();
                return Err(BuildError::ScriptFailed {
                    number: self.skipped + i + 1,
                    line: c.line.clone(),
                    who,
                    status: *status,
                    tail: tail.join("\n"),
                });
            }
        }
        if statuses.len() < self.commands.len() {
            return Err(BuildError::Incomplete {
                ran: self.skipped + statuses.len(),
                of: self.skipped + self.commands.len(),
            });
        }
        Ok(())
    }
}

impl Events for LogEvents<'_> {
    fn started(&mut self, index: usize) {
        self.tail.clear();
        self.number = self.skipped + index + 1;
        if let Some(c) = self.commands.get(index) {
            self.info(format!("RUN {}", c.line));
            self.events.emit_with(|| Event::CommandStarted {
                instance: self.instance.to_string(),
                number: self.number,
                line: c.line.clone(),
                user: c.user.clone(),
                dir: c.dir.clone(),
            });
        }
    }

    fn output(&mut self, kind: Kind, bytes: &[u8]) {
        let slot = usize::from(kind == Kind::Stderr);
        self.events.emit_with(|| Event::CommandOutput {
            instance: self.instance.to_string(),
            number: self.number,
            stream: if slot == 1 {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            text: String::from_utf8_lossy(bytes).into_owned(),
            cached: false,
        });
        self.partial[slot].extend_from_slice(bytes);
        while let Some(pos) = self.partial[slot].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[slot].drain(..=pos).collect();
            self.line(kind, &line[..line.len() - 1]);
        }
    }

    fn exited(&mut self, index: usize, status: i32, millis: u64) {
        self.flush();
        let ignored = status != 0 && self.commands.get(index).is_some_and(|c| c.ignore_errors);
        let how = if ignored { " (ignored)" } else { "" };
        self.events.emit_with(|| Event::CommandExited {
            instance: self.instance.to_string(),
            number: self.skipped + index + 1,
            status,
            ignored,
            duration_ms: millis,
        });
        self.info(format!(
            "exit status {status}{how} after {:.1} s",
            millis as f64 / 1000.0
        ));
        self.marks.push(self.logged.len());
    }

    fn checkpoint(&mut self, index: usize) -> Vec<(usize, PathBuf)> {
        self.paused += 1;
        self.checkpoints
            .iter()
            .find(|c| c.after == index)
            .map(|c| c.overlays.clone())
            .unwrap_or_default()
    }

    fn log(&mut self, line: &str) {
        tracing::debug!("agent: {line}");
    }
}
