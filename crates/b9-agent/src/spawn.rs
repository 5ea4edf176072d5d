//! Starting a command chrooted into the new root as the image's user.
//!
//! Everything the child needs is prepared before `fork`; the child itself
//! only makes async-signal-safe system calls (the agent has threads).

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use crate::sys::cstr;
use crate::users::Identity;

/// The `PATH` every command gets.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A fully prepared child process.
pub struct Spawn {
    root: CString,
    dir: CString,
    /// Whether `dir` was asked for (failing to enter it is an error) or is
    /// only the home directory (failing falls back to `/`).
    dir_required: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    stdio: [RawFd; 3],
    controlling_tty: bool,
}

/// What a command runs with.
pub struct Plan<'a> {
    /// The new root (host path).
    pub root: &'a str,
    /// The shell inside the root (`/bin/bash` or `/bin/sh`).
    pub shell: &'a str,
    /// The `Run` line.
    pub line: &'a str,
    /// `In`, if given.
    pub dir: Option<&'a str>,
    /// Who runs it.
    pub who: &'a Identity,
    /// Whether it runs on a terminal (TERM, controlling tty).
    pub interactive: bool,
    /// The descriptors that become stdin, stdout and stderr.
    pub stdio: [RawFd; 3],
}

impl Spawn {
    /// Prepares the child's arguments, environment and credentials.
    pub fn new(p: &Plan<'_>) -> io::Result<Spawn> {
        let (dir, dir_required) = match p.dir {
            Some(d) => (d, true),
            None => (p.who.home.as_str(), false),
        };
        let argv = [p.shell, "-c", p.line]
            .iter()
            .map(cstr)
            .collect::<io::Result<Vec<_>>>()?;
        let envp = environment(p.who, p.interactive)
            .iter()
            .map(cstr)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Spawn {
            root: cstr(p.root)?,
            dir: cstr(dir)?,
            dir_required,
            uid: p.who.uid,
            gid: p.who.gid,
            groups: p.who.groups.clone(),
            argv,
            envp,
            stdio: p.stdio,
            controlling_tty: p.interactive,
        })
    }

    /// Forks and execs; returns the child's pid.
    pub fn start(&self) -> io::Result<libc::pid_t> {
        let argv = null_terminated(&self.argv);
        let envp = null_terminated(&self.envp);
        crate::reaper::fork_watched(|| {
            // SAFETY: fork; the child only calls async-signal-safe functions
            // on data prepared above and then execs or exits.
            let pid = unsafe { libc::fork() };
            match pid {
                -1 => Err(io::Error::last_os_error()),
                0 => self.child(&argv, &envp),
                pid => Ok(pid),
            }
        })
    }

    /// The child after fork: never returns.
    fn child(&self, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> ! {
        // SAFETY: async-signal-safe calls on valid, prepared data.
        unsafe {
            reset_signals();
            if self.controlling_tty {
                libc::setsid();
                libc::ioctl(self.stdio[0], libc::TIOCSCTTY, 0);
            }
            for (target, fd) in self.stdio.iter().enumerate() {
                if libc::dup2(*fd, target as libc::c_int) == -1 {
                    die(b"b9-agent: cannot set up stdio\n");
                }
            }
            if libc::chroot(self.root.as_ptr()) != 0 {
                die(b"b9-agent: cannot chroot into the image\n");
            }
            if libc::chdir(self.dir.as_ptr()) != 0 {
                if self.dir_required {
                    die(b"b9-agent: cannot enter the working directory (In)\n");
                }
                libc::chdir(c"/".as_ptr());
            }
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                || libc::setgid(self.gid) != 0
                || libc::setuid(self.uid) != 0
            {
                die(b"b9-agent: cannot switch to the user (As)\n");
            }
            libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
            die(b"b9-agent: cannot execute the shell\n")
        }
    }
}

/// Default signal handling and an empty mask for the child (the agent
/// ignores SIGPIPE, and ignored signals survive exec).
unsafe fn reset_signals() {
    // SAFETY: signal/sigprocmask are async-signal-safe.
    unsafe {
        for sig in [libc::SIGPIPE, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Writes `msg` to stderr and exits with 127 (async-signal-safe).
unsafe fn die(msg: &[u8]) -> ! {
    // SAFETY: errno, write and _exit are async-signal-safe; the number is
    // formatted on the stack.
    unsafe {
        let errno = *libc::__errno_location();
        let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
        let mut buf = [0u8; 24];
        let mut at = buf.len();
        buf[at - 1] = b'\n';
        at -= 1;
        let mut n = errno.unsigned_abs();
        loop {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let prefix = b" (errno ";
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::write(2, prefix.as_ptr().cast(), prefix.len());
        libc::write(2, buf[at..].as_ptr().cast(), buf.len() - at - 1);
        libc::write(2, b")\n".as_ptr().cast(), 2);
        libc::_exit(127)
    }
}

fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The command's whole environment.
pub fn environment(who: &Identity, interactive: bool) -> Vec<String> {
    vec![
        format!("HOME={}", who.home),
        format!("USER={}", who.name),
        format!("LOGNAME={}", who.name),
        format!("SHELL={}", who.shell),
        format!("PATH={PATH}"),
        format!(
            "TERM={}",
            if interactive {
                "xterm-256color"
            } else {
                "dumb"
            }
        ),
        "LANG=C.UTF-8".to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            home: "/home/alice".into(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn environment_is_fixed() {
        let env = environment(&alice(), false);
        assert!(env.contains(&"HOME=/home/alice".to_string()));
        assert!(env.contains(&"LOGNAME=alice".to_string()));
        assert!(env.contains(&"TERM=dumb".to_string()));
        assert!(environment(&alice(), true).contains(&"TERM=xterm-256color".to_string()));
    }

    #[test]
    fn spawn_plan_uses_home_unless_in_is_given() -> io::Result<()> {
        let who = alice();
        let mut plan = Plan {
            root: "/sysroot",
            shell: "/bin/sh",
            line: "echo $$",
            dir: None,
            who: &who,
            interactive: false,
            stdio: [0, 1, 2],
        };
        let s = Spawn::new(&plan)?;
        assert_eq!(
            (s.dir.to_bytes(), s.dir_required),
            (&b"/home/alice"[..], false)
        );
        assert_eq!(s.argv[2].to_bytes(), b"echo $$");
        plan.dir = Some("/srv");
        let s = Spawn::new(&plan)?;
        assert_eq!((s.dir.to_bytes(), s.dir_required), (&b"/srv"[..], true));
        Ok(())
    }
}
