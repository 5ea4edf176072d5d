//! Faults and bad input (issue 10): each class of defect reproduced through
//! the `b9` executable. Every test here ran red before its fix.
//!
//! - `disk`: full disks, hostile images (backing files, special files),
//!   temporaries of converts and creates.
//! - `parse`: deep nesting, huge lines, invalid UTF-8, config mistakes.
//! - `outputs`: what b9 may delete or replace, leftovers of killed builds,
//!   concurrent builds.
//! - `remote`: hostile names from an SFTP server.
//! - `vm_death`: QEMU dies with b9, however b9 ends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

#[path = "../common/mod.rs"]
mod common;

mod disk;
mod disk_env;
mod fake_sftp;
mod outputs;
mod parse;
mod remote;
mod vm_death;
