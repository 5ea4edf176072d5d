//! The step cache: results of guest steps (a `VmImages` script with its
//! file-system resizes) stored by a key over everything that can change
//! them, so a rebuild with unchanged inputs takes the result instead of
//! booting a VM. The pipeline computes keys ([`key::KeyBuilder`]) and asks
//! [`StepCache::claim`]: a [`Hit`] restores the build images and
//! read-write shares, a [`Slot`] stores them after the step ran.
//!
//! Layout under `$XDG_CACHE_HOME/b9/steps` (`~/.cache/b9/steps`):
//! `<key>/` entries (docs/ARCHITECTURE.md#step-cache), `<key>.lock` (one
//! lock per entry: whoever holds it runs or reads the step, so two b9
//! processes never both write an entry and never read a half-written
//! one), `.part-<pid>-<key>/` entries being written (renamed when
//! complete), `file-hashes` (the index of [`index::FileHashes`]). The
//! least recently used entries are removed above the size limit.

pub mod entry;
pub mod index;
pub mod key;
pub mod layer;
pub mod prune;
mod tree;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::disk::{CreateOptions, DiskError, Format};
use entry::{Manifest, StepOutput};
use index::FileHashes;
use key::{Key, KeyBuilder};

/// Why the step cache failed (a build then runs the step).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file or directory of the cache could not be used.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An image could not be stored or restored.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// An entry does not match its manifest.
    #[error("corrupt entry: {0}")]
    Corrupt(String),
}

impl CacheError {
    /// An I/O error of `op` on `path`, for `map_err`.
    pub fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
        let path = path.to_path_buf();
        move |source| CacheError::Io { op, path, source }
    }
}

/// The step cache of one b9 run.
#[derive(Clone, Debug)]
pub struct StepCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// What [`StepCache::claim`] found.
pub enum Claim {
    /// A checked entry.
    Hit(Hit),
    /// No entry (or a corrupt one, removed): run the step and store it.
    Miss(Slot),
}

/// A checked entry, locked while it is read.
pub struct Hit {
    _lock: File,
    dir: PathBuf,
    /// The entry's manifest.
    pub manifest: Manifest,
}

/// The right to store an entry: its lock, held while the step runs.
pub struct Slot {
    lock: File,
    cache: StepCache,
    key: Key,
    started: Instant,
    layers: Option<Box<KeyBuilder>>,
}

/// The step cache's directory: `$XDG_CACHE_HOME/b9/steps`, else
/// `~/.cache/b9/steps`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("b9/steps"))
}

/// Seconds since 1970.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_date(secs: u64) -> String {
    let c = crate::civil::Civil::from_unix(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

impl StepCache {
    /// The cache in `dir`, holding at most `max_bytes`.
    pub fn new(dir: PathBuf, max_bytes: u64) -> StepCache {
        StepCache { dir, max_bytes }
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size limit in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The file-hash index (the cache directory is created).
    pub fn hashes(&self) -> Result<FileHashes, CacheError> {
        self.create()?;
        Ok(FileHashes::load(&self.dir))
    }

    fn create(&self) -> Result<(), CacheError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| CacheError::Io {
            op: "create",
            path: self.dir.clone(),
            source,
        })?;
        // Layers' images are overlays of images in sibling entries.
        crate::disk::gate::trust_store(&self.dir);
        Ok(())
    }

    /// Opens (creating) the lock file of `key`, unlocked.
    fn open_lock(&self, key: &Key) -> Result<File, CacheError> {
        let path = self.lock_path(key);
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(CacheError::io("lock", &path))
    }

    fn entry_dir(&self, key: &Key) -> PathBuf {
        self.dir.join(key.as_str())
    }

    fn lock_path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }

    /// The manifest of the entry for `key`, if there is a readable one
    /// (not checked, not locked: for `b9 show`).
    pub fn peek(&self, key: &Key) -> Option<Manifest> {
        entry::read_manifest(&self.entry_dir(key)).ok()
    }

    /// Locks the entry for `key` (waiting while another b9 runs or reads
    /// that step) and checks it. A corrupt entry is removed with a warning
    /// and reported as a miss.
    pub fn claim(&self, key: &Key) -> Result<Claim, CacheError> {
        self.create()?;
        let lock_path = self.lock_path(key);
        let io = |source| CacheError::Io {
            op: "lock",
            path: lock_path.clone(),
            source,
        };
        let lock = self.open_lock(key)?;
        if let Err(std::fs::TryLockError::WouldBlock) = lock.try_lock() {
            tracing::info!("waiting for another b9 running the same step");
            lock.lock().map_err(io)?;
        }
        let dir = self.entry_dir(key);
        if dir.exists() {
            match entry::verify(&dir, key.as_str()) {
                Ok(manifest) => {
                    touch(&dir);
                    return Ok(Claim::Hit(Hit {
                        _lock: lock,
                        dir,
                        manifest,
                    }));
                }
                Err(e) => {
                    tracing::warn!("step cache: discarding entry {key}: {e}");
                    prune::remove_entry(&self.dir, &dir);
                }
            }
        }
        Ok(Claim::Miss(Slot {
            lock,
            cache: self.clone(),
            key: key.clone(),
            started: Instant::now(),
            layers: None,
        }))
    }
}

/// Marks an entry used now (least-recently-used order is by the manifest's
/// modification time).
pub(crate) fn touch(dir: &Path) {
    let manifest = dir.join(entry::MANIFEST);
    if let Ok(f) = File::options().write(true).open(&manifest) {
        let _ = f.set_modified(SystemTime::now());
    }
}

impl Hit {
    /// Restores stored build image `i` into the build directory `to`.
    pub fn restore_image(
        &self,
        i: usize,
        to: &Path,
        opts: &CreateOptions,
    ) -> Result<(PathBuf, Format), CacheError> {
        let img = self
            .manifest
            .images
            .get(i)
            .ok_or_else(|| CacheError::Corrupt(format!("no image {i}")))?;
        entry::restore_image(&self.dir, img, to, opts)
    }

    /// Makes each read-write share (`index` in the script's list mapped to
    /// its host directory by `path_of`) hold what the step left in it.
    pub fn restore_shares(
        &self,
        path_of: &dyn Fn(usize) -> Option<PathBuf>,
    ) -> Result<(), CacheError> {
        for s in &self.manifest.shares {
            let target = path_of(s.index)
                .ok_or_else(|| CacheError::Corrupt(format!("no share {}", s.index)))?;
            entry::restore_share(&self.dir, s, &target)?;
        }
        Ok(())
    }
}

impl Slot {
    /// The slot of a step whose commands may be kept layer by layer;
    /// `base` is its key without the commands ([`layer::keys`]).
    pub fn layered(self, base: KeyBuilder) -> Slot {
        Slot {
            layers: Some(Box::new(base)),
            ..self
        }
    }

    /// The cache and the layers' key base, when the step is layered.
    pub fn layers(&self) -> Option<(&StepCache, &KeyBuilder)> {
        self.layers.as_deref().map(|b| (&self.cache, b))
    }

    /// The time since the slot was claimed (the step's duration).
    pub fn elapsed_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Stores the step's result under a temporary name, renames it into
    /// place, releases the entry and removes least-recently-used entries
    /// above the size limit.
    pub fn store(self, out: &StepOutput<'_>) -> Result<(), CacheError> {
        let cache = &self.cache;
        let part = cache
            .dir
            .join(format!(".part-{}-{}", std::process::id(), self.key));
        let result = entry::write(&part, self.key.as_str(), out, now()).and_then(|()| {
            let dir = cache.entry_dir(&self.key);
            std::fs::rename(&part, &dir).map_err(|source| CacheError::Io {
                op: "rename into",
                path: dir,
                source,
            })
        });
        if result.is_err() {
            let _ = crate::stale::remove_entry(&part);
        }
        drop(self.lock);
        result?;
        prune::evict(cache);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::stepcache::entry::ImageOut;

    fn key(n: u8) -> Key {
        let mut k = key::KeyBuilder::new();
        k.field([n]);
        k.finish()
    }

    /// A raw image of `len` bytes of `fill`, zeros in the middle half.
    fn image(path: &Path, len: usize, fill: u8) {
        let mut bytes = vec![fill; len];
        bytes[len / 4..len * 3 / 4].fill(0);
        std::fs::write(path, bytes).unwrap();
    }

    fn store(cache: &StepCache, k: &Key, img: &Path, share: Option<&Path>) {
        let Claim::Miss(slot) = cache.claim(k).unwrap() else {
            panic!("expected a miss");
        };
        let out = StepOutput {
            label: "t",
            images: vec![ImageOut {
                path: img,
                format: Format::Raw,
            }],
            shares: share.map(|s| (1, s)).into_iter().collect(),
            output: vec!["> hello".into()],
            seconds: 1.0,
        };
        slot.store(&out).unwrap();
    }

    #[test]
    fn a_stored_step_comes_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::new(dir.path().join("steps"), u64::MAX);
        let img = dir.path().join("0-root.raw");
        image(&img, 8 << 20, 7);
        let share = dir.path().join("rw");
        std::fs::create_dir_all(share.join("d")).unwrap();
        std::fs::write(share.join("d/out.txt"), b"written").unwrap();
        let k = key(1);
        store(&cache, &k, &img, Some(&share));
        // The share is back as the step left it, whatever is there now.
        std::fs::write(share.join("d/out.txt"), b"changed").unwrap();
        std::fs::write(share.join("extra"), b"x").unwrap();
        let Claim::Hit(hit) = cache.claim(&k).unwrap() else {
            panic!("expected a hit");
        };
        assert_eq!(hit.manifest.output, ["> hello"]);
        let to = dir.path().join("build");
        std::fs::create_dir(&to).unwrap();
        let (path, format) = hit
            .restore_image(0, &to, &CreateOptions { timestamp: 0 })
            .unwrap();
        assert_eq!(
            (path.file_name().unwrap(), format),
            ("0-root.raw".as_ref(), Format::Raw)
        );
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&img).unwrap());
        hit.restore_shares(&|i| (i == 1).then(|| share.clone()))
            .unwrap();
        assert_eq!(std::fs::read(share.join("d/out.txt")).unwrap(), b"written");
        assert!(!share.join("extra").exists());
        // Stored compactly: the zero half is not in the qcow2 file.
        let stored = cache.dir().join(k.as_str()).join("image-0.qcow2");
        assert!(std::fs::metadata(stored).unwrap().len() < (8 << 20) * 3 / 4);
    }

    #[test]
    fn a_corrupt_entry_is_discarded_and_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::new(dir.path().join("steps"), u64::MAX);
        let img = dir.path().join("0-root.raw");
        image(&img, 256 << 10, 9);
        let k = key(2);
        store(&cache, &k, &img, None);
        let stored = cache.dir().join(k.as_str()).join("image-0.qcow2");
        let mut bytes = std::fs::read(&stored).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&stored, bytes).unwrap();
        assert!(matches!(cache.claim(&k).unwrap(), Claim::Miss(_)));
        assert!(
            !cache.dir().join(k.as_str()).exists(),
            "the entry is removed"
        );
        // A manifest that does not parse is corrupt too.
        store(&cache, &k, &img, None);
        std::fs::write(cache.dir().join(k.as_str()).join(entry::MANIFEST), b"{").unwrap();
        assert!(matches!(cache.claim(&k).unwrap(), Claim::Miss(_)));
    }

    #[test]
    fn eviction_keeps_the_limit_removing_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("0-root.raw");
        image(&img, 1 << 20, 3);
        let unlimited = StepCache::new(dir.path().join("steps"), u64::MAX);
        store(&unlimited, &key(1), &img, None);
        let one = prune::list(&unlimited)[0].bytes;
        store(&unlimited, &key(2), &img, None);
        // Entry 1 used more recently than entry 2.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        let m2 = unlimited.dir().join(key(2).as_str()).join(entry::MANIFEST);
        File::options()
            .write(true)
            .open(m2)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let limited = StepCache::new(dir.path().join("steps"), one * 2 + one / 2);
        store(&limited, &key(3), &img, None);
        let left: Vec<Key> = prune::list(&limited).into_iter().map(|e| e.key).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(!left.contains(&key(2)), "the least recently used goes");
        let total: u64 = prune::list(&limited).iter().map(|e| e.bytes).sum();
        assert!(total <= limited.max_bytes());
        assert_eq!(prune::clean(&limited), 2);
        assert!(prune::list(&limited).is_empty());
    }

    #[test]
    fn a_second_claim_waits_for_the_first_and_hits() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::new(dir.path().join("steps"), u64::MAX);
        let img = dir.path().join("0-root.raw");
        image(&img, 64 << 10, 5);
        let k = key(4);
        let Claim::Miss(slot) = cache.claim(&k).unwrap() else {
            panic!("expected a miss");
        };
        let (c2, k2) = (cache.clone(), k.clone());
        let waiter = std::thread::spawn(move || matches!(c2.claim(&k2).unwrap(), Claim::Hit(_)));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!waiter.is_finished(), "the second claim waits for the lock");
        let out = StepOutput {
            label: "t",
            images: vec![ImageOut {
                path: &img,
                format: Format::Raw,
            }],
            shares: Vec::new(),
            output: Vec::new(),
            seconds: 0.0,
        };
        slot.store(&out).unwrap();
        assert!(
            waiter.join().unwrap(),
            "the second claim takes the stored entry"
        );
    }
}
