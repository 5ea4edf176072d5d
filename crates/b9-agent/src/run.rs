//! Running the script's commands and streaming their output.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use b9_protocol::agent::{Command, Kind, Output, ToHost};

use crate::disks::SYSROOT;
use crate::port::{log, Sender};
use crate::spawn::{Plan, Spawn};
use crate::{reaper, sys, users};

/// How long output is still collected after a command exited (background
/// processes may hold its pipes open forever).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Runs the commands in order, calling `pause` after each one that does
/// not end the script (a checkpoint, docs/PROTOCOL.md#checkpoints); true
/// when the script succeeded (every failure, if any, was ignored).
pub fn run_all(
    commands: &[Command],
    sender: &Sender,
    pause: &mut dyn FnMut(usize) -> Result<(), String>,
) -> io::Result<bool> {
    let root = Path::new(SYSROOT);
    let shell = users::shell(root);
    for (index, cmd) in commands.iter().enumerate() {
        sender.send(&ToHost::Started { index })?;
        let start = Instant::now();
        let status = run_one(cmd, shell, sender)?;
        let millis = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        sender.send(&ToHost::Exited {
            index,
            status,
            millis,
        })?;
        if status != 0 && !cmd.ignore_errors {
            log(format!(
                "command {index} failed with status {status}: skipping the rest"
            ));
            return Ok(false);
        }
        pause(index).map_err(io::Error::other)?;
    }
    Ok(true)
}

/// Runs one command; its exit code (127 when it could not start).
fn run_one(cmd: &Command, shell: &str, sender: &Sender) -> io::Result<i32> {
    let who = match users::lookup_in(Path::new(SYSROOT), cmd.user.as_deref()) {
        Ok(w) => w,
        Err(msg) => {
            sender.data(Kind::Stderr, format!("b9-agent: {msg}\n").as_bytes())?;
            return Ok(127);
        }
    };
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let (out, out_w) = sink(cmd.output != Output::All, &null)?;
    let (err, err_w) = sink(cmd.output == Output::Nothing, &null)?;
    let spawn = Spawn::new(&Plan {
        root: SYSROOT,
        shell,
        line: &cmd.line,
        dir: cmd.dir.as_deref(),
        who: &who,
        interactive: false,
        stdio: [null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
    })?;
    let pid = spawn.start();
    drop((out_w, err_w, null));
    let pid = pid?;
    let streams: Vec<(OwnedFd, Kind)> = [(out, Kind::Stdout), (err, Kind::Stderr)]
        .into_iter()
        .filter_map(|(fd, k)| fd.map(|fd| (fd, k)))
        .collect();
    let status = pump(pid, streams, sender)?;
    Ok(sys::exit_code(status))
}

/// Where one output stream goes: a pipe (read end, write end) or /dev/null.
fn sink(discard: bool, null: &File) -> io::Result<(Option<OwnedFd>, OwnedFd)> {
    if discard {
        return Ok((None, OwnedFd::from(null.try_clone()?)));
    }
    let (r, w) = pipe()?;
    Ok((Some(r), w))
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for two descriptors.
    sys::check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned both descriptors, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Streams `streams` to the host until they close (or a grace period after
/// the child exited); returns the child's wait status.
pub fn pump(
    pid: libc::pid_t,
    mut streams: Vec<(OwnedFd, Kind)>,
    sender: &Sender,
) -> io::Result<libc::c_int> {
    let mut status = None;
    let mut exited_at = None;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let ready = poll_readable(&streams, 100)?;
        let mut closed = Vec::new();
        for i in ready {
            let (fd, kind) = &streams[i];
            match read_fd(fd.as_raw_fd(), &mut buf) {
                Ok(0) => closed.push(i),
                Ok(n) => sender.data(*kind, &buf[..n])?,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => closed.push(i),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        for i in closed.into_iter().rev() {
            streams.remove(i);
        }
        if status.is_none() {
            status = reaper::try_take(pid);
            if status.is_some() {
                exited_at = Some(Instant::now());
            }
        }
        let grace_over = exited_at.is_some_and(|t| t.elapsed() > DRAIN_GRACE);
        if streams.is_empty() || grace_over {
            break;
        }
    }
    Ok(status.unwrap_or_else(|| reaper::wait(pid)))
}

/// Indices of the streams with data (or EOF) within `timeout_ms`.
pub fn poll_readable(streams: &[(OwnedFd, Kind)], timeout_ms: i32) -> io::Result<Vec<usize>> {
    let mut fds: Vec<libc::pollfd> = streams
        .iter()
        .map(|(fd, _)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect())
}

/// `read(2)` into `buf`.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Ends every process the script left behind (daemons), so the file
/// systems can be unmounted: SIGTERM, then SIGKILL after a moment.
pub fn kill_leftovers() {
    let left = user_processes(Path::new("/proc"));
    if left.is_empty() {
        return;
    }
    log(format!(
        "stopping {} process(es) the script left running",
        left.len()
    ));
    signal_all(&left, libc::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if user_processes(Path::new("/proc")).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_all(&user_processes(Path::new("/proc")), libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(100));
}

fn signal_all(pids: &[libc::pid_t], sig: libc::c_int) {
    for pid in pids {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(*pid, sig) };
    }
}

/// Processes other than the agent's own that are not kernel threads or
/// zombies (both have an empty command line).
pub fn user_processes(proc_dir: &Path) -> Vec<libc::pid_t> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let Ok(dir) = std::fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| *pid != me && *pid != 1)
        .filter(|pid| {
            std::fs::read(proc_dir.join(pid.to_string()).join("cmdline"))
                .is_ok_and(|c| !c.is_empty())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_poll_and_read() -> io::Result<()> {
        let (r, w) = pipe()?;
        let streams = vec![(r, Kind::Stdout)];
        assert!(poll_readable(&streams, 0)?.is_empty());
        // SAFETY: writing 3 bytes from a valid buffer to our pipe.
        let n = unsafe { libc::write(w.as_raw_fd(), b"hi\n".as_ptr().cast(), 3) };
        assert_eq!(n, 3);
        assert_eq!(poll_readable(&streams, 100)?, vec![0]);
        let mut buf = [0u8; 8];
        assert_eq!(read_fd(streams[0].0.as_raw_fd(), &mut buf)?, 3);
        drop(w);
        assert_eq!(read_fd(streams[0].0.as_raw_fd(), &mut buf)?, 0);
        Ok(())
    }

    #[test]
    fn finds_user_processes_not_kernel_threads() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        for (pid, cmdline) in [
            ("1", "init"),
            ("2", ""),
            ("77", "sleep\0\x31"),
            ("self", "x"),
        ] {
            std::fs::create_dir(d.path().join(pid))?;
            std::fs::write(d.path().join(pid).join("cmdline"), cmdline)?;
        }
        assert_eq!(user_processes(d.path()), vec![77]);
        Ok(())
    }
}
