//! What b9 may delete or replace, leftovers of killed builds, concurrent
//! builds, time limits (issue 10, items 1, 7, 8 and the smaller ones).
//! See `main.rs`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A project directory with a build file, its own HOME and one source file.
struct Project {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    dir: PathBuf,
}

impl Project {
    fn new(build_file: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let dir = tmp.path().join("project");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/hello.txt"), "hello\n").unwrap();
        let p = Project {
            _tmp: tmp,
            home,
            dir,
        };
        p.write_build_file(build_file);
        p
    }

    fn write_build_file(&self, text: &str) {
        std::fs::write(self.dir.join("b9.b9"), text).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_b9"));
        cmd.args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    fn b9(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `b9 check` and `b9 build` of `b9.b9` with extra global flags.
    fn check(&self) -> Output {
        self.b9(&["check", "-f", "b9.b9"])
    }

    fn build(&self, flags: &[&str]) -> Output {
        let mut args = flags.to_vec();
        args.extend(["build", "-f", "b9.b9"]);
        self.b9(&args)
    }

    /// Every entry of a project directory whose name holds `.b9-`, but
    /// for the markers of b9's directory outputs.
    fn leftovers(&self, sub: &str) -> Vec<String> {
        names(&self.dir.join(sub))
            .into_iter()
            .filter(|n| n.contains(".b9-") && !n.ends_with(".b9-output"))
            .collect()
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A CloudInit artifact of the source file, written to `types` at `base`.
fn cloud_init(types: &str, base: &str) -> String {
    format!(
        "Sources [FromFile \"hello.txt\" (Source NoConversion \"src/hello.txt\")]\n  [Artifact (IID \"ci\") (CloudInit [{types}] \"{base}\")]\n"
    )
}

/// A PID that no process has (a child that has been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn outputs_over_the_project_are_refused_by_check_and_build() {
    let p = Project::new("");
    let home = p.home.display().to_string();
    let cases = [
        (cloud_init("CI_DIR", ""), "the working directory"),
        (cloud_init("CI_DIR", "${projectRoot}"), "the project root"),
        (cloud_init("CI_DIR", "."), "the working directory"),
        (cloud_init("CI_DIR", "src"), "src/hello.txt"),
        (cloud_init("CI_DIR", &home), "the home directory"),
        (cloud_init("CI_DIR", &format!("{home}/.b9")), "the shared-image cache"),
        (
            "Let [] [Artifact (IID \"a\") (CloudInit [CI_DIR] \"out/a\"), Artifact (IID \"b\") (CloudInit [CI_ISO] \"out/a/b\")]\n".to_string(),
            "is inside the output",
        ),
        (
            "Let [] [Artifact (IID \"b\") (CloudInit [CI_ISO] \"out/a/b\"), Artifact (IID \"a\") (CloudInit [CI_DIR] \"out/a\")]\n".to_string(),
            "contains the output",
        ),
        (
            "Let [] [Artifact (IID \"img\") (VmImages [ImageTarget Transient (EmptyImage \"x\" Ext4 Raw (ImageSize 4 MB)) (MountPoint \"/\")] (VmScript X86_64 [SharedDirectoryRO \"src\" (MountPoint \"/mnt\")] NoOP)), Artifact (IID \"a\") (CloudInit [CI_DIR] \"src\")]\n".to_string(),
            "the shared directory",
        ),
        (
            // A later artifact reads a file inside an earlier one's output.
            "Let [] [Artifact (IID \"a\") (CloudInit [CI_DIR] \"src\"), Sources [FromFile \"x\" (Source NoConversion \"src/hello.txt\")] [Artifact (IID \"b\") (CloudInit [CI_ISO] \"out/b\")]]\n".to_string(),
            "contains the source file",
        ),
        (
            "Artifact (IID \"img\") (VmImages [ImageTarget (LocalFile (Image \"b9.b9\" Raw Ext4) KeepSize) (EmptyImage \"x\" Ext4 Raw (ImageSize 4 MB)) NotMounted] (VmScript X86_64 [] NoOP))\n".to_string(),
            "the build file",
        ),
        (
            "Artifact (IID \"img\") (VmImages [ImageTarget (LocalFile (Image \"src/hello.txt\" Raw Ext4) KeepSize) (SourceImage (Image \"src/hello.txt\" Raw Ext4) NoPT KeepSize) NotMounted] (VmScript X86_64 [] NoOP))\n".to_string(),
            "src/hello.txt",
        ),
    ];
    for (text, what) in &cases {
        p.write_build_file(text);
        for out in [p.check(), p.build(&[])] {
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{text}\n{err}");
            assert!(err.contains("b9.b9:"), "located error for {text}\n{err}");
            assert!(err.contains(what), "{what} named for {text}\n{err}");
        }
        assert_eq!(
            std::fs::read_to_string(p.dir.join("src/hello.txt")).unwrap(),
            "hello\n"
        );
        assert_eq!(std::fs::read_to_string(p.dir.join("b9.b9")).unwrap(), *text);
    }
    let share = "Artifact (IID \"img\") (VmImages [ImageTarget (Share \"../../x\" Raw KeepSize) (EmptyImage \"x\" Ext4 Raw (ImageSize 4 MB)) NotMounted] (VmScript X86_64 [] NoOP))\n";
    p.write_build_file(share);
    let out = p.check();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("b9.b9:1:"), "{}", stderr(&out));
}

#[test]
fn existing_directories_are_replaced_only_when_b9_made_them() {
    let p = Project::new(&cloud_init("CI_DIR", "out/seed"));
    for _ in 0..2 {
        let out = p.build(&[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(names(&p.dir.join("out/seed")), ["hello.txt"]);
    }
    // A file the user added to b9's output: the directory is no longer only b9's.
    std::fs::write(p.dir.join("out/seed/notes"), "mine").unwrap();
    let out = p.build(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was not made by b9"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/seed/notes")).unwrap(),
        "mine"
    );

    // A user's own directory where a directory or a file output goes.
    std::fs::create_dir_all(p.dir.join("docs")).unwrap();
    std::fs::write(p.dir.join("docs/manual.txt"), "precious").unwrap();
    std::fs::create_dir_all(p.dir.join("img.iso")).unwrap();
    std::fs::write(p.dir.join("img.iso/keep"), "precious").unwrap();
    for (text, path) in [
        (cloud_init("CI_DIR", "docs"), "docs"),
        (cloud_init("CI_ISO", "img"), "img.iso"),
    ] {
        p.write_build_file(&text);
        let out = p.check();
        assert!(out.status.success(), "{}", stderr(&out));
        let out = p.build(&[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("{path} exists and was not made by b9")),
            "{err}"
        );
        assert_eq!(p.leftovers(""), Vec::<String>::new());
    }
    assert_eq!(
        std::fs::read_to_string(p.dir.join("docs/manual.txt")).unwrap(),
        "precious"
    );
    assert_eq!(
        std::fs::read_to_string(p.dir.join("img.iso/keep")).unwrap(),
        "precious"
    );

    // A symbolic link where a file output goes is not replaced either.
    std::os::unix::fs::symlink(p.dir.join("src/hello.txt"), p.dir.join("link.iso")).unwrap();
    p.write_build_file(&cloud_init("CI_ISO", "link"));
    let out = p.build(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("link.iso"), "{}", stderr(&out));
    assert!(p.dir.join("link.iso").is_symlink());
}

/// An HTTP server that accepts connections and never answers.
fn silent_server() -> (String, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        format!("http://{}/hang", listener.local_addr().unwrap()),
        listener,
    )
}

fn build_dirs(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with("BUILD-"))
        .collect()
}

/// Polls `cond` until it holds or a generous deadline passes.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn leftovers_of_killed_builds_are_swept() {
    let (url, _server) = silent_server();
    let p = Project::new(&format!(
        "Sources [FromContent \"x\" (FromURL \"{url}\")]\n  [Artifact (IID \"u\") (CloudInit [CI_DIR] \"out/u\")]\n"
    ));
    let mut child = p
        .command(&["build", "-f", "b9.b9"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the build directory", || !build_dirs(&p.dir).is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = build_dirs(&p.dir);
    assert_eq!(killed.len(), 1);

    // Not b9's: a user's BUILD-foo, and staged names of a live process.
    std::fs::create_dir_all(p.dir.join("BUILD-foo")).unwrap();
    std::fs::write(p.dir.join("BUILD-foo/data"), "mine").unwrap();
    std::fs::create_dir_all(p.dir.join("out")).unwrap();
    let gone = dead_pid();
    let me = std::process::id();
    for name in [
        format!(".seed.b9-tmp-{gone}"),
        format!(".seed.b9-old-{gone}"),
        format!(".seed.b9-tmp-{me}"),
    ] {
        std::fs::create_dir_all(p.dir.join("out").join(name).join("sub")).unwrap();
    }
    std::fs::write(p.dir.join("out").join(format!(".x.iso.b9-tmp-{gone}")), "").unwrap();
    std::fs::write(
        p.dir.join("out/.x.iso.b9-lock"),
        format!("{gone} writing\n"),
    )
    .unwrap();

    p.write_build_file(&cloud_init("CI_DIR", "out/seed"));
    let out = p.build(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(build_dirs(&p.dir), ["BUILD-foo"]);
    assert_eq!(
        std::fs::read_to_string(p.dir.join("BUILD-foo/data")).unwrap(),
        "mine"
    );
    assert_eq!(p.leftovers("out"), [format!(".seed.b9-tmp-{me}")]);
}

#[test]
fn concurrent_predictable_builds_give_whole_outputs() {
    let p = Project::new("");
    // Many large source files, so that a truncated or mixed copy would show.
    let files: Vec<(String, Vec<u8>)> = (0..24u32)
        .map(|f| {
            let bytes = (0..400_000u32).map(|i| ((i + f) % 251) as u8).collect();
            (format!("f{f}.bin"), bytes)
        })
        .collect();
    let mut sources = Vec::new();
    for (name, bytes) in &files {
        std::fs::write(p.dir.join("src").join(name), bytes).unwrap();
        sources.push(format!(
            "FromFile \"{name}\" (Source NoConversion \"src/{name}\")"
        ));
    }
    p.write_build_file(&format!(
        "Sources [{}]\n  [Artifact (IID \"ci\") (CloudInit [CI_ISO, CI_DIR] \"out/seed\")]\n",
        sources.join(", ")
    ));
    let mut expected: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    expected.sort();
    for round in 0..4 {
        let children: Vec<_> = (0..4)
            .map(|_| {
                p.command(&["-u", "build", "-f", "b9.b9"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ok = 0;
        for c in children {
            let out = c.wait_with_output().unwrap();
            if out.status.success() {
                ok += 1;
            } else {
                let err = stderr(&out);
                assert!(err.contains("another b9 (pid "), "round {round}: {err}");
            }
        }
        assert!(ok >= 1, "round {round}: no build succeeded");
        let iso = p.dir.join("out/seed.iso");
        for (name, bytes) in &files {
            let got = Command::new("isoinfo")
                .args(["-R", "-x", &format!("/{name}"), "-i"])
                .arg(&iso)
                .output()
                .unwrap();
            assert!(got.status.success(), "{}", stderr(&got));
            assert!(
                got.stdout == *bytes,
                "round {round}: the ISO holds a damaged {name}"
            );
            let copy = std::fs::read(p.dir.join("out/seed").join(name)).unwrap();
            assert!(copy == *bytes, "round {round}: damaged out/seed/{name}");
        }
        assert_eq!(names(&p.dir.join("out/seed")), expected);
        assert_eq!(p.leftovers("out"), Vec::<String>::new(), "round {round}");
    }
}

/// An HTTP server answering every request after `delay`.
fn slow_server(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            std::thread::sleep(delay);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlate",
            );
        }
    });
    url
}

#[test]
fn timeout_factor_zero_means_factor_one_everywhere() {
    let url = slow_server(Duration::from_millis(1500));
    let p = Project::new(&format!(
        "Sources [FromContent \"x\" (FromURL \"{url}\")]\n  [Artifact (IID \"u\") (CloudInit [CI_DIR] \"out/u\")]\n"
    ));
    // The default configuration, then timeout_factor: 0 (the original accepts it).
    assert!(p.check().status.success());
    let conf = p.home.join(".b9/b9.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let text = text.replace("[global]\n", "[global]\ntimeout_factor: 0\n");
    assert!(text.contains("timeout_factor: 0"), "{text}");
    std::fs::write(&conf, text).unwrap();
    let out = p.build(&[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("timeout_factor"), "a warning: {err}");
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/u/x")).unwrap(),
        "late"
    );
}

#[test]
fn the_console_log_of_a_failed_vm_run_is_kept_where_the_error_says() {
    let p = crate::common::project::Project::new("qemu", "", 20);
    let out = p.build(
        "slow.b9",
        r#"Artifact (IID "slow")
  (VmImages
     [ ImageTarget (LocalFile (Image "out/root.raw" Raw Ext4) KeepSize)
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/") ]
     (VmScript X86_64 [] (Run "sleep" ["600"])))
"#,
    );
    let log = crate::common::project::text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let named = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("(console log: "))
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no console log named: {log}"));
    let console = std::fs::read_to_string(named).unwrap_or_else(|e| panic!("{named}: {e}"));
    assert!(!console.is_empty());
    // Only the logs stay of the build directory.
    let build_dir = Path::new(named).ancestors().nth(3).unwrap();
    assert!(build_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("BUILD-"));
    let mut stack = vec![build_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                assert_eq!(e.file_name(), "console.log", "{} left", e.path().display());
            }
        }
    }
    assert!(!p.p("out/root.raw").exists());
    crate::common::project::no_vm_left(&p);
}
