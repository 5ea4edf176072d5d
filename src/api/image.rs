//! Disk images, as `b9 image` works on them: [`info`], [`convert`],
//! [`create`] (empty, or ext4 from a directory) and [`extract_partition`].
//! Outputs are written under a temporary name and renamed into place only
//! when complete.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::config::Config;
use super::error::Error;
use crate::disk::capability::staging_path;
use crate::disk::ext4::{self, Ext4Spec};
use crate::disk::partition::{self, PartitionReader};
use crate::disk::vmdk::Subformat;
use crate::disk::{self, gate, qcow2, CreateOptions, DiskError, Format, Target};
use crate::interrupt::{self, CancelToken};
use crate::pipeline::output;

/// An output image format.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// Raw bytes.
    Raw,
    /// qcow2 (v3).
    Qcow2,
    /// vmdk, monolithic sparse (what `qemu-img convert -O vmdk` makes).
    Vmdk,
    /// vmdk, stream-optimized (compressed, for VMware and OVF).
    VmdkStreamOptimized,
}

impl ImageFormat {
    /// The format an output's extension names: `.raw`/`.img`, `.qcow2`,
    /// `.vmdk` (monolithic sparse).
    pub fn from_extension(path: &Path) -> Result<ImageFormat, Error> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("raw" | "img") => Ok(ImageFormat::Raw),
            Some("qcow2") => Ok(ImageFormat::Qcow2),
            Some("vmdk") => Ok(ImageFormat::Vmdk),
            _ => Err(Error::invalid(format!(
                "cannot tell the format of {} from its name: give -O raw|qcow2|vmdk",
                path.display()
            ))),
        }
    }

    fn target(self) -> Target {
        match self {
            ImageFormat::Raw => Target::Raw,
            ImageFormat::Qcow2 => Target::Qcow2,
            ImageFormat::Vmdk => Target::Vmdk(Subformat::MonolithicSparse),
            ImageFormat::VmdkStreamOptimized => Target::Vmdk(Subformat::StreamOptimized),
        }
    }
}

/// What every image write needs.
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    /// Time stamp (UNIX seconds) of the times written into images, and seed
    /// of their ids: the same inputs and time stamp make the same bytes.
    pub timestamp: u64,
    /// Stops the write: its temporary is removed and it fails with
    /// "interrupted".
    pub cancel: CancelToken,
}

impl ImageOptions {
    /// Writes stamped with `timestamp`, never cancelled.
    pub fn new(timestamp: u64) -> ImageOptions {
        ImageOptions {
            timestamp,
            cancel: CancelToken::default(),
        }
    }

    fn create(&self) -> CreateOptions {
        CreateOptions {
            timestamp: self.timestamp,
        }
    }
}

/// An ext4 file system for [`NewImage`].
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct Ext4Options {
    /// The label (at most 16 bytes).
    pub label: String,
    /// Features, mkfs.ext4 -O style (`64bit`, `^metadata_csum`).
    pub features: Vec<String>,
    /// A directory whose contents become the file system's root (modes,
    /// owners, times, links).
    pub from_dir: Option<PathBuf>,
}

/// An image for [`create`].
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct NewImage {
    /// Virtual size in bytes.
    pub size: u64,
    /// The output format.
    pub format: ImageFormat,
    /// An ext4 file system in it, or none.
    pub ext4: Option<Ext4Options>,
}

impl NewImage {
    /// An empty image of `size` bytes in `format`.
    pub fn new(size: u64, format: ImageFormat) -> NewImage {
        NewImage {
            size,
            format,
            ext4: None,
        }
    }

    /// This image with an ext4 file system.
    pub fn with_ext4(mut self, ext4: Ext4Options) -> NewImage {
        self.ext4 = Some(ext4);
        self
    }
}

/// Trusts the image directories of the configuration (`trusted_image_dirs`,
/// docs/IMAGES.md) for the rest of the process: that of `config_files`, or
/// an existing `~/.b9/b9.conf`; nothing is created.
pub fn trust_configured_dirs(config_files: &[PathBuf]) -> Result<(), Error> {
    if let Some(config) = Config::load_existing(config_files)? {
        gate::trust_dirs(&config.config.trusted_image_dirs);
    }
    Ok(())
}

/// Converts `input` (any format, detected from its content) to `output`;
/// only allocated, non-zero data is copied.
pub fn convert(
    input: &Path,
    output: &Path,
    format: ImageFormat,
    options: &ImageOptions,
) -> Result<(), Error> {
    staged(output, options, |tmp| {
        disk::convert_file(input, tmp, format.target(), None, &options.create()).map(|_| ())
    })
}

/// Creates `output`: an empty image, or one holding an ext4 file system.
///
/// ```
/// use b9::image::{self, ImageFormat, ImageOptions, NewImage};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("disk.qcow2");
/// image::create(&path, &NewImage::new(64 << 20, ImageFormat::Qcow2), &ImageOptions::new(0))?;
/// let info = image::info(&path)?;
/// assert_eq!((info.format, info.virtual_size), ("qcow2", 64 << 20));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create(output: &Path, image: &NewImage, options: &ImageOptions) -> Result<(), Error> {
    let target = image.format.target();
    let opts = options.create();
    let Some(fs) = &image.ext4 else {
        return staged(output, options, |tmp| {
            disk::create(tmp, target, image.size, &opts)?.finish()
        });
    };
    staged(output, options, |tmp| {
        let spec = Ext4Spec {
            size: image.size,
            label: &fs.label,
            features: &fs.features,
            populate_from: fs.from_dir.as_deref(),
            timestamp: opts.timestamp,
        };
        if target == Target::Raw {
            return ext4::create(tmp, &spec);
        }
        let raw = staging_path(output);
        let result = ext4::create(&raw, &spec)
            .and_then(|()| disk::convert_file(&raw, tmp, target, None, &opts).map(|_| ()));
        let _ = std::fs::remove_file(&raw);
        result
    })
}

/// Copies partition `number` (MBR 1-4, GPT 1-128) of `input` into the new
/// image `output`.
pub fn extract_partition(
    input: &Path,
    number: u32,
    output: &Path,
    format: ImageFormat,
    options: &ImageOptions,
) -> Result<(), Error> {
    staged(output, options, |tmp| {
        let reader = disk::open(input)?;
        let part = partition::find(reader.as_ref(), input, number)?;
        let view = PartitionReader::new(reader.as_ref(), &part);
        disk::convert_reader(&view, tmp, format.target(), None, &options.create()).map(|_| ())
    })
}

/// Writes `output` through a temporary file, renamed only on success.
fn staged(
    output: &Path,
    options: &ImageOptions,
    write: impl FnOnce(&Path) -> Result<(), DiskError>,
) -> Result<(), Error> {
    let _watch = interrupt::watch(&options.cancel);
    // The first Ctrl-C or SIGTERM stops a long write, which removes its
    // temporary and fails with "interrupted".
    interrupt::arm();
    let st = output::stage(output).map_err(Error::failed)?;
    match write(&st.tmp) {
        Ok(()) => output::commit(vec![st]).map_err(Error::failed),
        Err(e) => {
            output::discard(vec![st]);
            Err(Error::failed(e))
        }
    }
}

/// `10G`, `512M`, `64K`, `1T` (binary units, an optional `B` or `iB`) or
/// plain bytes.
///
/// ```
/// assert_eq!(b9::image::parse_size("512MiB")?, 512 << 20);
/// # Ok::<(), b9::Error>(())
/// ```
pub fn parse_size(text: &str) -> Result<u64, Error> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| {
        Error::invalid(format!(
            "size {text:?}: expected a number with an optional K, M, G or T suffix"
        ))
    })?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| Error::invalid(format!("size {text:?} is zero or too large")))
}

/// What [`info`] reports about an image.
#[non_exhaustive]
#[derive(Debug, Serialize)]
pub struct ImageInfo {
    /// The file.
    pub file: String,
    /// raw, qcow2 or vmdk.
    pub format: &'static str,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes the file occupies on disk.
    pub disk_size: u64,
    /// Bytes in the image's data extents (allocated, possibly non-zero).
    pub data_size: u64,
    /// The backing files, outermost first.
    pub backing_chain: Vec<Backing>,
    /// The partition table (`MBR`, `GPT`), if any.
    pub partition_table: Option<&'static str>,
    /// The partitions.
    pub partitions: Vec<Partition>,
}

/// One backing file.
#[non_exhaustive]
#[derive(Debug, Serialize)]
pub struct Backing {
    /// As recorded in the image.
    pub file: String,
    /// The recorded backing format, if any.
    pub format: Option<String>,
}

/// One partition.
#[non_exhaustive]
#[derive(Debug, Serialize)]
pub struct Partition {
    /// 1-based partition number.
    pub number: u32,
    /// Start offset in bytes.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Type (MBR type byte as `0x83`, GPT type GUID).
    pub type_id: String,
    /// GPT partition name (empty for MBR).
    pub name: String,
}

/// Format, virtual size, allocation, backing chain and partitions of the
/// image at `path`.
pub fn info(path: &Path) -> Result<ImageInfo, Error> {
    let format = disk::detect(path).map_err(Error::failed)?;
    let reader = disk::open(path).map_err(Error::failed)?;
    let data_size = reader
        .data_extents()
        .map_err(Error::failed)?
        .iter()
        .map(|e| e.len)
        .sum();
    let disk_size = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .unwrap_or(0);
    let mut backing_chain = Vec::new();
    let mut current = path.to_path_buf();
    while disk::detect(&current).ok() == Some(Format::Qcow2) && backing_chain.len() < 16 {
        let Some((file, format)) = qcow2::backing_of(&current).map_err(Error::failed)? else {
            break;
        };
        let next = current.parent().unwrap_or(Path::new(".")).join(&file);
        backing_chain.push(Backing { file, format });
        current = next;
    }
    let table = partition::read_table(reader.as_ref(), path).map_err(Error::failed)?;
    let (partition_table, partitions) = match table {
        Some((partition::TableKind::Mbr, p)) => (Some("MBR"), p),
        Some((partition::TableKind::Gpt, p)) => (Some("GPT"), p),
        None => (None, Vec::new()),
    };
    Ok(ImageInfo {
        file: path.display().to_string(),
        format: format.extension(),
        virtual_size: reader.size(),
        disk_size,
        data_size,
        backing_chain,
        partition_table,
        partitions: partitions
            .into_iter()
            .map(|p| Partition {
                number: p.number,
                start: p.start,
                len: p.len,
                type_id: p.type_id,
                name: p.name,
            })
            .collect(),
    })
}

impl ImageInfo {
    /// What `b9 image info --json` prints.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .map(|s| s + "\n")
            .unwrap_or_default()
    }

    /// What `b9 image info` prints.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "image: {}\nformat: {}\nvirtual size: {} ({} bytes)\ndisk size: {}\ndata: {}\n",
            self.file,
            self.format,
            human(self.virtual_size),
            self.virtual_size,
            human(self.disk_size),
            human(self.data_size)
        );
        for b in &self.backing_chain {
            t.push_str(&format!("backing file: {}", b.file));
            if let Some(f) = &b.format {
                t.push_str(&format!(" (format {f})"));
            }
            t.push('\n');
        }
        if let Some(kind) = self.partition_table {
            t.push_str(&format!("partition table: {kind}\n"));
            for p in &self.partitions {
                t.push_str(&format!(
                    "  {}: start {} size {} type {}{}\n",
                    p.number,
                    p.start,
                    human(p.len),
                    p.type_id,
                    if p.name.is_empty() {
                        String::new()
                    } else {
                        format!(" name {:?}", p.name)
                    }
                ));
            }
        }
        t
    }
}

/// `1.5 GiB`-style sizes.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10G").ok(), Some(10 << 30));
        assert_eq!(parse_size("512MiB").ok(), Some(512 << 20));
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x1G").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(1536), "1.5 KiB");
    }
}
