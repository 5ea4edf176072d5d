//! The build of expanded instances: the build directory, every
//! instance's generated files first, then the assemblies, independent
//! artifacts concurrently, outputs moved into place only on success. The
//! build directory is owned for the run (`pipeline::workdir`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::content::render::Renderer;
use crate::eval::expand::Instance;
use crate::events::{millis, Assembly, Event, Events, Output};
use crate::lang::syntax::{ArtifactAssembly, CloudInitType};
use crate::media::{self, MediaOptions};
use crate::pipeline::error::BuildError;
use crate::pipeline::output::{self, Staged};
use crate::pipeline::vm_images::{self, GuestAccess, ImageSettings};
use crate::pipeline::workdir::BuildDir;
use crate::vm::launch::LazyLauncher;

/// How to build.
#[derive(Clone, Debug)]
pub struct BuildSettings {
    /// Paths, identity, limits and image options every artifact shares.
    pub images: ImageSettings,
    /// Keep the build directory afterwards.
    pub keep_build_dir: bool,
    /// How many artifacts are built at once.
    pub jobs: usize,
    /// The appliance, prepared when the first artifact needs it.
    pub launcher: std::sync::Arc<LazyLauncher>,
}

/// Why one artifact failed.
#[derive(Debug)]
pub struct ArtifactFailure {
    /// The instance id (empty when the build directory failed).
    pub instance: String,
    /// What went wrong.
    pub cause: BuildError,
}

/// Builds the instances. Returns every artifact failure; outputs of failed
/// artifacts are not written. Reports the build's start and end, and each
/// artifact's, to `s.images.events` (docs/EVENTS.md).
pub fn run(instances: &[Instance], s: &BuildSettings) -> Result<(), Vec<ArtifactFailure>> {
    let start = Instant::now();
    let events = &s.images.events;
    events.emit_with(|| Event::BuildStarted {
        build_id: s.images.build_id.clone(),
        artifacts: instances.len(),
    });
    let result = build(instances, s);
    tracing::info!("DURATION: {:.3} s", start.elapsed().as_secs_f64());
    events.emit_with(|| Event::BuildFinished {
        build_id: s.images.build_id.clone(),
        success: result.is_ok(),
        failed: result.as_ref().map_or_else(Vec::len, |()| 0),
        duration_ms: millis(start.elapsed()),
    });
    result
}

/// The build in its build directory.
fn build(instances: &[Instance], s: &BuildSettings) -> Result<(), Vec<ArtifactFailure>> {
    let whole = |cause| {
        vec![ArtifactFailure {
            instance: String::new(),
            cause,
        }]
    };
    let workdir = BuildDir::open(&s.images.build_dir, s.keep_build_dir).map_err(whole)?;
    let instances_dir = workdir.path().join("artifact-instances");
    let result = std::fs::create_dir_all(&instances_dir)
        .map_err(|e| whole(BuildError::io("create the build directory", &instances_dir)(e)))
        .and_then(|()| {
            let dir_of = |inst: &Instance| {
                instances_dir.join(format!("{}-{}", inst.id.value, s.images.build_id))
            };
            // All sources first, then the assemblies.
            for_each(instances, s.jobs, |inst| generate(inst, &dir_of(inst), s))?;
            for_each(instances, s.jobs, |inst| {
                reported(inst, &s.images.events, || assemble(inst, &dir_of(inst), s))
            })
        });
    workdir.finish(result.is_err());
    result
}

/// Runs `job` over the instances on up to `jobs` threads, each inside an
/// `instance` span; collects the failures.
fn for_each(
    instances: &[Instance],
    jobs: usize,
    job: impl Fn(&Instance) -> Result<(), BuildError> + Sync,
) -> Result<(), Vec<ArtifactFailure>> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    // The caller's cancellation token, watched on every job thread too.
    let cancel = crate::interrupt::current();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, instances.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(inst) = instances.get(i) else { break };
                let _watch = crate::interrupt::inherit(cancel.as_ref());
                let span =
                    tracing::info_span!(crate::pipeline::log::INSTANCE_SPAN, id = %inst.id.value);
                let _entered = span.enter();
                if let Err(cause) = job(inst) {
                    tracing::error!("{cause}");
                    if let Ok(mut f) = failures.lock() {
                        f.push((
                            i,
                            ArtifactFailure {
                                instance: inst.id.value.clone(),
                                cause,
                            },
                        ));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_default();
    failures.sort_by_key(|(i, _)| *i);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.into_iter().map(|(_, f)| f).collect())
    }
}

/// Runs an artifact's `work` between its `artifact_started` and
/// `artifact_finished` events (docs/EVENTS.md).
fn reported(
    inst: &Instance,
    events: &Events,
    work: impl FnOnce() -> Result<Vec<Output>, BuildError>,
) -> Result<(), BuildError> {
    let start = Instant::now();
    let instance = &inst.id.value;
    events.emit_with(|| Event::ArtifactStarted {
        instance: instance.clone(),
        assembly: match inst.assembly.value {
            ArtifactAssembly::CloudInit(..) => Assembly::CloudInit,
            _ => Assembly::VmImages,
        },
    });
    let result = work();
    events.emit_with(|| Event::ArtifactFinished {
        instance: instance.clone(),
        success: result.is_ok(),
        duration_ms: millis(start.elapsed()),
        outputs: result.as_ref().map(Vec::clone).unwrap_or_default(),
        error: result.as_ref().err().map(ToString::to_string),
    });
    result.map(drop)
}

fn generate(inst: &Instance, dir: &Path, s: &BuildSettings) -> Result<(), BuildError> {
    // A failure here is the artifact's: it starts and ends with it.
    let events = &s.images.events;
    generate_files(inst, dir, s).or_else(|e| reported(inst, events, || Err(e)))
}

fn generate_files(inst: &Instance, dir: &Path, s: &BuildSettings) -> Result<(), BuildError> {
    let renderer = Renderer {
        env: &inst.env,
        cwd: &s.images.cwd,
        url_timeout: s.images.timeouts.limit,
    };
    crate::pipeline::sources::write_sources(inst, dir, &renderer)?;
    tracing::debug!(
        "generated {} files in {}",
        inst.writers.len(),
        dir.display()
    );
    Ok(())
}

/// Assembles an artifact; returns the outputs it wrote.
fn assemble(inst: &Instance, dir: &Path, s: &BuildSettings) -> Result<Vec<Output>, BuildError> {
    match &inst.assembly.value {
        ArtifactAssembly::CloudInit(types, base) => {
            let opts = MediaOptions {
                timestamp: s.images.create.timestamp,
            };
            let base = s.images.cwd.join(&base.value);
            let mut staged: Vec<Staged> = Vec::new();
            let result = types.iter().try_for_each(|t| {
                let (target, write): (PathBuf, MediaWriter) = match t.value {
                    CloudInitType::CI_ISO => (with_suffix(&base, ".iso"), media::iso::write_iso),
                    CloudInitType::CI_VFAT => {
                        (with_suffix(&base, ".vfat"), media::vfat::write_vfat)
                    }
                    CloudInitType::CI_DIR => (base.clone(), media::dir::write_dir),
                };
                let st = if t.value == CloudInitType::CI_DIR {
                    output::stage_dir(&target)?
                } else {
                    output::stage(&target)?
                };
                let res = write(dir, &st.tmp, &opts);
                staged.push(st);
                res?;
                tracing::info!("wrote {}", target.display());
                Ok::<(), BuildError>(())
            });
            match result {
                Ok(()) => {
                    let targets: Vec<PathBuf> = staged.iter().map(|s| s.target.clone()).collect();
                    output::commit(staged)?;
                    Ok(targets.iter().map(|t| Output::of(t)).collect())
                }
                Err(e) => {
                    output::discard(staged);
                    Err(e)
                }
            }
        }
        ArtifactAssembly::VmImages(..) | ArtifactAssembly::VmImagesWithFixup(..) => {
            let guest = GuestAccess {
                launcher: &s.launcher,
                sources: dir,
            };
            vm_images::assemble(inst, &s.images, &guest)?.commit(&s.images, &inst.id.value)
        }
    }
}

/// One of the media writers.
type MediaWriter = fn(&Path, &Path, &MediaOptions) -> Result<(), media::MediaError>;

/// `base` + `suffix` (`out/web` -> `out/web.iso`).
fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}
