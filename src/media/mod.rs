//! Cloud-init media (SPEC §3.6): ISO9660, VFAT and directory outputs of an
//! instance directory tree.

pub mod dir;
pub mod iso;
pub mod vfat;
