//! What the `disk` fault tests share: a scratch directory with its own
//! HOME, small tmpfs mounts that fill up, b9 runs with a deadline, and
//! checks of what is left beside an output.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a b9 run may take before it counts as hung. Generous: the
/// machine running the tests may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A scratch directory with a `home/` for b9's configuration.
pub struct Dir {
    _tmp: tempfile::TempDir,
    /// The directory.
    pub path: PathBuf,
}

impl Dir {
    pub fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        std::fs::create_dir_all(path.join("home")).unwrap();
        Dir { _tmp: tmp, path }
    }

    pub fn p(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `b9 ARGS` in this directory, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_b9"));
        c.args(args)
            .current_dir(&self.path)
            .env("HOME", self.p("home"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `b9 ARGS` to its end; panics if it outlives [`DEADLINE`].
    pub fn b9(&self, args: &[&str]) -> Output {
        finish(self.command(args).spawn().unwrap(), args)
    }

    /// Runs `b9 ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.b9(args);
        assert!(out.status.success(), "b9 {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Waits for a started b9 (polling, so a hang fails instead of blocking
/// the test run); kills it and panics after [`DEADLINE`].
pub fn finish(mut child: Child, what: &[&str]) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "b9 {what:?} still ran after {DEADLINE:?} (hung); stderr: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A tmpfs of a few MiB mounted on a fresh directory, unmounted on drop.
pub struct Tmpfs {
    _tmp: tempfile::TempDir,
    /// The mount point.
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn new(mib: u64) -> Tmpfs {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs (the fault tests run as root)");
        Tmpfs { _tmp: tmp, path }
    }

    pub fn p(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Writes `mib` MiB of incompressible bytes to `path` (one pseudo-random
/// MiB repeated: deflate's 32 KiB window finds no repeats).
pub fn random_file(path: &Path, mib: u64) {
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let f = std::fs::File::create(path).unwrap();
    for i in 0..mib {
        block[0] = i as u8;
        f.write_all_at(&block, i << 20).unwrap();
    }
}

/// The names in `dir` that are b9 temporaries (not the markers of b9's
/// directory outputs, which record a finished output).
pub fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".b9-") && !n.ends_with(".b9-output"))
        .collect()
}

/// b9 failed, naming `path` and "No space left on device", and left no
/// temporary in `dir`.
pub fn assert_full_disk_error(out: &Output, path: &Path, dir: &Path) {
    let err = stderr(out);
    assert!(!out.status.success(), "b9 succeeded on a full disk: {err}");
    assert!(
        err.contains("No space left on device"),
        "no OS error in: {err}"
    );
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(err.contains(&*name), "{name} not named in: {err}");
    assert_eq!(temporaries(dir), Vec::<String>::new(), "left behind");
}

/// Runs `tool ARGS`, which must succeed; its stdout.
pub fn tool_ok(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is needed (scripts/setup): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
