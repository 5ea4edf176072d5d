//! Remote repositories (SPEC §8.4): push a cached version, pull the
//! metadata of a remote into `<cache>/remote-repos/<id>/b9_shared_images/`,
//! pull the newest version of a name into the local cache. Everything goes
//! over SSH/SFTP from Rust (`repo::ssh`); uploads and downloads use temporary
//! names, so a broken transfer never leaves a truncated file visible.

use std::path::{Path, PathBuf};

use crate::config::RemoteRepo;
use crate::repo::ssh::{HostKeyPolicy, Remote, Session};
use crate::repo::{LocalRepo, SharedImage, IMAGES_DIR, INFO_EXTENSION};

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
pub fn push(
    local: &LocalRepo,
    repo: &RemoteRepo,
    b9_dir: &Path,
    name: &str,
) -> Result<SharedImage, String> {
    let img = local.require_latest(name).map_err(|e| e.to_string())?;
    let session = Session::connect(&remote_of(repo, b9_dir)).map_err(|e| e.to_string())?;
    let dir = remote_dir(repo);
    session.mkdir_p(&dir).map_err(|e| e.to_string())?;
    let mut progress = |_done: u64| {};
    session
        .upload(
            &local.image_path(&img),
            &format!("{dir}/{}", img.image_file_name()),
            &mut progress,
        )
        .map_err(|e| e.to_string())?;
    session
        .upload(
            &local.info_path(&img),
            &format!("{dir}/{}", img.info_file_name()),
            &mut progress,
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
    let dir = remote_dir(repo);
    let entries = session.list(&dir).unwrap_or_default();
    let target = metadata_dir(cache_root, &repo.id);
    let fresh = target.with_file_name(format!(".{IMAGES_DIR}.b9-pull-{}", std::process::id()));
    std::fs::create_dir_all(&fresh)
        .map_err(|e| format!("cannot create {}: {e}", fresh.display()))?;
    let mut progress = |_done: u64| {};
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
    let _ = session.close();
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&fresh, &target)
        .map_err(|e| format!("cannot replace {}: {e}", target.display()))?;
    Ok(read_metadata(&target))
}

/// The versions described by the `.b9si` files of a metadata directory;
/// broken ones are reported and skipped.
pub fn read_metadata(dir: &Path) -> Vec<SharedImage> {
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
pub fn pull_image(
    local: &LocalRepo,
    cache_root: &Path,
    repos: &[RemoteRepo],
    b9_dir: &Path,
    name: &str,
    max: Option<i64>,
) -> Result<SharedImage, String> {
    let mut best: Option<(SharedImage, &RemoteRepo)> = None;
    for repo in repos {
        for img in pull_metadata(cache_root, repo, b9_dir)? {
            if img.name == name
                && best
                    .as_ref()
                    .is_none_or(|(b, _)| img.order_key() > b.order_key())
            {
                best = Some((img, repo));
            }
        }
    }
    let Some((img, repo)) = best else {
        return Err(format!(
            "failed to pull: no shared image `{name}` in the selected repositories"
        ));
    };
    let session = Session::connect(&remote_of(repo, b9_dir)).map_err(|e| e.to_string())?;
    let file = local.root().join(format!(
        ".{}.b9-pull-{}",
        img.image_file_name(),
        std::process::id()
    ));
    let mut progress = |_done: u64| {};
    let result = session
        .download(
            &format!("{}/{}", remote_dir(repo), img.image_file_name()),
            &file,
            &mut progress,
        )
        .map_err(|e| e.to_string())
        .and_then(|()| local.share(&img, &file, max).map_err(|e| e.to_string()));
    let _ = session.close();
    let _ = std::fs::remove_file(&file);
    result.map(|_| img)
}
