//! Disk images in Rust, in-process: raw, qcow2 and vmdk reading and writing,
//! conversion, container resize, MBR/GPT partition extraction and ext4
//! creation (docs/IMAGES.md#formats, docs/COMPATIBILITY.md#disk-images).

pub mod capability;
pub mod convert;
pub mod error;
pub mod ext4;
pub mod gate;
pub mod open;
pub mod partition;
pub mod qcow2;
mod qcow2_header;
pub mod qcow2_own;
pub mod qcow2_stream;
pub mod raw;
pub mod vmdk;

pub use capability::{CreateOptions, Format};
pub use error::DiskError;
pub use open::{convert_file, convert_reader, create, detect, open, resize_file, Target};
