//! What one appliance run is asked to do, in the VM's own terms: disks and
//! shares with where the guest mounts them, the commands, the file-system
//! resizes and the console log. [`RunRequest::job`] turns it into the
//! agent's wire [`Job`].

use std::path::PathBuf;

use crate::vm::backend::{VmDisk, VmShare};
use b9_protocol::agent::{DiskMount, Job, Network, ShareMount};

/// One command the agent runs in the guest (the protocol's `Command`).
pub use b9_protocol::agent::Command as GuestCommand;
pub use b9_protocol::agent::{FsResize, Output, ResizeHow};

/// One run of the appliance.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// A name for the VM (made unique per host by the launcher).
    pub name: String,
    /// Disks, in attachment order.
    pub disks: Vec<RunDisk>,
    /// Shared host directories, in order.
    pub shares: Vec<RunShare>,
    /// The commands, run in order chrooted into the disk mounted at `/`.
    pub commands: Vec<GuestCommand>,
    /// File-system grows before the commands.
    pub grow_first: Vec<FsResize>,
    /// File-system resizes after the commands succeeded.
    pub resizes: Vec<FsResize>,
    /// The console log file.
    pub console_log: PathBuf,
    /// Run the single command on a pseudo-terminal, forwarding stdin.
    pub interactive: bool,
    /// Where the disks' state is kept after some commands (the step
    /// cache's layers), in command order.
    pub checkpoints: Vec<Checkpoint>,
    /// Where the transfers of a remote host's volumes report.
    pub events: crate::events::Events,
}

/// A checkpoint: after command `after` (an index into the commands), with
/// the file systems frozen, each listed disk goes on writing into a new
/// qcow2 overlay, so the file it wrote to so far keeps the state.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The command after which the agent pauses.
    pub after: usize,
    /// Disks (index into [`RunRequest::disks`]) and their new overlay
    /// files, created by the caller (any backing name: the VM's current
    /// file is the backing).
    pub overlays: Vec<(usize, PathBuf)>,
}

/// A disk of a run and where the guest mounts it.
#[derive(Clone, Debug)]
pub struct RunDisk {
    /// The disk.
    pub disk: VmDisk,
    /// The absolute mount point in the guest's new root; `None` = not mounted.
    pub mount_point: Option<String>,
}

/// A shared host directory and where the guest mounts it.
#[derive(Clone, Debug)]
pub struct RunShare {
    /// The share.
    pub share: VmShare,
    /// The absolute mount point in the guest's new root.
    pub mount_point: String,
}

impl RunRequest {
    /// Whether a disk is mounted at `/` (the commands need one).
    pub fn has_root(&self) -> bool {
        self.disks
            .iter()
            .any(|d| d.mount_point.as_deref() == Some("/"))
    }

    /// The agent's job: mounted disks in mount order (`/` first, then by
    /// depth), then the shares, the commands and the resizes.
    pub fn job(&self, network: Option<Network>) -> Job {
        let mut disks: Vec<DiskMount> = self
            .disks
            .iter()
            .filter_map(|d| {
                d.mount_point.as_ref().map(|mp| DiskMount {
                    serial: d.disk.serial.clone(),
                    mount_point: mp.clone(),
                })
            })
            .collect();
        disks.sort_by_key(|m| mount_depth(&m.mount_point));
        Job {
            disks,
            shares: self
                .shares
                .iter()
                .map(|s| ShareMount {
                    tag: s.share.tag.clone(),
                    mount_point: s.mount_point.clone(),
                    read_only: s.share.read_only,
                })
                .collect(),
            commands: self.commands.clone(),
            grow_first: self.grow_first.clone(),
            resizes: self.resizes.clone(),
            network,
            interactive: self.interactive,
            pause_after: self.checkpoints.iter().map(|c| c.after).collect(),
        }
    }
}

/// `/` is 0, `/a` 1, `/a/b` 2.
fn mount_depth(mp: &str) -> usize {
    mp.split('/').filter(|c| !c.is_empty()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Format;

    fn disk(serial: &str, mount_point: Option<&str>) -> RunDisk {
        RunDisk {
            disk: VmDisk {
                path: PathBuf::from("/d"),
                format: Format::Raw,
                serial: serial.into(),
                read_only: false,
            },
            mount_point: mount_point.map(Into::into),
        }
    }

    #[test]
    fn the_job_mounts_root_first_then_by_depth() {
        let request = RunRequest {
            disks: vec![
                disk("b9-0", Some("/a/b")),
                disk("b9-s0", None),
                disk("b9-1", Some("/")),
                disk("b9-2", Some("/a")),
            ],
            ..RunRequest::default()
        };
        assert!(request.has_root());
        let job = request.job(None);
        let order: Vec<&str> = job.disks.iter().map(|d| d.serial.as_str()).collect();
        assert_eq!(order, ["b9-1", "b9-2", "b9-0"]);
    }
}
