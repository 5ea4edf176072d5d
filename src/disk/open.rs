//! One door to every format: detection by content, opening for reading,
//! creating for writing, converting and resizing files.

use std::io::Read;
use std::path::Path;

use crate::disk::capability::{staging_path, CreateOptions, Format, ImageReader, ImageWriter};
use crate::disk::convert::{copy, CopyStats};
use crate::disk::error::DiskError;
use crate::disk::gate;
use crate::disk::qcow2::Qcow2Image;
use crate::disk::qcow2_header::MAGIC as QCOW2_MAGIC;
use crate::disk::qcow2_stream::Qcow2StreamWriter;
use crate::disk::raw::{self, RawReader, RawWriter};
use crate::disk::vmdk::{self, Subformat};

/// A target format with its variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Raw.
    Raw,
    /// qcow2.
    Qcow2,
    /// vmdk of a sub-format.
    Vmdk(Subformat),
}

impl Target {
    /// The format written.
    #[cfg(test)]
    pub fn format(self) -> Format {
        match self {
            Target::Raw => Format::Raw,
            Target::Qcow2 => Format::Qcow2,
            Target::Vmdk(_) => Format::Vmdk,
        }
    }
}

impl From<Format> for Target {
    /// The default variant of a format (vmdk: monolithicSparse, as qemu-img).
    fn from(f: Format) -> Target {
        match f {
            Format::Raw => Target::Raw,
            Format::Qcow2 => Target::Qcow2,
            Format::Vmdk => Target::Vmdk(Subformat::MonolithicSparse),
        }
    }
}

/// The format of an image file, from its first bytes (never its name).
/// Only regular files are images (see `gate`).
pub fn detect(path: &Path) -> Result<Format, DiskError> {
    let mut head = [0u8; 512];
    let mut file = gate::open_regular(path)?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(source) => {
                return Err(DiskError::Io {
                    op: "cannot read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    let head = &head[..n];
    Ok(if head.starts_with(QCOW2_MAGIC) {
        Format::Qcow2
    } else if vmdk::sniff(head) {
        Format::Vmdk
    } else {
        Format::Raw
    })
}

/// Opens any image for reading.
pub fn open(path: &Path) -> Result<Box<dyn ImageReader>, DiskError> {
    Ok(match detect(path)? {
        Format::Raw => Box::new(RawReader::open(path)?),
        Format::Qcow2 => Box::new(Qcow2Image::open(path, false)?),
        Format::Vmdk => vmdk::open(path)?,
    })
}

/// Checks an image a build file names as a source (`b9 check`): it can be
/// opened, is a regular file, and its backing files and extents lie where
/// they may (`gate`). Only headers and tables are read. A corrupt or
/// unsupported image is left to the build, which fails its artifact.
pub fn check_source(path: &Path) -> Result<(), DiskError> {
    match open(path) {
        Ok(_) | Err(DiskError::Corrupt { .. } | DiskError::Unsupported { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a new, empty image of `size` bytes for writing front to back.
pub fn create(
    path: &Path,
    target: Target,
    size: u64,
    opts: &CreateOptions,
) -> Result<Box<dyn ImageWriter>, DiskError> {
    Ok(match target {
        Target::Raw => Box::new(RawWriter::create(path, size)?),
        Target::Qcow2 => Box::new(Qcow2StreamWriter::create(path, size)?),
        Target::Vmdk(sub) => vmdk::create(path, size, sub, opts)?,
    })
}

/// Converts the image at `input` into a new image at `output` (created or
/// replaced); `size` overrides the virtual size (grow or cut).
pub fn convert_file(
    input: &Path,
    output: &Path,
    target: Target,
    size: Option<u64>,
    opts: &CreateOptions,
) -> Result<CopyStats, DiskError> {
    let reader = open(input)?;
    convert_reader(reader.as_ref(), output, target, size, opts)
}

/// Writes what `reader` holds into a new image at `output`.
pub fn convert_reader(
    reader: &dyn ImageReader,
    output: &Path,
    target: Target,
    size: Option<u64>,
    opts: &CreateOptions,
) -> Result<CopyStats, DiskError> {
    let size = size.unwrap_or(reader.size());
    let writer = create(output, target, size, opts)?;
    let label = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    copy(reader, writer, size, &label)
}

/// Sets the virtual size of an image file (the container only, not a file
/// system in it), in place. vmdk images are rewritten.
pub fn resize_file(path: &Path, size: u64, opts: &CreateOptions) -> Result<(), DiskError> {
    match detect(path)? {
        Format::Raw => raw::resize(path, size),
        Format::Qcow2 => Qcow2Image::open(path, true)?.resize(size),
        Format::Vmdk => {
            let tmp = staging_path(path);
            let sub = vmdk::subformat_of(path)?;
            let result =
                convert_file(path, &tmp, Target::Vmdk(sub), Some(size), opts).and_then(|_| {
                    crate::replace::replace_file(&tmp, path).map_err(|source| DiskError::Io {
                        op: "cannot replace",
                        path: path.to_path_buf(),
                        source,
                    })
                });
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}
