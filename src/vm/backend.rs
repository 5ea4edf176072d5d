//! The VM backends' common interface: what a VM is made of ([`VmSpec`]),
//! starting one ([`Hypervisor`]) and watching and stopping it ([`Vm`]).
//!
//! Both backends (`qemu`, `libvirt`) boot the same appliance with the same
//! devices: virtio-blk disks with serials, 9p shares, one virtio-serial
//! port whose host side is a listening unix socket at
//! [`VmSpec::agent_socket`], and the serial console written to
//! [`VmSpec::console_log`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::disk::Format;
use crate::events::Events;

/// The accelerator a VM runs with (`auto` is resolved before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accelerator {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// A disk attached as virtio-blk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmDisk {
    /// The image file (absolute).
    pub path: PathBuf,
    /// Its format (attached as it is: qcow2, raw or vmdk).
    pub format: Format,
    /// The virtio serial (at most 20 bytes) the agent finds it by.
    pub serial: String,
    /// Attached read-only.
    pub read_only: bool,
}

/// A host directory shared over 9p.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmShare {
    /// The host directory (absolute, existing).
    pub path: PathBuf,
    /// The 9p mount tag (at most 31 bytes).
    pub tag: String,
    /// Shared read-only.
    pub read_only: bool,
}

/// Everything a backend needs to start the appliance.
#[derive(Clone, Debug)]
pub struct VmSpec {
    /// A name unique on the host (domain name for libvirt).
    pub name: String,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The appliance initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// The accelerator.
    pub accel: Accelerator,
    /// Disks, in order.
    pub disks: Vec<VmDisk>,
    /// Shares, in order.
    pub shares: Vec<VmShare>,
    /// Where the VM listens for the agent connection (a short path: unix
    /// socket paths are limited to 107 bytes).
    pub agent_socket: PathBuf,
    /// A directory for the backend's own sockets (QMP), also short.
    pub runtime_dir: PathBuf,
    /// The serial console is written to this file.
    pub console_log: PathBuf,
    /// Attach a network interface (QEMU user networking, or the libvirt
    /// network named in `[libvirt] network`).
    pub network: bool,
    /// The artifact instance the run is for (named in its events).
    pub instance: String,
    /// Where the transfers of a remote host's volumes report
    /// (`Event::Transfer`).
    pub events: Events,
}

/// How a VM ended (or that it still runs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmState {
    /// Still running.
    Running,
    /// The guest kernel panicked.
    Panicked,
    /// The VM is gone; why, as far as the backend knows
    /// (exit status of QEMU, libvirt's reason).
    Gone(String),
}

/// Errors of the backends.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The hypervisor could not be started or reached.
    #[error("{0}")]
    Start(String),
    /// Talking to the running VM's monitor failed.
    #[error("{0}")]
    Monitor(String),
    /// A file or directory of the run could not be made or removed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was done (`create`, `remove`...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A companion program is missing.
    #[error(transparent)]
    Sibling(#[from] crate::vm::sibling::SiblingError),
    /// A libvirt host cannot be reached, or went away (a farm moves on to
    /// another host).
    #[error("{0}")]
    HostLost(String),
    /// The libvirt helper went away.
    #[error("lost the libvirt helper ({0})")]
    LostHelper(String),
    /// Every run-directory name was taken.
    #[error("cannot create a run directory in {}", .0.display())]
    NoRunDir(PathBuf),
}

/// Removes a file of a run; a missing one is fine.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), VmError> {
    match std::fs::remove_file(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(VmError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}

/// A started VM. Dropping it stops it and removes everything the backend
/// made (process, domain, sockets).
pub trait Vm: Send {
    /// The VM's state now, without blocking for long.
    fn state(&mut self) -> VmState;
    /// Stops the VM at once (idempotent) and waits up to `grace` for it to
    /// be gone.
    fn stop(&mut self, grace: Duration) -> Result<(), VmError>;
    /// After a successful run, once stopped: brings what the VM wrote back
    /// to b9's files (a remote host's volumes); nothing for a local VM.
    fn collect(&mut self) -> Result<(), VmError> {
        Ok(())
    }
    /// While the guest's file systems are frozen: each disk (index into
    /// [`VmSpec::disks`]) goes on writing into the existing qcow2 overlay
    /// at its path; the file it wrote to keeps its state. The `qemu`
    /// backend and local libvirt domains can.
    fn checkpoint(&mut self, overlays: &[(usize, PathBuf)]) -> Result<(), VmError> {
        let _ = overlays;
        Err(VmError::Monitor(
            "this backend cannot keep the disks' state between commands".into(),
        ))
    }
}

/// A way to run VMs.
pub trait Hypervisor: Sync {
    /// The backend's name for messages (`qemu`, `libvirt`).
    fn name(&self) -> &'static str;
    /// Starts the VM described by `spec`; returns once the hypervisor runs
    /// it (the agent socket exists).
    fn start(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmError>;
}

#[cfg(test)]
impl VmSpec {
    /// A spec with one read-only qcow2 disk at `disk` and one share, for
    /// the backends' command-line and XML tests.
    pub(crate) fn sample(disk: &str) -> VmSpec {
        VmSpec {
            name: "b9-test".into(),
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/initrd".into(),
            cmdline: "console=ttyS0 quiet".into(),
            memory_mb: 512,
            cpus: 2,
            accel: Accelerator::Tcg,
            disks: vec![VmDisk {
                path: disk.into(),
                format: Format::Qcow2,
                serial: "b9-root".into(),
                read_only: true,
            }],
            shares: vec![VmShare {
                path: "/src".into(),
                tag: "src".into(),
                read_only: false,
            }],
            agent_socket: "/r/agent.sock".into(),
            runtime_dir: "/r".into(),
            console_log: "/b/console.log".into(),
            network: false,
            instance: "test".into(),
            events: Events::default(),
        }
    }
}
