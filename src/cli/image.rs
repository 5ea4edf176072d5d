//! `b9 image`: disk-image commands for people used to qemu-img and mkfs:
//! `info`, `convert`, `create`, `extract-partition`.

use std::io::Write;
use std::path::{Path, PathBuf};

use b9::image::{self, Ext4Options, ImageFormat, ImageOptions, NewImage};
use b9::CancelToken;
use clap::{Subcommand, ValueEnum};

use crate::cli::{fail, usage, Failure};

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

/// Runs an image command (`config_files`: the `-c` files).
pub fn run(
    cmd: &ImageCommand,
    config_files: &[PathBuf],
    started: u64,
    cancel: &CancelToken,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut opts = ImageOptions::new(started);
    opts.cancel = cancel.clone();
    image::trust_configured_dirs(config_files)?;
    match cmd {
        ImageCommand::Info { image: path, json } => {
            let info = image::info(path)?;
            let text = if *json {
                info.to_json()
            } else {
                info.to_text()
            };
            out.write_all(text.as_bytes()).map_err(fail)
        }
        ImageCommand::Convert {
            format,
            subformat,
            input,
            output,
        } => {
            let format = target(*format, *subformat, output)?;
            Ok(image::convert(input, output, format, &opts)?)
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
            let format = target(*format, *subformat, output)?;
            let size = image::parse_size(size)?;
            let mut new = NewImage::new(size, format);
            match fs {
                FsArg::None if from_dir.is_some() => {
                    return Err(usage("--from-dir needs a file system (--fs ext4)"));
                }
                FsArg::None => {}
                FsArg::Ext4 => {
                    let mut ext4 = Ext4Options::default();
                    ext4.label = label.clone();
                    ext4.features = features.clone();
                    ext4.from_dir = from_dir.clone();
                    new = new.with_ext4(ext4);
                }
            }
            Ok(image::create(output, &new, &opts)?)
        }
        ImageCommand::ExtractPartition {
            number,
            input,
            output,
            format,
        } => {
            let format = target(*format, SubformatArg::MonolithicSparse, output)?;
            Ok(image::extract_partition(
                input, *number, output, format, &opts,
            )?)
        }
    }
}

/// The output format: `-O`, else the output's extension.
fn target(
    format: Option<FormatArg>,
    sub: SubformatArg,
    output: &Path,
) -> Result<ImageFormat, Failure> {
    let format = match format {
        Some(FormatArg::Raw) => ImageFormat::Raw,
        Some(FormatArg::Qcow2) => ImageFormat::Qcow2,
        Some(FormatArg::Vmdk) => ImageFormat::Vmdk,
        None => ImageFormat::from_extension(output)?,
    };
    Ok(match (format, sub) {
        (ImageFormat::Vmdk, SubformatArg::StreamOptimized) => ImageFormat::VmdkStreamOptimized,
        (f, _) => f,
    })
}
