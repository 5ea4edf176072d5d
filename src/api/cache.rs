//! The step cache of guest steps (`b9 cache list|clean`).

use std::fmt;
use std::path::PathBuf;

use super::error::Error;
use crate::stepcache::{format_date, prune, StepCache};

/// The step cache in its default directory (`$XDG_CACHE_HOME/b9/steps`).
fn open() -> Result<StepCache, Error> {
    crate::stepcache::default_dir()
        .map(|dir| StepCache::new(dir, 0))
        .ok_or_else(|| {
            Error::failed("cannot find the step cache: neither $XDG_CACHE_HOME nor $HOME is set")
        })
}

/// One entry of the step cache: the result of a whole guest step, or a
/// layer (the disks after the first commands of a script).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// Its key: the hex BLAKE3 digest of the step's inputs.
    pub key: String,
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
    /// For a layer on another layer: that one's key.
    pub backing: Option<String>,
}

impl From<prune::EntryInfo> for CacheEntry {
    fn from(e: prune::EntryInfo) -> CacheEntry {
        CacheEntry {
            key: e.key.as_str().to_string(),
            label: e.label,
            created: e.created,
            used: e.used,
            bytes: e.bytes,
            commands: e.commands,
            backing: e.backing.map(|k| k.as_str().to_string()),
        }
    }
}

/// The entries of the step cache; its `Display` is what `b9 cache list`
/// prints (a line per entry, then the total).
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct CacheListing {
    /// The cache directory.
    pub dir: PathBuf,
    /// The entries, least recently used first.
    pub entries: Vec<CacheEntry>,
}

impl CacheListing {
    /// The bytes of all entries.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }
}

impl fmt::Display for CacheListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Step cache in {}:", self.dir.display())?;
        for e in &self.entries {
            writeln!(
                f,
                "{}  {:<20}  run {}  used {}  {} MiB{}",
                short(&e.key),
                e.label,
                format_date(e.created),
                format_date(e.used),
                e.bytes.div_ceil(1 << 20),
                layer_note(e)
            )?;
        }
        let n = self.entries.len();
        writeln!(
            f,
            "{n} entr{}, {} MiB",
            if n == 1 { "y" } else { "ies" },
            self.total_bytes().div_ceil(1 << 20)
        )
    }
}

/// `b9 cache list`: the entries of the step cache.
pub fn list() -> Result<CacheListing, Error> {
    let cache = open()?;
    Ok(CacheListing {
        dir: cache.dir().to_path_buf(),
        entries: prune::list(&cache)
            .into_iter()
            .map(CacheEntry::from)
            .collect(),
    })
}

/// `b9 cache clean`: removes every entry (those in use by another b9 are
/// kept); returns how many were removed.
pub fn clean() -> Result<usize, Error> {
    Ok(prune::clean(&open()?))
}

/// The first 16 hex digits of a key, as listings show it.
fn short(key: &str) -> &str {
    key.get(..16).unwrap_or(key)
}

/// What `b9 cache list` adds for a layer: the commands it holds and the
/// layer it is an overlay of.
fn layer_note(e: &CacheEntry) -> String {
    let Some(n) = e.commands else {
        return String::new();
    };
    let plural = if n == 1 { "" } else { "s" };
    match &e.backing {
        Some(below) => format!("  layer after {n} command{plural}, on {}", short(below)),
        None => format!("  layer after {n} command{plural}"),
    }
}
