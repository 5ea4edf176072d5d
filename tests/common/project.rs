//! A b9 project that boots guests: the guest kernel fixture, a busybox
//! root image made with b9 itself, a b9.conf selecting a backend under TCG,
//! and the oracles the VM tests check outputs with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The guest kernel fixture and a busybox root image, made once.
pub struct Fixture {
    /// The kernel.
    pub kernel: PathBuf,
    /// Its modules.
    pub modules: PathBuf,
    /// The busybox root image (raw ext4).
    pub root: PathBuf,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let guest = super::guest::guest();
        let dir = repo().join("target/vm-test-fixture");
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.join(format!("busybox-root-{}.raw", std::process::id()));
        let st = Command::new(repo().join("scripts/busybox-root"))
            .arg(&root)
            .env("B9", env!("CARGO_BIN_EXE_b9"))
            .status()
            .unwrap();
        assert!(st.success());
        Fixture {
            kernel: guest.kernel.clone(),
            modules: guest.modules.clone(),
            root,
        }
    })
}

pub struct Project {
    _tmp: tempfile::TempDir,
    /// The project directory.
    pub path: PathBuf,
}

impl Project {
    /// A project whose b9.conf selects `backend` under TCG.
    pub fn new(backend: &str, extra_vm: &str, timeout: u64) -> Project {
        Project::with_network(backend, extra_vm, timeout, "")
    }

    /// Like [`Project::new`], with `[libvirt] network: NETWORK` (empty:
    /// none; any name gives QEMU user-mode networking).
    pub fn with_network(backend: &str, extra_vm: &str, timeout: u64, network: &str) -> Project {
        let f = fixture();
        let network = if network.is_empty() {
            String::new()
        } else {
            format!(" {network}")
        };
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        std::fs::create_dir_all(path.join("home")).unwrap();
        std::fs::copy(&f.root, path.join("root.raw")).unwrap();
        let accel = if extra_vm.contains("accel:") {
            ""
        } else {
            "accel: tcg\n"
        };
        std::fs::write(
            path.join("b9.conf"),
            format!(
                "{}[vm]\nbackend: {backend}\n{accel}kernel: {}\nmodules_dir: {}\n\
                 memory_mb: 512\ncpus: 1\nqemu_binary:\n{extra_vm}\n\n\
                 [libvirt]\nconnection: qemu:///system\nnetwork:{network}\n",
                super::guest::global_section(timeout),
                f.kernel.display(),
                f.modules.display()
            ),
        )
        .unwrap();
        Project { _tmp: tmp, path }
    }

    pub fn p(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_b9"));
        c.arg("-c")
            .arg(self.p("b9.conf"))
            .args(args)
            .current_dir(&self.path)
            .env("HOME", self.p("home"))
            // The step cache is under the project's home.
            .env_remove("XDG_CACHE_HOME")
            .env("B9_CACHE_DIR", repo().join("target/vm-test-cache"));
        c
    }

    pub fn b9(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn build(&self, file: &str, text: &str) -> Output {
        std::fs::write(self.p(file), text).unwrap();
        self.b9(&["build", "-f", file])
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is needed (scripts/setup): {e}"))
}

pub fn ok(tool: &str, args: &[&str]) -> String {
    let out = run(tool, args);
    assert!(out.status.success(), "{tool} {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw copy of any image, for e2fsck and debugfs.
pub fn as_raw(img: &Path) -> PathBuf {
    let raw = img.with_extension("check.raw");
    ok("qemu-img", &["convert", "-O", "raw", &s(img), &s(&raw)]);
    raw
}

pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub fn e2fsck_clean(raw: &Path) {
    ok("e2fsck", &["-fn", &s(raw)]);
}

pub fn debugfs_cat(raw: &Path, file: &str) -> String {
    ok("debugfs", &["-R", &format!("cat {file}"), &s(raw)])
}

pub fn debugfs_stat(raw: &Path, file: &str) -> String {
    ok("debugfs", &["-R", &format!("stat {file}"), &s(raw)])
}

pub fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// No QEMU process of this project is left.
pub fn no_vm_left(p: &Project) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = ok("ps", &["-eo", "args"]);
        let left: Vec<&str> = ps
            .lines()
            .filter(|l| l.contains("qemu-system") && l.contains(&*s(&p.path)))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "QEMU left running: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
