//! QEMU dies with b9. A killed b9 (SIGKILL, or a second Ctrl-C) cannot stop
//! its VMs, so QEMU is started through `b9 __exec-with-parent-death`: that
//! process asks the kernel for SIGKILL when its parent goes away
//! (`PR_SET_PDEATHSIG`, kept across `execve`), checks that the parent is
//! still the b9 that started it, and then replaces itself with QEMU. The
//! signal comes when the *thread* that spawned QEMU ends: b9 runs each VM
//! on the thread that started it, until the VM is stopped.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use rustix::process::{getppid, set_parent_process_death_signal, Pid, Signal};

/// The first argument of `b9` that selects the shim (not a user command).
pub const SHIM_ARG: &str = "__exec-with-parent-death";

/// Exit status of the shim when it cannot run the program (as shells use).
const CANNOT_RUN: u8 = 127;

/// A command that runs `program` (add its arguments) and kills it when the
/// calling thread ends, however b9 ends.
pub fn command(program: &Path) -> Result<Command, super::sibling::SiblingError> {
    let b9 = super::sibling::program("b9")?;
    let mut cmd = Command::new(b9);
    cmd.arg(SHIM_ARG)
        .arg(std::process::id().to_string())
        .arg(program);
    Ok(cmd)
}

/// The shim's side: `args` are what follows [`SHIM_ARG`]: the PID of the
/// b9 that started it, the program and its arguments. Returns only when
/// the program could not be run.
pub fn exec(args: &[OsString]) -> ExitCode {
    let [parent, program, rest @ ..] = args else {
        eprintln!("b9: {SHIM_ARG} needs a parent PID and a program");
        return ExitCode::from(CANNOT_RUN);
    };
    let parent = parent.to_str().and_then(|p| p.parse::<i32>().ok());
    if let Err(e) = set_parent_process_death_signal(Some(Signal::KILL)) {
        eprintln!("b9: cannot ask for a parent-death signal: {e}");
        return ExitCode::from(CANNOT_RUN);
    }
    // The parent may have died before the request took effect.
    if getppid().map(Pid::as_raw_nonzero).map(|p| p.get()) != parent {
        eprintln!("b9: the b9 process that started this one is gone");
        return ExitCode::from(CANNOT_RUN);
    }
    let err = Command::new(program).args(rest).exec();
    eprintln!("b9: cannot run {}: {err}", Path::new(program).display());
    ExitCode::from(CANNOT_RUN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_needs_a_program() {
        assert_eq!(exec(&[OsString::from("1")]), ExitCode::from(CANNOT_RUN));
    }
}
