//! Cloud-init media (docs/COMPATIBILITY.md#cloud-init): ISO9660, VFAT and directory outputs of an
//! instance directory tree.
//!
//! Every writer takes the **whole** tree (subdirectories included, docs/COMPATIBILITY.md#differences),
//! keeps file modes where the medium can hold them, and is reproducible: the
//! same tree content and the same [`MediaOptions::timestamp`] give the same
//! bytes, whatever the files' own time stamps, the clock or the order in which
//! the host lists a directory. A missing tree means an artifact without
//! sources and gives an empty medium.
//!
//! The writers write exactly to `out`; the caller picks temporary names and
//! renames atomically.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod dir;
pub mod iso;
pub mod vfat;


/// Settings shared by every medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaOptions {
    /// Time stamp for every file, directory and volume date, in UNIX seconds. The build sets it from
    /// SOURCE_DATE_EPOCH when set (reproducible media), else from the build start time.
    pub timestamp: u64,
}

/// What went wrong while writing a medium. Every message names the path
/// concerned and what failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done, e.g. "read directory".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tree holds something that is not a regular file, directory or
    /// symbolic link.
    #[error(
        "{}: {kind} cannot be put on cloud-init media (only regular files, directories and symbolic links)",
        path.display()
    )]
    UnsupportedFileType {
        /// The offending entry.
        path: PathBuf,
        /// What it is, e.g. "a named pipe".
        kind: &'static str,
    },
    /// The tree path exists but is not a directory.
    #[error("{}: the instance tree is not a directory", path.display())]
    TreeNotADirectory {
        /// The tree path.
        path: PathBuf,
    },
    /// A name cannot be stored on the medium.
    #[error("{}: cannot store this name on {medium}: {reason}", path.display())]
    BadName {
        /// The entry whose name is refused.
        path: PathBuf,
        /// "ISO9660" or "FAT".
        medium: &'static str,
        /// Why, e.g. "it is not valid UTF-8".
        reason: &'static str,
    },
    /// A symbolic link cannot be copied onto a FAT medium.
    #[error("{}: cannot copy symbolic link to {} onto FAT: {reason}", path.display(), target.display())]
    BadSymlink {
        /// The link.
        path: PathBuf,
        /// Its target as stored in the link.
        target: PathBuf,
        /// Why, e.g. "it points outside the tree".
        reason: &'static str,
    },
    /// A file is larger than the medium can store.
    #[error("{}: {size} bytes is more than {medium} can store in one file ({limit} bytes)", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The medium's limit.
        limit: u64,
        /// "FAT" or "ISO9660".
        medium: &'static str,
    },
    /// `write_dir`'s output already exists.
    #[error("{}: the output directory already exists", path.display())]
    OutputExists {
        /// The output path.
        path: PathBuf,
    },
    /// The ISO9660 writer failed.
    #[error("cannot write ISO9660 image {}: {message}", path.display())]
    Iso {
        /// The output image.
        path: PathBuf,
        /// The writer's message.
        message: String,
    },
    /// The FAT writer failed on an entry.
    #[error("cannot write {} into FAT image {}: {message}", entry.display(), image.display())]
    Fat {
        /// The output image.
        image: PathBuf,
        /// The source entry (or the image itself while formatting).
        entry: PathBuf,
        /// The writer's message.
        message: String,
    },
}

impl MediaError {
    /// An [`MediaError::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        MediaError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

/// One entry of an instance tree, read once so every writer sees the same
/// picture, in byte order of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The file name (one path component).
    pub(crate) name: OsString,
    /// The full path on the host.
    pub(crate) path: PathBuf,
    /// Permission bits (`mode & 0o7777`).
    pub(crate) mode: u32,
    /// What the entry is.
    pub(crate) kind: EntryKind,
}

/// The kinds of entries a tree may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file of this length.
    File {
        /// Length in bytes when the tree was read.
        len: u64,
    },
    /// A directory with its children, sorted by name bytes.
    Dir(Vec<Entry>),
    /// A symbolic link with its target as stored.
    Symlink(PathBuf),
}

/// Reads the tree at `root`: its children, sorted by name bytes, and the
/// root's own mode. A missing root is an empty tree (an artifact without
/// sources); a root that is not a directory is an error.
pub(crate) fn read_tree(root: &Path) -> Result<(Vec<Entry>, Option<u32>), MediaError> {
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Vec::new(), None)),
        Err(e) => Err(MediaError::io("read", root, e)),
        Ok(meta) => {
            // A symlink to a directory is followed for the root only.
            let meta = if meta.file_type().is_symlink() {
                fs::metadata(root).map_err(|e| MediaError::io("follow", root, e))?
            } else {
                meta
            };
            if !meta.is_dir() {
                return Err(MediaError::TreeNotADirectory {
                    path: root.to_path_buf(),
                });
            }
            Ok((read_dir_sorted(root)?, Some(meta.mode() & 0o7777)))
        }
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<Entry>, MediaError> {
    let mut out = Vec::new();
    let iter = fs::read_dir(dir).map_err(|e| MediaError::io("read directory", dir, e))?;
    for item in iter {
        let item = item.map_err(|e| MediaError::io("read directory", dir, e))?;
        let path = item.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| MediaError::io("stat", &path, e))?;
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            EntryKind::File { len: meta.len() }
        } else if ft.is_dir() {
            EntryKind::Dir(read_dir_sorted(&path)?)
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| MediaError::io("read link", &path, e))?;
            EntryKind::Symlink(target)
        } else {
            let kind = crate::disk::gate::special_kind(ft).unwrap_or("of an unknown type");
            return Err(MediaError::UnsupportedFileType { path, kind });
        };
        out.push(Entry {
            name: item.file_name(),
            path,
            mode: meta.mode() & 0o7777,
            kind,
        });
    }
    out.sort_by(|a, b| a.name.as_encoded_bytes().cmp(b.name.as_encoded_bytes()));
    Ok(out)
}

pub(crate) use crate::civil::Civil;

/// Creates (or truncates) a medium's output file, open for reading and writing.
pub(crate) fn create_output(out: &Path) -> Result<std::fs::File, MediaError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(|e| MediaError::io("create", out, e))
}

/// A medium's output file that keeps the first I/O error met on it: the
/// ISO writer reports only an error's kind ("Other"), and the user needs
/// the OS error ("No space left on device"). The slot is shared, because
/// the writer consumes the file and returns only its own error.
pub(crate) struct RecordingFile {
    file: std::fs::File,
    first_error: Arc<Mutex<Option<io::Error>>>,
}

impl RecordingFile {
    /// Wraps `file`; its first I/O error goes to `slot`.
    pub(crate) fn new(file: std::fs::File, slot: &Arc<Mutex<Option<io::Error>>>) -> RecordingFile {
        RecordingFile {
            file,
            first_error: Arc::clone(slot),
        }
    }

    /// The file.
    pub(crate) fn file(&self) -> &std::fs::File {
        &self.file
    }

    fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let (Err(e), Ok(mut slot)) = (&r, self.first_error.lock()) {
            slot.get_or_insert_with(|| match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            });
        }
        r
    }
}

impl io::Read for RecordingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.file.read(buf);
        self.note(r)
    }
}

impl io::Write for RecordingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.file.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.file.flush();
        self.note(r)
    }
}

impl io::Seek for RecordingFile {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let r = self.file.seek(to);
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tree_is_empty_and_file_tree_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (entries, mode) = read_tree(&tmp.path().join("nope")).unwrap();
        assert!(entries.is_empty());
        assert_eq!(mode, None);
        let f = tmp.path().join("f");
        fs::write(&f, b"x").unwrap();
        let err = read_tree(&f).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn entries_are_sorted_by_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        for n in ["b", "B", "a", "user-data", "meta-data"] {
            fs::write(tmp.path().join(n), n).unwrap();
        }
        let (entries, _) = read_tree(tmp.path()).unwrap();
        let names: Vec<_> = entries
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["B", "a", "b", "meta-data", "user-data"]);
    }

    #[test]
    fn fifo_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("pipe");
        let st = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
        let err = read_tree(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pipe") && msg.contains("named pipe"), "{msg}");
    }
}
