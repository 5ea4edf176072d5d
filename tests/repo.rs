//! The local shared-image repository (docs/COMPATIBILITY.md#repository, #promises).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use b9::lang::syntax::{FileSystem, ImageType};
use b9::repo::{LocalRepo, RepoError, SharedImage};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/repo")
        .join(name)
}

fn img(name: &str, date: &str, id: &str) -> SharedImage {
    SharedImage {
        name: name.into(),
        date: date.into(),
        build_id: id.into(),
        image_type: ImageType::QCow2,
        fs: FileSystem::Ext4,
    }
}

/// Writes a fake image file outside the cache and shares it.
fn share(repo: &LocalRepo, work: &Path, i: &SharedImage, max: Option<i64>) -> Vec<SharedImage> {
    let src = work.join(format!("build-{}-{}", i.name, i.build_id));
    fs::write(&src, format!("image {}", i.build_id)).unwrap();
    let removed = repo.share(i, &src, max).unwrap();
    assert!(!src.exists(), "the build image is moved into the cache");
    removed
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn golden_b9si_is_written_and_read_back() {
    let golden = fs::read_to_string(fixture("fedora_0123ABCD-89ABCDEF.b9si")).unwrap();
    let fedora = img("fedora", "2023-04-19-14:31:45", "0123ABCD-89ABCDEF");
    assert_eq!(fedora.to_b9si(), golden);
    assert_eq!(
        SharedImage::from_b9si(&golden, Path::new("golden")).unwrap(),
        fedora
    );
    let one_line = fs::read_to_string(fixture("fedora-show-layout.b9si")).unwrap();
    assert_eq!(
        SharedImage::from_b9si(&one_line, Path::new("show")).unwrap(),
        fedora
    );

    // Sharing writes the same bytes.
    let cache = tempfile::tempdir().unwrap();
    let repo = LocalRepo::open(cache.path()).unwrap();
    share(&repo, cache.path(), &fedora, None);
    let written = fs::read_to_string(repo.images_dir().join(fedora.info_file_name())).unwrap();
    assert_eq!(written, golden);
    assert_eq!(
        repo.images_dir(),
        cache.path().join("local-repo/b9_shared_images")
    );
}

#[test]
fn an_original_cache_is_listed() {
    let cache = tempfile::tempdir().unwrap();
    let repo = LocalRepo::open(cache.path()).unwrap();
    fs::copy(
        fixture("fedora_0123ABCD-89ABCDEF.b9si"),
        repo.images_dir().join("fedora_0123ABCD-89ABCDEF.b9si"),
    )
    .unwrap();
    fs::write(
        repo.images_dir().join("fedora_0123ABCD-89ABCDEF.qcow2"),
        "x",
    )
    .unwrap();
    let (images, warnings) = repo.list().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(images.len(), 1);
    assert_eq!(
        repo.image_path(&images[0]),
        repo.images_dir().join("fedora_0123ABCD-89ABCDEF.qcow2")
    );
}

#[test]
fn limit_keeps_the_newest_two_and_latest_is_the_newest() {
    let cache = tempfile::tempdir().unwrap();
    let repo = LocalRepo::open(cache.path()).unwrap();
    let v1 = img("deb", "2023-04-19-10:00:00", "ffff0001");
    let v2 = img("deb", "2023-04-19-11:00:00", "00000002");
    let v3 = img("deb", "2023-04-19-12:00:00", "aaaa0003");
    let other = img("alpine", "2020-01-01-00:00:00", "1");
    share(&repo, cache.path(), &other, Some(2));
    assert!(share(&repo, cache.path(), &v1, Some(2)).is_empty());
    assert!(share(&repo, cache.path(), &v2, Some(2)).is_empty());
    assert_eq!(share(&repo, cache.path(), &v3, Some(2)), vec![v1.clone()]);

    assert_eq!(
        files(&repo.images_dir()),
        vec![
            "alpine_1.b9si",
            "alpine_1.qcow2",
            "deb_00000002.b9si",
            "deb_00000002.qcow2",
            "deb_aaaa0003.b9si",
            "deb_aaaa0003.qcow2",
        ]
    );
    assert_eq!(repo.latest("deb").unwrap(), Some(v3.clone()));
    assert_eq!(repo.latest("alpine").unwrap(), Some(other.clone()));
    assert_eq!(repo.latest("nope").unwrap(), None);
    let err = repo.require_latest("nope").unwrap_err().to_string();
    assert!(
        err.contains("Nothing found for shared image `nope`"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(repo.image_path(&v3)).unwrap(),
        "image aaaa0003"
    );
    let (all, _) = repo.list().unwrap();
    assert_eq!(all, vec![other, v2, v3]);
}

#[test]
fn same_date_orders_by_build_id() {
    let cache = tempfile::tempdir().unwrap();
    let repo = LocalRepo::open(cache.path()).unwrap();
    share(
        &repo,
        cache.path(),
        &img("x", "2023-01-01-00:00:00", "b"),
        None,
    );
    share(
        &repo,
        cache.path(),
        &img("x", "2023-01-01-00:00:00", "a"),
        None,
    );
    assert_eq!(repo.latest("x").unwrap().unwrap().build_id, "b");
}

#[test]
fn invalid_limits_are_errors_and_change_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let repo = LocalRepo::open(cache.path()).unwrap();
    let v = img("x", "2023-01-01-00:00:00", "1");
    let src = cache.path().join("src");
    fs::write(&src, "data").unwrap();
    for n in [0, -1] {
        let err = repo.share(&v, &src, Some(n)).unwrap_err();
        assert!(
            matches!(err, RepoError::InvalidLimit(m, _) if m == n),
            "{err}"
        );
        assert!(matches!(
            repo.prune("x", n),
            Err(RepoError::InvalidLimit(..))
        ));
    }
    assert!(src.exists());
    assert!(files(&repo.images_dir()).is_empty());
    assert!(matches!(
        repo.clean(Some(-1)),
        Err(RepoError::InvalidLimit(..))
    ));
    let bad = img("../evil", "d", "1");
    assert!(matches!(
        repo.share(&bad, &src, None),
        Err(RepoError::InvalidName { .. })
    ));
    assert!(src.exists());
}

#[test]
fn broken_b9si_is_reported_skipped_and_kept() {
    let cache = tempfile::tempdir().unwrap();
    let repo = LocalRepo::open(cache.path()).unwrap();
    let good = img("x", "2023-01-01-00:00:00", "1");
    share(&repo, cache.path(), &good, None);
    let broken = repo.images_dir().join("x_2.b9si");
    fs::write(&broken, "SharedImage (SharedImageName \"x\")\n  garbage").unwrap();
    let orphan = repo.images_dir().join("y_1.b9si");
    fs::write(&orphan, img("y", "2023-01-01-00:00:00", "1").to_b9si()).unwrap();

    let (images, warnings) = repo.list().unwrap();
    assert_eq!(images, vec![good.clone()]);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].path, broken);
    assert!(
        warnings[0].message.contains("x_2.b9si:2:3"),
        "{}",
        warnings[0]
    );
    assert_eq!(warnings[1].path, orphan);
    assert!(warnings[1].message.contains("y_1.qcow2"), "{}", warnings[1]);

    assert_eq!(repo.latest("x").unwrap(), Some(good));
    assert_eq!(repo.clean(None).unwrap().len(), 1);
    assert!(broken.exists() && orphan.exists());
}

#[test]
fn clean_local_keeps_newest_per_name_or_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let repo = LocalRepo::open(cache.path()).unwrap();
    for (n, d) in [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("b", "2")] {
        share(
            &repo,
            cache.path(),
            &img(n, &format!("2023-01-01-00:00:0{d}"), d),
            None,
        );
    }
    let removed = repo.clean(Some(1)).unwrap();
    assert_eq!(removed.len(), 3);
    let (left, _) = repo.list().unwrap();
    let ids: Vec<_> = left
        .iter()
        .map(|i| (i.name.as_str(), i.build_id.as_str()))
        .collect();
    assert_eq!(ids, vec![("a", "3"), ("b", "2")]);
    assert_eq!(repo.clean(None).unwrap().len(), 2);
    assert!(files(&repo.images_dir()).is_empty());
    assert!(repo.list().unwrap().0.is_empty());
}

#[test]
fn concurrent_share_prune_list_clean_keep_the_cache_consistent() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = cache.path().to_path_buf();
    let done = Arc::new(AtomicBool::new(false));

    // Readers: every listed version has its complete image.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let root = root.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let repo = LocalRepo::open(&root).unwrap();
                let mut checks = 0u64;
                while !done.load(Ordering::Relaxed) || checks == 0 {
                    let (images, warnings) = repo.list().unwrap();
                    assert!(warnings.is_empty(), "{warnings:?}");
                    for i in &images {
                        // Cleaners may delete it after the list, but never
                        // before its image was complete.
                        if let Ok(data) = fs::read_to_string(repo.image_path(i)) {
                            assert_eq!(data, format!("image {}", i.build_id));
                        }
                    }
                    checks += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                checks
            })
        })
        .collect();

    // Writers: names "keep" (no limit, nothing may be lost) and "lim" (limit 2).
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            let work = work.path().to_path_buf();
            std::thread::spawn(move || {
                let repo = LocalRepo::open(&root).unwrap();
                for k in 0..10 {
                    let id = format!("{t:02}{k:04}");
                    let date = format!("2023-01-01-00:{:02}:{:02}", k / 60, k % 60);
                    share(&repo, &work, &img("keep", &date, &id), None);
                    share(&repo, &work, &img("lim", &date, &id), Some(2));
                    share(&repo, &work, &img(&format!("tmp{t}"), &date, &id), None);
                    if k % 5 == 0 {
                        repo.prune("lim", 3).unwrap();
                    }
                }
            })
        })
        .collect();
    // A cleaner that prunes the "tmp*" names to one version as they appear.
    let cleaner = {
        let root = root.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let repo = LocalRepo::open(&root).unwrap();
            while !done.load(Ordering::Relaxed) {
                for t in 0..4 {
                    repo.prune(&format!("tmp{t}"), 1).unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    cleaner.join().unwrap();

    let repo = LocalRepo::open(&root).unwrap();
    let (images, warnings) = repo.list().unwrap();
    assert!(warnings.is_empty());
    assert_eq!(images.iter().filter(|i| i.name == "keep").count(), 40);
    assert_eq!(images.iter().filter(|i| i.name == "lim").count(), 2);
    // No temporary files and no image without its .b9si.
    let names = files(&repo.images_dir());
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert_eq!(names.len(), images.len() * 2);

    // Then everything is cleaned concurrently from two threads.
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || LocalRepo::open(&root).unwrap().clean(None).unwrap().len())
        })
        .collect();
    let total: usize = cleaners.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(total, images.len());
    assert!(files(&repo.images_dir()).is_empty());
}

// --- Two b9 processes on one cache -----------------------------------------

/// An artifact that shares a 4 MB raw ext4 image as `base-os`.
const SHARE_B9: &str = "Artifact (IID \"base\") (VmImages [ImageTarget (Share \"base-os\" Raw KeepSize) (EmptyImage \"root\" Ext4 Raw (ImageSize 4 MB)) NotMounted] NoVmScript)\n";

/// Writes `<home>/.b9/b9.conf` with the cache at `cache` and the given
/// `max_cached_shared_images` (`"Nothing"`, `"Just 1"`).
fn write_home(home: &Path, cache: &Path, max_cached: &str) {
    fs::create_dir_all(home.join(".b9")).unwrap();
    fs::write(
        home.join(".b9/b9.conf"),
        format!(
            "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\n\
             repository: Nothing\nrepository_cache: Just (Path \"{}\")\n\
             unique_build_dirs: True\nverbosity: Nothing\n\
             max_cached_shared_images: {max_cached}\n",
            cache.display()
        ),
    )
    .unwrap();
}

/// Runs the b9 executable in `cwd` with HOME `home`.
fn b9(home: &Path, cwd: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_b9"))
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .output()
        .unwrap()
}

/// Panics with b9's stderr unless it succeeded; returns its stdout.
fn succeeded(what: &str, out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The versions `b9 list` printed: (name, date, id) of each table row.
fn listed(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Name "))
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), 3, "{l:?}");
            (cols[0].into(), cols[1].into(), cols[2].into())
        })
        .collect()
}

/// The cache is consistent: the local repository directory holds only the
/// lock and the images directory; every `.b9si` there has its image and
/// every image its `.b9si`; no temporary (hidden) files. Returns the file
/// names of the images directory.
fn assert_consistent(cache: &Path) -> Vec<String> {
    let root = cache.join("local-repo");
    assert_eq!(files(&root), vec![".lock", "b9_shared_images"]);
    let names = files(&root.join("b9_shared_images"));
    let (infos, images): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| n.ends_with(".b9si"));
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    let stems = |v: &[&String]| -> Vec<String> {
        v.iter()
            .map(|n| n.rsplit_once('.').unwrap().0.to_owned())
            .collect()
    };
    assert_eq!(stems(&infos), stems(&images), "{names:?}");
    names
}

/// The work directory holds no build directory of any run.
fn assert_no_build_dirs(work: &Path) {
    let left: Vec<String> = files(work)
        .into_iter()
        .filter(|n| n.starts_with("BUILD-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn two_b9_processes_share_the_same_name_into_one_cache() {
    const BUILDS: usize = 6;
    let work = tempfile::tempdir().unwrap();
    let work = work.path().to_path_buf();
    let cache = work.join("cache");
    for h in ["a", "b", "lister"] {
        write_home(&work.join(h), &cache, "Nothing");
    }
    fs::write(work.join("share.b9"), SHARE_B9).unwrap();
    let done = Arc::new(AtomicBool::new(false));

    // A third process lists all the time: no listed version ever lacks its
    // image, and with no limit the number of versions never goes down.
    let lister = {
        let (work, done) = (work.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut runs, mut seen) = (0, 0);
            while !done.load(Ordering::Relaxed) || runs == 0 {
                let out = b9(&work.join("lister"), &work, &["list"]);
                let stdout = succeeded("list", &out);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(stderr.is_empty(), "{stderr}");
                let now = listed(&stdout).len();
                assert!(now >= seen, "{now} versions listed after {seen}");
                seen = now;
                runs += 1;
            }
            runs
        })
    };
    let builders: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|h| {
            let work = work.clone();
            std::thread::spawn(move || {
                (0..BUILDS)
                    .map(|_| b9(&work.join(h), &work, &["build", "-f", "share.b9"]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for b in builders {
        for out in b.join().unwrap() {
            succeeded("build", &out);
        }
    }
    done.store(true, Ordering::Relaxed);
    assert!(lister.join().unwrap() > 0);

    let out = b9(&work.join("a"), &work, &["list"]);
    let versions = listed(&succeeded("list", &out));
    assert_eq!(versions.len(), 2 * BUILDS, "{versions:?}");
    assert!(versions.iter().all(|(n, _, _)| n == "base-os"));
    let mut ids: Vec<&str> = versions.iter().map(|(_, _, id)| id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 2 * BUILDS, "build ids repeat: {versions:?}");
    assert_eq!(assert_consistent(&cache).len(), 4 * BUILDS);
    assert_no_build_dirs(&work);
}

#[test]
fn one_b9_process_shares_while_two_others_clean_the_cache() {
    const BUILDS: usize = 8;
    let work = tempfile::tempdir().unwrap();
    let work = work.path().to_path_buf();
    let cache = work.join("cache");
    // The builder keeps everything; the cleaners keep the newest version.
    write_home(&work.join("builder"), &cache, "Nothing");
    write_home(&work.join("cleaner"), &cache, "Just 1");
    fs::write(work.join("share.b9"), SHARE_B9).unwrap();
    let done = Arc::new(AtomicBool::new(false));

    // Each cleaner runs clean-local until the builder is done, then once
    // more, and returns the (date, id) of every "removed base-os ID (DATE)".
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let (work, done) = (work.clone(), done.clone());
            std::thread::spawn(move || {
                let mut removed = Vec::new();
                loop {
                    let last = done.load(Ordering::Relaxed);
                    let out = b9(&work.join("cleaner"), &work, &["clean-local"]);
                    let stdout = succeeded("clean-local", &out);
                    for l in stdout.lines().filter(|l| l.starts_with("removed ")) {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        assert_eq!(cols[1], "base-os", "{l}");
                        let date = cols[3].trim_matches(|c| c == '(' || c == ')');
                        removed.push((date.to_owned(), cols[2].to_owned()));
                    }
                    if last {
                        break removed;
                    }
                }
            })
        })
        .collect();
    for _ in 0..BUILDS {
        let out = b9(&work.join("builder"), &work, &["build", "-f", "share.b9"]);
        succeeded("build", &out);
    }
    done.store(true, Ordering::Relaxed);
    let removed: Vec<(String, String)> = cleaners
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    // The last cleans ran after the last share: one version is left, the
    // newest; every other one was removed, by exactly one cleaner.
    let out = b9(&work.join("builder"), &work, &["list"]);
    let left = listed(&succeeded("list", &out));
    assert_eq!(left.len(), 1, "{left:?}");
    let newest = (left[0].1.clone(), left[0].2.clone());
    let mut unique = removed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), removed.len(), "removed twice: {removed:?}");
    assert_eq!(removed.len(), BUILDS - 1, "{removed:?}");
    assert!(
        removed.iter().all(|r| *r < newest),
        "{removed:?} {newest:?}"
    );
    assert_eq!(assert_consistent(&cache).len(), 2);
    assert_no_build_dirs(&work);
}
