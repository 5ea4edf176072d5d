//! `b9 build`: build every artifact of checked build files.

use crate::cli::session::Session;
use crate::cli::{Failure, EXIT_BUILD};
use crate::diag::Diagnostic;
use crate::disk::CreateOptions;
use crate::eval::expand::Instance;
use crate::pipeline::run::{self as pipeline, BuildSettings};
use crate::pipeline::vm_images::ImageSettings;
use crate::vm::launch::LazyLauncher;

/// Builds the instances; a failed artifact fails the command with exit code
/// 1. `no_cache` runs every guest step (`--no-cache`).
pub fn build(session: &Session, instances: &[Instance], no_cache: bool) -> Result<(), Failure> {
    let root = &session.dirs.project_root;
    std::fs::create_dir_all(root).map_err(|e| {
        vec![Diagnostic::error(format!(
            "cannot create the project root {}: {e}",
            root.display()
        ))]
    })?;
    crate::pipeline::workdir::sweep(root);
    let config = &session.config;
    let settings = BuildSettings {
        images: image_settings(session, no_cache),
        keep_build_dir: config.keep_temp_dirs || !config.unique_build_dirs,
        jobs: std::thread::available_parallelism().map_or(1, usize::from),
        launcher: std::sync::Arc::new(LazyLauncher::new(session.vm.clone())),
    };
    pipeline::run(instances, &settings).map_err(|failures| Failure {
        diagnostics: failures
            .into_iter()
            .map(|f| Diagnostic::error(format!("artifact `{}` failed: {}", f.instance, f.cause)))
            .collect(),
        code: EXIT_BUILD,
    })
}

/// What building images needs from the session; the step cache unless
/// `no_cache` or `[vm] step_cache: False`.
pub(crate) fn image_settings(session: &Session, no_cache: bool) -> ImageSettings {
    let config = &session.config;
    ImageSettings {
        build_dir: session.build_dir(),
        cwd: session.dirs.cwd.clone(),
        project_root: session.dirs.project_root.clone(),
        ext4_attributes: config.ext4_attributes.clone(),
        create: CreateOptions {
            timestamp: session.started,
        },
        build_id: session.build_id.clone(),
        build_date: crate::pipeline::id::build_date(session.started),
        cache_root: session.cache_root(),
        max_cached: config.max_cached_shared_images,
        timeouts: session.timeouts,
        step_cache: if no_cache {
            None
        } else {
            crate::cli::cache::step_cache(session)
        },
        events: crate::events::Events::default(),
    }
}
