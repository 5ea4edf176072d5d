//! `b9 build`: build every artifact of checked build files.

use crate::cli::args::EventFormat;
use crate::cli::session::Session;
use crate::cli::{Failure, EXIT_BUILD};
use crate::diag::Diagnostic;
use crate::disk::CreateOptions;
use crate::eval::expand::Instance;
use crate::events::Events;
use crate::pipeline::run::{self as pipeline, BuildSettings};
use crate::pipeline::vm_images::ImageSettings;
use crate::vm::launch::LazyLauncher;

/// Builds the instances; a failed artifact fails the command with exit code
/// 1. `no_cache` runs every guest step (`--no-cache`).
pub fn build(
    session: &Session,
    instances: &[Instance],
    no_cache: bool,
    events: Events,
) -> Result<(), Failure> {
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
        images: ImageSettings {
            events,
            ..image_settings(session, no_cache)
        },
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

/// Where `--events FORMAT` sends the build's events (nowhere without
/// it); the warnings of the configuration and the checks go first. The
/// lines go to a copy of the stdout descriptor: the command holds the
/// lock of `std::io::stdout`, and artifacts report from other threads.
pub fn events(
    format: Option<EventFormat>,
    session: &Session,
    warnings: &[Diagnostic],
) -> Result<Events, Failure> {
    let events = match format {
        Some(EventFormat::Json) => {
            use std::os::fd::AsFd;
            let out = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| {
                    vec![Diagnostic::error(format!(
                        "cannot write events on stdout: {e}"
                    ))]
                })?;
            crate::events::json::json_lines(std::fs::File::from(out))
        }
        None => Events::default(),
    };
    for w in session.warnings.iter().chain(warnings) {
        events.warning(None, w);
    }
    Ok(events)
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
