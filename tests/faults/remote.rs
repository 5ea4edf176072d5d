//! Remote names are validated before they touch the local file system
//! (issue 10, item 9): a hostile SFTP server lists names that would lead
//! out of the cache, or serves metadata naming such files.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::disk_env::Tmpfs;
use crate::fake_sftp::{self, Tree};

/// A home, a cache and a hostile server serving `entries` in
/// `/repo/b9_shared_images`, configured as repository `evil`.
struct Hostile {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Hostile {
    fn new(entries: Vec<(String, Vec<u8>)>) -> Hostile {
        Hostile::with_cache(entries, None)
    }

    /// With the shared-image cache at `cache` (default: in the temporary
    /// directory).
    fn with_cache(entries: Vec<(String, Vec<u8>)>, cache: Option<PathBuf>) -> Hostile {
        let tmp = tempfile::tempdir().unwrap();
        // Deep enough that `../` runs from the cache stay inside the
        // temporary directory, where the test can look for them.
        let root = tmp.path().join("a/b/c/d");
        std::fs::create_dir_all(root.join("home/.b9")).unwrap();
        for key in ["host_ed25519", "id_ed25519"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(root.join(key))
                .status()
                .unwrap();
            assert!(st.success());
        }
        let server = fake_sftp::start(
            Tree {
                dir: "/repo/b9_shared_images".into(),
                entries,
            },
            &root.join("host_ed25519"),
        );
        std::fs::write(
            root.join("home/.b9/b9.conf"),
            format!(
                "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\n\
                 repository: Nothing\nrepository_cache: Just (Path \"{}\")\n\
                 unique_build_dirs: True\nverbosity: Nothing\nmax_cached_shared_images: Nothing\n\n\
                 [evil-repo]\nremote_path: /repo\nssh_priv_key_file: {}\n\
                 ssh_remote_host: 127.0.0.1\nssh_remote_port: {}\nssh_remote_user: root\n",
                cache.unwrap_or_else(|| root.join("cache")).display(),
                root.join("id_ed25519").display(),
                server.port
            ),
        )
        .unwrap();
        Hostile { _tmp: tmp, root }
    }

    fn b9(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_b9"))
            .args(args)
            .current_dir(&self.root)
            .env("HOME", self.root.join("home"))
            .output()
            .unwrap()
    }

    /// Every path under the temporary directory whose name contains `word`.
    fn found(&self, word: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![self._tmp.path().to_path_buf()];
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.file_name().unwrap().to_string_lossy().contains(word) {
                    out.push(p.clone());
                }
                if e.file_type().unwrap().is_dir() {
                    todo.push(p);
                }
            }
        }
        out
    }
}

/// A `.b9si` of image `name`, build id `id`.
fn b9si(name: &str, id: &str) -> Vec<u8> {
    format!(
        "SharedImage (SharedImageName {name:?}) (SharedImageDate \"2026-01-01-00:00:00\") \
         (SharedImageBuildId {id:?}) Raw Ext4\n"
    )
    .into_bytes()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn listed_names_that_leave_the_cache_are_refused() {
    let absolute = std::env::temp_dir().join(format!("b9-evil-abs-{}.b9si", std::process::id()));
    let h = Hostile::new(vec![
        ("../../../../escaped_1.b9si".into(), b9si("escaped", "1")),
        (absolute.display().to_string(), b9si("abs", "1")),
        ("sub/../../nested_1.b9si".into(), b9si("nested", "1")),
        ("good_1.b9si".into(), b9si("good", "1")),
    ]);
    for args in [&["-r", "evil", "pull"][..], &["-r", "evil", "pull", "good"]] {
        let out = h.b9(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("../../../../escaped_1.b9si") && err.contains("not a plain file name"),
            "{args:?}: {err}"
        );
    }
    assert!(!absolute.exists(), "{absolute:?} written");
    let _ = std::fs::remove_file(&absolute);
    for word in ["escaped", "nested", "good_1"] {
        assert_eq!(h.found(word), Vec::<PathBuf>::new(), "{word}");
    }
}

#[test]
fn metadata_naming_files_outside_the_cache_is_skipped() {
    let h = Hostile::new(vec![
        ("evil_1.b9si".into(), b9si("../../../../pwned", "1")),
        ("evil_2.b9si".into(), b9si("pwned", "../../../../pwned")),
    ]);
    let out = h.b9(&["-r", "evil", "pull", "pwned"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no shared image `pwned`"), "{err}");
    assert_eq!(h.found("pwned"), Vec::<PathBuf>::new());
}

#[test]
fn a_pull_into_a_full_disk_fails_promptly_and_leaves_nothing() {
    let fs = Tmpfs::new(4);
    let image: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let h = Hostile::with_cache(
        vec![
            ("big_1.b9si".into(), b9si("big", "1")),
            ("big_1.raw".into(), image),
        ],
        Some(fs.p("cache")),
    );
    let start = std::time::Instant::now();
    let out = h.b9(&["-r", "evil", "pull", "big"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("big_1.raw"), "the file is named: {err}");
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    let images = fs.p("cache/local-repo/b9_shared_images");
    let left: Vec<String> = std::fs::read_dir(&images)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.contains("big_1") && !n.contains(".b9-")),
        "left in the cache: {left:?}"
    );
}
