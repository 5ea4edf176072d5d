//! The one door to image files, which are untrusted input.
//!
//! * Only regular files are images: a FIFO, socket, character or block
//!   device or directory is refused before it is opened (a FIFO would block
//!   `open` forever, `/dev/zero` would read as an endless disk), and the
//!   opened file is checked again (it may have been replaced meanwhile).
//! * What an image names (qcow2 backing and external data files, vmdk
//!   extents) must resolve inside the image's own directory: no absolute
//!   path elsewhere, no `..` out of it, no symbolic link out of it
//!   (canonicalised, then compared). Directories listed in b9.conf's
//!   `trusted_image_dirs` are allowed too; overlays b9 made itself in this
//!   process name a backing file b9 chose, and are trusted for that one step;
//!   images inside b9's step cache may name files inside it (`trust_store`).

use std::collections::BTreeSet;
use std::fs::{File, FileType, Metadata};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::disk::error::DiskError;

/// The b9.conf key that lists trusted directories.
pub const TRUSTED_DIRS_KEY: &str = "trusted_image_dirs";

/// What a file is, when it is not a regular file ("a directory", "a named
/// pipe (FIFO)", ...), for messages.
pub fn special_kind(t: FileType) -> Option<&'static str> {
    let kind = if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "of an unknown type"
    };
    Some(kind)
}

/// Refuses `meta` unless it describes a regular file.
fn require_regular(path: &Path, meta: &Metadata) -> Result<(), DiskError> {
    match special_kind(meta.file_type()) {
        None => Ok(()),
        Some(kind) => Err(DiskError::NotRegular {
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// Opens the image file `path` for reading: a regular file only, checked
/// before opening (without blocking: `stat`, then `open` with
/// `O_NONBLOCK`) and again on the open file.
pub fn open_regular(path: &Path) -> Result<File, DiskError> {
    let io = |op| {
        move |source| DiskError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    require_regular(path, &std::fs::metadata(path).map_err(io("cannot open"))?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io("cannot open"))?;
    require_regular(path, &file.metadata().map_err(io("cannot stat"))?)?;
    Ok(file)
}

/// Refuses anything but a regular file at `path` (see [`open_regular`]).
pub fn check_regular(path: &Path) -> Result<(), DiskError> {
    open_regular(path).map(drop)
}

/// The directories the configurations of this process trust, canonical.
fn trusted_dirs() -> &'static Mutex<BTreeSet<PathBuf>> {
    static TRUSTED: OnceLock<Mutex<BTreeSet<PathBuf>>> = OnceLock::new();
    TRUSTED.get_or_init(Mutex::default)
}

/// Adds directories (b9.conf's `trusted_image_dirs`) whose files any
/// image may name, for the rest of the process: each session adds its
/// configuration's (a program with several configurations trusts them
/// all); names that do not exist are skipped.
pub fn trust_dirs(dirs: &[PathBuf]) {
    if let Ok(mut trusted) = trusted_dirs().lock() {
        trusted.extend(dirs.iter().filter_map(|d| d.canonicalize().ok()));
    }
}

/// Directories (canonical) whose images may name files anywhere inside
/// them: b9's step cache, whose layers are overlays of images in sibling
/// entries.
fn stores() -> &'static Mutex<BTreeSet<PathBuf>> {
    static STORES: OnceLock<Mutex<BTreeSet<PathBuf>>> = OnceLock::new();
    STORES.get_or_init(Mutex::default)
}

/// Lets images inside `dir` (b9's own store) name files inside `dir`.
pub fn trust_store(dir: &Path) {
    if let (Ok(d), Ok(mut s)) = (dir.canonicalize(), stores().lock()) {
        s.insert(d);
    }
}

/// Resolves `reference` (the `what` an image names, e.g. "backing file"),
/// relative to the directory of `image` as QEMU does, and refuses it unless
/// it lies inside that directory or a trusted one. The result is canonical.
pub fn confine(image: &Path, what: &'static str, reference: &Path) -> Result<PathBuf, DiskError> {
    let dir = image
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let joined = dir.join(reference);
    let resolved = joined.canonicalize().map_err(|source| DiskError::Io {
        op: "cannot open",
        path: joined.clone(),
        source,
    })?;
    let home = dir.canonicalize().map_err(|source| DiskError::Io {
        op: "cannot open",
        path: dir.to_path_buf(),
        source,
    })?;
    let trusted = trusted_dirs()
        .lock()
        .is_ok_and(|t| t.iter().any(|d| resolved.starts_with(d)));
    let in_store = stores().lock().is_ok_and(|s| {
        s.iter()
            .any(|d| home.starts_with(d) && resolved.starts_with(d))
    });
    if resolved.starts_with(&home) || in_store || trusted {
        return Ok(resolved);
    }
    Err(DiskError::Escapes {
        image: image.to_path_buf(),
        what,
        reference: reference.to_path_buf(),
        resolved,
        dir: home,
    })
}

/// Overlays b9 created in this process (canonical paths): their backing
/// file is b9's choice, not the image's.
fn own_overlays() -> &'static Mutex<BTreeSet<PathBuf>> {
    static OWN: OnceLock<Mutex<BTreeSet<PathBuf>>> = OnceLock::new();
    OWN.get_or_init(Mutex::default)
}

/// Records that b9 made the overlay at `path` over a backing file it chose.
pub(crate) fn own_overlay(path: &Path) {
    if let (Ok(p), Ok(mut own)) = (path.canonicalize(), own_overlays().lock()) {
        own.insert(p);
    }
}

/// True if b9 made the overlay at `path` (see [`own_overlay`]).
pub(crate) fn is_own_overlay(path: &Path) -> bool {
    match (path.canonicalize(), own_overlays().lock()) {
        (Ok(p), Ok(own)) => own.contains(&p),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        for (p, kind) in [
            (fifo.as_path(), "FIFO"),
            (Path::new("/dev/zero"), "character device"),
            (d.path(), "directory"),
        ] {
            let e = open_regular(p).err().unwrap().to_string();
            assert!(e.contains(kind) && e.contains("not a regular file"), "{e}");
        }
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        open_regular(&f).unwrap();
    }

    #[test]
    fn references_stay_in_the_image_directory() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("images");
        std::fs::create_dir(&dir).unwrap();
        let image = dir.join("a.qcow2");
        std::fs::write(dir.join("base.raw"), b"").unwrap();
        std::fs::write(d.path().join("secret"), b"").unwrap();
        std::os::unix::fs::symlink("../secret", dir.join("link")).unwrap();
        let ok = confine(&image, "backing file", Path::new("base.raw")).unwrap();
        assert_eq!(ok, dir.join("base.raw").canonicalize().unwrap());
        let abs = dir.join("base.raw");
        assert!(confine(&image, "backing file", &abs).is_ok());
        for bad in [
            d.path().join("secret"),
            PathBuf::from("../secret"),
            PathBuf::from("link"),
        ] {
            let e = confine(&image, "backing file", &bad).err().unwrap();
            assert!(matches!(e, DiskError::Escapes { .. }), "{e}");
            assert!(e.to_string().contains(TRUSTED_DIRS_KEY), "{e}");
        }
    }

    #[test]
    fn every_configuration_adds_its_trusted_directories() {
        let d = tempfile::tempdir().unwrap();
        let images = d.path().join("images");
        let (one, two) = (d.path().join("one"), d.path().join("two"));
        for dir in [&images, &one, &two] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("base.raw"), b"").unwrap();
        }
        let image = images.join("a.qcow2");
        let names = |dir: &Path| confine(&image, "backing file", &dir.join("base.raw"));
        assert!(names(&one).is_err() && names(&two).is_err());
        // A first session trusts `one`, a second one `two`: both hold.
        trust_dirs(std::slice::from_ref(&one));
        trust_dirs(&[two.clone(), d.path().join("missing")]);
        assert!(names(&one).is_ok() && names(&two).is_ok());
    }
}
