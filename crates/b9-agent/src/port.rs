//! The virtio-serial port to the host, and the agent's log.
//!
//! One writer, behind a mutex, is shared by every thread that sends; the
//! reader belongs to whoever receives. Log lines go to the console and, once
//! the port is open, to the host as [`ToHost::Log`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use b9_protocol::agent::{self as protocol, Frame, Kind, ToHost, PORT_NAME};

/// How long to wait for the port device to appear.
const PORT_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for the host to connect to the port.
const HOST_WAIT: Duration = Duration::from_secs(60);

/// The sending half, shared between threads.
#[derive(Clone)]
pub struct Sender {
    file: Arc<Mutex<File>>,
}

impl Sender {
    /// Sends one control message.
    pub fn send(&self, msg: &ToHost) -> io::Result<()> {
        let mut f = self.file.lock().map_err(|_| poisoned())?;
        protocol::send(&mut *f, msg)
    }

    /// Sends raw output bytes as a data frame, split to the frame limit.
    pub fn data(&self, kind: Kind, bytes: &[u8]) -> io::Result<()> {
        let mut f = self.file.lock().map_err(|_| poisoned())?;
        for chunk in bytes.chunks(1 << 20) {
            protocol::write_frame(&mut *f, kind, chunk)?;
        }
        Ok(())
    }
}

fn poisoned() -> io::Error {
    io::Error::other("port writer lock poisoned")
}

/// The open port: a sender and the receiving file.
pub struct Port {
    /// The sending half.
    pub sender: Sender,
    /// The receiving half.
    pub reader: File,
}

impl Port {
    /// Reads the next frame; end of stream is an error here.
    pub fn recv(&mut self) -> io::Result<Frame> {
        protocol::read_frame(&mut self.reader)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the host closed the port"))
    }
}

static LOG: OnceLock<Sender> = OnceLock::new();

/// Logs a line on the console and, when connected, to the host.
pub fn log(line: impl AsRef<str>) {
    let line = line.as_ref();
    console(line);
    if let Some(s) = LOG.get() {
        let _ = s.send(&ToHost::Log {
            line: line.to_string(),
        });
    }
}

/// Prints a line on the console only.
pub fn console(line: &str) {
    let _ = writeln!(io::stderr(), "[{:8.3}] b9-agent: {line}", uptime());
}

/// Seconds since boot.
fn uptime() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Finds the agent's port, waits for the host and opens it.
pub fn open() -> io::Result<Port> {
    let dev = wait_for_port()?;
    let file = OpenOptions::new().read(true).write(true).open(&dev)?;
    wait_for_host(&file)?;
    let reader = file.try_clone()?;
    let sender = Sender {
        file: Arc::new(Mutex::new(file)),
    };
    let _ = LOG.set(sender.clone());
    Ok(Port { sender, reader })
}

/// Polls `/sys/class/virtio-ports` until the named port appears.
fn wait_for_port() -> io::Result<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(dev) = find_port(Path::new("/sys/class/virtio-ports"), PORT_NAME) {
            let path = Path::new("/dev").join(dev);
            if path.exists() {
                return Ok(path);
            }
        }
        if start.elapsed() > PORT_WAIT {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no virtio-serial port named {PORT_NAME}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The device name (`vport0p1`) of the port called `name` under `class`.
pub fn find_port(class: &Path, name: &str) -> Option<String> {
    std::fs::read_dir(class).ok()?.flatten().find_map(|e| {
        let found = std::fs::read_to_string(e.path().join("name")).ok()?;
        (found.trim() == name).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// Waits until the host end is connected (the port stops reporting HUP),
/// so the hello is not dropped.
fn wait_for_host(file: &File) -> io::Result<()> {
    let start = Instant::now();
    loop {
        let mut p = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 100) };
        if n > 0 && p.revents & libc::POLLHUP == 0 {
            return Ok(());
        }
        if start.elapsed() > HOST_WAIT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the host did not connect to the agent port",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_port_by_name() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        for (dev, name) in [("vport0p0", "other"), ("vport1p1", PORT_NAME)] {
            std::fs::create_dir(d.path().join(dev))?;
            std::fs::write(d.path().join(dev).join("name"), format!("{name}\n"))?;
        }
        assert_eq!(find_port(d.path(), PORT_NAME).as_deref(), Some("vport1p1"));
        assert_eq!(find_port(d.path(), "nope"), None);
        Ok(())
    }
}
