//! `b9 image`: disk-image commands for people used to qemu-img and mkfs:
//! `info`, `convert`, `create`, `extract-partition`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use crate::cli::{fail, usage, Failure};
use crate::config;
use crate::disk::capability::staging_path;
use crate::disk::ext4::{self, Ext4Spec};
use crate::disk::partition::{self, PartitionReader};
use crate::disk::vmdk::Subformat;
use crate::disk::{self, gate, qcow2, CreateOptions, DiskError, Format, Target};
use crate::pipeline::output;

/// The `b9 image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show format, virtual size, allocation, backing chain and partitions.
    Info {
        /// The image.
        image: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert an image to another format (only allocated, non-zero data is copied).
    Convert {
        /// Output format (default: from the output's extension).
        #[arg(short = 'O', value_enum)]
        format: Option<FormatArg>,
        /// vmdk sub-format.
        #[arg(long, value_enum, default_value = "monolithic-sparse")]
        subformat: SubformatArg,
        /// Input image (any format, detected from its content).
        input: PathBuf,
        /// Output image (replaced atomically).
        output: PathBuf,
    },
    /// Create an empty image, optionally with an ext4 file system.
    Create {
        /// File system.
        #[arg(long, value_enum, default_value = "none")]
        fs: FsArg,
        /// Virtual size: bytes, or with a K, M, G or T suffix (binary units).
        #[arg(long)]
        size: String,
        /// File-system label.
        #[arg(long, default_value = "")]
        label: String,
        /// Copy this directory's contents into the file system (modes, owners, times, links).
        #[arg(long)]
        from_dir: Option<PathBuf>,
        /// ext4 features, mkfs.ext4 -O style (`64bit,^metadata_csum`).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Output format (default: from the output's extension).
        #[arg(short = 'O', value_enum)]
        format: Option<FormatArg>,
        /// vmdk sub-format.
        #[arg(long, value_enum, default_value = "monolithic-sparse")]
        subformat: SubformatArg,
        /// The image to create.
        output: PathBuf,
    },
    /// Copy partition N (MBR 1-4, GPT 1-128) of an image into a new image.
    ExtractPartition {
        /// The partition number.
        number: u32,
        /// The partitioned image.
        input: PathBuf,
        /// The new image.
        output: PathBuf,
        /// Output format (default: from the output's extension).
        #[arg(short = 'O', value_enum)]
        format: Option<FormatArg>,
    },
}

/// `-O` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// Raw bytes.
    Raw,
    /// qcow2.
    Qcow2,
    /// vmdk.
    Vmdk,
}

/// `--subformat` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SubformatArg {
    /// What `qemu-img convert -O vmdk` makes.
    MonolithicSparse,
    /// Compressed, for VMware and OVF.
    StreamOptimized,
}

/// `--fs` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FsArg {
    /// No file system.
    None,
    /// ext4.
    Ext4,
}

/// The time stamp of created images: `SOURCE_DATE_EPOCH` or now.
fn create_options(started: u64) -> CreateOptions {
    CreateOptions { timestamp: started }
}

/// Trusts the image directories b9.conf lists (`trusted_image_dirs`), when
/// there is a configuration: image commands need none, and create none.
fn trust_configured_dirs(config_args: &[PathBuf]) -> Result<(), Failure> {
    let Some(b9_dir) = config::default_b9_dir() else {
        return Ok(());
    };
    let exists = |p: &PathBuf| p.is_file();
    if config_args.is_empty()
        && !config::versioned_candidates(&b9_dir.join("b9.conf"))
            .iter()
            .any(exists)
    {
        return Ok(());
    }
    let located = config::locate(config_args, &b9_dir).map_err(|d| Failure::from(vec![d]))?;
    let loaded = config::load(&located).map_err(Failure::from)?;
    gate::trust_dirs(&loaded.config.trusted_image_dirs);
    Ok(())
}

/// Runs an image command (`config_args`: the `-c` files).
pub fn run(
    cmd: &ImageCommand,
    config_args: &[PathBuf],
    started: u64,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let opts = create_options(started);
    trust_configured_dirs(config_args)?;
    // The first Ctrl-C or SIGTERM stops a long write, which removes its
    // temporary and fails with "interrupted".
    crate::interrupt::flag();
    match cmd {
        ImageCommand::Info { image, json } => info(image, *json, out),
        ImageCommand::Convert {
            format,
            subformat,
            input,
            output,
        } => {
            let target = target(*format, *subformat, output)?;
            staged(output, |tmp| {
                disk::convert_file(input, tmp, target, None, &opts).map(|_| ())
            })
        }
        ImageCommand::Create {
            fs,
            size,
            label,
            from_dir,
            features,
            format,
            subformat,
            output,
        } => {
            let target = target(*format, *subformat, output)?;
            let size = parse_size(size).map_err(usage)?;
            match fs {
                FsArg::None => {
                    if from_dir.is_some() {
                        return Err(usage("--from-dir needs a file system (--fs ext4)"));
                    }
                    staged(output, |tmp| {
                        disk::create(tmp, target, size, &opts)?.finish()
                    })
                }
                FsArg::Ext4 => staged(output, |tmp| {
                    let spec = Ext4Spec {
                        size,
                        label,
                        features,
                        populate_from: from_dir.as_deref(),
                        timestamp: opts.timestamp,
                    };
                    if target == Target::Raw {
                        return ext4::create(tmp, &spec);
                    }
                    let raw = staging_path(output);
                    let result = ext4::create(&raw, &spec).and_then(|()| {
                        disk::convert_file(&raw, tmp, target, None, &opts).map(|_| ())
                    });
                    let _ = std::fs::remove_file(&raw);
                    result
                }),
            }
        }
        ImageCommand::ExtractPartition {
            number,
            input,
            output,
            format,
        } => {
            let target = target(*format, SubformatArg::MonolithicSparse, output)?;
            staged(output, |tmp| {
                let reader = disk::open(input)?;
                let part = partition::find(reader.as_ref(), input, *number)?;
                let view = PartitionReader::new(reader.as_ref(), &part);
                disk::convert_reader(&view, tmp, target, None, &opts).map(|_| ())
            })
        }
    }
}

/// Writes `output` through a temporary file, renamed only on success.
fn staged(
    output: &Path,
    write: impl FnOnce(&Path) -> Result<(), DiskError>,
) -> Result<(), Failure> {
    let st = output::stage(output).map_err(fail)?;
    match write(&st.tmp) {
        Ok(()) => output::commit(vec![st]).map_err(fail),
        Err(e) => {
            output::discard(vec![st]);
            Err(fail(e))
        }
    }
}

/// The output format: `-O`, else the output's extension.
fn target(format: Option<FormatArg>, sub: SubformatArg, output: &Path) -> Result<Target, Failure> {
    let format = match format {
        Some(FormatArg::Raw) => Format::Raw,
        Some(FormatArg::Qcow2) => Format::Qcow2,
        Some(FormatArg::Vmdk) => Format::Vmdk,
        None => match output.extension().and_then(|e| e.to_str()) {
            Some("raw" | "img") => Format::Raw,
            Some("qcow2") => Format::Qcow2,
            Some("vmdk") => Format::Vmdk,
            _ => {
                return Err(usage(format!(
                    "cannot tell the format of {} from its name: give -O raw|qcow2|vmdk",
                    output.display()
                )))
            }
        },
    };
    Ok(match format {
        Format::Vmdk => Target::Vmdk(match sub {
            SubformatArg::MonolithicSparse => Subformat::MonolithicSparse,
            SubformatArg::StreamOptimized => Subformat::StreamOptimized,
        }),
        f => Target::from(f),
    })
}

/// `10G`, `512M`, `64K`, `1T` (binary units) or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
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
        format!("size {text:?}: expected a number with an optional K, M, G or T suffix")
    })?;
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("size {text:?} is zero or too large"))
}

/// What `b9 image info` reports.
#[derive(Debug, Serialize)]
pub struct Info {
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
    /// The partition table, if any.
    pub partition_table: Option<&'static str>,
    /// The partitions.
    pub partitions: Vec<partition::PartitionInfo>,
}

/// One backing file.
#[derive(Debug, Serialize)]
pub struct Backing {
    /// As recorded in the image.
    pub file: String,
    /// The recorded backing format, if any.
    pub format: Option<String>,
}

fn info(path: &Path, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    let format = disk::detect(path).map_err(fail)?;
    let reader = disk::open(path).map_err(fail)?;
    let data_size = reader
        .data_extents()
        .map_err(fail)?
        .iter()
        .map(|e| e.len)
        .sum();
    let disk_size = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .unwrap_or(0);
    let mut backing_chain = Vec::new();
    let mut current = path.to_path_buf();
    while disk::detect(&current).ok() == Some(Format::Qcow2) && backing_chain.len() < 16 {
        let Some((file, format)) = qcow2::backing_of(&current).map_err(fail)? else {
            break;
        };
        let next = current.parent().unwrap_or(Path::new(".")).join(&file);
        backing_chain.push(Backing { file, format });
        current = next;
    }
    let table = partition::read_table(reader.as_ref(), path).map_err(fail)?;
    let (partition_table, partitions) = match table {
        Some((partition::TableKind::Mbr, p)) => (Some("MBR"), p),
        Some((partition::TableKind::Gpt, p)) => (Some("GPT"), p),
        None => (None, Vec::new()),
    };
    let info = Info {
        file: path.display().to_string(),
        format: format.extension(),
        virtual_size: reader.size(),
        disk_size,
        data_size,
        backing_chain,
        partition_table,
        partitions,
    };
    let text = if json {
        serde_json::to_string_pretty(&info)
            .map(|s| s + "\n")
            .unwrap_or_default()
    } else {
        let mut t = format!(
            "image: {}\nformat: {}\nvirtual size: {} ({} bytes)\ndisk size: {}\ndata: {}\n",
            info.file,
            info.format,
            human(info.virtual_size),
            info.virtual_size,
            human(info.disk_size),
            human(info.data_size)
        );
        for b in &info.backing_chain {
            t.push_str(&format!("backing file: {}", b.file));
            if let Some(f) = &b.format {
                t.push_str(&format!(" (format {f})"));
            }
            t.push('\n');
        }
        if let Some(kind) = info.partition_table {
            t.push_str(&format!("partition table: {kind}\n"));
            for p in &info.partitions {
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
    };
    out.write_all(text.as_bytes()).map_err(fail)
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
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x1G").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(1536), "1.5 KiB");
    }
}
