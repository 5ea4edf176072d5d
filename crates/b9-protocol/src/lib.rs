//! The contracts between b9 and its companion programs: the host <-> guest
//! agent protocol (`agent`, spoken over the appliance's virtio-serial port)
//! and the b9 <-> `b9-libvirt` helper protocol (`libvirt`, JSON lines over
//! the helper's stdin and stdout). Both sides of each link this crate, so a
//! message is declared once; each protocol carries a version that the other
//! side checks. See `docs/PROTOCOL.md`.

#![forbid(unsafe_code)]

pub mod agent;
pub mod libvirt;
