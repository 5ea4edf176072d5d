//! Waiting for a child process with a deadline (QEMU, the libvirt helper,
//! post-fix scripts).

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often the child is polled.
const POLL: Duration = Duration::from_millis(10);

/// Waits for `child` until `deadline` (for ever with `None`): its exit
/// status, or `None` when it still runs then.
pub fn wait_until(
    child: &mut Child,
    deadline: Option<Instant>,
) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reports_an_exit_or_a_child_still_running() {
        let mut quick = std::process::Command::new("true").spawn().unwrap();
        let status = wait_until(&mut quick, None).unwrap();
        assert!(status.is_some_and(|s| s.success()));
        let mut slow = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let deadline = Some(t0 + Duration::from_millis(50));
        assert_eq!(wait_until(&mut slow, deadline).unwrap(), None);
        assert!(t0.elapsed() < Duration::from_secs(2));
        slow.kill().unwrap();
        slow.wait().unwrap();
    }
}
