//! The cache's upkeep: listing entries, removing the least recently used
//! ones above the size limit, removing all of them (`b9 cache clean`), and
//! sweeping what killed b9 processes left (`.part-<pid>-*`).

use std::fs::File;
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::stepcache::entry::{self, MANIFEST};
use crate::stepcache::key::Key;
use crate::stepcache::StepCache;

/// An entry as listed.
#[derive(Clone, Debug)]
pub struct EntryInfo {
    /// Its key.
    pub key: Key,
    /// The artifact instance that stored it (empty when unreadable).
    pub label: String,
    /// When the step ran (UNIX seconds).
    pub created: u64,
    /// When it was last stored or taken (UNIX seconds).
    pub used: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// For a layer: how many commands it holds.
    pub commands: Option<usize>,
    /// For a layer on another: that one's key.
    pub backing: Option<Key>,
}

/// The entries, least recently used first.
pub fn list(cache: &StepCache) -> Vec<EntryInfo> {
    let Ok(read) = std::fs::read_dir(cache.dir()) else {
        return Vec::new();
    };
    let mut out: Vec<EntryInfo> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let key = Key::parse(&e.file_name().to_string_lossy())?;
            let dir = e.path();
            let manifest = entry::read_manifest(&dir).ok();
            let used = std::fs::metadata(dir.join(MANIFEST))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            Some(EntryInfo {
                key,
                label: manifest
                    .as_ref()
                    .map(|m| m.label.clone())
                    .unwrap_or_default(),
                created: manifest.as_ref().map_or(0, |m| m.created),
                used,
                bytes: size(&dir),
                commands: manifest.as_ref().and_then(|m| m.commands),
                backing: manifest
                    .as_ref()
                    .and_then(|m| m.backing.as_ref())
                    .and_then(|b| Key::parse(&b.key)),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.used, &a.key.0).cmp(&(b.used, &b.key.0)));
    out
}

/// Bytes on disk under `path`.
fn size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path).map_or(0, |r| {
        r.filter_map(Result::ok).map(|e| size(&e.path())).sum()
    })
}

/// Keys of the entries other entries are layered on (their backing).
fn backed(entries: &[EntryInfo]) -> Vec<Key> {
    entries.iter().filter_map(|e| e.backing.clone()).collect()
}

/// Removes the least recently used entries until the cache holds at most
/// its limit; entries another b9 holds are skipped, and so are layers
/// another layer is an overlay of (chains are never broken: a chain goes
/// from its top down). Returns the removed.
pub fn evict(cache: &StepCache) -> Vec<EntryInfo> {
    sweep(cache);
    let mut entries = list(cache);
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut removed = Vec::new();
    while total > cache.max_bytes() {
        let below = backed(&entries);
        let Some(pos) = entries
            .iter()
            .position(|e| !below.contains(&e.key) && remove_locked(cache, &e.key))
        else {
            break;
        };
        let e = entries.remove(pos);
        total = total.saturating_sub(e.bytes);
        tracing::info!(
            "step cache: removed entry {} ({}, {} bytes) to stay within {} bytes",
            e.key,
            e.label,
            e.bytes,
            cache.max_bytes()
        );
        removed.push(e);
    }
    removed
}

/// Removes every entry no other b9 holds, layers from the top of their
/// chains down (a layer in use keeps the ones below it); returns how many.
pub fn clean(cache: &StepCache) -> usize {
    sweep(cache);
    let mut entries = list(cache);
    let mut count = 0;
    loop {
        let below = backed(&entries);
        let before = entries.len();
        entries.retain(|e| below.contains(&e.key) || !remove_locked(cache, &e.key));
        count += before - entries.len();
        if entries.len() == before {
            return count;
        }
    }
}

/// Removes the entry for `key` if its lock is free (a corrupt layer).
pub fn remove_unlocked(cache: &StepCache, key: &Key) -> bool {
    remove_locked(cache, key)
}

/// Removes the entry for `key` if its lock is free.
fn remove_locked(cache: &StepCache, key: &Key) -> bool {
    let lock = cache.lock_path(key);
    let Ok(file) = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
    else {
        return false;
    };
    if file.try_lock().is_err() {
        return false;
    }
    remove_entry(cache.dir(), &cache.entry_dir(key));
    true
}

/// Removes an entry directory: renamed out of the way first (so no reader
/// takes a partly removed entry for a whole one), then deleted.
pub fn remove_entry(cache_dir: &Path, dir: &Path) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trash = cache_dir.join(format!(".part-{}-gone-{name}", std::process::id()));
    let target = if std::fs::rename(dir, &trash).is_ok() {
        trash
    } else {
        dir.to_path_buf()
    };
    if let Err(e) = crate::stale::remove_entry(&target) {
        tracing::warn!("step cache: cannot remove {}: {e}", target.display());
    }
}

/// Removes `.part-<pid>-*` directories of b9 processes that are gone.
fn sweep(cache: &StepCache) {
    crate::stale::sweep(cache.dir(), |name| {
        name.strip_prefix(".part-")?.split('-').next()?.parse().ok()
    });
}
