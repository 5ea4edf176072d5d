//! Layers: the build images' state after each command of a script, so a
//! script whose first N commands are unchanged boots on layer N and runs
//! only the rest (docs/ARCHITECTURE.md#layers).
//!
//! A layer is an entry like a whole step's, keyed by the step's inputs
//! without the commands plus commands 1..N ([`keys`]); its manifest says
//! how many commands it holds. The first layer a run makes holds whole
//! (compact) images; the next ones hold qcow2 overlays whose backing files
//! are the previous layer's images (`../<key>/image-<i>.qcow2`, recorded in
//! the manifest with their hashes). A chain is checked whole when it is
//! used, read under shared locks (eviction takes the lock exclusively, so
//! it never removes a layer in use) and written under exclusive ones.

use std::fs::File;
use std::path::PathBuf;

use crate::stepcache::entry::{self, Backing, Manifest, StoredImage};
use crate::stepcache::index::hash_file;
use crate::stepcache::key::{Key, KeyBuilder};
use crate::stepcache::{now, prune, touch, CacheError, StepCache};

/// Layers in one chain at most (QEMU and b9's qcow2 reader follow backing
/// chains only so deep); commands after this many get no layer.
pub const MAX_LAYERS: usize = 48;

/// The keys of the layers after commands 1, 2, ... (`commands` are the
/// commands in their canonical text): `base` (the step's key without the
/// commands) extended command by command.
pub fn keys(base: &KeyBuilder, commands: &[String]) -> Vec<Key> {
    let mut k = base.clone();
    k.field("layers");
    commands
        .iter()
        .map(|c| {
            k.field(c);
            k.finish()
        })
        .collect()
}

/// The file of build image `i` in a layer.
pub fn image_file(i: usize) -> String {
    format!("image-{i}.qcow2")
}

/// A checked layer chain, locked (shared) while it is used.
pub struct Found {
    /// The top layer's key.
    pub key: Key,
    /// The top layer's manifest.
    pub manifest: Manifest,
    dir: PathBuf,
    _locks: Vec<File>,
}

impl Found {
    /// The top layer's image file of build image `i`.
    pub fn image(&self, i: usize) -> PathBuf {
        self.dir.join(image_file(i))
    }

    /// How many commands the layer holds.
    pub fn commands(&self) -> usize {
        self.manifest.commands.unwrap_or(0)
    }
}

/// Layers being made by a run, their directories locked exclusively; those
/// not committed are removed when dropped.
pub struct NewLayers {
    cache: StepCache,
    layers: Vec<(Key, File)>,
    committed: usize,
    top: PathBuf,
}

impl StepCache {
    /// The layer for the most commands among `keys` (`keys[n - 1]` holds
    /// n commands) whose whole chain is intact; a corrupt layer is removed
    /// with a warning and a shorter one is looked for.
    pub fn find_layer(&self, keys: &[Key]) -> Option<Found> {
        self.create().ok()?;
        for key in keys.iter().rev() {
            if !self.entry_dir(key).exists() {
                continue;
            }
            match self.open_chain(key) {
                Ok(Some(found)) => return Some(found),
                Ok(None) => {}
                Err((bad, e)) => {
                    tracing::warn!("step cache: discarding layer {bad}: {e}");
                    prune::remove_unlocked(self, &bad);
                }
            }
        }
        None
    }

    /// The manifest of the layer for the most commands among `keys` whose
    /// chain has every manifest (not checked, not locked: for `b9 show`).
    pub fn peek_layer(&self, keys: &[Key]) -> Option<Manifest> {
        keys.iter().rev().find_map(|key| {
            let top = self.peek(key)?;
            let mut below = top.backing.clone();
            for _ in 0..MAX_LAYERS {
                let Some(b) = below.take() else {
                    return top.commands.is_some().then_some(top);
                };
                below = self.peek(&Key::parse(&b.key)?)?.backing;
            }
            None
        })
    }

    /// Locks and checks the chain under `key`: `None` when a layer of it
    /// is being written or removed; the corrupt layer and why on error.
    fn open_chain(&self, key: &Key) -> Result<Option<Found>, (Key, CacheError)> {
        let mut locks = Vec::new();
        let mut top = None;
        let mut next = Some(key.clone());
        while let Some(k) = next.take() {
            if locks.len() > MAX_LAYERS {
                let e = CacheError::Corrupt("the layer chain is too deep".into());
                return Err((key.clone(), e));
            }
            let Some(lock) = self.lock_shared(&k) else {
                return Ok(None);
            };
            locks.push(lock);
            let dir = self.entry_dir(&k);
            let manifest = entry::verify(&dir, k.as_str()).map_err(|e| (k.clone(), e))?;
            if manifest.commands.is_none() {
                let e = CacheError::Corrupt("not a layer".into());
                return Err((k, e));
            }
            next = match &manifest.backing {
                Some(b) => Some(Key::parse(&b.key).ok_or_else(|| {
                    (
                        k.clone(),
                        CacheError::Corrupt(format!("bad backing key {:?}", b.key)),
                    )
                })?),
                None => None,
            };
            touch(&dir);
            top.get_or_insert((k, dir, manifest));
        }
        Ok(top.map(|(key, dir, manifest)| Found {
            key,
            manifest,
            dir,
            _locks: locks,
        }))
    }

    /// The lock of `key` taken shared, if nobody holds it exclusively.
    fn lock_shared(&self, key: &Key) -> Option<File> {
        let lock = self.open_lock(key).ok()?;
        lock.try_lock_shared().ok()?;
        Some(lock)
    }

    /// Starts making the layers `keys`, in order: their directories created
    /// under exclusive locks. Stops at the first key another b9 holds or
    /// that exists already (the run makes fewer layers).
    pub fn begin_layers(&self, keys: &[Key]) -> Result<NewLayers, CacheError> {
        self.create()?;
        let mut layers = Vec::new();
        for key in keys {
            let lock = self.open_lock(key)?;
            let dir = self.entry_dir(key);
            if lock.try_lock().is_err() || dir.exists() {
                break;
            }
            std::fs::create_dir(&dir).map_err(CacheError::io("create", &dir))?;
            layers.push((key.clone(), lock));
        }
        let top = self
            .dir
            .join(format!(".part-{}-top-{}", std::process::id(), now_nanos()));
        std::fs::create_dir(&top).map_err(CacheError::io("create", &top))?;
        Ok(NewLayers {
            cache: self.clone(),
            layers,
            committed: 0,
            top,
        })
    }
}

/// A name part that differs between runs of one process.
fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// What a committed layer says about itself.
pub struct LayerInfo<'a> {
    /// The artifact instance.
    pub label: &'a str,
    /// How many commands it holds.
    pub commands: usize,
    /// The build images' names and formats, in order.
    pub images: &'a [(String, String)],
    /// The output up to its last command.
    pub output: Vec<String>,
    /// How long the run that made it took, in seconds.
    pub seconds: f64,
}

impl NewLayers {
    /// How many layers the run makes.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when the run makes no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The key of layer `j` of the run.
    pub fn key(&self, j: usize) -> &Key {
        &self.layers[j].0
    }

    /// The image file of build image `i` in layer `j` of the run.
    pub fn image(&self, j: usize, i: usize) -> PathBuf {
        self.cache.entry_dir(&self.layers[j].0).join(image_file(i))
    }

    /// The file of build image `i` after the last layer (the VM's last
    /// overlay; not kept).
    pub fn top(&self, i: usize) -> PathBuf {
        self.top.join(image_file(i))
    }

    /// Writes layer `j`'s manifest (its image files are in place), which
    /// makes it usable; `below` is the entry its images are overlays of.
    /// Layers are committed in order.
    pub fn commit(
        &mut self,
        j: usize,
        info: &LayerInfo<'_>,
        below: Option<(&Key, &Manifest)>,
    ) -> Result<Manifest, CacheError> {
        let dir = self.cache.entry_dir(&self.layers[j].0);
        let mut images = Vec::new();
        for (i, (name, format)) in info.images.iter().enumerate() {
            let file = image_file(i);
            let path = dir.join(&file);
            images.push(StoredImage {
                name: name.clone(),
                format: format.clone(),
                hash: hash_file(&path).map_err(CacheError::io("read", &path))?,
                file,
            });
        }
        let manifest = Manifest {
            key: self.layers[j].0.to_string(),
            label: info.label.to_string(),
            created: now(),
            seconds: info.seconds,
            images,
            shares: Vec::new(),
            output: info.output.clone(),
            commands: Some(info.commands),
            backing: below.map(|(key, m)| Backing {
                key: key.to_string(),
                hashes: m.images.iter().map(|i| i.hash.clone()).collect(),
            }),
        };
        entry::write_manifest(&dir, &manifest)?;
        self.committed = self.committed.max(j + 1);
        Ok(manifest)
    }
}

impl Drop for NewLayers {
    fn drop(&mut self) {
        for (key, _) in &self.layers[self.committed..] {
            prune::remove_entry(self.cache.dir(), &self.cache.entry_dir(key));
        }
        let _ = crate::stale::remove_entry(&self.top);
        if self.committed > 0 {
            prune::evict(&self.cache);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::disk::qcow2::Qcow2Image;
    use crate::stepcache::prune;

    fn base() -> KeyBuilder {
        let mut k = KeyBuilder::new();
        k.field("inputs");
        k
    }

    fn texts(cmds: &[&str]) -> Vec<String> {
        cmds.iter().map(|c| c.to_string()).collect()
    }

    /// A chain of three layers of one 1 MiB image, each an overlay of the
    /// one below but the first.
    fn chain(cache: &StepCache, keys: &[Key]) {
        let mut new = cache.begin_layers(keys).unwrap();
        assert_eq!(new.len(), keys.len());
        let names = [("0-root.raw".to_string(), "raw".to_string())];
        let mut below: Option<(Key, Manifest)> = None;
        for j in 0..new.len() {
            let backing = below
                .as_ref()
                .map(|(k, _)| PathBuf::from(format!("../{k}/{}", image_file(0))));
            let path = new.image(j, 0);
            Qcow2Image::create(&path, 1 << 20, backing.as_deref().map(|b| (b, "qcow2"))).unwrap();
            let info = LayerInfo {
                label: "t",
                commands: j + 1,
                images: &names,
                output: vec![format!("> {j}")],
                seconds: 1.0,
            };
            let m = new
                .commit(j, &info, below.as_ref().map(|(k, m)| (k, m)))
                .unwrap();
            below = Some((new.key(j).clone(), m));
        }
    }

    #[test]
    fn a_changed_command_changes_its_layer_key_and_the_later_ones_only() {
        let a = keys(&base(), &texts(&["a", "b", "c"]));
        let b = keys(&base(), &texts(&["a", "B", "c"]));
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert_ne!(a[2], b[2]);
        let mut other = KeyBuilder::new();
        other.field("other inputs");
        assert_ne!(keys(&other, &texts(&["a"]))[0], a[0], "the inputs count");
    }

    #[test]
    fn a_chain_is_found_whole_and_a_corrupt_layer_cuts_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::new(dir.path().join("steps"), u64::MAX);
        let keys = keys(&base(), &texts(&["a", "b", "c"]));
        chain(&cache, &keys);
        let found = cache.find_layer(&keys).expect("the chain");
        assert_eq!(found.commands(), 3);
        assert_eq!(found.manifest.output, ["> 2"]);
        // The top image reads through the chain (the cache is trusted).
        assert_eq!(crate::disk::open(&found.image(0)).unwrap().size(), 1 << 20);
        drop(found);
        // The middle layer's image damaged: the chain is cut below it.
        let middle = cache.entry_dir(&keys[1]).join(image_file(0));
        let mut bytes = std::fs::read(&middle).unwrap();
        bytes[0x20] ^= 1;
        std::fs::write(&middle, bytes).unwrap();
        let found = cache.find_layer(&keys).expect("the first layer");
        assert_eq!(found.commands(), 1);
        assert!(
            !cache.entry_dir(&keys[1]).exists(),
            "the corrupt layer is removed"
        );
    }

    #[test]
    fn eviction_never_breaks_a_chain() {
        let dir = tempfile::tempdir().unwrap();
        let unlimited = StepCache::new(dir.path().join("steps"), u64::MAX);
        let keys = keys(&base(), &texts(&["a", "b", "c"]));
        chain(&unlimited, &keys);
        // The bottom layer least recently used, the top most recently.
        for (age, key) in [(300, &keys[0]), (200, &keys[1]), (100, &keys[2])] {
            let old = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            let m = unlimited.entry_dir(key).join(entry::MANIFEST);
            File::options()
                .write(true)
                .open(m)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let sizes: Vec<u64> = prune::list(&unlimited).iter().map(|e| e.bytes).collect();
        let total: u64 = sizes.iter().sum();
        let limited = StepCache::new(dir.path().join("steps"), total - 1);
        prune::evict(&limited);
        let left: Vec<Key> = prune::list(&limited).into_iter().map(|e| e.key).collect();
        assert_eq!(
            left,
            [keys[0].clone(), keys[1].clone()],
            "the top goes first"
        );
        assert_eq!(limited.find_layer(&keys).unwrap().commands(), 2);
        assert_eq!(prune::clean(&limited), 2, "clean removes whole chains");
    }
}
