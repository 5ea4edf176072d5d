//! Interactive mode: one command on a pseudo-terminal of the new root's
//! devpts, stdin and window size forwarded from the host.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use b9_protocol::agent::{self as protocol, Command, Kind, ToAgent, ToHost};

use crate::disks::SYSROOT;
use crate::port::{log, Sender};
use crate::run::pump;
use crate::spawn::{Plan, Spawn};
use crate::{sys, users};

/// Runs `cmd` on a terminal; `input` is the port's receiving half.
/// Returns whether it succeeded.
pub fn run_interactive(cmd: &Command, input: File, sender: &Sender) -> io::Result<bool> {
    sender.send(&ToHost::Started { index: 0 })?;
    let start = Instant::now();
    let status = run_on_pty(cmd, input, sender)?;
    let millis = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    sender.send(&ToHost::Exited {
        index: 0,
        status,
        millis,
    })?;
    Ok(status == 0 || cmd.ignore_errors)
}

fn run_on_pty(cmd: &Command, input: File, sender: &Sender) -> io::Result<i32> {
    let root = Path::new(SYSROOT);
    let who = match users::lookup_in(root, cmd.user.as_deref()) {
        Ok(w) => w,
        Err(msg) => {
            sender.data(Kind::Stderr, format!("b9-agent: {msg}\r\n").as_bytes())?;
            return Ok(127);
        }
    };
    let (master, slave) = open_pty(&root.join("dev/pts/ptmx"))?;
    set_window_size(master.as_raw_fd(), 24, 80);
    let spawn = Spawn::new(&Plan {
        root: SYSROOT,
        shell: users::shell(root),
        line: &cmd.line,
        dir: cmd.dir.as_deref(),
        who: &who,
        interactive: true,
        stdio: [slave.as_raw_fd(); 3],
    })?;
    let pid = spawn.start();
    drop(slave);
    let pid = pid?;
    let tty = Arc::new(Mutex::new(Some(File::from(master.try_clone()?))));
    forward_input(input, Arc::clone(&tty));
    let status = pump(pid, vec![(master, Kind::Stdout)], sender);
    // Close the forwarder's copy too, so devpts can be unmounted.
    if let Ok(mut t) = tty.lock() {
        t.take();
    }
    Ok(sys::exit_code(status?))
}

/// Opens a new pty pair on the devpts instance of `ptmx`: (master, slave).
fn open_pty(ptmx: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(ptmx)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", ptmx.display())))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int.
    sys::check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER returns a new descriptor of the slave.
    let slave = sys::check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })?;
    // SAFETY: `slave` was just opened and is owned by nobody else.
    Ok((OwnedFd::from(master), unsafe {
        OwnedFd::from_raw_fd(slave)
    }))
}

/// Sets the terminal size (TIOCSWINSZ); failures are ignored.
fn set_window_size(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ takes a pointer to a winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// The terminal's master side while the session lasts.
type SharedTty = Arc<Mutex<Option<File>>>;

/// Starts the thread that copies host frames to the terminal.
fn forward_input(mut input: File, tty: SharedTty) {
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            while let Ok(Some(f)) = protocol::read_frame(&mut input) {
                let Ok(mut guard) = tty.lock() else { break };
                let Some(t) = guard.as_mut() else { break };
                if !deliver(&f, t) {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        log(format!("cannot forward stdin: {e}"));
    }
}

/// Handles one host frame; false when forwarding should stop.
fn deliver(frame: &protocol::Frame, tty: &mut File) -> bool {
    match frame.kind {
        // An empty payload closes stdin: ^D at the start of a line is EOF.
        Kind::Stdin if frame.payload.is_empty() => tty.write_all(&[4]).is_ok(),
        Kind::Stdin => tty.write_all(&frame.payload).is_ok(),
        Kind::Control => match protocol::decode::<ToAgent>(frame) {
            Ok(ToAgent::WindowSize { rows, cols }) => {
                set_window_size(tty.as_raw_fd(), rows, cols);
                true
            }
            Ok(ToAgent::Abort { reason }) => {
                log(format!("host aborted: {reason}"));
                // Hang up the terminal: the session's processes get SIGHUP.
                false
            }
            _ => true,
        },
        _ => true,
    }
}
