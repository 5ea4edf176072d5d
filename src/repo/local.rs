//! The local shared-image cache `<cache>/local-repo/b9_shared_images/`.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{is_safe_component, RepoError, RepoWarning, SharedImage, INFO_EXTENSION};

/// The directory below the cache root that holds the local repository.
pub const LOCAL_REPO_DIR: &str = "local-repo";
/// The directory of a repository that holds images and `.b9si` files.
pub const IMAGES_DIR: &str = "b9_shared_images";
/// The lock file in the local repository directory (next to [`IMAGES_DIR`]).
pub const LOCK_FILE: &str = ".lock";

/// Makes temporary names unique within this process (the pid makes them
/// unique across processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Marks a pull's temporary file or directory (a download in the cache
/// root, a fresh metadata copy), followed by the PID.
pub(crate) const PULL_MARK: &str = ".b9-pull-";

/// The PID in a share's temporary name `.FINAL.tmp.PID.N`.
fn share_temp_pid(name: &str) -> Option<i32> {
    let mut parts = name.rsplitn(3, '.');
    parts.next()?.parse::<u64>().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    (rest.starts_with('.') && rest.ends_with(".tmp")).then_some(pid)
}

/// The local cache of shared images: `<cache>/local-repo/b9_shared_images/`.
///
/// Several b9 processes may use one cache at the same time:
/// * every change (share, prune, clean) holds an exclusive `flock` on
///   `<cache>/local-repo/.lock`, every scan (list, latest) a shared one;
/// * files are written under hidden temporary names (`.<final>.tmp.<pid>.<n>`)
///   in the same directory and renamed into place, the image before its
///   `.b9si`; deletion removes the `.b9si` before the image. So whoever
///   sees a `.b9si` sees its complete image.
///
/// A reader that found an image with [`LocalRepo::latest`] should open it
/// promptly: a concurrent clean may delete it later, but an open file stays
/// readable on Unix.
#[derive(Clone, Debug)]
pub struct LocalRepo {
    root: PathBuf,
}

/// A held lock; released when dropped (closing the file releases `flock`).
struct Lock(#[allow(dead_code)] File);

/// A version found on disk: what it says and where its `.b9si` is.
struct Found {
    image: SharedImage,
    info: PathBuf,
}

impl LocalRepo {
    /// Opens the local repository below `cache_root`, creating
    /// `local-repo/b9_shared_images/` when missing.
    pub fn open(cache_root: &Path) -> Result<LocalRepo, RepoError> {
        let repo = LocalRepo {
            root: cache_root.join(LOCAL_REPO_DIR),
        };
        let dir = repo.images_dir();
        fs::create_dir_all(&dir).map_err(|e| RepoError::io("cannot create", &dir, e))?;
        Ok(repo)
    }

    /// `<cache>/local-repo`.
    #[cfg(any(test, feature = "internals"))]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<cache>/local-repo/b9_shared_images`.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join(IMAGES_DIR)
    }

    /// Where the image file of `img` is (or would be) in this cache.
    pub fn image_path(&self, img: &SharedImage) -> PathBuf {
        self.images_dir().join(img.image_file_name())
    }

    /// Where the `.b9si` of `img` is (or would be) in this cache.
    pub fn info_path(&self, img: &SharedImage) -> PathBuf {
        self.images_dir().join(img.info_file_name())
    }

    fn lock(&self, exclusive: bool) -> Result<Lock, RepoError> {
        lock_file(&self.root.join(LOCK_FILE), exclusive).map(Lock)
    }

    /// All versions in the cache, sorted by (name, date, build id), and the
    /// `.b9si` files that were skipped: unreadable or unparsable ones, and
    /// ones whose image file is missing. Skipped files are reported, never
    /// deleted (the original deleted unparsable ones).
    pub fn list(&self) -> Result<(Vec<SharedImage>, Vec<RepoWarning>), RepoError> {
        let _lock = self.lock(false)?;
        let (found, warnings) = self.scan()?;
        Ok((found.into_iter().map(|f| f.image).collect(), warnings))
    }

    /// The newest version of `name` (maximum of (name, date, build id)).
    pub fn latest(&self, name: &str) -> Result<Option<SharedImage>, RepoError> {
        let (images, _) = self.list()?;
        Ok(images.into_iter().rfind(|i| i.name == name))
    }

    /// Like [`LocalRepo::latest`], but a missing image is an error
    /// ("Nothing found for shared image ...", as `From` reports it).
    pub fn require_latest(&self, name: &str) -> Result<SharedImage, RepoError> {
        self.latest(name)?
            .ok_or_else(|| RepoError::NotFound(name.to_string()))
    }

    /// Scans the directory (the caller holds a lock). Sorted ascending.
    fn scan(&self) -> Result<(Vec<Found>, Vec<RepoWarning>), RepoError> {
        let dir = self.images_dir();
        let entries = fs::read_dir(&dir).map_err(|e| RepoError::io("cannot read", &dir, e))?;
        let suffix = format!(".{INFO_EXTENSION}");
        let mut found = Vec::new();
        let mut warnings = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| RepoError::io("cannot read", &dir, e))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if file_name.starts_with('.') || !file_name.ends_with(&suffix) {
                continue;
            }
            let path = entry.path();
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                // Removed by another process between listing and reading.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    warnings.push(RepoWarning {
                        message: RepoError::io("cannot read", &path, e).to_string(),
                        path,
                    });
                    continue;
                }
            };
            match SharedImage::from_b9si(&text, &path) {
                Ok(image) => {
                    let image_path = self.image_path(&image);
                    if image_path.is_file() {
                        found.push(Found { image, info: path });
                    } else {
                        warnings.push(RepoWarning {
                            message: format!(
                                "its image file `{}` is missing",
                                image_path.display()
                            ),
                            path,
                        });
                    }
                }
                Err(e) => warnings.push(RepoWarning {
                    message: e.to_string(),
                    path,
                }),
            }
        }
        found.sort_by(|a, b| a.image.order_key().cmp(&b.image.order_key()));
        warnings.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((found, warnings))
    }

    /// A fresh hidden temporary path in the images directory for `final_name`.
    fn temp_path(&self, final_name: &str) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.images_dir()
            .join(format!(".{final_name}.tmp.{}.{n}", std::process::id()))
    }

    /// Where a pull downloads `img` before sharing it (the transfer adds
    /// its own suffix while in flight).
    pub fn download_path(&self, img: &SharedImage) -> PathBuf {
        self.root.join(format!(
            ".{}{PULL_MARK}{}",
            img.image_file_name(),
            std::process::id()
        ))
    }

    /// Removes what killed b9 processes left: temporary files of shares and
    /// downloads of pulls ([`crate::stale`]).
    pub fn sweep_leftovers(&self) {
        crate::stale::sweep(&self.images_dir(), share_temp_pid);
        crate::stale::sweep(&self.root, |name| {
            crate::stale::pid_after(name, ".", PULL_MARK)
        });
    }

    /// Adds the version `img` whose image file (already in `img.image_type`
    /// format) is `image_file`: the file is moved into the cache (copied and
    /// then removed when it is on another file system) under a temporary
    /// name, the `.b9si` written likewise, then both are renamed into place
    /// (image first) under the exclusive lock. With `max = Some(n)` only the
    /// newest `n` versions of that name are kept afterwards (docs/COMPATIBILITY.md#revision-limit; the
    /// removed versions are returned). `n < 1` is an error, reported before
    /// anything is touched. On failure the source file is put back when
    /// possible and no temporary file is left behind.
    pub fn share(
        &self,
        img: &SharedImage,
        image_file: &Path,
        max: Option<i64>,
    ) -> Result<Vec<SharedImage>, RepoError> {
        if let Some(n) = max {
            check_limit(n)?;
        }
        for (what, value) in [("name", &img.name), ("build id", &img.build_id)] {
            if !is_safe_component(value) {
                return Err(RepoError::InvalidName {
                    what,
                    value: value.clone(),
                });
            }
        }
        self.sweep_leftovers();
        let final_image = self.image_path(img);
        let final_info = self.info_path(img);
        let tmp_image = self.temp_path(&img.image_file_name());
        let tmp_info = self.temp_path(&img.info_file_name());

        // Stage the image outside the lock (a copy may take long).
        let copied = match fs::rename(image_file, &tmp_image) {
            Ok(()) => false,
            Err(e) if e.kind() == ErrorKind::CrossesDevices => {
                if let Err(e) = copy_synced(image_file, &tmp_image) {
                    let _ = fs::remove_file(&tmp_image);
                    return Err(e);
                }
                true
            }
            Err(e) => return Err(RepoError::io("cannot move into the cache", image_file, e)),
        };
        let undo = |also_info: bool| {
            if copied {
                let _ = fs::remove_file(&tmp_image);
            } else {
                let _ = fs::rename(&tmp_image, image_file);
            }
            if also_info {
                let _ = fs::remove_file(&tmp_info);
            }
        };
        if let Err(e) = write_synced(&tmp_info, img.to_b9si().as_bytes()) {
            undo(true);
            return Err(e);
        }

        let lock = match self.lock(true) {
            Ok(l) => l,
            Err(e) => {
                undo(true);
                return Err(e);
            }
        };
        if let Err(e) = fs::rename(&tmp_image, &final_image) {
            undo(true);
            return Err(RepoError::io("cannot rename into", &final_image, e));
        }
        if let Err(e) = fs::rename(&tmp_info, &final_info) {
            let _ = fs::remove_file(&tmp_info);
            // The image is in place but unannounced; take it back.
            if copied {
                let _ = fs::remove_file(&final_image);
            } else {
                let _ = fs::rename(&final_image, image_file);
            }
            return Err(RepoError::io("cannot rename into", &final_info, e));
        }
        sync_dir(&self.images_dir());
        let removed = match max {
            Some(n) => self.prune_locked(&img.name, n)?,
            None => Vec::new(),
        };
        drop(lock);
        if copied {
            fs::remove_file(image_file)
                .map_err(|e| RepoError::io("cannot remove the shared source", image_file, e))?;
        }
        Ok(removed)
    }

    /// Keeps the newest `keep` versions of `name` and deletes the `.b9si`
    /// and then the image of every older one; returns the deleted versions.
    /// `keep < 1` is an error (docs/COMPATIBILITY.md#revision-limit). Broken `.b9si` files are left alone.
    #[cfg(any(test, feature = "internals"))]
    pub fn prune(&self, name: &str, keep: i64) -> Result<Vec<SharedImage>, RepoError> {
        check_limit(keep)?;
        let _lock = self.lock(true)?;
        self.prune_locked(name, keep)
    }

    fn prune_locked(&self, name: &str, keep: i64) -> Result<Vec<SharedImage>, RepoError> {
        let (found, _) = self.scan()?;
        let versions: Vec<Found> = found.into_iter().filter(|f| f.image.name == name).collect();
        self.delete_oldest(versions, keep)
    }

    /// `clean-local`: for every name keeps the newest `max` versions and
    /// deletes the others; `None` means 0, i.e. every cached image is deleted
    /// (the original's tested behaviour). A negative limit is an error.
    /// Broken `.b9si` files, and image files without a `.b9si`, are left alone.
    pub fn clean(&self, max: Option<i64>) -> Result<Vec<SharedImage>, RepoError> {
        let keep = max.unwrap_or(0);
        if keep < 0 {
            return Err(RepoError::InvalidLimit(
                keep,
                "clean-local keeps 0 or more versions",
            ));
        }
        let _lock = self.lock(true)?;
        self.sweep_leftovers();
        let (found, _) = self.scan()?;
        let mut by_name: Vec<Vec<Found>> = Vec::new();
        for f in found {
            match by_name.last_mut() {
                Some(group) if group[0].image.name == f.image.name => group.push(f),
                _ => by_name.push(vec![f]),
            }
        }
        let mut removed = Vec::new();
        for group in by_name {
            removed.extend(self.delete_oldest(group, keep)?);
        }
        Ok(removed)
    }

    /// Deletes all but the last `keep` of `versions` (sorted ascending).
    fn delete_oldest(
        &self,
        versions: Vec<Found>,
        keep: i64,
    ) -> Result<Vec<SharedImage>, RepoError> {
        let keep = usize::try_from(keep).unwrap_or(0);
        let excess = versions.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for f in versions.into_iter().take(excess) {
            remove_if_exists(&f.info)?;
            remove_if_exists(&self.image_path(&f.image))?;
            removed.push(f.image);
        }
        if !removed.is_empty() {
            sync_dir(&self.images_dir());
        }
        Ok(removed)
    }
}

fn check_limit(n: i64) -> Result<(), RepoError> {
    if n < 1 {
        Err(RepoError::InvalidLimit(
            n,
            "it must be at least 1 (or Nothing)",
        ))
    } else {
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> Result<(), RepoError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RepoError::io("cannot delete", path, e)),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let mut f = File::create(path).map_err(|e| RepoError::io("cannot create", path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| RepoError::io("cannot write", path, e))
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), RepoError> {
    fs::copy(from, to).map_err(|e| RepoError::io("cannot copy into the cache", from, e))?;
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| RepoError::io("cannot write", to, e))
}

/// Makes renames and deletions in `dir` durable; best effort.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// [`crate::lock::lock_file`] with the cache's error type.
pub(crate) fn lock_file(path: &Path, exclusive: bool) -> Result<File, RepoError> {
    crate::lock::lock_file(path, exclusive)
        .map_err(|e| RepoError::io("cannot lock the lock file", path, e))
}

#[cfg(test)]
mod tests {
    use super::share_temp_pid;

    #[test]
    fn share_temp_names_give_their_pid() {
        assert_eq!(share_temp_pid(".a_1.qcow2.tmp.4242.7"), Some(4242));
        assert_eq!(share_temp_pid(".a.tmp.b_1.raw.tmp.9.0"), Some(9));
        assert_eq!(share_temp_pid("a_1.qcow2.tmp.4242.7"), None);
        assert_eq!(share_temp_pid(".a_1.qcow2.tmp.x.7"), None);
        assert_eq!(share_temp_pid(".a_1.qcow2.4242.7"), None);
        assert_eq!(share_temp_pid("a_1.qcow2"), None);
    }
}
