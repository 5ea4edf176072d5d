//! The step cache in a `VmImages` build: the key of an artifact's guest
//! step from everything that can change its result (docs/ARCHITECTURE.md
//! lists them), and the step taken from the cache or run and stored
//! (`stepcache`).

use std::path::Path;

use crate::eval::expand::Instance;
use crate::lang::print::print_term;
use crate::lang::syntax::*;
use crate::lang::typed::{Node, Syntax};
use crate::pipeline::error::BuildError;
use crate::pipeline::guest::{share_dirs, GuestDirs, GuestImage};
use crate::pipeline::layered::layer_keys;
use crate::pipeline::script::flatten;
use crate::pipeline::vm_images::{bytes, Built, ImageSettings};
use crate::repo::LocalRepo;
use crate::stepcache::entry::{ImageOut, StepOutput};
use crate::stepcache::index::FileHashes;
use crate::stepcache::key::{Key, KeyBuilder};
use crate::stepcache::{format_date, CacheError, Claim, Hit, Slot, StepCache};
use crate::vm::settings::{HypervisorSettings, VmSettings};

/// Why an artifact's step has no key.
#[derive(Debug, thiserror::Error)]
pub enum NoKey {
    /// The artifact runs nothing in the guest.
    #[error("no guest step")]
    NoStep,
    /// A `CopyOnWrite` image: its result is an overlay of a file outside
    /// the build, not a self-contained image.
    #[error("a CopyOnWrite image is never cached")]
    CopyOnWrite,
    /// The guest kernel is not known (the step cannot run either).
    #[error("no guest kernel")]
    NoKernel,
    /// An input could not be read.
    #[error(transparent)]
    Input(#[from] CacheError),
    /// A `From` image is not in the shared-image cache.
    #[error("shared image {0} not found")]
    NoSharedImage(String),
}

/// What keys a step besides the instance: where its inputs are.
pub struct KeyInputs<'a> {
    /// The build's image settings.
    pub images: &'a ImageSettings,
    /// The VM settings (kernel, modules, network).
    pub vm: &'a VmSettings,
    /// The instance directory (`SharedSources`).
    pub sources: &'a Path,
}

/// The targets and script of a `VmImages` instance.
pub fn parts(inst: &Instance) -> Option<(&[Node<ImageTarget>], &VmScript)> {
    match &inst.assembly.value {
        ArtifactAssembly::CloudInit(..) => None,
        ArtifactAssembly::VmImages(t, s) | ArtifactAssembly::VmImagesWithFixup(t, s, _) => {
            Some((&t[..], &s.value))
        }
    }
}

/// A value of the build language as canonical text (no places).
fn text(v: &impl Syntax) -> String {
    print_term(&v.to_term())
}

/// The key of the instance's guest step, and the key builder over
/// everything but the commands (the base of its layers' keys).
fn step_keys(
    inst: &Instance,
    k: &KeyInputs<'_>,
    hashes: &mut FileHashes,
) -> Result<(Key, KeyBuilder), NoKey> {
    let (targets, script) = parts(inst).ok_or(NoKey::NoStep)?;
    let commands = match script {
        VmScript::VmScript(_, _, body) => flatten(&body.value),
        VmScript::NoVmScript => Vec::new(),
    };
    let mut key = KeyBuilder::new();
    let mut resizes = false;
    for t in targets {
        let ImageTarget::ImageTarget(dest, source, mount) = &t.value;
        key.field(text(mount));
        resizes |= source_into_key(&source.value, k, hashes, &mut key)?;
        let fs_resize = match &dest.value {
            ImageDestination::Share(_, _, r)
            | ImageDestination::LiveInstallerImage(_, _, r)
            | ImageDestination::LocalFile(_, r) => match &r.value {
                ImageResize::Resize(_)
                | ImageResize::ShrinkToMinimum
                | ImageResize::ShrinkToMinimumAndIncrease(_) => Some(text(r)),
                _ => None,
            },
            ImageDestination::Transient => None,
        };
        resizes |= fs_resize.is_some();
        key.field(fs_resize.unwrap_or_default());
    }
    if commands.is_empty() && !resizes {
        return Err(NoKey::NoStep);
    }
    if let VmScript::VmScript(arch, _, _) = script {
        key.field(text(arch));
    }
    let dirs = GuestDirs {
        dir: k.sources,
        cwd: &k.images.cwd,
        sources: k.sources,
    };
    for share in share_dirs(script, &dirs) {
        key.field(share.index.to_le_bytes())
            .field(share.mount_point)
            .field([u8::from(share.read_only)]);
        // A missing directory is created empty for the run.
        if share.path.exists() {
            key.tree(hashes, &share.path)
                .map_err(CacheError::io("read", &share.path))?;
        }
    }
    key.field(format!("{:?}", k.vm.network));
    appliance_into_key(k.vm, hashes, &mut key)?;
    let mut step = key.clone();
    step.field(serde_json::to_string(&commands).unwrap_or_default());
    Ok((step.finish(), key))
}

/// Adds a source image; tells whether it asks for a file-system resize.
fn source_into_key(
    source: &ImageSource,
    k: &KeyInputs<'_>,
    hashes: &mut FileHashes,
    key: &mut KeyBuilder,
) -> Result<bool, NoKey> {
    let resize = |r: &Node<ImageResize>| matches!(r.value, ImageResize::Resize(_));
    match source {
        ImageSource::EmptyImage(label, fs, ty, size) => {
            key.field("empty").field(&label.value).field(format!(
                "{} {} {}",
                text(fs),
                text(ty),
                bytes(size)
            ));
            if matches!(fs.value, FileSystem::Ext4) {
                for a in &k.images.ext4_attributes {
                    key.field(a);
                }
            }
            Ok(false)
        }
        ImageSource::SourceImage(image, part, r) => {
            let Image::Image(path, ty, fs) = &image.value;
            let path = k.images.project_root.join(&path.value);
            key.field("source").field(format!(
                "{} {} {} {}",
                text(ty),
                text(fs),
                text(part),
                text(r)
            ));
            key.file(hashes, &path)
                .map_err(CacheError::io("read", &path))?;
            Ok(resize(r))
        }
        ImageSource::From(name, r) => {
            let img = LocalRepo::open(&k.images.cache_root)
                .and_then(|repo| repo.require_latest(&name.value))
                .map_err(|_| NoKey::NoSharedImage(name.value.clone()))?;
            key.field("from")
                .field(&img.name)
                .field(&img.build_id)
                .field(text(r));
            Ok(resize(r))
        }
        ImageSource::CopyOnWrite(_) => Err(NoKey::CopyOnWrite),
    }
}

/// Adds the appliance: kernel and agent by content, the modules directory
/// by its files' names, sizes and times, the protocol version.
fn appliance_into_key(
    vm: &VmSettings,
    hashes: &mut FileHashes,
    key: &mut KeyBuilder,
) -> Result<(), NoKey> {
    let paths = vm.kernel.as_ref().map_err(|_| NoKey::NoKernel)?;
    key.file(hashes, &paths.kernel)
        .map_err(CacheError::io("read", &paths.kernel))?;
    let agent = crate::vm::appliance::agent_binary().map_err(|_| NoKey::NoKernel)?;
    key.file(hashes, &agent)
        .map_err(CacheError::io("read", &agent))?;
    key.field(b9_protocol::agent::VERSION.to_le_bytes());
    modules_into_key(&paths.modules_dir, key)
        .map_err(CacheError::io("read", &paths.modules_dir))?;
    Ok(())
}

fn modules_into_key(dir: &Path, key: &mut KeyBuilder) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let meta = std::fs::metadata(e.path())?;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                files.push((e.path(), meta.size(), meta.mtime(), meta.mtime_nsec()));
            }
        }
    }
    files.sort();
    for (path, size, s, ns) in files {
        key.field(path.as_os_str().as_encoded_bytes())
            .field(format!("{size} {s}.{ns}"));
    }
    Ok(())
}

/// Whether the step can be kept command by command: a backend that takes
/// checkpoints (`qemu`, a local libvirt connection: external snapshots),
/// more than one command, and no read-write share (what a command writes
/// there is not in the disks' state).
fn layers_possible(inst: &Instance, k: &KeyInputs<'_>) -> bool {
    takes_checkpoints(&k.vm.hypervisor)
        && parts(inst).is_some_and(|(_, script)| match script {
            VmScript::VmScript(_, shares, body) => {
                flatten(&body.value).len() > 1
                    && !shares
                        .value
                        .iter()
                        .any(|s| matches!(s.value, SharedDirectory::SharedDirectory(..)))
            }
            VmScript::NoVmScript => false,
        })
}

/// What the step cache would do with an instance's guest step (`b9 show`,
/// text and JSON).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Verdict {
    /// The step cache is off (`--no-cache`, `[vm] step_cache: False`).
    Off,
    /// The artifact runs nothing in the guest.
    NoStep,
    /// The whole step comes from the cache.
    Cached {
        /// When the cached run was (UTC).
        run: String,
    },
    /// The run boots on the cached layer after command `layer` of
    /// `commands` and runs only the rest.
    Resumes {
        /// Commands the layer holds.
        layer: usize,
        /// Commands of the script.
        commands: usize,
        /// When the run that made the layer was (UTC).
        run: String,
    },
    /// The step runs in full.
    Runs {
        /// Why (not cached, an input unreadable...).
        why: String,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Off => write!(f, "step cache off"),
            Verdict::NoStep => write!(f, "no guest step"),
            Verdict::Cached { run } => write!(f, "guest step from the cache (run {run})"),
            Verdict::Resumes {
                layer,
                commands,
                run,
            } => write!(
                f,
                "guest step resumes from layer {layer} of {commands} commands (run {run})"
            ),
            Verdict::Runs { why } => write!(f, "guest step runs ({why})"),
        }
    }
}

/// Whether the backend keeps the disks' state between commands: `qemu`
/// and a local libvirt connection do; a remote libvirt host's disks are
/// run volumes, not b9's files (docs/PROTOCOL.md#helper-snapshot), so its
/// steps are cached whole only.
fn takes_checkpoints(hypervisor: &HypervisorSettings) -> bool {
    match hypervisor {
        HypervisorSettings::Qemu { .. } => true,
        HypervisorSettings::Libvirt {
            connection, hosts, ..
        } => hosts.is_empty() && !crate::vm::libvirt::remote::is_remote(connection),
    }
}

/// The step cache's verdict on an instance for `b9 show`.
pub fn status(inst: &Instance, cache: Option<&StepCache>, k: &KeyInputs<'_>) -> Verdict {
    let Some(cache) = cache else {
        return Verdict::Off;
    };
    let runs = |why: String| Verdict::Runs { why };
    let mut hashes = match cache.hashes() {
        Ok(h) => h,
        Err(e) => return runs(format!("step cache unusable: {e}")),
    };
    let generated = parts(inst).is_some_and(|(_, script)| match script {
        VmScript::VmScript(_, shares, _) => shares
            .value
            .iter()
            .any(|s| matches!(s.value, SharedDirectory::SharedSources(_))),
        VmScript::NoVmScript => false,
    });
    let verdict = match step_keys(inst, k, &mut hashes) {
        Ok(_) if generated => {
            runs("it depends on the generated files it shares: known when building".into())
        }
        Ok((key, base)) => match cache.peek(&key) {
            Some(m) => Verdict::Cached {
                run: format_date(m.created),
            },
            None => {
                resumes(inst, cache, k, &base).unwrap_or_else(|| runs("not in the cache".into()))
            }
        },
        Err(NoKey::NoStep) => Verdict::NoStep,
        Err(e) => runs(e.to_string()),
    };
    let _ = hashes.save();
    verdict
}

/// The cached layer a layered run of the instance's script would boot on.
fn resumes(
    inst: &Instance,
    cache: &StepCache,
    k: &KeyInputs<'_>,
    base: &KeyBuilder,
) -> Option<Verdict> {
    if !layers_possible(inst, k) {
        return None;
    }
    let commands = match parts(inst)?.1 {
        VmScript::VmScript(_, _, body) => flatten(&body.value),
        VmScript::NoVmScript => return None,
    };
    let m = cache.peek_layer(&layer_keys(base, &commands))?;
    Some(Verdict::Resumes {
        layer: m.commands?,
        commands: commands.len(),
        run: format_date(m.created),
    })
}

/// Looks the instance's step up: `None` when it has no step, is not
/// cached, or its key cannot be computed (logged; the step runs).
pub fn claim(inst: &Instance, cache: &StepCache, k: &KeyInputs<'_>) -> Option<Claim> {
    let mut hashes = match cache.hashes() {
        Ok(h) => h,
        Err(e) => {
            warn(inst, k, format!("step cache unusable, the step runs: {e}"));
            return None;
        }
    };
    let key = step_keys(inst, k, &mut hashes);
    if let Err(e) = hashes.save() {
        warn(
            inst,
            k,
            format!("step cache: cannot save the file-hash index: {e}"),
        );
    }
    let (key, base) = match key {
        Ok(key) => key,
        Err(NoKey::NoStep) => return None,
        Err(e) => {
            tracing::info!("step cache not used: {e}");
            return None;
        }
    };
    match cache.claim(&key) {
        Ok(Claim::Miss(slot)) if layers_possible(inst, k) => Some(Claim::Miss(slot.layered(base))),
        Ok(c) => Some(c),
        Err(e) => {
            warn(inst, k, format!("step cache unusable, the step runs: {e}"));
            None
        }
    }
}

/// Logs a warning about the instance's step and reports it as an event.
fn warn(inst: &Instance, k: &KeyInputs<'_>, message: String) {
    tracing::warn!("{message}");
    k.images.events.warning(
        Some(&inst.id.value),
        &crate::diag::Diagnostic::warning(message),
    );
}

/// The build images and read-write shares after the step, from a hit;
/// the cached run's output logged, marked as cached.
pub fn restore(
    hit: &Hit,
    targets: &[Node<ImageTarget>],
    script: &VmScript,
    dir: &Path,
    dirs: &GuestDirs<'_>,
    s: &ImageSettings,
) -> Result<Vec<Built>, BuildError> {
    let m = &hit.manifest;
    tracing::info!(
        "guest step taken from the step cache: run {} ({:.1} s), entry {}",
        format_date(m.created),
        m.seconds,
        m.key
    );
    for line in &m.output {
        tracing::info!("(cached) {line}");
    }
    let mut built = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let ImageTarget::ImageTarget(_, source, _) = &t.value;
        let (path, format) = hit.restore_image(i, dir, &s.create)?;
        built.push(Built {
            path,
            format,
            fs: source_fs(&source.value, s)?,
        });
    }
    let writable = share_dirs(script, dirs);
    hit.restore_shares(&|index| {
        writable
            .iter()
            .find(|d| d.index == index && !d.read_only)
            .map(|d| d.path.clone())
    })?;
    Ok(built)
}

/// The file system a source's build image has.
fn source_fs(source: &ImageSource, s: &ImageSettings) -> Result<FileSystem, BuildError> {
    Ok(match source {
        ImageSource::EmptyImage(_, fs, _, _) => fs.value.clone(),
        ImageSource::SourceImage(image, _, _) | ImageSource::CopyOnWrite(image) => {
            let Image::Image(_, _, fs) = &image.value;
            fs.value.clone()
        }
        ImageSource::From(name, _) => {
            LocalRepo::open(&s.cache_root)?
                .require_latest(&name.value)
                .map_err(BuildError::NoSharedImage)?
                .fs
        }
    })
}

/// Stores what the step produced (a failure to store is logged: the build
/// goes on).
pub fn store(
    slot: Slot,
    label: &str,
    images: &[GuestImage<'_>],
    script: &VmScript,
    dirs: &GuestDirs<'_>,
    output: Vec<String>,
) {
    let seconds = slot.elapsed_seconds();
    let writable: Vec<_> = share_dirs(script, dirs)
        .into_iter()
        .filter(|d| !d.read_only)
        .collect();
    let out = StepOutput {
        label,
        images: images
            .iter()
            .map(|i| ImageOut {
                path: &i.built.path,
                format: i.built.format,
            })
            .collect(),
        shares: writable
            .iter()
            .map(|d| (d.index, d.path.as_path()))
            .collect(),
        output,
        seconds,
    };
    let started = std::time::Instant::now();
    match slot.store(&out) {
        Ok(()) => tracing::info!(
            "guest step stored in the step cache ({:.2} s)",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => tracing::warn!("step cache: cannot store the step: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libvirt(connection: &str, hosts: &[&str]) -> HypervisorSettings {
        HypervisorSettings::Libvirt {
            connection: connection.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            pool: "default".into(),
            vms_per_host: 1,
        }
    }

    #[test]
    fn qemu_and_local_libvirt_keep_layers_remote_hosts_do_not() {
        let qemu = HypervisorSettings::Qemu {
            binary: "qemu-system-x86_64".into(),
        };
        assert!(takes_checkpoints(&qemu));
        assert!(takes_checkpoints(&libvirt("qemu:///system", &[])));
        assert!(takes_checkpoints(&libvirt("qemu:///session", &[])));
        assert!(!takes_checkpoints(&libvirt(
            "qemu+ssh://b9@farm1/system",
            &[]
        )));
        assert!(!takes_checkpoints(&libvirt(
            "qemu:///system",
            &["qemu+ssh://b9@farm1/system"]
        )));
    }
}
