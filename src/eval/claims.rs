//! Paths claimed by artifacts (their outputs), kept small: `b9 check` of an
//! `Each` over a million values claims millions of paths.
//!
//! A path is stored as two independent 64-bit hashes (one keys the table, the
//! other confirms a match), the claiming instance's id once per instance in
//! one string, and the claim's place; never the path itself.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::diag::source::{SourceRef, Span};

/// The first claim of a path.
struct Claim {
    /// The second hash of the path.
    check: u64,
    /// Index of the claiming instance in `Claims::ids`.
    instance: u32,
    /// Index of the build file in `Claims::sources`.
    source: u32,
    /// Byte offset of the claim in that file.
    at: usize,
    /// Length of the claim's text there.
    len: u32,
    /// The claim whose first hash is the same, if any.
    next: Option<u32>,
}

/// Who claimed a path first.
pub struct FirstClaim<'a> {
    /// The instance id.
    pub id: &'a str,
    /// The build file.
    pub source: &'a SourceRef,
    /// Where the claim is in it.
    pub span: Span,
}

/// Output paths and their first claims.
#[derive(Default)]
pub struct Claims {
    /// The latest claim of each first hash.
    by_hash: PrehashedMap<u32>,
    claims: Vec<Claim>,
    /// Instance ids, concatenated; `id_ends[i]` is where the `i`-th ends.
    ids: String,
    id_ends: Vec<usize>,
    sources: Vec<SourceRef>,
}

impl Claims {
    /// Starts the claims of a new instance (`id`); later [`Claims::claim`]s
    /// are made by it.
    pub fn start_instance(&mut self, id: &str) {
        self.ids.push_str(id);
        self.id_ends.push(self.ids.len());
    }

    /// The first claim of `path`, if it was claimed.
    pub fn find(&self, path: &Path) -> Option<FirstClaim<'_>> {
        self.find_hashed(hash(0, path), hash(1, path))
    }

    fn find_hashed(&self, key: u64, check: u64) -> Option<FirstClaim<'_>> {
        let mut next = self.by_hash.get(&key).copied();
        while let Some(i) = next.map(|i| i as usize) {
            let c = &self.claims[i];
            if c.check != check {
                next = c.next;
                continue;
            }
            let instance = c.instance as usize;
            let start = instance.checked_sub(1).map_or(0, |p| self.id_ends[p]);
            return Some(FirstClaim {
                id: &self.ids[start..self.id_ends[instance]],
                source: &self.sources[c.source as usize],
                span: Span {
                    start: c.at,
                    end: c.at + c.len as usize,
                },
            });
        }
        None
    }

    /// Claims `path` for the current instance at `span` in `source`; returns
    /// the earlier claim if there is one (the path is then not claimed again).
    pub fn claim(&mut self, path: &Path, source: &SourceRef, span: Span) -> Option<FirstClaim<'_>> {
        let (key, check) = (hash(0, path), hash(1, path));
        if self.find_hashed(key, check).is_some() {
            return self.find_hashed(key, check);
        }
        let head = self.by_hash.get(&key).copied();
        let source = match self
            .sources
            .iter()
            .position(|s| SourceRef::ptr_eq(s, source))
        {
            Some(i) => i,
            None => {
                self.sources.push(source.clone());
                self.sources.len() - 1
            }
        };
        let index = to_u32(self.claims.len());
        self.claims.push(Claim {
            check,
            instance: to_u32(self.id_ends.len().saturating_sub(1)),
            source: to_u32(source),
            at: span.start,
            len: to_u32(span.end.saturating_sub(span.start)),
            next: head,
        });
        self.by_hash.insert(key, index);
        None
    }
}

/// A hash of `path` (normalised paths have one spelling, so its bytes are
/// hashed: much faster than `Path`'s hash, which walks its components).
pub fn hash(seed: u8, path: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    h.write(path.as_os_str().as_bytes());
    h.finish()
}

/// A map whose keys are already hashes (see [`hash`]): hashed again by
/// nothing but themselves.
pub type PrehashedMap<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

/// The hasher of [`PrehashedMap`]: passes a `u64` key through.
#[derive(Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Counts of claims, instances and files stay far below 2^32 (a build file
/// that large could not be read); saturate rather than wrap if not.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::source::Source;

    #[test]
    fn second_claim_names_the_first() {
        let src = Source::new("a.b9", "x");
        let mut c = Claims::default();
        c.start_instance("one");
        let at = |start| Span {
            start,
            end: start + 1,
        };
        assert!(c.claim(Path::new("/o/a"), &src, at(3)).is_none());
        c.start_instance("two");
        assert!(c.claim(Path::new("/o/b"), &src, at(5)).is_none());
        let first = c.claim(Path::new("/o/a"), &src, at(7)).unwrap();
        assert_eq!((first.id, first.span), ("one", at(3)));
        let first = c.find(Path::new("/o/b")).unwrap();
        assert_eq!((first.id, first.span), ("two", at(5)));
        assert!(c.find(Path::new("/o/c")).is_none());
    }
}
