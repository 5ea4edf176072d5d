//! `b9 run`'s terminal side: the host terminal in raw mode while the
//! guest's pseudo-terminal is forwarded, and stdin sent to the agent.

use std::io::Read;
use std::os::unix::net::UnixStream;

use rustix::termios::{self, OptionalActions, Termios};

use b9_protocol::agent::{self as protocol, Kind, ToAgent};

/// Sends the host's stdin to the agent as it is typed, and the terminal
/// size once; an empty frame at the end of stdin.
pub fn forward_stdin(mut writer: UnixStream) {
    if let Ok(size) = termios::tcgetwinsize(std::io::stdin()) {
        let _ = protocol::send(
            &mut writer,
            &ToAgent::WindowSize {
                rows: size.ws_row,
                cols: size.ws_col,
            },
        );
    }
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if protocol::write_frame(&mut writer, Kind::Stdin, &buf[..n]).is_err() || n == 0 {
                return;
            }
        }
    });
}

/// The host terminal in raw mode; restored when dropped. `None` when stdin
/// is not a terminal.
pub struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    /// Puts stdin's terminal into raw mode.
    pub fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}
