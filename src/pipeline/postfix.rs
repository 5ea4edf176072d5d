//! The post-fix script of `VmImagesWithFixup`: rendered as the
//! original did (`pipeline::script`), unsubstituted, run on the host as the invoking user
//! with the build images' absolute paths as arguments.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::pipeline::error::BuildError;
use crate::pipeline::script::render_bash;
use crate::vm::request::GuestCommand;

/// Writes `<dir>/post-fix.sh` and runs it in the build's working
/// directory `cwd`; a non-zero exit or the timeout is an error.
pub fn run(
    fixup: &[GuestCommand],
    images: &[PathBuf],
    dir: &Path,
    cwd: &Path,
    timeout: Option<Duration>,
) -> Result<(), BuildError> {
    let path = dir.join("post-fix.sh");
    std::fs::write(&path, render_bash(fixup))
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)))
        .map_err(BuildError::io("write", &path))?;
    tracing::info!("running the post-fix script {}", path.display());
    let mut child = Command::new(&path)
        .args(images)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BuildError::io("run", &path))?;
    let pipes = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ];
    let span = tracing::Span::current();
    let loggers: Vec<_> = pipes
        .into_iter()
        .flatten()
        .map(|pipe| {
            let span = span.clone();
            std::thread::spawn(move || {
                let _entered = span.enter();
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    tracing::info!("post-fix> {line}");
                }
            })
        })
        .collect();
    let status = wait(&mut child, timeout);
    for l in loggers {
        let _ = l.join();
    }
    match status? {
        0 => Ok(()),
        code => Err(BuildError::PostFixStatus { path, code }),
    }
}

/// Waits for the child, killing it at the timeout.
fn wait(child: &mut std::process::Child, timeout: Option<Duration>) -> Result<i32, BuildError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    match crate::wait::wait_until(child, deadline) {
        Ok(Some(status)) => {
            use std::os::unix::process::ExitStatusExt;
            Ok(status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
        }
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(BuildError::PostFixTimeout(timeout.unwrap_or_default()))
        }
        Err(e) => Err(BuildError::PostFixWait(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spawn(script: &str) -> std::process::Child {
        Command::new("sh").args(["-c", script]).spawn().unwrap()
    }

    #[test]
    fn wait_gives_the_status_or_kills_at_the_timeout() {
        assert_eq!(wait(&mut spawn("exit 3"), None).unwrap(), 3);
        assert_eq!(wait(&mut spawn("kill -9 $$"), None).unwrap(), 128 + 9);
        let mut slow = spawn("sleep 5");
        let err = wait(&mut slow, Some(Duration::from_millis(50)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("killed after the timeout"), "{err}");
        assert!(slow.try_wait().unwrap().is_some(), "reaped");
    }
}
