//! File contents hashed once: the hash of a file is remembered by its
//! identity (device, inode, size, modification and change times), so an
//! unchanged multi-GB image is not read again. The index is a small text
//! file in the cache directory, merged under a lock when saved.
//!
//! A file changed less than [`RACY`] ago is hashed but not remembered: a
//! write in the same clock tick as the hashing could leave its times
//! unchanged (the "racy" case git also guards against).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Files changed more recently than this (nanoseconds) are not remembered.
const RACY: i128 = 2_000_000_000;
/// The index file's name in the cache directory.
const FILE: &str = "file-hashes";

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Ident {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i128,
    ctime: i128,
}

impl Ident {
    fn of(meta: &std::fs::Metadata) -> Ident {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Ident {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: ns(meta.mtime(), meta.mtime_nsec()),
            ctime: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn recent(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        now - self.mtime.max(self.ctime) < RACY
    }
}

/// The remembered hashes of file contents.
#[derive(Debug)]
pub struct FileHashes {
    dir: PathBuf,
    known: HashMap<Ident, (String, PathBuf)>,
    added: usize,
}

impl FileHashes {
    /// The index of the cache directory `dir` (empty when there is none
    /// yet; unreadable lines are ignored).
    pub fn load(dir: &Path) -> FileHashes {
        FileHashes {
            dir: dir.to_path_buf(),
            known: read(&dir.join(FILE)),
            added: 0,
        }
    }

    /// The BLAKE3 hash (hex) of the content of the file `path`, read only
    /// when its identity is not known.
    pub fn hash(&mut self, path: &Path) -> io::Result<String> {
        let before = Ident::of(&std::fs::metadata(path)?);
        if let Some((hash, _)) = self.known.get(&before) {
            return Ok(hash.clone());
        }
        let hash = hash_file(path)?;
        let after = Ident::of(&std::fs::metadata(path)?);
        if after != before {
            return Err(io::Error::other(format!(
                "{} changed while it was being read",
                path.display()
            )));
        }
        if !after.recent() {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            self.known.insert(after, (hash.clone(), path));
            self.added += 1;
        }
        Ok(hash)
    }

    /// Writes the index back when hashes were added: merged with what
    /// other processes saved meanwhile, entries whose file is gone or
    /// changed dropped, written to a temporary file and renamed.
    pub fn save(&self) -> io::Result<()> {
        if self.added == 0 {
            return Ok(());
        }
        let path = self.dir.join(FILE);
        let _lock = crate::lock::lock_file(&self.dir.join(".file-hashes.lock"), true)?;
        let mut all = read(&path);
        all.extend(self.known.iter().map(|(k, v)| (*k, v.clone())));
        all.retain(|ident, (_, file)| {
            std::fs::metadata(file).is_ok_and(|m| Ident::of(&m) == *ident)
        });
        let tmp = self.dir.join(format!(".{FILE}.tmp-{}", std::process::id()));
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        for (i, (hash, file)) in &all {
            // The path last: it may hold spaces.
            writeln!(
                out,
                "{} {} {} {} {} {hash} {}",
                i.dev,
                i.ino,
                i.size,
                i.mtime,
                i.ctime,
                file.display()
            )?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

/// The BLAKE3 hash (hex) of a file's bytes.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

fn read(path: &Path) -> HashMap<Ident, (String, PathBuf)> {
    let Ok(file) = File::open(path) else {
        return HashMap::new();
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| parse(&line))
        .collect()
}

fn parse(line: &str) -> Option<(Ident, (String, PathBuf))> {
    let mut f = line.splitn(7, ' ');
    let mut next = || f.next();
    let ident = Ident {
        dev: next()?.parse().ok()?,
        ino: next()?.parse().ok()?,
        size: next()?.parse().ok()?,
        mtime: next()?.parse().ok()?,
        ctime: next()?.parse().ok()?,
    };
    let hash = next()?;
    let file = next()?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (ident, (hash.to_string(), PathBuf::from(file))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Sets a file's times into the past, so its hash is remembered.
    fn age(path: &Path) {
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn a_known_file_is_not_read_again_and_a_changed_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("img");
        std::fs::write(&f, b"abc").unwrap();
        age(&f);
        // ctime is now: not remembered yet.
        let mut h = FileHashes::load(dir.path());
        let first = h.hash(&f).unwrap();
        assert_eq!(first, blake3::hash(b"abc").to_hex().to_string());
        assert_eq!(h.added, 0, "a file changed just now is not remembered");
        // Remembered under a fake identity: the stored hash is returned.
        let ident = Ident {
            ctime: 0,
            ..Ident::of(&std::fs::metadata(&f).unwrap())
        };
        h.known.insert(ident, ("x".repeat(64), f.clone()));
        h.added = 1;
        h.save().unwrap();
        let reloaded = FileHashes::load(dir.path());
        assert!(
            reloaded.known.is_empty(),
            "an entry whose file changed is dropped on save"
        );
        // A byte changed with the times put back (`touch -r`): ctime moves.
        let before = std::fs::metadata(&f).unwrap();
        std::fs::write(&f, b"abd").unwrap();
        File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(before.modified().unwrap())
            .unwrap();
        assert_ne!(h.hash(&f).unwrap(), first);
    }

    #[test]
    fn saved_hashes_are_found_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("img");
        std::fs::write(&f, b"abc").unwrap();
        let mut h = FileHashes::load(dir.path());
        let ident = Ident::of(&std::fs::metadata(&f).unwrap());
        h.known.insert(ident, ("f".repeat(64), f.clone()));
        h.added = 1;
        h.save().unwrap();
        let mut again = FileHashes::load(dir.path());
        assert_eq!(again.hash(&f).unwrap(), "f".repeat(64), "not read again");
    }
}
