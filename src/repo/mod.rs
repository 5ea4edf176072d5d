//! Shared-image repositories.

pub mod ssh;
