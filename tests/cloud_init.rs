//! `b9 build` of CloudInit artifacts end to end, checked with independent
//! tools (isoinfo, isovfy, fsck.vfat, blkid, mtools) and with cloud-init's own
//! NoCloud seed reader and schema check.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod common;
use common::fixture::copy_tree;

/// A copy of `fixtures/lang` in a temporary directory, with its own HOME.
struct Project {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    dir: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let dir = tmp.path().join("project");
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lang"),
            &dir,
        );
        std::fs::create_dir_all(&home).unwrap();
        Project {
            _tmp: tmp,
            home,
            dir,
        }
    }

    fn b9(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_b9"));
        cmd.args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn config(&self, extra: &str) -> String {
        let p = self.dir.join("test.conf");
        std::fs::write(
            &p,
            format!(
                "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Nothing\nunique_build_dirs: True\nverbosity: Just LogInfo\n{extra}"
            ),
        )
        .unwrap();
        p.to_string_lossy().into_owned()
    }
}

/// Runs a tool; the test fails (naming the package) when it is missing.
fn tool(name: &str, package: &str, args: &[&str]) -> Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} ({package}) is needed: {e}; run scripts/setup"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn multi_host_build_produces_valid_media() {
    let p = Project::new();
    let out = p.b9(&["build", "-f", "multi-host.b9"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The build directory is gone, nothing half-written is left.
    let leftovers: Vec<_> = std::fs::read_dir(&p.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("BUILD-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Nine outputs, and the markers of the three directory outputs.
    let outputs: Vec<_> = std::fs::read_dir(p.dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().ends_with(".b9-output"))
        .collect();
    assert_eq!(outputs.len(), 9, "{outputs:?}");

    for host in ["db1", "app1", "web1"] {
        let iso = p.dir.join(format!("out/{host}.iso"));
        let iso = iso.to_str().unwrap();
        let d = stdout(&tool("isoinfo", "genisoimage", &["-d", "-i", iso]));
        assert!(d.contains("Volume id: cidata"), "{d}");
        assert!(d.contains("Rock Ridge signatures"), "{d}");
        assert!(d.contains("Joliet"), "{d}");
        let v = tool("isovfy", "genisoimage", &[iso]);
        let report = stdout(&v) + &stderr(&v);
        assert!(
            !report.to_lowercase().contains("error") || report.contains("No errors found"),
            "{report}"
        );
        let meta = stdout(&tool(
            "isoinfo",
            "genisoimage",
            &["-R", "-x", "/meta-data", "-i", iso],
        ));
        assert!(meta.contains(&format!("local-hostname: {host}")), "{meta}");
        let listing = stdout(&tool("isoinfo", "genisoimage", &["-R", "-l", "-i", iso]));
        let script = listing
            .lines()
            .map(str::trim_end)
            .find(|l| l.ends_with("bootstrap.sh"))
            .unwrap_or_default();
        assert!(script.starts_with("-rwxr-xr-x"), "{listing}");
        let hosts = stdout(&tool(
            "isoinfo",
            "genisoimage",
            &["-R", "-x", "/etc/hosts", "-i", iso],
        ));
        assert!(hosts.contains(host), "{hosts}");

        let vfat = p.dir.join(format!("out/{host}.vfat"));
        let vfat = vfat.to_str().unwrap();
        let fsck = tool("fsck.vfat", "dosfstools", &["-n", vfat]);
        assert!(fsck.status.success(), "{}{}", stdout(&fsck), stderr(&fsck));
        let label = stdout(&tool(
            "blkid",
            "util-linux",
            &["-o", "value", "-s", "LABEL", vfat],
        ));
        assert_eq!(label.trim().to_lowercase(), "cidata");
        let sys = stdout(&tool("mtype", "mtools", &["-i", vfat, "::/app/sys.config"]));
        assert!(sys.contains("inet_dist_listen_min"), "{sys}");

        let dir = p.dir.join(format!("out/{host}"));
        assert_eq!(mode(&dir.join("scripts/bootstrap.sh")), 0o755);
        let user_data = std::fs::read_to_string(dir.join("user-data")).unwrap();
        assert!(user_data.starts_with("#cloud-config\n\n"), "{user_data}");
        // Both runcmd lists, merged in order.
        let first = user_data.find("role ").unwrap_or(usize::MAX);
        let second = user_data.find("chronyd").unwrap_or(0);
        assert!(first < second, "{user_data}");
        let sys = std::fs::read_to_string(dir.join("app/sys.config")).unwrap();
        assert!(sys.ends_with('.'), "{sys}");
        assert!(
            sys.contains("{inet_dist_listen_max,9155}")
                || sys.contains("{inet_dist_listen_max, 9155}"),
            "{sys}"
        );
    }
}

#[test]
fn cloud_init_reads_the_media_and_accepts_the_user_data() {
    let p = Project::new();
    let out = p.b9(&["build", "-f", "multi-host.b9"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seed = p.dir.join("out/web1/");
    let script = format!(
        "import cloudinit.util as u\nmd, ud, vd = u.read_seeded({:?})\nprint(md['local-hostname'])\nprint(md['instance-id'])\nprint(ud.decode().splitlines()[0])",
        format!("{}/", seed.display())
    );
    let py = tool("/usr/bin/python3", "cloud-init", &["-c", &script]);
    assert!(py.status.success(), "{}", stderr(&py));
    let text = stdout(&py);
    assert!(text.starts_with("web1"), "{text}");
    assert!(text.contains("#cloud-config"), "{text}");
    let schema = tool(
        "cloud-init",
        "cloud-init",
        &[
            "schema",
            "--config-file",
            seed.join("user-data").to_str().unwrap(),
        ],
    );
    assert!(
        schema.status.success(),
        "{}{}",
        stdout(&schema),
        stderr(&schema)
    );
    assert!(
        stdout(&schema).contains("Valid cloud-config"),
        "{}",
        stdout(&schema)
    );
}

#[test]
fn reproducible_with_source_date_epoch() {
    let p = Project::new();
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let read = |p: &Project| -> Vec<Vec<u8>> {
        [
            "out/db1.iso",
            "out/db1.vfat",
            "out/db1/user-data",
            "out/db1/app/sys.config",
        ]
        .iter()
        .map(|f| std::fs::read(p.dir.join(f)).unwrap())
        .collect()
    };
    // `-u`: the fixture puts ${build_id} into meta-data, so the id must be stable too.
    assert!(p
        .b9(&["-u", "build", "-f", "multi-host.b9"], &epoch)
        .status
        .success());
    let first = read(&p);
    std::thread::sleep(Duration::from_millis(1100));
    // Touch the sources so their times differ between the runs.
    let hosts = p.dir.join("multi-host/etc/hosts.in");
    let text = std::fs::read(&hosts).unwrap();
    std::fs::write(&hosts, text).unwrap();
    let out = p.b9(&["-u", "build", "-f", "multi-host.b9"], &epoch);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        read(&p) == first,
        "outputs differ between two builds with the same SOURCE_DATE_EPOCH"
    );
    let dir_mtime = std::fs::metadata(p.dir.join("out/db1/meta-data"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        dir_mtime,
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
}

#[test]
fn artifact_without_sources_gives_empty_media() {
    let p = Project::new();
    std::fs::write(
        p.dir.join("empty.b9"),
        "Artifact (IID \"e\") (CloudInit [CI_ISO, CI_VFAT, CI_DIR] \"out/empty\")\n",
    )
    .unwrap();
    let out = p.b9(&["build", "-f", "empty.b9"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(p.dir.join("out/empty").is_dir());
    assert_eq!(
        std::fs::read_dir(p.dir.join("out/empty")).unwrap().count(),
        0
    );
    let fsck = tool(
        "fsck.vfat",
        "dosfstools",
        &["-n", p.dir.join("out/empty.vfat").to_str().unwrap()],
    );
    assert!(fsck.status.success(), "{}", stdout(&fsck));
    let d = stdout(&tool(
        "isoinfo",
        "genisoimage",
        &["-d", "-i", p.dir.join("out/empty.iso").to_str().unwrap()],
    ));
    assert!(d.contains("Volume id: cidata"), "{d}");
}

/// A one-connection-at-a-time HTTP server on 127.0.0.1 answering by path:
/// `/ok` 200 with a body, `/missing` 404, `/moved` a redirect to `/ok`,
/// `/slow` waiting before it answers.
fn serve() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let reply = match path.as_str() {
                "/ok" => "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\nhello from http".to_string(),
                "/moved" => "HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                "/slow" => {
                    std::thread::sleep(Duration::from_secs(4));
                    "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlate".to_string()
                }
                _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found".to_string(),
            };
            let _ = s.write_all(reply.as_bytes());
        }
    });
    (base, handle)
}

#[test]
fn from_url_downloads_follows_redirects_and_fails_clearly() {
    let p = Project::new();
    let (base, _server) = serve();
    let file = |path: &str| {
        format!("Sources [FromContent \"got\" (FromURL \"{base}{path}\")]\n  [Artifact (IID \"u\") (CloudInit [CI_DIR] \"out/url\")]\n")
    };
    std::fs::write(p.dir.join("url.b9"), file("/moved")).unwrap();
    let out = p.b9(&["build", "-f", "url.b9"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/url/got")).unwrap(),
        "hello from http"
    );

    std::fs::write(p.dir.join("url.b9"), file("/missing")).unwrap();
    std::fs::remove_dir_all(p.dir.join("out")).unwrap();
    let out = p.b9(&["build", "-f", "url.b9"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("artifact `u` failed"), "{err}");
    assert!(
        err.contains(&format!(
            "download of {base}/missing failed: HTTP status 404"
        )),
        "{err}"
    );
    assert!(
        !p.dir.join("out/url").exists(),
        "no output after a failed artifact"
    );

    std::fs::write(p.dir.join("url.b9"), file("/slow")).unwrap();
    let conf = p.config("default_timeout_seconds: 1\n");
    let out = p.b9(&["-c", &conf, "build", "-f", "url.b9"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("download of {base}/slow failed")),
        "{err}"
    );
    assert!(!p.dir.join("out/url").exists());
}

#[test]
fn a_source_failure_stops_the_build_before_any_output() {
    let p = Project::new();
    let (base, _server) = serve();
    std::fs::write(
        p.dir.join("mixed.b9"),
        format!("Let []\n  [ Artifact (IID \"good\") (CloudInit [CI_ISO] \"out/good\")\n  , Sources [FromContent \"x\" (FromURL \"{base}/missing\")]\n      [Artifact (IID \"bad\") (CloudInit [CI_ISO, CI_DIR] \"out/bad\")]\n  ]\n"),
    )
    .unwrap();
    let out = p.b9(&["build", "-f", "mixed.b9"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("artifact `bad` failed"),
        "{}",
        stderr(&out)
    );
    // All sources are generated before any assembly: nothing was written.
    assert!(!p.dir.join("out").exists());
}

#[test]
fn log_lines_carry_the_instance_id() {
    let p = Project::new();
    let out = p.b9(&["-v", "build", "-f", "multi-host.b9"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let wrote = err
        .lines()
        .find(|l| l.contains("wrote ") && l.contains("db1.iso"))
        .unwrap_or_default();
    assert!(
        wrote.starts_with("[ INFO  ] ") && wrote.contains(" - [db1] wrote "),
        "{err}"
    );
    assert!(err.lines().any(|l| l.contains(" - DURATION: ")), "{err}");
}
