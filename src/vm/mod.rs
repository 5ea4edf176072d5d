//! Running the appliance: the appliance itself (kernel + initramfs holding
//! `b9-agent`), the VM backends (QEMU + QMP, libvirt) behind
//! [`backend::Hypervisor`], and the host side of one run. `vm` knows nothing
//! of the build language: callers describe a run as a
//! [`request::RunRequest`], which the [`launch::Launcher`] (made from the
//! [`settings::VmSettings`] the CLI computes once) turns into the agent's
//! job and executes.

pub mod appliance;
pub mod backend;
mod farm;
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
