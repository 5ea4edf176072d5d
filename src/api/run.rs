//! `b9 run NAME|IMAGE [CMD [ARG...]]`: a command — by default the root
//! user's shell — on a pseudo-terminal in a transient copy of a shared image
//! or an image file, with the working directory shared at `/mnt/CWD`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::Error;
use super::session::Session;
use crate::disk::qcow2::Qcow2Image;
use crate::disk::{self, Format};
use crate::interrupt::{self, CancelToken};
use crate::repo::LocalRepo;
use crate::vm::backend::{VmDisk, VmShare};
use crate::vm::interactive::RawTerminal;
use crate::vm::launch::Launcher;
use crate::vm::request::{GuestCommand, Output, RunDisk, RunRequest, RunShare};
use crate::vm::run::Events;
use b9_protocol::agent::Kind;

/// The command when none is given: the image's shell for root.
const DEFAULT_COMMAND: &str = "exec \"${SHELL:-/bin/sh}\" -l";

/// Runs `command` (joined with spaces, run by the image's shell; empty: a
/// login shell) in a transient copy of `image`, a shared image name or an
/// image file, on this process's terminal; returns the command's exit
/// status. `cancel` stops the VM.
pub fn run(
    session: &Session,
    image: &str,
    command: &[String],
    cancel: &CancelToken,
) -> Result<i32, Error> {
    let _watch = interrupt::watch(cancel);
    let base = find_image(session, image)?;
    let dir = session.build_dir().join("run");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::failed(format!("cannot create {}: {e}", dir.display())))?;
    let result = run_in(session, &base, &dir, command);
    if !session.config.keep_temp_dirs {
        let _ = std::fs::remove_dir_all(session.build_dir());
    }
    result
}

/// An image file, else the newest cached version of a shared image.
fn find_image(session: &Session, name: &str) -> Result<PathBuf, Error> {
    let path = session.dirs.cwd.join(name);
    if path.is_file() {
        return path
            .canonicalize()
            .map_err(|e| Error::failed(format!("cannot open {}: {e}", path.display())));
    }
    let repo = LocalRepo::open(&session.cache_root()).map_err(Error::failed)?;
    let img = repo.require_latest(name).map_err(|e| {
        Error::failed(format!(
            "{name} is neither an image file nor a cached shared image ({e})"
        ))
    })?;
    Ok(repo.image_path(&img))
}

fn run_in(session: &Session, base: &Path, dir: &Path, command: &[String]) -> Result<i32, Error> {
    let overlay = dir.join("transient.qcow2");
    let size = disk::open(base).map_err(Error::failed)?.size();
    let format = disk::detect(base).map_err(Error::failed)?;
    Qcow2Image::create(&overlay, size, Some((base, format.extension()))).map_err(Error::failed)?;
    let launcher = Launcher::new(&session.vm).map_err(Error::failed)?;
    let line = if command.is_empty() {
        DEFAULT_COMMAND.to_string()
    } else {
        command.join(" ")
    };
    let request = RunRequest {
        name: "run".into(),
        disks: vec![RunDisk {
            disk: VmDisk {
                path: overlay,
                format: Format::Qcow2,
                serial: "b9-0".into(),
                read_only: false,
            },
            mount_point: Some("/".into()),
        }],
        shares: vec![RunShare {
            share: VmShare {
                path: session.dirs.cwd.clone(),
                tag: "b9s0".into(),
                read_only: false,
            },
            mount_point: "/mnt/CWD".into(),
        }],
        commands: vec![GuestCommand {
            line,
            dir: Some("/mnt/CWD".into()),
            user: None,
            ignore_errors: false,
            output: Output::All,
        }],
        console_log: dir.join("console.log"),
        interactive: true,
        ..RunRequest::default()
    };
    let terminal = RawTerminal::enter();
    let mut events = Terminal { status: None };
    let result = launcher.run(&request, &mut events);
    drop(terminal);
    result.map_err(Error::failed)?;
    events
        .status
        .ok_or_else(|| Error::failed("the command did not run (see the log)"))
}

/// Writes the guest terminal's output to stdout as it comes.
struct Terminal {
    status: Option<i32>,
}

impl Events for Terminal {
    fn started(&mut self, _: usize) {}

    fn output(&mut self, _: Kind, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    fn exited(&mut self, _: usize, status: i32, _: u64) {
        self.status = Some(status);
    }

    fn log(&mut self, line: &str) {
        tracing::debug!("agent: {line}");
    }
}
