//! Remote repositories (docs/COMPATIBILITY.md#remotes): push a cached version, pull the
//! metadata of a remote into `<cache>/remote-repos/<id>/b9_shared_images/`,
//! pull the newest version of a name into the local cache. Everything goes
//! over SSH/SFTP from Rust (`repo::ssh`); uploads and downloads use temporary
//! names, so a broken transfer never leaves a truncated file visible.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::RemoteRepo;
use crate::repo::local::PULL_MARK;
use crate::repo::ssh::{HostKeyPolicy, Remote, Session};
use crate::repo::{LocalRepo, SharedImage, IMAGES_DIR, INFO_EXTENSION, LOCK_FILE};

/// Marks the previous metadata copy while a fresh one is swapped in,
/// followed by the PID.
const OLD_MARK: &str = ".b9-old-";

/// The directory of remote metadata copies below the cache root.
pub const REMOTE_REPOS_DIR: &str = "remote-repos";

/// How to reach a configured repository; host keys are trusted on first
/// use and recorded in `<b9 dir>/known_hosts`.
pub fn remote_of(repo: &RemoteRepo, b9_dir: &Path) -> Remote {
    Remote {
        host: repo.ssh_remote_host.clone(),
        port: repo.ssh_remote_port,
        user: repo.ssh_remote_user.clone(),
        key_file: repo.ssh_priv_key_file.clone(),
        known_hosts: b9_dir.join("known_hosts"),
        host_key_policy: HostKeyPolicy::TrustOnFirstUse,
    }
}

/// `<remote_path>/b9_shared_images` on the server.
fn remote_dir(repo: &RemoteRepo) -> String {
    format!("{}/{IMAGES_DIR}", repo.remote_path.trim_end_matches('/'))
}

/// The local copy of a remote's metadata.
pub fn metadata_dir(cache_root: &Path, id: &str) -> PathBuf {
    cache_root.join(REMOTE_REPOS_DIR).join(id).join(IMAGES_DIR)
}

/// Uploads the newest cached version of `name`: the image first, then its
/// `.b9si`, each renamed into place on the server only when complete.
/// `progress(bytes_done, image_size)` follows the image's upload.
pub fn push(
    local: &LocalRepo,
    repo: &RemoteRepo,
    b9_dir: &Path,
    name: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SharedImage, String> {
    let img = local.require_latest(name).map_err(|e| e.to_string())?;
    let session = Session::connect(&remote_of(repo, b9_dir)).map_err(|e| e.to_string())?;
    let dir = remote_dir(repo);
    session.mkdir_p(&dir).map_err(|e| e.to_string())?;
    session
        .upload(
            &local.image_path(&img),
            &format!("{dir}/{}", img.image_file_name()),
            progress,
        )
        .map_err(|e| e.to_string())?;
    session
        .upload(
            &local.info_path(&img),
            &format!("{dir}/{}", img.info_file_name()),
            &mut |_, _| {},
        )
        .map_err(|e| e.to_string())?;
    let _ = session.close();
    Ok(img)
}

/// Copies every `.b9si` of a remote into its local metadata directory,
/// which is replaced whole; returns the versions found.
pub fn pull_metadata(
    cache_root: &Path,
    repo: &RemoteRepo,
    b9_dir: &Path,
) -> Result<Vec<SharedImage>, String> {
    let session = Session::connect(&remote_of(repo, b9_dir)).map_err(|e| e.to_string())?;
    let images = pull_metadata_with(&session, cache_root, repo);
    let _ = session.close();
    images
}

/// [`pull_metadata`] over an open session.
///
/// The `.b9si` files are downloaded into a fresh hidden directory next to
/// the metadata directory, which is then swapped in under an exclusive lock
/// on `<cache>/remote-repos/<id>/.lock` ([`read_metadata`] takes a shared
/// one), so concurrent pulls and listings always see one complete copy.
fn pull_metadata_with(
    session: &Session,
    cache_root: &Path,
    repo: &RemoteRepo,
) -> Result<Vec<SharedImage>, String> {
    let dir = remote_dir(repo);
    // A repository nobody pushed to yet has no directory: it is empty.
    let entries = if session.is_dir(&dir).map_err(|e| e.to_string())? {
        session.list(&dir).map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    let target = metadata_dir(cache_root, &repo.id);
    let parent = target
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", target.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    // What killed b9 processes left.
    crate::stale::sweep(parent, |name| {
        crate::stale::pid_after(name, ".", PULL_MARK)
            .or_else(|| crate::stale::pid_after(name, ".", OLD_MARK))
    });
    let fresh = parent.join(format!(
        ".{IMAGES_DIR}{PULL_MARK}{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // Left over by an earlier process with the same pid that was killed.
    let _ = std::fs::remove_dir_all(&fresh);
    let fetched = std::fs::create_dir(&fresh)
        .map_err(|e| format!("cannot create {}: {e}", fresh.display()))
        .and_then(|()| {
            let mut progress = |_, _| {};
            let suffix = format!(".{INFO_EXTENSION}");
            for e in entries
                .iter()
                .filter(|e| !e.is_dir && e.name.ends_with(&suffix))
            {
                session
                    .download(
                        &format!("{dir}/{}", e.name),
                        &fresh.join(&e.name),
                        &mut progress,
                    )
                    .map_err(|e| e.to_string())?;
            }
            Ok(read_metadata_unlocked(&fresh))
        })
        .and_then(|images| swap_in(parent, &fresh, &target).map(|()| images));
    if fetched.is_err() {
        let _ = std::fs::remove_dir_all(&fresh);
    }
    fetched
}

/// Makes temporary names unique within this process (the pid makes them
/// unique across processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The lock file of the metadata copies of one remote.
fn metadata_lock(parent: &Path, exclusive: bool) -> Result<File, String> {
    crate::repo::local::lock_file(&parent.join(LOCK_FILE), exclusive).map_err(|e| e.to_string())
}

/// Replaces the directory `target` by `fresh` under the exclusive lock.
fn swap_in(parent: &Path, fresh: &Path, target: &Path) -> Result<(), String> {
    let _lock = metadata_lock(parent, true)?;
    let old = parent.join(format!(".{IMAGES_DIR}{OLD_MARK}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&old);
    match std::fs::rename(target, &old) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot replace {}: {e}", target.display())),
    }
    if let Err(e) = std::fs::rename(fresh, target) {
        // Put the previous copy back.
        let _ = std::fs::rename(&old, target);
        return Err(format!("cannot replace {}: {e}", target.display()));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Forgets the metadata copy of remote `id` (`clean-remote`): its
/// directory is left empty.
pub fn clear_metadata(cache_root: &Path, id: &str) -> Result<(), String> {
    let target = metadata_dir(cache_root, id);
    let parent = target
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", target.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let _lock = metadata_lock(parent, true)?;
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .map_err(|e| format!("cannot remove {}: {e}", target.display()))?;
    }
    std::fs::create_dir_all(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))
}

/// The versions described by the `.b9si` files of a metadata directory
/// (see [`metadata_dir`]); broken ones are reported and skipped. Reads
/// under a shared lock, so a concurrent pull is seen whole or not at all.
pub fn read_metadata(dir: &Path) -> Vec<SharedImage> {
    let _lock = match dir.parent() {
        Some(parent) if parent.is_dir() => match metadata_lock(parent, false) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        },
        _ => None,
    };
    read_metadata_unlocked(dir)
}

fn read_metadata_unlocked(dir: &Path) -> Vec<SharedImage> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != INFO_EXTENSION) {
            continue;
        }
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| SharedImage::from_b9si(&t, &path).map_err(|e| e.to_string()))
        {
            Ok(img) => out.push(img),
            Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
        }
    }
    out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    out
}

/// Pulls the newest version of `name` found among `repos` (their metadata
/// is pulled first) into the local cache, applying the cache limit.
/// `progress(bytes_done, image_size)` follows the image's download.
pub fn pull_image(
    local: &LocalRepo,
    cache_root: &Path,
    repos: &[RemoteRepo],
    b9_dir: &Path,
    name: &str,
    max: Option<i64>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SharedImage, String> {
    local.sweep_leftovers();
    // One connection per repository; the one holding the best version is
    // kept open for the download.
    let mut best: Option<(SharedImage, &RemoteRepo, Session)> = None;
    for repo in repos {
        let session = Session::connect(&remote_of(repo, b9_dir)).map_err(|e| e.to_string())?;
        let newest = pull_metadata_with(&session, cache_root, repo)?
            .into_iter()
            .filter(|img| img.name == name)
            .max_by(|a, b| a.order_key().cmp(&b.order_key()));
        match newest {
            Some(img)
                if best
                    .as_ref()
                    .is_none_or(|(b, _, _)| img.order_key() > b.order_key()) =>
            {
                if let Some((_, _, old)) = best.replace((img, repo, session)) {
                    let _ = old.close();
                }
            }
            _ => {
                let _ = session.close();
            }
        }
    }
    let Some((img, repo, session)) = best else {
        return Err(format!(
            "failed to pull: no shared image `{name}` in the selected repositories"
        ));
    };
    let file = local.download_path(&img);
    let result = session
        .download(
            &format!("{}/{}", remote_dir(repo), img.image_file_name()),
            &file,
            progress,
        )
        .map_err(|e| e.to_string())
        .and_then(|()| local.share(&img, &file, max).map_err(|e| e.to_string()));
    let _ = session.close();
    let _ = std::fs::remove_file(&file);
    result.map(|_| img)
}
