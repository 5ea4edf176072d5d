//! The farm fixture (`fixtures/libvirt-hosts`, run once per test process):
//! two libvirt "hosts" (session daemons of two users, reached only over
//! `qemu+ssh` through a private sshd) and a user, `b9client`, that b9 runs
//! as, in a 0700 home neither host can read. Projects live there; `b9`
//! and `virsh` run as that user (`setpriv`, so signals reach b9 itself).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::project::{fixture, ok, repo, text};

/// What the fixture printed.
pub struct Hosts {
    /// The first host's URI.
    pub a: String,
    /// The second host's URI.
    pub b: String,
    /// The user b9 runs as.
    pub client: String,
    /// Its home.
    pub home: PathBuf,
    /// The guest kernel, readable by the client.
    pub kernel: PathBuf,
    /// Its modules.
    pub modules: PathBuf,
}

/// Held by each test for its whole run: the tests share the two hosts
/// and check that nothing is left on them, so they run one at a time.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fixture, set up on first use.
pub fn hosts() -> &'static Hosts {
    static HOSTS: OnceLock<Hosts> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let out = ok(
            &repo().join("fixtures/libvirt-hosts").to_string_lossy(),
            &[],
        );
        let get = |key: &str| -> String {
            out.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim_matches('\'').to_string())
                .unwrap_or_else(|| panic!("fixtures/libvirt-hosts printed no {key}=:\n{out}"))
        };
        Hosts {
            a: get("HOST_A"),
            b: get("HOST_B"),
            client: get("CLIENT"),
            home: get("CLIENT_HOME").into(),
            kernel: get("KERNEL").into(),
            modules: get("MODULES").into(),
        }
    })
}

/// A command run as the client user, with its own HOME.
pub fn as_client(program: &str) -> Command {
    let h = hosts();
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &h.client, "--regid", &h.client, "--init-groups"])
        .args(["env", &format!("HOME={}", h.home.display()), program]);
    c
}

/// `virsh -c URI ARGS...` as the client; its stdout.
pub fn virsh(uri: &str, args: &[&str]) -> String {
    let out = as_client("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "virsh {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The domains and the volumes other than the appliance's on a host.
pub fn leftovers(uri: &str) -> (Vec<String>, Vec<String>) {
    let names = |s: String| -> Vec<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let domains = names(virsh(uri, &["list", "--all", "--name"]));
    let volumes = names(virsh(uri, &["vol-list", "b9"]))
        .into_iter()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|v| !v.starts_with("b9-appliance-"))
        .collect();
    (domains, volumes)
}

/// The appliance's volumes on a host (`b9-appliance-*`).
pub fn appliance_volumes(uri: &str) -> Vec<String> {
    virsh(uri, &["vol-list", "b9"])
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| v.starts_with("b9-appliance-"))
        .map(String::from)
        .collect()
}

/// Neither host has a domain or a build volume left.
pub fn nothing_left() {
    let h = hosts();
    for uri in [&h.a, &h.b] {
        let (domains, volumes) = leftovers(uri);
        assert!(domains.is_empty(), "domains left on {uri}: {domains:?}");
        assert!(volumes.is_empty(), "volumes left on {uri}: {volumes:?}");
    }
}

/// A project in the client's home, with a busybox root image and a
/// b9.conf whose `[libvirt]` section is `libvirt`.
pub struct ClientProject {
    /// The project directory.
    pub path: PathBuf,
}

impl ClientProject {
    /// A fresh project.
    pub fn new(libvirt: &str) -> ClientProject {
        static N: AtomicU32 = AtomicU32::new(0);
        let h = hosts();
        let f = fixture();
        let path = h.home.join(format!(
            "farm-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::copy(&f.root, path.join("root.raw")).unwrap();
        std::fs::write(
            path.join("b9.conf"),
            format!(
                "{}[vm]\nbackend: libvirt\naccel: tcg\nkernel: {}\nmodules_dir: {}\n\
                 memory_mb: 512\ncpus: 1\nqemu_binary:\n\n[libvirt]\n{libvirt}\n",
                super::guest::global_section(600),
                h.kernel.display(),
                h.modules.display()
            ),
        )
        .unwrap();
        let project = ClientProject { path };
        project.chown();
        project
    }

    /// A file of the project.
    pub fn p(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Gives everything in the project to the client.
    pub fn chown(&self) {
        let owner = format!("{0}:{0}", hosts().client);
        ok("chown", &["-R", &owner, &self.path.to_string_lossy()]);
    }

    /// `b9 -c b9.conf ARGS` as the client in the project directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = as_client(env!("CARGO_BIN_EXE_b9"));
        c.arg("-c")
            .arg(self.p("b9.conf"))
            .args(args)
            .current_dir(&self.path)
            .stdin(Stdio::null());
        c
    }

    /// Writes `text` to `file` and builds it, every guest step run (a
    /// step cache hit would boot nothing on the hosts).
    pub fn build(&self, file: &str, text: &str) -> Output {
        std::fs::write(self.p(file), text).unwrap();
        self.chown();
        self.command(&["build", "--no-cache", "-f", file])
            .output()
            .unwrap()
    }
}

impl Drop for ClientProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Whether `path` is readable by `user` (it must not be for the hosts).
pub fn readable_by(user: &str, path: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid", user, "--regid", user, "--init-groups", "ls"])
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

/// The fixture user behind host `uri`.
pub fn host_user(uri: &str) -> &'static str {
    if uri == hosts().a {
        "b9hosta"
    } else {
        "b9hostb"
    }
}

/// Cuts every SSH connection to `user` (kills its sshd session
/// processes, by PID): the host is lost to b9, its libvirtd keeps
/// running and sees the connections close. How many were cut.
pub fn cut_connections(user: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-u", user, "-x", "sshd"])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    for pid in &pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", pid])
            .status();
    }
    pids.len()
}
