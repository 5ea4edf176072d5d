//! Running `VmScript`s in real guests (SPEC §7, DESIGN "the appliance"):
//! the appliance (kernel + initramfs holding `b9-agent`), the host/agent
//! protocol, the VM backends (QEMU + QMP, libvirt) and the host side of a
//! run.

pub mod appliance;
pub mod backend;
pub mod interactive;
pub mod launch;
pub mod libvirt;
pub mod parent_death;
pub mod qemu;
mod qmp;
pub mod request;
pub mod run;
pub mod settings;
pub mod sibling;
