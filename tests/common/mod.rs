//! Helpers shared by the integration tests (each test file includes this
//! module with `mod common;` and uses what it needs).
#![allow(dead_code)]

pub mod companion;
pub mod events;
pub mod farm;
pub mod fixture;
pub mod guest;
pub mod project;
