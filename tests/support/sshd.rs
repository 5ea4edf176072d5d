//! A real OpenSSH server on 127.0.0.1 for the SSH tests and the repository
//! benchmark: its own host key, an authorized client key and a private
//! configuration in a temporary directory. Included with `#[path]` by
//! `tests/ssh.rs` and `benches/repo.rs`; every helper returns a `Result` so
//! the benchmark can report problems instead of panicking.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use b9::repo::ssh::{HostKeyPolicy, Remote};

/// Debian's OpenSSH server (package openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";

/// The repository id the b9 configurations written here use.
pub const REPO_ID: &str = "farm";

/// Checks that `sshd` and `ssh-keygen` are installed.
pub fn need_tools() -> Result<(), String> {
    if !Path::new(SSHD).exists() {
        return Err(format!(
            "{SSHD} is missing: install the Debian package openssh-server (scripts/setup does)"
        ));
    }
    let keygen = Command::new("ssh-keygen")
        .arg("-?")
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status();
    if keygen.is_err() {
        return Err(
            "ssh-keygen is missing: install the Debian package openssh-client (scripts/setup does)"
                .into(),
        );
    }
    Ok(())
}

/// Writes an unencrypted key pair `path` / `path.pub` of type `kind`.
pub fn keygen(path: &Path, kind: &str) -> Result<(), String> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-f"]).arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    let st = cmd
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if !st.success() {
        return Err(format!("ssh-keygen -t {kind} failed: {st}"));
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (and is closed now).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// A running `sshd -D` child with its own configuration; killed on drop.
pub struct Sshd {
    child: Child,
    /// The port it listens on (127.0.0.1 only).
    pub port: u16,
}

impl Sshd {
    /// Starts sshd on `127.0.0.1:port` with `host_key`, accepting the keys
    /// in `<dir>/authorized_keys` for any user (root included), with the
    /// in-process SFTP server. Returns once the port accepts connections.
    pub fn start(dir: &Path, port: u16, host_key: &Path) -> Result<Sshd, String> {
        need_tools()?;
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let cfg = dir.join(format!("sshd_config-{port}"));
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\n\
                 AuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n\
                 MaxStartups 100\n",
                host_key.display(),
                dir.join("authorized_keys").display(),
                dir.join("sshd.pid").display(),
            ),
        )
        .map_err(|e| format!("{}: {e}", cfg.display()))?;
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {SSHD}: {e}"))?;
        let mut sshd = Sshd { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = sshd.child.try_wait() {
                return Err(format!("sshd exited early: {st}"));
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!("sshd does not listen on port {port} after 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(sshd)
    }

    /// Stops this server and starts another on the same port with `host_key`.
    pub fn restart(&mut self, dir: &Path, host_key: &Path) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Sshd::start(dir, self.port, host_key)?;
        Ok(())
    }

    /// Kills the per-connection sshd processes (children of the listener),
    /// which breaks every open connection; the listener stays.
    pub fn kill_connections(&self) {
        let mut todo = children(self.child.id());
        let mut all = Vec::new();
        while let Some(pid) = todo.pop() {
            todo.extend(children(pid));
            all.push(pid);
        }
        for pid in all {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// The processes whose parent is `parent`, from /proc.
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..))
            .and_then(|after| after.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory with a host key, an authorized client key
/// (`id_ed25519`) and a running sshd.
pub struct Fixture {
    /// The directory (removed on drop); the server's files and anything a
    /// test puts there.
    pub dir: tempfile::TempDir,
    /// The server.
    pub sshd: Sshd,
}

impl Fixture {
    /// Creates the keys and starts the server.
    pub fn new() -> Result<Fixture, String> {
        need_tools()?;
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        keygen(&dir.path().join("host_ed25519"), "ed25519")?;
        keygen(&dir.path().join("id_ed25519"), "ed25519")?;
        let pubkey = std::fs::read_to_string(dir.path().join("id_ed25519.pub"))
            .map_err(|e| format!("id_ed25519.pub: {e}"))?;
        std::fs::write(dir.path().join("authorized_keys"), pubkey)
            .map_err(|e| format!("authorized_keys: {e}"))?;
        let sshd = Sshd::start(dir.path(), free_port()?, &dir.path().join("host_ed25519"))?;
        Ok(Fixture { dir, sshd })
    }

    /// `p` inside the fixture directory.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The server as a b9 remote (user root, key `id_ed25519`, known hosts
    /// in `b9/known_hosts`, trust on first use).
    pub fn remote(&self) -> Remote {
        Remote {
            host: "127.0.0.1".into(),
            port: self.sshd.port,
            user: "root".into(),
            key_file: self.path("id_ed25519"),
            known_hosts: self.path("b9/known_hosts"),
            host_key_policy: HostKeyPolicy::TrustOnFirstUse,
        }
    }

    /// The directory used as the repository's `remote_path`.
    pub fn remote_dir(&self) -> String {
        self.path("remote").to_string_lossy().into_owned()
    }

    /// Writes `<home>/.b9/b9.conf`: the shared-image cache at `cache`,
    /// `max_cached_shared_images` as given (`"Nothing"`, `"Just 2"`) and
    /// this server as repository [`REPO_ID`] with [`Fixture::remote_dir`]
    /// and the key `key`.
    pub fn write_config(
        &self,
        home: &Path,
        cache: &Path,
        max_cached: &str,
        key: &Path,
    ) -> Result<(), String> {
        let b9_dir = home.join(".b9");
        std::fs::create_dir_all(&b9_dir).map_err(|e| format!("{}: {e}", b9_dir.display()))?;
        let conf = b9_dir.join("b9.conf");
        // Written under a temporary name and renamed: tests run b9 processes
        // concurrently, and one must never read another's half-written file.
        let tmp = b9_dir.join(format!(".b9.conf.{:?}", std::thread::current().id()));
        std::fs::write(
            &tmp,
            format!(
                "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\n\
                 repository: Nothing\nrepository_cache: Just (Path \"{}\")\n\
                 unique_build_dirs: True\nverbosity: Nothing\n\
                 max_cached_shared_images: {max_cached}\n\n\
                 [{REPO_ID}-repo]\nremote_path: {}\nssh_priv_key_file: {}\n\
                 ssh_remote_host: 127.0.0.1\nssh_remote_port: {}\nssh_remote_user: root\n",
                cache.display(),
                self.remote_dir(),
                key.display(),
                self.sshd.port
            ),
        )
        .and_then(|()| std::fs::rename(&tmp, &conf))
        .map_err(|e| format!("{}: {e}", conf.display()))
    }
}
