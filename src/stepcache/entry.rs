//! One entry: a directory named by its key holding `manifest.json`, the
//! build images after the step as compact qcow2 files (only data clusters)
//! and the read-write shares' trees. Every stored file's hash is in the
//! manifest and checked when the entry is read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::disk::{self, CreateOptions, Format, Target};
use crate::stepcache::index::{hash_file, FileHashes};
use crate::stepcache::key::{tree_hash, Key};
use crate::stepcache::{tree, CacheError};

/// The manifest's file name in an entry.
pub const MANIFEST: &str = "manifest.json";

/// What an entry holds and how to check it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The key (the entry's directory name).
    pub key: String,
    /// The artifact instance that stored it.
    pub label: String,
    /// When the step ran (UNIX seconds).
    pub created: u64,
    /// How long the step took, in seconds.
    pub seconds: f64,
    /// The build images after the step, in target order.
    pub images: Vec<StoredImage>,
    /// The read-write shares after the step.
    pub shares: Vec<StoredShare>,
    /// The step's output as it was logged.
    pub output: Vec<String>,
    /// For a layer (the state after the first `commands` commands): how
    /// many commands it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<usize>,
    /// For a layer whose images are qcow2 overlays: the entry they are
    /// overlays of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing: Option<Backing>,
}

/// The entry a layer's images are overlays of (their backing files are
/// `../<key>/<file>`), with the hashes its images had when the layer was
/// made: a backing entry made again differently breaks the chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Backing {
    /// The backing entry's key.
    pub key: String,
    /// Its images' hashes, in order.
    pub hashes: Vec<String>,
}

/// A build image in an entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredImage {
    /// The build image's file name in the build directory.
    pub name: String,
    /// Its format (`raw`, `qcow2`, `vmdk`).
    pub format: String,
    /// The stored qcow2 file in the entry.
    pub file: String,
    /// The stored file's BLAKE3 hash.
    pub hash: String,
}

/// A read-write share's tree in an entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredShare {
    /// The share's position in the script's share list.
    pub index: usize,
    /// The stored tree's directory in the entry.
    pub dir: String,
    /// The stored tree's hash (without owners).
    pub hash: String,
}

/// A build image to store: its file and format.
pub struct ImageOut<'a> {
    /// The build image.
    pub path: &'a Path,
    /// Its format.
    pub format: Format,
}

/// What a step produced, to store.
pub struct StepOutput<'a> {
    /// The artifact instance.
    pub label: &'a str,
    /// The build images after the step.
    pub images: Vec<ImageOut<'a>>,
    /// The read-write shares (position in the share list, host directory).
    pub shares: Vec<(usize, &'a Path)>,
    /// The logged output.
    pub output: Vec<String>,
    /// How long the step took, in seconds.
    pub seconds: f64,
}

/// Writes the entry for `key` into the new directory `dir`.
pub fn write(dir: &Path, key: &str, out: &StepOutput<'_>, now: u64) -> Result<(), CacheError> {
    std::fs::create_dir(dir).map_err(CacheError::io("create", dir))?;
    let opts = CreateOptions { timestamp: now };
    let mut images = Vec::new();
    for (i, img) in out.images.iter().enumerate() {
        let file = format!("image-{i}.qcow2");
        let stored = dir.join(&file);
        disk::convert_file(img.path, &stored, Target::Qcow2, None, &opts)?;
        images.push(StoredImage {
            name: img
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            format: img.format.extension().to_string(),
            file,
            hash: hash_file(&stored).map_err(CacheError::io("read", &stored))?,
        });
    }
    let mut shares = Vec::new();
    let mut hashes = FileHashes::load(dir);
    for (index, path) in &out.shares {
        let name = format!("share-{index}");
        let stored = dir.join(&name);
        tree::copy(path, &stored).map_err(CacheError::io("copy", path))?;
        shares.push(StoredShare {
            index: *index,
            dir: name,
            hash: tree_hash(&mut hashes, &stored, false)
                .map_err(CacheError::io("read", &stored))?,
        });
    }
    let manifest = Manifest {
        key: key.to_string(),
        label: out.label.to_string(),
        created: now,
        seconds: out.seconds,
        images,
        shares,
        output: out.output.clone(),
        commands: None,
        backing: None,
    };
    write_manifest(dir, &manifest)
}

/// Writes `manifest` into the entry `dir` (to a temporary file, renamed:
/// a manifest is whole or absent).
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), CacheError> {
    let text = serde_json::to_vec_pretty(manifest)
        .map_err(|e| CacheError::Corrupt(format!("cannot encode the manifest: {e}")))?;
    let path = dir.join(MANIFEST);
    let tmp = dir.join(format!(".{MANIFEST}.tmp"));
    std::fs::write(&tmp, text).map_err(CacheError::io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(CacheError::io("rename into", &path))
}

/// Reads and checks the entry in `dir`: the manifest names `key`, and
/// every stored file has its recorded hash.
pub fn verify(dir: &Path, key: &str) -> Result<Manifest, CacheError> {
    let m = read_manifest(dir)?;
    if m.key != key {
        return Err(CacheError::Corrupt(format!(
            "{} names the key {}",
            MANIFEST, m.key
        )));
    }
    for img in &m.images {
        let path = stored_path(dir, &img.file)?;
        let got = hash_file(&path).map_err(CacheError::io("read", &path))?;
        if got != img.hash {
            return Err(CacheError::Corrupt(format!(
                "{} does not match its hash",
                img.file
            )));
        }
        parse_format(&img.format)?;
    }
    if let Some(b) = &m.backing {
        let below = Key::parse(&b.key)
            .and_then(|k| dir.parent().map(|p| p.join(k.as_str())))
            .ok_or_else(|| CacheError::Corrupt(format!("bad backing key {:?}", b.key)))?;
        let theirs = read_manifest(&below)
            .map_err(|e| CacheError::Corrupt(format!("backing entry {}: {e}", b.key)))?;
        let now: Vec<&String> = theirs.images.iter().map(|i| &i.hash).collect();
        if now != b.hashes.iter().collect::<Vec<_>>() {
            return Err(CacheError::Corrupt(format!(
                "backing entry {} is not the one this layer was made on",
                b.key
            )));
        }
    }
    let mut hashes = FileHashes::load(dir);
    for s in &m.shares {
        let path = stored_path(dir, &s.dir)?;
        let got = tree_hash(&mut hashes, &path, false).map_err(CacheError::io("read", &path))?;
        if got != s.hash {
            return Err(CacheError::Corrupt(format!(
                "{} does not match its hash",
                s.dir
            )));
        }
    }
    Ok(m)
}

/// The manifest of the entry in `dir`, unchecked.
pub fn read_manifest(dir: &Path) -> Result<Manifest, CacheError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(CacheError::io("read", &path))?;
    serde_json::from_slice(&text)
        .map_err(|e| CacheError::Corrupt(format!("{MANIFEST} is unreadable: {e}")))
}

/// Copies stored image `img` of the entry in `dir` into the build
/// directory `to`, in its format; returns the build image's path.
pub fn restore_image(
    dir: &Path,
    img: &StoredImage,
    to: &Path,
    opts: &CreateOptions,
) -> Result<(PathBuf, Format), CacheError> {
    let format = parse_format(&img.format)?;
    let src = stored_path(dir, &img.file)?;
    let dest = to.join(plain(&img.name)?);
    disk::convert_file(&src, &dest, Target::from(format), None, opts)?;
    Ok((dest, format))
}

/// Makes the host directory `target` hold the stored tree of `share`.
pub fn restore_share(dir: &Path, share: &StoredShare, target: &Path) -> Result<(), CacheError> {
    let src = stored_path(dir, &share.dir)?;
    tree::replace_contents(&src, target).map_err(CacheError::io("restore", target))
}

/// A name from a manifest as a plain file name (no directories).
fn plain(name: &str) -> Result<&str, CacheError> {
    let ok = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
    ok.then_some(name)
        .ok_or_else(|| CacheError::Corrupt(format!("{name:?} is not a plain file name")))
}

fn stored_path(dir: &Path, name: &str) -> Result<PathBuf, CacheError> {
    plain(name).map(|n| dir.join(n))
}

fn parse_format(text: &str) -> Result<Format, CacheError> {
    [Format::Raw, Format::Qcow2, Format::Vmdk]
        .into_iter()
        .find(|f| f.extension() == text)
        .ok_or_else(|| CacheError::Corrupt(format!("unknown image format {text:?}")))
}
