//! SSH/SFTP transport against a real OpenSSH server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use b9::repo::ssh::{HostKeyPolicy, Remote, Session, SshError};

const SSHD: &str = "/usr/sbin/sshd";

fn need_tools() {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: install the Debian package openssh-server (scripts/setup does)"
    );
    assert!(
        Command::new("ssh-keygen")
            .arg("-?")
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok(),
        "ssh-keygen is missing: install the Debian package openssh-client (scripts/setup does)"
    );
}

fn keygen(path: &Path, kind: &str) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-f"]).arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    let st = cmd.stdout(Stdio::null()).status().unwrap();
    assert!(st.success(), "ssh-keygen failed");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sshd -D` child with its own configuration; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
}

impl Sshd {
    fn start(dir: &Path, port: u16, host_key: &Path) -> Sshd {
        need_tools();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let cfg = dir.join(format!("sshd_config-{port}"));
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\n\
                 AuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
                host_key.display(),
                dir.join("authorized_keys").display(),
                dir.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start sshd (Debian package openssh-server)");
        let mut sshd = Sshd { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = sshd.child.try_wait().unwrap() {
                panic!("sshd exited early: {st}");
            }
            assert!(start.elapsed() < Duration::from_secs(10), "sshd not up");
            std::thread::sleep(Duration::from_millis(20));
        }
        sshd
    }

    /// Kills the per-connection sshd processes (children of the listener).
    fn kill_connections(&self) {
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

fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == parent {
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

/// Temp dir with a host key, a client key (authorized) and a running sshd.
struct Fixture {
    dir: tempfile::TempDir,
    sshd: Sshd,
}

impl Fixture {
    fn new() -> Fixture {
        need_tools();
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_ed25519"), "ed25519");
        keygen(&dir.path().join("id_ed25519"), "ed25519");
        let pubkey = std::fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
        std::fs::write(dir.path().join("authorized_keys"), pubkey).unwrap();
        let sshd = Sshd::start(dir.path(), free_port(), &dir.path().join("host_ed25519"));
        Fixture { dir, sshd }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn remote(&self) -> Remote {
        Remote {
            host: "127.0.0.1".into(),
            port: self.sshd.port,
            user: "root".into(),
            key_file: self.path("id_ed25519"),
            known_hosts: self.path("b9/known_hosts"),
            host_key_policy: HostKeyPolicy::TrustOnFirstUse,
        }
    }

    fn remote_dir(&self) -> String {
        self.path("remote").to_str().unwrap().to_owned()
    }
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn round_trip_mkdir_upload_list_download() {
    let fx = Fixture::new();
    let s = Session::connect(&fx.remote()).unwrap();
    let dir = format!("{}/a/b/b9_shared_images", fx.remote_dir());
    s.mkdir_p(&dir).unwrap();
    s.mkdir_p(&dir).unwrap(); // idempotent
    assert!(Path::new(&dir).is_dir());

    for (name, len) in [("empty", 0), ("small", 1234), ("odd", 3 * 255 * 1024 + 17)] {
        let data = pattern(len);
        let local = fx.path(name);
        std::fs::write(&local, &data).unwrap();
        let mut calls = Vec::new();
        s.upload(&local, &format!("{dir}/{name}"), &mut |n| calls.push(n))
            .unwrap();
        assert_eq!(calls.last().copied(), Some(len as u64));
        let back = fx.path(&format!("{name}.back"));
        s.download(&format!("{dir}/{name}"), &back, &mut |_| {})
            .unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), data, "{name}");
    }
    // Upload over an existing file replaces it.
    std::fs::write(fx.path("small"), b"new").unwrap();
    s.upload(&fx.path("small"), &format!("{dir}/small"), &mut |_| {})
        .unwrap();
    assert_eq!(std::fs::read(format!("{dir}/small")).unwrap(), b"new");

    s.mkdir_p(&format!("{dir}/sub")).unwrap();
    let list = s.list(&dir).unwrap();
    let got: Vec<_> = list
        .iter()
        .map(|e| (e.name.as_str(), e.size, e.is_dir))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], ("empty", 0, false));
    assert_eq!(got[1], ("odd", 3 * 255 * 1024 + 17, false));
    assert_eq!(got[2], ("small", 3, false));
    assert_eq!(got[3].0, "sub");
    assert!(got[3].2);

    s.remove(&format!("{dir}/small")).unwrap();
    assert!(!Path::new(&format!("{dir}/small")).exists());
    let e = s.remove(&format!("{dir}/small")).unwrap_err();
    assert!(e.to_string().starts_with("remote path "), "{e}");
    let e = s
        .download(&format!("{dir}/nope"), &fx.path("nope"), &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("/nope"), "{e}");
    assert!(!fx.path("nope").exists());
    s.close().unwrap();
}

#[test]
fn upload_and_download_50_mib() {
    let fx = Fixture::new();
    let s = Session::connect(&fx.remote()).unwrap();
    let data = pattern(50 << 20);
    std::fs::write(fx.path("big"), &data).unwrap();
    let dir = fx.remote_dir();
    s.mkdir_p(&dir).unwrap();
    let mut calls = 0;
    s.upload(&fx.path("big"), &format!("{dir}/big"), &mut |_| calls += 1)
        .unwrap();
    assert!(calls >= 1);
    assert_eq!(std::fs::read(format!("{dir}/big")).unwrap(), data);
    s.download(&format!("{dir}/big"), &fx.path("big.back"), &mut |_| {})
        .unwrap();
    assert_eq!(std::fs::read(fx.path("big.back")).unwrap(), data);
    // No temporary names left behind.
    let names: Vec<_> = s.list(&dir).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["big"]);
    let local: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("b9-part"))
        .collect();
    assert!(local.is_empty(), "{local:?}");
}

#[test]
fn rsa_key_authenticates() {
    let fx = Fixture::new();
    keygen(&fx.path("id_rsa"), "rsa");
    let mut keys = std::fs::read_to_string(fx.path("authorized_keys")).unwrap();
    keys.push_str(&std::fs::read_to_string(fx.path("id_rsa.pub")).unwrap());
    std::fs::write(fx.path("authorized_keys"), keys).unwrap();
    let remote = Remote {
        key_file: fx.path("id_rsa"),
        ..fx.remote()
    };
    let s = Session::connect(&remote).unwrap();
    s.mkdir_p(&fx.remote_dir()).unwrap();
}

#[test]
fn interrupted_upload_leaves_no_final_file() {
    let fx = Fixture::new();
    let s = Session::connect(&fx.remote()).unwrap();
    std::fs::write(fx.path("big"), pattern(50 << 20)).unwrap();
    let dir = fx.remote_dir();
    s.mkdir_p(&dir).unwrap();
    let target = format!("{dir}/big");
    let mut killed = false;
    let err = s
        .upload(&fx.path("big"), &target, &mut |n| {
            if !killed && n < 50 << 20 {
                killed = true;
                fx.sshd.kill_connections();
            }
        })
        .unwrap_err();
    assert!(killed, "no progress before the end");
    eprintln!("interrupted upload: {err}");
    assert!(
        !Path::new(&target).exists(),
        "final name exists after {err}"
    );
    // The session is dead; the error says so and later calls fail cleanly.
    assert!(s.list(&dir).is_err());
}

#[test]
fn wrong_key_is_a_clear_auth_error() {
    let fx = Fixture::new();
    keygen(&fx.path("other"), "ed25519");
    let remote = Remote {
        key_file: fx.path("other"),
        ..fx.remote()
    };
    let e = Session::connect(&remote).unwrap_err();
    assert!(matches!(e, SshError::Auth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("authentication with key ")
            && msg.contains("/other failed for root@127.0.0.1:"),
        "{msg}"
    );
    let missing = Remote {
        key_file: fx.path("missing"),
        ..fx.remote()
    };
    let e = Session::connect(&missing).unwrap_err();
    assert!(matches!(e, SshError::Key { .. }), "{e:?}");
}

#[test]
fn unreachable_port_is_a_clear_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let remote = Remote {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        key_file: PathBuf::from("/nonexistent"),
        known_hosts: dir.path().join("known_hosts"),
        host_key_policy: HostKeyPolicy::TrustOnFirstUse,
    };
    need_tools();
    keygen(&dir.path().join("k"), "ed25519");
    let remote = Remote {
        key_file: dir.path().join("k"),
        ..remote
    };
    let e = Session::connect(&remote).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("cannot connect to root@127.0.0.1:{port}: ")),
        "{msg}"
    );
}

#[test]
fn trust_on_first_use_records_and_detects_changed_key() {
    let mut fx = Fixture::new();
    let remote = fx.remote();
    assert!(!remote.known_hosts.exists());
    Session::connect(&remote).unwrap();
    let recorded = std::fs::read_to_string(&remote.known_hosts).unwrap();
    let host_pub = std::fs::read_to_string(fx.path("host_ed25519.pub")).unwrap();
    let key_b64 = host_pub.split_whitespace().nth(1).unwrap();
    assert!(
        recorded.starts_with(&format!("[127.0.0.1]:{} ", remote.port))
            && recorded.contains(key_b64),
        "{recorded}"
    );
    // Second connection: known key, file unchanged.
    Session::connect(&remote).unwrap();
    assert_eq!(
        std::fs::read_to_string(&remote.known_hosts).unwrap(),
        recorded
    );
    // Strict accepts the recorded key.
    Session::connect(&Remote {
        host_key_policy: HostKeyPolicy::Strict,
        ..remote.clone()
    })
    .unwrap();

    // Same port, another host key.
    keygen(&fx.path("host2"), "ed25519");
    let port = fx.sshd.port;
    drop(std::mem::replace(
        &mut fx.sshd,
        Sshd {
            child: Command::new("true").spawn().unwrap(),
            port,
        },
    ));
    fx.sshd = Sshd::start(fx.dir.path(), port, &fx.path("host2"));
    let e = Session::connect(&remote).unwrap_err();
    assert!(
        matches!(e, SshError::HostKeyChanged { line: 1, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "host key of 127.0.0.1:{port} changed (known_hosts line 1"
        )) && msg.contains("b9/known_hosts"),
        "{msg}"
    );
    // AcceptAny ignores known_hosts.
    Session::connect(&Remote {
        host_key_policy: HostKeyPolicy::AcceptAny,
        ..remote
    })
    .unwrap();
}

#[test]
fn strict_rejects_unknown_host() {
    let fx = Fixture::new();
    let remote = Remote {
        host_key_policy: HostKeyPolicy::Strict,
        ..fx.remote()
    };
    let e = Session::connect(&remote).unwrap_err();
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
    assert!(e.to_string().contains("known_hosts"), "{e}");
    assert!(!remote.known_hosts.exists());
}

/// `cargo test --release --test ssh -- --ignored --nocapture bench`:
/// 1 GiB push and pull over loopback, compared with OpenSSH `scp`.
#[test]
#[ignore]
fn bench_1gib_vs_scp() {
    let fx = Fixture::new();
    let size: usize = 1 << 30;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(fx.path("gib")).unwrap();
        let block = pattern(8 << 20);
        for _ in 0..size / block.len() {
            f.write_all(&block).unwrap();
        }
    }
    let dir = fx.remote_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mbps = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
    let s = Session::connect(&fx.remote()).unwrap();
    let t = Instant::now();
    s.upload(&fx.path("gib"), &format!("{dir}/gib"), &mut |_| {})
        .unwrap();
    let up = t.elapsed();
    let t = Instant::now();
    s.download(&format!("{dir}/gib"), &fx.path("gib.back"), &mut |_| {})
        .unwrap();
    let down = t.elapsed();
    std::fs::remove_file(format!("{dir}/gib")).unwrap();
    std::fs::remove_file(fx.path("gib.back")).unwrap();

    let scp = |from: &str, to: &str| {
        let t = Instant::now();
        let st = Command::new("scp")
            .args(["-q", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-P", &fx.sshd.port.to_string(), "-i"])
            .arg(fx.path("id_ed25519"))
            .args([from, to])
            .status()
            .unwrap();
        assert!(st.success());
        t.elapsed()
    };
    let local = fx.path("gib").to_str().unwrap().to_owned();
    let scp_up = scp(&local, &format!("root@127.0.0.1:{dir}/gib"));
    let scp_down = scp(
        &format!("root@127.0.0.1:{dir}/gib"),
        &format!("{local}.back"),
    );
    println!(
        "upload   b9 {:.0} MB/s ({:.2} s)  scp {:.0} MB/s ({:.2} s)  ratio {:.2}",
        mbps(up),
        up.as_secs_f64(),
        mbps(scp_up),
        scp_up.as_secs_f64(),
        up.as_secs_f64() / scp_up.as_secs_f64()
    );
    println!(
        "download b9 {:.0} MB/s ({:.2} s)  scp {:.0} MB/s ({:.2} s)  ratio {:.2}",
        mbps(down),
        down.as_secs_f64(),
        mbps(scp_down),
        scp_down.as_secs_f64(),
        down.as_secs_f64() / scp_down.as_secs_f64()
    );
}

/// Runs the b9 executable with its own HOME and a config naming the fixture's sshd as repo `farm`.
fn b9_with_repo(f: &Fixture, args: &[&str]) -> std::process::Output {
    let home = f.path("home");
    std::fs::create_dir_all(home.join(".b9")).unwrap();
    std::fs::write(
        home.join(".b9/b9.conf"),
        format!(
            "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\n\
             repository_cache: Just (Path \"{}\")\nunique_build_dirs: True\nverbosity: Nothing\nmax_cached_shared_images: Just 2\n\n\
             [farm-repo]\nremote_path: {}\nssh_priv_key_file: {}\nssh_remote_host: 127.0.0.1\nssh_remote_port: {}\nssh_remote_user: root\n",
            f.path("cache").display(),
            f.remote_dir(),
            f.path("id_ed25519").display(),
            f.sshd.port
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_b9"))
        .args(args)
        .current_dir(f.dir.path())
        .env("HOME", &home)
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn push_clean_pull_and_build_from_the_pulled_image() {
    let f = Fixture::new();
    std::fs::write(
        f.path("share.b9"),
        "Artifact (IID \"base\") (VmImages [ImageTarget (Share \"base-os\" QCow2 KeepSize) (EmptyImage \"root\" Ext4 Raw (ImageSize 16 MB)) NotMounted] NoVmScript)\n",
    )
    .unwrap();
    ok(b9_with_repo(&f, &["build", "-f", "share.b9"]));
    let pushed = ok(b9_with_repo(&f, &["-r", "farm", "push", "base-os"]));
    assert!(pushed.contains("pushed base-os"), "{pushed}");
    // The remote holds image and metadata byte-identical to the cache.
    let local = f.path("cache/local-repo/b9_shared_images");
    let remote = f.path("remote/b9_shared_images");
    let mut names: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.retain(|n| !n.starts_with('.'));
    assert_eq!(names.len(), 2, "{names:?}");
    for n in &names {
        assert!(
            std::fs::read(local.join(n)).unwrap() == std::fs::read(remote.join(n)).unwrap(),
            "{n} differs"
        );
    }
    assert!(std::fs::read_dir(&remote).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("b9-part")));
    // clean-local keeps the newest 2 (max_cached_shared_images): nothing goes.
    assert!(ok(b9_with_repo(&f, &["clean-local"])).contains("0 cached images removed"));
    // A fresh machine: an empty local cache.
    std::fs::remove_dir_all(f.path("cache")).unwrap();
    let pulled = ok(b9_with_repo(&f, &["-r", "farm", "pull", "base-os"]));
    assert!(pulled.contains("pulled base-os"), "{pulled}");
    let listed = ok(b9_with_repo(&f, &["-r", "farm", "list"]));
    assert!(listed.contains("base-os"), "{listed}");
    std::fs::write(
        f.path("from.b9"),
        "Artifact (IID \"d\") (VmImages [ImageTarget (LocalFile (Image \"out/d.raw\" Raw Ext4) KeepSize) (From \"base-os\" KeepSize) (MountPoint \"/\")] NoVmScript)\n",
    )
    .unwrap();
    ok(b9_with_repo(&f, &["build", "-f", "from.b9"]));
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(f.path("out/d.raw"))
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    // Without -r there is nothing to push to.
    let out = b9_with_repo(&f, &["push", "base-os"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No repository specified"));
}
