//! A remote domain's agent channel and console, carried over the libvirt
//! connection (`virDomainOpenChannel`, `virDomainOpenConsole`) and relayed
//! to b9: the channel through a unix socket the helper listens on in b9's
//! private run directory (b9's agent client connects to it as to a local
//! VM's socket), the console appended to a local file (docs/PROTOCOL.md#helper-remote).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};

use b9_protocol::libvirt::Relay;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::stream::Stream;
use virt::sys;

/// Bytes per read or stream message.
const CHUNK: usize = 64 * 1024;

/// Opens the console and the agent channel of `domain` and starts the
/// threads that relay them; returns once the agent socket listens.
pub fn start(conn: &Connect, domain: &Domain, relay: &Relay) -> Result<(), String> {
    let console = Stream::new(conn, 0).map_err(|e| e.message().to_string())?;
    domain
        .open_console(None, &console, sys::VIR_DOMAIN_CONSOLE_FORCE)
        .map_err(|e| format!("cannot open the console: {}", e.message()))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&relay.console_log)
        .map_err(|e| format!("cannot open {}: {e}", relay.console_log))?;
    std::thread::spawn(move || copy_out(&console, log));
    let channel = Stream::new(conn, 0).map_err(|e| e.message().to_string())?;
    domain
        .open_channel(Some(&relay.port), &channel, sys::VIR_DOMAIN_CHANNEL_FORCE)
        .map_err(|e| format!("cannot open the channel {}: {}", relay.port, e.message()))?;
    let _ = std::fs::remove_file(&relay.agent_socket);
    let listener = UnixListener::bind(&relay.agent_socket)
        .map_err(|e| format!("cannot listen on {}: {e}", relay.agent_socket))?;
    std::thread::spawn(move || {
        if let Ok((socket, _)) = listener.accept() {
            relay_channel(channel, socket);
        }
    });
    Ok(())
}

/// Copies a stream's bytes into `out` until the stream ends or fails.
fn copy_out(stream: &Stream, mut out: impl Write) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = stream.recv(&mut buf) {
        let Ok(n) = usize::try_from(n) else { return };
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            return;
        }
        let _ = out.flush();
    }
}

/// Both directions between the channel and b9's connection; whichever
/// side ends, the other is shut down.
fn relay_channel(channel: Stream, socket: UnixStream) {
    let Ok(mut from_b9) = socket.try_clone() else {
        return;
    };
    let to_guest = channel.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_b9.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if send_all(&to_guest, &buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from_b9.shutdown(Shutdown::Both);
    });
    copy_out(&channel, &socket);
    let _ = socket.shutdown(Shutdown::Both);
}

fn send_all(stream: &Stream, mut data: &[u8]) -> Result<(), ()> {
    while !data.is_empty() {
        let n = stream.send(data).map_err(|_| ())?;
        let n = usize::try_from(n).map_err(|_| ())?;
        data = &data[n..];
    }
    Ok(())
}
