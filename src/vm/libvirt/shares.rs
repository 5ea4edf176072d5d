//! Shares without a shared file system (docs/PROTOCOL.md#helper-remote):
//! on the remote path each shared directory becomes an ext4 image b9
//! writes in-process (`disk::ext4`), attached as a disk the agent mounts
//! where the share would be. A read-write share's image is downloaded with
//! the build images after a successful run and its content written back
//! into the host directory.

use std::path::{Path, PathBuf};

use crate::disk::ext4::{self, Ext4Spec};
use crate::disk::Format;
use crate::vm::backend::{VmDisk, VmError};
use crate::vm::request::{RunDisk, RunRequest};

/// The serial prefix of a read-only share's image. The agent mounts disks
/// read-write, so it is attached writable, and what the guest writes there
/// is dropped with the volume (never downloaded).
pub const DISCARDED: &str = "b9-ro-";

/// Room a read-write share gets for what the script writes (sparse: only
/// written blocks cost anything).
const RW_ROOM: u64 = 4 << 30;
/// Room on top of a read-only share's content (metadata, rounding).
const RO_ROOM: u64 = 64 << 20;

/// A request whose shares are disk images.
pub struct Lowered {
    /// The request to run.
    pub request: RunRequest,
    /// Read-write shares: (image, host directory).
    write_back: Vec<(PathBuf, PathBuf)>,
    /// Every image made, removed when dropped.
    images: Vec<PathBuf>,
}

/// Turns `request`'s shares into ext4 images made in `dir`.
pub fn lower(request: &RunRequest, dir: &Path) -> Result<Lowered, VmError> {
    let mut lowered = Lowered {
        request: RunRequest {
            shares: Vec::new(),
            ..request.clone()
        },
        write_back: Vec::new(),
        images: Vec::new(),
    };
    for (index, share) in request.shares.iter().enumerate() {
        let image = dir.join(format!("share-{index}.{}.img", std::process::id()));
        lowered.images.push(image.clone());
        let content = tree_size(&share.share.path);
        let room = if share.share.read_only {
            RO_ROOM + content / 4
        } else {
            RW_ROOM
        };
        let spec = Ext4Spec {
            size: (content + room).next_multiple_of(1 << 20),
            label: "b9-share",
            features: &[],
            populate_from: Some(&share.share.path),
            timestamp: 0,
        };
        ext4::create(&image, &spec).map_err(|e| {
            VmError::Start(format!(
                "cannot make an image of the share {}: {e}",
                share.share.path.display()
            ))
        })?;
        if !share.share.read_only {
            lowered
                .write_back
                .push((image.clone(), share.share.path.clone()));
        }
        lowered.request.disks.push(RunDisk {
            disk: VmDisk {
                path: image,
                format: Format::Raw,
                serial: if share.share.read_only {
                    format!("{DISCARDED}{index}")
                } else {
                    format!("b9-rw-{index}")
                },
                read_only: false,
            },
            mount_point: Some(share.mount_point.clone()),
        });
    }
    Ok(lowered)
}

impl Lowered {
    /// Writes what the run left in each read-write share's image back
    /// into its host directory.
    pub fn write_back(&self) -> Result<(), VmError> {
        for (image, dir) in &self.write_back {
            ext4::extract(image, dir).map_err(|e| {
                VmError::Start(format!(
                    "cannot write the share {} back from its image: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(())
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        for image in &self.images {
            let _ = std::fs::remove_file(image);
        }
    }
}

/// Bytes of the regular files under `dir` (rounded up to 4 KiB each).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            total += meta.len().next_multiple_of(4096) + 4096;
        }
    }
    total
}
