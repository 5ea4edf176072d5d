//! Running a build: a checked [`Plan`] built with [`BuildOptions`].

use super::error::{ArtifactFailure, Error};
use super::plan::Plan;
use super::session::Session;
use crate::disk::CreateOptions;
use crate::events::Events;
use crate::interrupt::{self, CancelToken};
use crate::pipeline::run::{self as pipeline, BuildSettings};
use crate::pipeline::vm_images::ImageSettings;
use crate::stepcache::StepCache;
use crate::vm::launch::LazyLauncher;

/// How to run a build; the paths (project root, build directory) and
/// whether to keep the build directory come from the [`Session`]'s
/// configuration and its [`Overrides`](crate::Overrides).
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Run every guest step, taking nothing from the step cache and storing
    /// nothing (`b9 build --no-cache`).
    pub no_cache: bool,
    /// How many artifacts are built at once; `None`: as many as cores.
    pub jobs: Option<usize>,
    /// Keep the build directory afterwards, whatever the configuration says.
    pub keep: bool,
    /// Stops the build: running VMs, conversions and transfers stop, clean
    /// up and fail with "interrupted".
    pub cancel: CancelToken,
    /// Where the build's events go.
    pub events: Events,
}

impl BuildOptions {
    /// The defaults: the step cache as configured, one artifact per core,
    /// never cancelled, no events.
    pub fn new() -> BuildOptions {
        BuildOptions::default()
    }
}

impl Session {
    /// Builds every artifact of `plan`, reporting to `options.events` (the
    /// session's and the plan's warnings first). Failed artifacts are in
    /// [`Error::Build`]; the others were built and their outputs put in
    /// place.
    pub fn build(&self, plan: &Plan, options: &BuildOptions) -> Result<(), Error> {
        let root = &self.dirs.project_root;
        std::fs::create_dir_all(root).map_err(|e| {
            Error::invalid(format!(
                "cannot create the project root {}: {e}",
                root.display()
            ))
        })?;
        crate::pipeline::workdir::sweep(root);
        let config = &self.config;
        let settings = BuildSettings {
            images: image_settings(self, options.no_cache, options.events.clone()),
            keep_build_dir: options.keep || config.keep_temp_dirs || !config.unique_build_dirs,
            jobs: options
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
            launcher: std::sync::Arc::new(LazyLauncher::new(self.vm.clone())),
        };
        let _watch = interrupt::watch(&options.cancel);
        // The configuration's and the checks' warnings go out first.
        for w in self.warnings().iter().chain(plan.warnings()) {
            options.events.warning(None, &w.0);
        }
        pipeline::run(&plan.instances, &settings).map_err(|failures| {
            Error::Build(
                failures
                    .into_iter()
                    .map(|f| ArtifactFailure {
                        instance: f.instance,
                        message: f.cause.to_string(),
                    })
                    .collect(),
            )
        })
    }
}

/// What building images needs from the session; the step cache unless
/// `no_cache` or `[vm] step_cache: False`.
pub(crate) fn image_settings(session: &Session, no_cache: bool, events: Events) -> ImageSettings {
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
        step_cache: if no_cache { None } else { step_cache(session) },
        events,
    }
}

/// The step cache `[vm]` asks for: `None` with `step_cache: False` or
/// without a home directory.
fn step_cache(session: &Session) -> Option<StepCache> {
    let vm = &session.config.vm;
    if !vm.step_cache {
        return None;
    }
    let dir = crate::stepcache::default_dir()?;
    Some(StepCache::new(
        dir,
        u64::from(vm.step_cache_max_gb).saturating_mul(1 << 30),
    ))
}
