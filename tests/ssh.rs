//! SSH/SFTP transport against a real OpenSSH server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use b9::lang::syntax::{FileSystem, ImageType};
use b9::repo::ssh::{HostKeyPolicy, Remote, Session, SshError};
use b9::repo::{LocalRepo, SharedImage};

#[allow(dead_code)]
#[path = "support/sshd.rs"]
mod sshd;

use sshd::{free_port, keygen, need_tools};

/// The shared fixture, unwrapped: a test without its server cannot run.
struct Fixture(sshd::Fixture);

impl std::ops::Deref for Fixture {
    type Target = sshd::Fixture;
    fn deref(&self) -> &sshd::Fixture {
        &self.0
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut sshd::Fixture {
        &mut self.0
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture(sshd::Fixture::new().unwrap())
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
        s.upload(&local, &format!("{dir}/{name}"), &mut |n, _| calls.push(n))
            .unwrap();
        assert_eq!(calls.last().copied(), Some(len as u64));
        let back = fx.path(&format!("{name}.back"));
        s.download(&format!("{dir}/{name}"), &back, &mut |_, _| {})
            .unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), data, "{name}");
    }
    // Upload over an existing file replaces it.
    std::fs::write(fx.path("small"), b"new").unwrap();
    s.upload(&fx.path("small"), &format!("{dir}/small"), &mut |_, _| {})
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
        .download(&format!("{dir}/nope"), &fx.path("nope"), &mut |_, _| {})
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
    s.upload(&fx.path("big"), &format!("{dir}/big"), &mut |_, _| {
        calls += 1
    })
    .unwrap();
    assert!(calls >= 1);
    assert_eq!(std::fs::read(format!("{dir}/big")).unwrap(), data);
    s.download(&format!("{dir}/big"), &fx.path("big.back"), &mut |_, _| {})
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
    keygen(&fx.path("id_rsa"), "rsa").unwrap();
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
        .upload(&fx.path("big"), &target, &mut |n, _| {
            if !killed && n < 50 << 20 {
                killed = true;
                fx.sshd.kill_connections();
            }
        })
        .unwrap_err();
    assert!(killed, "no progress before the end");
    eprintln!("interrupted upload: {err}");
    assert!(matches!(err, SshError::Connection { .. }), "{err:?}");
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
    keygen(&fx.path("other"), "ed25519").unwrap();
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
    let port = free_port().unwrap();
    let remote = Remote {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        key_file: PathBuf::from("/nonexistent"),
        known_hosts: dir.path().join("known_hosts"),
        host_key_policy: HostKeyPolicy::TrustOnFirstUse,
    };
    need_tools().unwrap();
    keygen(&dir.path().join("k"), "ed25519").unwrap();
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
    keygen(&fx.path("host2"), "ed25519").unwrap();
    let port = fx.sshd.port;
    let (dir, host2) = (fx.dir.path().to_path_buf(), fx.path("host2"));
    fx.sshd.restart(&dir, &host2).unwrap();
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

/// A b9 command run in the fixture directory with HOME `<fixture>/<home>`,
/// whose b9.conf names the fixture's sshd as repo `farm` with the key
/// `<fixture>/<key>`, the cache `<fixture>/cache` and a limit of 2 versions.
fn b9_cmd(f: &Fixture, home: &str, key: &str, args: &[&str]) -> Command {
    let home = f.path(home);
    f.write_config(&home, &f.path("cache"), "Just 2", &f.path(key))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_b9"));
    cmd.args(args).current_dir(f.dir.path()).env("HOME", &home);
    cmd
}

/// Runs b9 with HOME `<fixture>/home` and the authorized key (see [`b9_cmd`]).
fn b9_with_repo(f: &Fixture, args: &[&str]) -> std::process::Output {
    b9_cmd(f, "home", "id_ed25519", args).output().unwrap()
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
    // clean-remote forgets the metadata copy, not the remote's files.
    let cleared = ok(b9_with_repo(&f, &["-r", "farm", "clean-remote"]));
    assert!(cleared.contains("cleared the metadata cache of `farm`"));
    let listed = ok(b9_with_repo(&f, &["-r", "farm", "list"]));
    assert!(listed.contains("NO SHARED IMAGES"), "{listed}");
    assert_eq!(std::fs::read_dir(&remote).unwrap().count(), 2);
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

/// Puts a raw image `name` (build id `id`) holding `data` into the
/// fixture's cache, as a `Share` build would.
fn cache_image(f: &Fixture, name: &str, id: &str, data: &[u8]) -> SharedImage {
    let img = SharedImage {
        name: name.into(),
        date: "2024-01-01-00:00:00".into(),
        build_id: id.into(),
        image_type: ImageType::Raw,
        fs: FileSystem::Ext4,
    };
    let src = f.path(&format!("{name}-{id}.raw"));
    std::fs::write(&src, data).unwrap();
    LocalRepo::open(&f.path("cache"))
        .unwrap()
        .share(&img, &src, None)
        .unwrap();
    img
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names in the remote repository directory (none if it is missing).
fn remote_names(f: &Fixture) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(f.path("remote/b9_shared_images")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A partial upload in the remote repository: a temporary file with data.
fn partial_upload(f: &Fixture) -> Option<String> {
    remote_names(f).into_iter().find(|n| {
        n.contains(".b9-part-")
            && std::fs::metadata(f.path(&format!("remote/b9_shared_images/{n}")))
                .is_ok_and(|m| m.len() > 0)
    })
}

/// What a user sees of the remote after pulling its metadata: `b9 list -r`
/// shows no version and `b9 pull NAME` finds nothing.
fn assert_remote_shows_nothing(f: &Fixture, name: &str) {
    ok(b9_with_repo(f, &["-r", "farm", "pull"]));
    let listed = ok(b9_with_repo(f, &["-r", "farm", "list"]));
    assert!(listed.contains("NO SHARED IMAGES"), "{listed}");
    let out = b9_with_repo(f, &["-r", "farm", "pull", name]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("no shared image `{name}`")),
        "{}",
        stderr_of(&out)
    );
}

/// Pushes `img` again and checks that the remote then holds its image and
/// `.b9si` byte-identical to the cache, and that list and pull see it.
fn assert_retry_succeeds(f: &Fixture, img: &SharedImage) {
    let pushed = ok(b9_with_repo(f, &["-r", "farm", "push", &img.name]));
    assert!(
        pushed.contains(&format!("pushed {} {}", img.name, img.build_id)),
        "{pushed}"
    );
    let local = LocalRepo::open(&f.path("cache")).unwrap();
    for (mine, file) in [
        (local.image_path(img), img.image_file_name()),
        (local.info_path(img), img.info_file_name()),
    ] {
        let theirs = f.path(&format!("remote/b9_shared_images/{file}"));
        assert!(
            std::fs::read(&mine).unwrap() == std::fs::read(&theirs).unwrap(),
            "{file} differs"
        );
    }
    ok(b9_with_repo(f, &["-r", "farm", "pull"]));
    let listed = ok(b9_with_repo(f, &["-r", "farm", "list"]));
    assert!(listed.contains(&img.build_id), "{listed}");
}

#[test]
fn killed_push_leaves_no_visible_image_and_a_retry_succeeds() {
    let f = Fixture::new();
    // Large enough that the upload is caught midway (64 MiB, no zeros).
    let img = cache_image(&f, "big", "0001", &pattern(64 << 20));
    let mut child = b9_cmd(&f, "home", "id_ed25519", &["-r", "farm", "push", "big"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_while_running(&mut child, || partial_upload(&f).is_some());
    child.kill().unwrap();
    child.wait().unwrap();
    let part = partial_upload(&f).unwrap();
    // Only the temporary file is there: no image and no .b9si under their
    // final names.
    let names = remote_names(&f);
    assert_eq!(names, std::slice::from_ref(&part), "{names:?}");
    assert!(part.starts_with(&img.image_file_name()), "{part}");
    assert_remote_shows_nothing(&f, "big");
    assert_retry_succeeds(&f, &img);
}

/// Every file and directory under `dir`, relative paths, sorted.
fn paths_under(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
            all.push(
                e.path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    all.sort();
    all
}

/// Waits until `reached()` holds while b9 runs (a transfer caught
/// midway); fails when b9 finishes first.
fn wait_while_running(child: &mut std::process::Child, reached: impl Fn() -> bool) {
    while !reached() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("b9 finished ({st}) before it could be interrupted");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Runs b9 with `args` (against the fixture's remote), sends it SIGINT
/// (Ctrl-C) once `started()` holds, and checks that it fails as
/// interrupted.
fn interrupt_b9(f: &Fixture, args: &[&str], started: impl Fn() -> bool) {
    let mut child = b9_cmd(f, "home", "id_ed25519", args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_while_running(&mut child, started);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted by Ctrl-C"), "{err}");
}

#[test]
fn ctrl_c_during_push_removes_the_partial_upload() {
    let f = Fixture::new();
    let img = cache_image(&f, "big", "0003", &pattern(64 << 20));
    interrupt_b9(&f, &["-r", "farm", "push", "big"], || {
        partial_upload(&f).is_some()
    });
    let names = remote_names(&f);
    assert!(names.is_empty(), "left on the remote: {names:?}");
    assert_retry_succeeds(&f, &img);
}

#[test]
fn ctrl_c_during_pull_removes_the_partial_download() {
    let f = Fixture::new();
    let img = remote_only(&f, "big", "0004", &pattern(64 << 20));
    interrupt_b9(&f, &["-r", "farm", "pull", "big"], || {
        f.path("cache").is_dir()
            && paths_under(&f.path("cache"))
                .iter()
                .any(|n| n.contains(".b9-part-"))
    });
    let left: Vec<String> = paths_under(&f.path("cache"))
        .into_iter()
        .filter(|n| n.contains("b9-part") || n.contains("b9-pull") || n.contains(".raw"))
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
    assert_pull_succeeds(&f, &img, &pattern(64 << 20));
}

/// A version pushed to the remote and absent from the (empty) cache.
fn remote_only(f: &Fixture, name: &str, id: &str, data: &[u8]) -> SharedImage {
    let img = cache_image(f, name, id, data);
    ok(b9_with_repo(f, &["-r", "farm", "push", name]));
    std::fs::remove_dir_all(f.path("cache")).unwrap();
    img
}

/// Pulls `img` and checks that the cache then holds it with `data`.
fn assert_pull_succeeds(f: &Fixture, img: &SharedImage, data: &[u8]) {
    let pulled = ok(b9_with_repo(f, &["-r", "farm", "pull", &img.name]));
    let want = format!("pulled {} {}", img.name, img.build_id);
    assert!(pulled.contains(&want), "{pulled}");
    let local = LocalRepo::open(&f.path("cache")).unwrap();
    assert!(std::fs::read(local.image_path(img)).unwrap() == data);
}

#[test]
fn the_next_pull_removes_what_a_killed_pull_left() {
    let f = Fixture::new();
    let img = remote_only(&f, "big", "0006", &pattern(64 << 20));
    let mut child = b9_cmd(&f, "home", "id_ed25519", &["-r", "farm", "pull", "big"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let leftovers = || {
        if !f.path("cache").is_dir() {
            return Vec::new();
        }
        paths_under(&f.path("cache"))
            .into_iter()
            .filter(|n| n.contains(".b9-p"))
            .collect::<Vec<_>>()
    };
    wait_while_running(&mut child, || !leftovers().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!leftovers().is_empty());
    assert_pull_succeeds(&f, &img, &pattern(64 << 20));
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[test]
fn push_cut_off_by_the_server_fails_cleanly_and_a_retry_succeeds() {
    let f = Fixture::new();
    let img = cache_image(&f, "big", "0002", &pattern(64 << 20));
    let mut child = b9_cmd(&f, "home", "id_ed25519", &["-r", "farm", "push", "big"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_while_running(&mut child, || partial_upload(&f).is_some());
    // The server side of the connection dies (as on a network failure).
    f.sshd.kill_connections();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    eprintln!("push cut off by the server: {err}");
    assert!(
        err.contains(&format!(
            "SSH connection to root@127.0.0.1:{}: connection closed",
            f.sshd.port
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Nothing under a final name; the temporary file may be left (the
    // connection was gone before b9 could remove it).
    let names = remote_names(&f);
    assert!(names.iter().all(|n| n.contains(".b9-part-")), "{names:?}");
    assert_remote_shows_nothing(&f, "big");
    assert_retry_succeeds(&f, &img);
}

#[test]
fn push_with_a_wrong_key_names_key_and_host() {
    let f = Fixture::new();
    keygen(&f.path("other"), "ed25519").unwrap();
    cache_image(&f, "base-os", "0003", b"tiny image");
    let out = b9_cmd(&f, "home", "other", &["-r", "farm", "push", "base-os"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "authentication with key {} failed for root@127.0.0.1:{}",
            f.path("other").display(),
            f.sshd.port
        )),
        "{err}"
    );
    assert!(remote_names(&f).is_empty());
}

#[test]
fn push_to_a_closed_port_fails_at_once_with_a_clear_error() {
    let f = Fixture::new();
    cache_image(&f, "base-os", "0004", b"tiny image");
    let closed = free_port().unwrap();
    let home = f.path("home");
    f.write_config(&home, &f.path("cache"), "Just 2", &f.path("id_ed25519"))
        .unwrap();
    let conf = home.join(".b9/b9.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let text = text.replace(
        &format!("ssh_remote_port: {}", f.sshd.port),
        &format!("ssh_remote_port: {closed}"),
    );
    std::fs::write(&conf, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_b9"))
        .args(["-r", "farm", "push", "base-os"])
        .current_dir(f.dir.path())
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    eprintln!("push to a closed port: {err}");
    assert!(
        err.contains(&format!("cannot connect to root@127.0.0.1:{closed}: ")),
        "{err}"
    );
    // Refused, not left to the connection timeout.
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("timed out"), "{err}");
}

#[test]
fn two_b9_processes_pull_into_one_cache() {
    const PULLS: usize = 4;
    let f = Fixture::new();
    let img = remote_only(&f, "base-os", "0005", &pattern(4 << 20));
    let f = std::sync::Arc::new(f);
    let pullers: Vec<_> = (0..2)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || {
                (0..PULLS)
                    .map(|_| b9_with_repo(&f, &["-r", "farm", "pull", "base-os"]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for p in pullers {
        for out in p.join().unwrap() {
            let pulled = ok(out);
            assert!(pulled.contains("pulled base-os 0005"), "{pulled}");
        }
    }
    let listed = ok(b9_with_repo(&f, &["list"]));
    let rows: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with("base-os "))
        .collect();
    assert_eq!(rows.len(), 1, "{listed}");
    // The cache: the image identical to the remote one, its .b9si, the
    // remote's metadata, locks; nothing temporary.
    let local = LocalRepo::open(&f.path("cache")).unwrap();
    assert_eq!(
        std::fs::read(local.image_path(&img)).unwrap(),
        std::fs::read(f.path(&format!(
            "remote/b9_shared_images/{}",
            img.image_file_name()
        )))
        .unwrap()
    );
    let all = paths_under(&f.path("cache"));
    assert_eq!(
        all,
        [
            "local-repo",
            "local-repo/.lock",
            "local-repo/b9_shared_images",
            "local-repo/b9_shared_images/base-os_0005.b9si",
            "local-repo/b9_shared_images/base-os_0005.raw",
            "remote-repos",
            "remote-repos/farm",
            "remote-repos/farm/.lock",
            "remote-repos/farm/b9_shared_images",
            "remote-repos/farm/b9_shared_images/base-os_0005.b9si",
        ]
    );
}

/// Checks what a transfer's progress callback received: increasing byte
/// counts that end at the file size, with the size as total throughout.
fn assert_progress(calls: &[(u64, u64)], size: u64) {
    assert!(!calls.is_empty(), "no progress reported");
    assert!(
        calls.windows(2).all(|w| w[0].0 <= w[1].0),
        "not increasing: {calls:?}"
    );
    assert_eq!(calls.last().map(|c| c.0), Some(size), "{calls:?}");
    assert!(calls.iter().all(|c| c.1 == size), "{calls:?}");
}

#[test]
fn push_and_pull_report_the_image_bytes_as_they_go() {
    let f = Fixture::new();
    let data = pattern(9 << 20);
    let img = cache_image(&f, "big", "b1", &data);
    let repo = b9::config::RemoteRepo {
        id: "farm".into(),
        remote_path: f.remote_dir(),
        ssh_priv_key_file: f.path("id_ed25519"),
        ssh_remote_host: "127.0.0.1".into(),
        ssh_remote_port: f.remote().port,
        ssh_remote_user: "root".into(),
    };
    let local = LocalRepo::open(&f.path("cache")).unwrap();
    let b9_dir = f.path("b9");
    let mut calls = Vec::new();
    b9::repo::remote::push(&local, &repo, &b9_dir, "big", &mut |d, t| {
        calls.push((d, t))
    })
    .unwrap();
    assert_progress(&calls, data.len() as u64);
    // A fresh cache pulls it back.
    let fresh = LocalRepo::open(&f.path("cache2")).unwrap();
    let mut calls = Vec::new();
    let pulled = b9::repo::remote::pull_image(
        &fresh,
        &f.path("cache2"),
        std::slice::from_ref(&repo),
        &b9_dir,
        "big",
        None,
        &mut |d, t| calls.push((d, t)),
    )
    .unwrap();
    assert_eq!(pulled.build_id, img.build_id);
    assert_progress(&calls, data.len() as u64);
}

#[test]
fn push_and_pull_show_no_progress_when_stderr_is_not_a_terminal() {
    let f = Fixture::new();
    cache_image(&f, "big", "b1", &pattern(9 << 20));
    let out = b9_with_repo(&f, &["-r", "farm", "push", "big"]);
    let err = stderr_of(&out);
    ok(out);
    assert!(!err.contains("pushing") && !err.contains('\r'), "{err:?}");
    std::fs::remove_dir_all(f.path("cache")).unwrap();
    let out = b9_with_repo(&f, &["-r", "farm", "pull", "big"]);
    let err = stderr_of(&out);
    ok(out);
    assert!(!err.contains("pulling") && !err.contains('\r'), "{err:?}");
}

#[test]
fn push_shows_progress_on_a_terminal_but_not_with_q() {
    let f = Fixture::new();
    cache_image(&f, "big", "b1", &pattern(32 << 20));
    // `script` runs b9 on a pseudo-terminal and records what it printed.
    let on_tty = |args: &str| {
        let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_b9"));
        let b9 = b9_cmd(&f, "home", "id_ed25519", &[]);
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(f.dir.path())
            .envs(b9.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = on_tty("-r farm push big");
    assert!(shown.contains("pushing big"), "{shown:?}");
    assert!(shown.contains("MiB"), "{shown:?}");
    let quiet = on_tty("-q -r farm push big");
    assert!(!quiet.contains("pushing big"), "{quiet:?}");
    assert!(quiet.contains("pushed big"), "{quiet:?}");
}
