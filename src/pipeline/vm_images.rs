//! `VmImages` artifacts: build images created from their
//! sources in the build directory, resized, then exported to their
//! destinations (staged, committed only when the artifact succeeded).
//!
//! `From` reads the newest version from the local shared-image cache;
//! `Share` adds a version to it when the artifact succeeded. Scripts and
//! file-system resizes run in the appliance (`pipeline::guest`), post-fix
//! scripts on the host (`pipeline::postfix`), before anything is exported.

use std::path::{Path, PathBuf};

use crate::disk::ext4::{self, Ext4Spec};
use crate::disk::partition::{self, PartitionReader};
use crate::disk::qcow2::Qcow2Image;
use crate::disk::{self, CreateOptions, DiskError, Format, Target};
use crate::eval::expand::Instance;
use crate::events::{Event, Events, Output, OutputKind, ResizeTarget, StepStart};
use crate::lang::syntax::*;
use crate::lang::typed::Node;
use crate::pipeline::cached;
use crate::pipeline::error::BuildError;
use crate::pipeline::guest::{self, GuestDirs, GuestImage};
use crate::pipeline::output::{self, Staged};
use crate::pipeline::postfix;
use crate::pipeline::script::flatten;
use crate::repo::{LocalRepo, SharedImage};
use crate::stepcache::{Claim, Slot, StepCache};
use crate::timeouts::Timeouts;
use crate::vm::launch::LazyLauncher;

/// What building images needs from the build.
#[derive(Clone, Debug)]
pub struct ImageSettings {
    /// Where build images are made.
    pub build_dir: PathBuf,
    /// Relative destinations are resolved here.
    pub cwd: PathBuf,
    /// Relative source images are resolved here.
    pub project_root: PathBuf,
    /// b9.conf `ext4_attributes`.
    pub ext4_attributes: Vec<String>,
    /// Time stamp and seed of created images.
    pub create: CreateOptions,
    /// The build id (for `LiveInstallerImage`'s VERSION).
    pub build_id: String,
    /// The build date (for `LiveInstallerImage`'s VERSION and shared images).
    pub build_date: String,
    /// The shared-image cache (`From` reads it, `Share` adds to it).
    pub cache_root: PathBuf,
    /// b9.conf `max_cached_shared_images`.
    pub max_cached: Option<i64>,
    /// The time limits (downloads, post-fix scripts).
    pub timeouts: Timeouts,
    /// The step cache; `None` runs every guest step.
    pub step_cache: Option<StepCache>,
    /// Where the build's events go.
    pub events: crate::events::Events,
}

/// What an artifact's images export: files staged next to their
/// destinations, and images to add to the shared-image cache.
#[derive(Debug, Default)]
pub struct Exports {
    /// Staged files.
    pub staged: Vec<Staged>,
    /// Shared images and their converted files, added on commit.
    pub shares: Vec<(SharedImage, PathBuf)>,
    /// The staged files that are exported images, with their formats.
    pub images: Vec<(PathBuf, Format)>,
}

impl Exports {
    /// Moves the staged files into place, then adds the shared images to
    /// the cache (applying `max_cached_shared_images`); reports each
    /// exported image and returns every output (docs/EVENTS.md).
    pub fn commit(self, s: &ImageSettings, instance: &str) -> Result<Vec<Output>, BuildError> {
        let targets: Vec<PathBuf> = self.staged.iter().map(|st| st.target.clone()).collect();
        output::commit(self.staged)?;
        let mut outputs: Vec<Output> = targets.iter().map(|t| Output::of(t)).collect();
        for (path, format) in &self.images {
            exported(s, instance, path, *format);
        }
        if self.shares.is_empty() {
            return Ok(outputs);
        }
        let repo = LocalRepo::open(&s.cache_root)?;
        for (img, file) in self.shares {
            let removed = repo.share(&img, &file, s.max_cached)?;
            tracing::info!("SHARED '{}'", img.name);
            for old in removed {
                tracing::info!("removed cached image {} {}", old.name, old.build_id);
            }
            let path = repo.image_path(&img);
            exported(s, instance, &path, format_of(&img.image_type));
            outputs.push(Output {
                kind: OutputKind::SharedImage,
                ..Output::of(&path)
            });
        }
        Ok(outputs)
    }

    /// Removes what was staged.
    pub fn discard(self) {
        output::discard(self.staged);
        for (_, file) in self.shares {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Reports the export at `path`.
fn exported(s: &ImageSettings, instance: &str, path: &Path, format: Format) {
    s.events.emit_with(|| Event::ExportWritten {
        instance: instance.to_string(),
        path: path.to_path_buf(),
        format: format.extension().to_string(),
        bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
    });
}

/// Reports a resize of build image `image`.
pub fn resized(events: &Events, instance: &str, image: &Path, target: ResizeTarget, bytes: u64) {
    events.emit_with(|| Event::Resize {
        instance: instance.to_string(),
        image: image.to_path_buf(),
        target,
        bytes,
    });
}

/// The appliance and what it shares, for artifacts with a script or a
/// file-system resize.
pub struct GuestAccess<'a> {
    /// Starts the appliance (prepared on first use).
    pub launcher: &'a LazyLauncher,
    /// The instance directory (`SharedSources`).
    pub sources: &'a Path,
}

/// Builds an instance's images, runs its script in the appliance, its
/// post-fix script on the host, and stages its exports.
pub fn assemble(
    inst: &Instance,
    s: &ImageSettings,
    guest: &GuestAccess<'_>,
) -> Result<Exports, BuildError> {
    let (targets, script, fixup) = match &inst.assembly.value {
        ArtifactAssembly::CloudInit(..) => return Ok(Exports::default()),
        ArtifactAssembly::VmImages(t, s) => (t, s, None),
        ArtifactAssembly::VmImagesWithFixup(t, s, f) => (t, s, Some(f)),
    };
    let dir = s.build_dir.join("images").join(&inst.id.value);
    std::fs::create_dir_all(&dir).map_err(BuildError::io("create", &dir))?;
    let dirs = GuestDirs {
        dir: &dir,
        cwd: &s.cwd,
        sources: guest.sources,
    };
    let inputs = cached::KeyInputs {
        images: s,
        vm: guest.launcher.settings(),
        sources: guest.sources,
    };
    let claim = s
        .step_cache
        .as_ref()
        .and_then(|c| cached::claim(inst, c, &inputs));
    let iid = inst.id.value.as_str();
    let (mut built, slot) = match claim {
        Some(Claim::Hit(hit)) => {
            s.events.emit_with(|| Event::GuestStepStarted {
                instance: iid.to_string(),
                commands: match &script.value {
                    VmScript::VmScript(_, _, body) => flatten(&body.value).len(),
                    VmScript::NoVmScript => 0,
                },
                start: StepStart::Cache,
                layer: None,
            });
            s.events.replay(iid, &hit.manifest.output);
            (
                cached::restore(&hit, targets, &script.value, &dir, &dirs, s)?,
                None,
            )
        }
        claim => {
            let mut built = Vec::new();
            for (i, t) in targets.iter().enumerate() {
                let ImageTarget::ImageTarget(_, source, _) = &t.value;
                built.push(build_image(&dir, i, source, s, iid)?);
            }
            let slot = match claim {
                Some(Claim::Miss(slot)) => Some(slot),
                _ => None,
            };
            (built, Some(slot))
        }
    };
    let mut images: Vec<GuestImage<'_>> = targets
        .iter()
        .zip(built.iter_mut())
        .map(|(t, built)| {
            let ImageTarget::ImageTarget(dest, source, mount) = &t.value;
            GuestImage {
                built,
                mount: &mount.value,
                source_resize: source_fs_resize(source),
                resizes: destination_fs_resize(dest).into_iter().collect(),
            }
        })
        .collect();
    // `slot` is `None` after a hit: the step's result is in place.
    let request = slot.and_then(|slot| {
        Some((
            slot,
            guest::request(&inst.id.value, &script.value, &images, &dirs)?,
        ))
    });
    if let Some((slot, request)) = request {
        let launcher = guest.launcher.get()?;
        let output = guest::run(
            launcher,
            request,
            &script.value,
            &mut images,
            &dirs,
            &s.create,
            slot.as_ref().and_then(Slot::layers),
            &s.events,
        )?;
        if let Some(slot) = slot {
            cached::store(slot, &inst.id.value, &images, &script.value, &dirs, output);
        }
    }
    drop(images);
    let fixup = fixup.map(|f| flatten(&f.value)).unwrap_or_default();
    if !fixup.is_empty() {
        let paths: Vec<PathBuf> = built.iter().map(|b| b.path.clone()).collect();
        postfix::run(&fixup, &paths, &dir, &s.cwd, s.timeouts.limit)?;
    }
    let mut exports = Exports::default();
    for (t, built) in targets.iter().zip(&built) {
        let ImageTarget::ImageTarget(dest, _, _) = &t.value;
        let result = match destination_resize(dest) {
            Some(size) => disk::resize_file(&built.path, size, &s.create)
                .map(|()| resized(&s.events, iid, &built.path, ResizeTarget::Image, size))
                .map_err(Into::into),
            None => Ok(()),
        }
        .and_then(|()| export(built, dest, s, &mut exports));
        if let Err(e) = result {
            exports.discard();
            return Err(e);
        }
    }
    Ok(exports)
}

/// The size a source's `Resize` asks the file system to have.
fn source_fs_resize(source: &Node<ImageSource>) -> Option<u64> {
    match &source.value {
        ImageSource::From(_, r) | ImageSource::SourceImage(_, _, r) => match &r.value {
            ImageResize::Resize(size) => Some(bytes(size)),
            _ => None,
        },
        _ => None,
    }
}

/// A destination's file-system resize (after the script).
fn destination_fs_resize(dest: &Node<ImageDestination>) -> Option<&ImageResize> {
    let r = match &dest.value {
        ImageDestination::Share(_, _, r)
        | ImageDestination::LiveInstallerImage(_, _, r)
        | ImageDestination::LocalFile(_, r) => &r.value,
        ImageDestination::Transient => return None,
    };
    matches!(
        r,
        ImageResize::Resize(_)
            | ImageResize::ShrinkToMinimum
            | ImageResize::ShrinkToMinimumAndIncrease(_)
    )
    .then_some(r)
}

/// A build image: its file, format and file system.
#[derive(Debug)]
pub struct Built {
    /// The file in the build directory.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Its file system.
    pub fs: FileSystem,
}

/// Bytes of an `ImageSize`.
pub fn bytes(size: &ImageSize) -> u64 {
    let ImageSize::ImageSize(n, unit) = size;
    let shift = match unit.value {
        SizeUnit::KB => 10,
        SizeUnit::MB => 20,
        SizeUnit::GB => 30,
    };
    u64::try_from(n.value)
        .unwrap_or(0)
        .saturating_mul(1 << shift)
}

fn format_of(t: &ImageType) -> Format {
    match t {
        ImageType::Raw => Format::Raw,
        ImageType::QCow2 => Format::Qcow2,
        ImageType::Vmdk => Format::Vmdk,
    }
}

fn stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// Creates build image number `i` of instance `iid`; returns its path and
/// format.
fn build_image(
    dir: &Path,
    i: usize,
    source: &Node<ImageSource>,
    s: &ImageSettings,
    iid: &str,
) -> Result<Built, BuildError> {
    let path_for = |name: &str, f: Format| dir.join(format!("{i}-{name}.{}", f.extension()));
    match &source.value {
        ImageSource::EmptyImage(label, fs, ty, size) => {
            let size = bytes(size);
            match fs.value {
                FileSystem::Ext4 | FileSystem::Ext4_64 => {
                    let path = path_for(&label.value, Format::Raw);
                    let features = if fs.value == FileSystem::Ext4_64 {
                        vec!["64bit".to_string()]
                    } else {
                        s.ext4_attributes.clone()
                    };
                    ext4::create(
                        &path,
                        &Ext4Spec {
                            size,
                            label: &label.value,
                            features: &features,
                            populate_from: None,
                            timestamp: s.create.timestamp,
                        },
                    )?;
                    Ok(Built {
                        path,
                        format: Format::Raw,
                        fs: fs.value.clone(),
                    })
                }
                FileSystem::NoFileSystem => {
                    let f = format_of(&ty.value);
                    let path = path_for(&label.value, f);
                    disk::create(&path, Target::from(f), size, &s.create)?.finish()?;
                    Ok(Built {
                        path,
                        format: f,
                        fs: FileSystem::NoFileSystem,
                    })
                }
                FileSystem::ISO9660 | FileSystem::VFAT => Err(DiskError::Invalid(format!(
                    "an EmptyImage cannot have the file system {:?}",
                    fs.value
                ))
                .into()),
            }
        }
        ImageSource::SourceImage(image, part, resize) => {
            let Image::Image(src, _, fs) = &image.value;
            let src = s.project_root.join(&src.value);
            copied(
                copy_source(&src, &part.value, resize, fs.value.clone(), &path_for, s)?,
                resize,
                s,
                iid,
            )
        }
        ImageSource::From(name, resize) => {
            let repo = LocalRepo::open(&s.cache_root)?;
            let img = repo
                .require_latest(&name.value)
                .map_err(BuildError::NoSharedImage)?;
            tracing::info!(
                "using shared image {} {} ({})",
                img.name,
                img.build_id,
                img.date
            );
            let path = repo.image_path(&img);
            copied(
                copy_source(
                    &path,
                    &Partition::NoPT,
                    resize,
                    img.fs.clone(),
                    &path_for,
                    s,
                )?,
                resize,
                s,
                iid,
            )
        }
        ImageSource::CopyOnWrite(image) => {
            let Image::Image(src, _, fs) = &image.value;
            let backing = s.project_root.join(&src.value);
            let backing = backing.canonicalize().map_err(|source| DiskError::Io {
                op: "cannot find",
                path: backing.clone(),
                source,
            })?;
            let size = disk::open(&backing)?.size();
            let format = disk::detect(&backing)?;
            let path = path_for(&stem(&src.value), Format::Qcow2);
            Qcow2Image::create(&path, size, Some((&backing, format.extension())))?;
            Ok(Built {
                path,
                format: Format::Qcow2,
                fs: fs.value.clone(),
            })
        }
    }
}

/// A copied source image, its `ResizeImage` reported.
fn copied(
    built: Built,
    resize: &Node<ImageResize>,
    s: &ImageSettings,
    iid: &str,
) -> Result<Built, BuildError> {
    if let ImageResize::ResizeImage(size) = &resize.value {
        resized(
            &s.events,
            iid,
            &built.path,
            ResizeTarget::Image,
            bytes(size),
        );
    }
    Ok(built)
}

/// Copies a source image (or one partition of it) into a build image of
/// the same format (raw for a partition), then applies `ResizeImage`.
fn copy_source(
    src: &Path,
    part: &Partition,
    resize: &Node<ImageResize>,
    fs: FileSystem,
    path_for: &dyn Fn(&str, Format) -> PathBuf,
    s: &ImageSettings,
) -> Result<Built, DiskError> {
    let reader = disk::open(src)?;
    let name = stem(&src.to_string_lossy());
    let (path, format) = match part {
        Partition::Partition(n) => {
            let number = u32::try_from(n.value).map_err(|_| {
                DiskError::Invalid(format!("partition number {} is out of range", n.value))
            })?;
            let info = partition::find(reader.as_ref(), src, number)?;
            let view = PartitionReader::new(reader.as_ref(), &info);
            let path = path_for(&name, Format::Raw);
            disk::convert_reader(&view, &path, Target::Raw, None, &s.create)?;
            (path, Format::Raw)
        }
        Partition::NoPT => {
            let format = disk::detect(src)?;
            let path = path_for(&name, format);
            disk::convert_reader(
                reader.as_ref(),
                &path,
                Target::from(format),
                None,
                &s.create,
            )?;
            (path, format)
        }
    };
    if let ImageResize::ResizeImage(size) = &resize.value {
        disk::resize_file(&path, bytes(size), &s.create)?;
    }
    Ok(Built { path, format, fs })
}

/// The container size a destination asks for.
fn destination_resize(dest: &Node<ImageDestination>) -> Option<u64> {
    let r = match &dest.value {
        ImageDestination::Share(_, _, r)
        | ImageDestination::LiveInstallerImage(_, _, r)
        | ImageDestination::LocalFile(_, r) => r,
        ImageDestination::Transient => return None,
    };
    match &r.value {
        ImageResize::ResizeImage(size) => Some(bytes(size)),
        _ => None,
    }
}

/// Stages a build image's export to its destination.
fn export(
    built: &Built,
    dest: &Node<ImageDestination>,
    s: &ImageSettings,
    out: &mut Exports,
) -> Result<(), BuildError> {
    let (build, format) = (built.path.as_path(), built.format);
    match &dest.value {
        ImageDestination::LocalFile(image, _) => {
            let Image::Image(path, ty, _) = &image.value;
            let st = output::stage(&s.cwd.join(&path.value))?;
            out.images.push((st.target.clone(), format_of(&ty.value)));
            out.staged.push(st);
            if let Some(st) = out.staged.last() {
                place(build, format, &st.tmp, format_of(&ty.value), s)?;
            }
            Ok(())
        }
        ImageDestination::LiveInstallerImage(name, root, _) => {
            let disks = s
                .cwd
                .join(&root.value)
                .join("machines")
                .join(&name.value)
                .join("disks/raw");
            let image = output::stage(&disks.join("0.raw"))?;
            out.images.push((image.target.clone(), Format::Raw));
            let tmp = image.tmp.clone();
            out.staged.push(image);
            place(build, format, &tmp, Format::Raw, s)?;
            let size = disk::open(&tmp)?.size();
            let size_file = output::stage(&disks.join("0.size"))?;
            write(&size_file.tmp, size.to_string().as_bytes())?;
            out.staged.push(size_file);
            let version = output::stage(&disks.join("VERSION"))?;
            write(
                &version.tmp,
                format!("{}-{}", s.build_id, s.build_date).as_bytes(),
            )?;
            out.staged.push(version);
            Ok(())
        }
        ImageDestination::Share(name, ty, _) => {
            let img = SharedImage {
                name: name.value.clone(),
                date: s.build_date.clone(),
                build_id: s.build_id.clone(),
                image_type: ty.value.clone(),
                fs: built.fs.clone(),
            };
            let file = s.build_dir.join("share").join(img.image_file_name());
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(BuildError::io("create", parent))?;
            }
            // A shared image must stand alone: an overlay is flattened.
            let overlay =
                format == Format::Qcow2 && crate::disk::qcow2::backing_of(build)?.is_some();
            if overlay {
                disk::convert_file(
                    build,
                    &file,
                    Target::from(format_of(&ty.value)),
                    None,
                    &s.create,
                )?;
            } else {
                place(build, format, &file, format_of(&ty.value), s)?;
            }
            out.shares.push((img, file));
            Ok(())
        }
        ImageDestination::Transient => Ok(()),
    }
}

/// Moves a build image to `to` when the format already matches, else converts it.
fn place(
    build: &Path,
    format: Format,
    to: &Path,
    want: Format,
    s: &ImageSettings,
) -> Result<(), BuildError> {
    if format == want && std::fs::rename(build, to).is_ok() {
        return Ok(());
    }
    disk::convert_file(build, to, Target::from(want), None, &s.create)
        .map(|_| ())
        .map_err(Into::into)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    std::fs::write(path, bytes).map_err(BuildError::io("write", path))
}
