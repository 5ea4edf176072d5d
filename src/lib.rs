//! b9 builds VM disk images, cloud-init media and generated files from
//! `.b9` build files, compatible with the original Haskell b9. This crate is
//! the library the `b9` executable is built on; the executable uses nothing
//! but the API documented here.
//!
//! # Overview
//!
//! - [`Config`]: `b9.conf`, read from files or text, with [`Overrides`]
//!   (what the global flags set).
//! - [`Session`]: one run of b9 for a configuration (build id, start time,
//!   project root). It checks build files ([`Session::check`]), expands them
//!   into a [`Plan`] ([`Session::plan`], [`Session::expand`]) and builds a
//!   plan ([`Session::build`] with [`BuildOptions`]: jobs, step cache,
//!   a [`CancelToken`], [`Events`]).
//! - [`BuildFiles`]: build files given as paths or text, with positional
//!   arguments.
//! - [`Diagnostic`]: a problem in an input as a value, with its place; its
//!   `Display` is what `b9` prints. Every fallible function returns
//!   [`Error`].
//! - [`image`]: `info`, `convert`, `create` (also ext4 from a directory) and
//!   `extract_partition`.
//! - [`shared`], [`step_cache`], [`farm`], [`run_image`], [`reformat`],
//!   [`add_repo`]: the other commands of `b9`, returning what they found
//!   or did as values (the listings' `Display` is what `b9` prints).
//! - [`events`]: what a build reports as it goes.
//!
//! The data flow inside is parse -> expand and check -> pipeline; see
//! `docs/ARCHITECTURE.md`.
//!
//! # Example
//!
//! Checking a build file given as text (nothing is built):
//!
//! ```
//! let session = b9::Session::new(b9::Config::default())?;
//! let files = b9::BuildFiles::text(
//!     "example.b9",
//!     r#"Let [("name", "world")]
//!          [Artifact (IID "hello-${name}")
//!             (VmImages [] (VmScript X86_64 [] (Run "echo" ["hello"])))]"#,
//! );
//! let plan = session.plan(&files, &mut |note| eprintln!("{note}"))?;
//! assert_eq!(plan.entries()[0].id, "hello-world");
//! # Ok::<(), b9::Error>(())
//! ```
//!
//! # Stability
//!
//! The items documented here follow semantic versioning. The `internals`
//! feature exposes the internal modules for b9's own tests, benches, fuzz
//! targets and guest agent: they are not part of the API and change without
//! notice.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Declares internal modules: public (and hidden from the docs) with the
/// `internals` feature, private without.
macro_rules! internal {
    ($($module:ident),* $(,)?) => {
        $(
            #[cfg(feature = "internals")]
            #[doc(hidden)]
            pub mod $module;
            #[cfg(not(feature = "internals"))]
            mod $module;
        )*
    };
}

internal!(
    bytes, civil, config, content, diag, disk, eval, interrupt, lang, lock, media, pipeline,
    progress, replace, repo, stale, stepcache, text, timeouts, vm, wait,
);

mod api;
pub mod events;

pub use api::build::BuildOptions;
pub use api::cache as step_cache;
pub use api::config::{add_repo, Accel, Backend, Config, LogLevel, NewRepo, Overrides};
pub use api::diagnostic::{Diagnostic, Severity, SourceSpan};
pub use api::error::{ArtifactFailure, Error};
pub use api::farm;
pub use api::image;
pub use api::plan::{
    ArtifactKind, BuildFiles, CheckReport, Plan, PlanEntry, PlannedFile, StepStatus, StepVerdict,
};
pub use api::reformat::{reformat, Reformatted};
pub use api::run::run as run_image;
pub use api::session::{start_time, Session};
pub use api::shared;
pub use config::COMPAT_VERSION;
pub use events::{Event, Events};
pub use interrupt::CancelToken;
pub use vm::parent_death::{exec as exec_with_parent_death, SHIM_ARG as PARENT_DEATH_SHIM_ARG};

/// This b9's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The README's code blocks, compiled and run as doc tests so the Rust
/// example there stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
