//! A guest run kept command by command (docs/ARCHITECTURE.md#layers): it
//! boots on the cached layer of the longest unchanged prefix of the
//! script, runs only the rest, and keeps the disks' state after each
//! command it runs as a new layer.
//!
//! "Command N" is the Nth command of the flattened script
//! (`pipeline::script::flatten`): each `Run`, with the `In`, `As`,
//! `IgnoreErrors` and `Verbosity` around it, in order.
//!
//! The files of one build image in a run, in the order the VM writes into
//! them (a checkpoint after each command but the last moves on to the
//! next): the build image itself on a fresh run (converted into the first
//! layer afterwards) or a new overlay of the cached layer; overlays that
//! become the next layers; the top overlay, written by the last command,
//! from which the build image is made afterwards.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::disk::qcow2::Qcow2Image;
use crate::disk::{self, CreateOptions, Format, Target};
use crate::pipeline::error::BuildError;
use crate::pipeline::guest::GuestImage;
use crate::stepcache::entry::Manifest;
use crate::stepcache::key::{Key, KeyBuilder};
use crate::stepcache::layer::{self, Found, LayerInfo, NewLayers};
use crate::stepcache::{format_date, CacheError, StepCache};
use crate::vm::request::{Checkpoint, GuestCommand, RunRequest};

/// A run with layers, between its preparation and its end.
pub struct LayerRun {
    label: String,
    found: Option<Found>,
    new: NewLayers,
    started: Instant,
}

/// Prepares `request` (its build images are `disks`, indices into its
/// disks, one per image): finds the longest cached prefix, drops its
/// commands, attaches overlays and sets the checkpoints. `None` when the
/// cache cannot be used (the run goes on without layers).
pub fn prepare(
    cache: &StepCache,
    base: &KeyBuilder,
    label: &str,
    request: &mut RunRequest,
    disks: &[usize],
) -> Option<LayerRun> {
    let keys = layer_keys(base, &request.commands);
    let found = cache.find_layer(&keys);
    let skip = found.as_ref().map_or(0, Found::commands);
    let new = match cache.begin_layers(&keys[skip..]) {
        Ok(new) if found.is_some() || !new.is_empty() => new,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!("step cache: no layers for this run: {e}");
            return None;
        }
    };
    let run = LayerRun {
        label: label.to_string(),
        found,
        new,
        started: Instant::now(),
    };
    if let Err(e) = run.attach(request, disks) {
        tracing::warn!("step cache: no layers for this run: {e}");
        return None;
    }
    if let Some(found) = &run.found {
        let m = &found.manifest;
        tracing::info!(
            "commands 1 to {skip} taken from the step cache: layer {} (run {})",
            found.key,
            format_date(m.created)
        );
        for line in &m.output {
            tracing::info!("(cached) {line}");
        }
        request.commands.drain(..skip);
        // The layer holds the grown file systems.
        request.grow_first.clear();
    }
    Some(run)
}

/// The keys of the layers a script of `commands` can have: one after each
/// command but the last (that state is the whole step's entry), at most
/// [`layer::MAX_LAYERS`].
pub fn layer_keys(base: &KeyBuilder, commands: &[GuestCommand]) -> Vec<Key> {
    let texts: Vec<String> = commands
        .iter()
        .take(commands.len().saturating_sub(1).min(layer::MAX_LAYERS))
        .map(|c| serde_json::to_string(c).unwrap_or_default())
        .collect();
    layer::keys(base, &texts)
}

impl LayerRun {
    /// How many commands the cached layer holds (0 on a fresh run).
    pub fn skipped(&self) -> usize {
        self.found.as_ref().map_or(0, Found::commands)
    }

    /// The logged output of the commands the cached layer holds.
    pub fn cached_output(&self) -> &[String] {
        self.found.as_ref().map_or(&[], |f| &f.manifest.output)
    }

    /// The files of build image `i`, in the order the VM writes into them
    /// (see the module's documentation), but the first one on a fresh run.
    fn overlays(&self, i: usize) -> Vec<PathBuf> {
        let first = usize::from(self.found.is_none());
        (first..self.new.len())
            .map(|j| self.new.image(j, i))
            .chain([self.new.top(i)])
            .collect()
    }

    /// The key of the layer below new layer `j` (`j == len` for the top).
    fn below(&self, j: usize) -> Option<&Key> {
        match j.checked_sub(1) {
            Some(prev) => Some(self.new.key(prev)),
            None => self.found.as_ref().map(|f| &f.key),
        }
    }

    /// Creates the overlays, boots on the first one after a cached layer,
    /// and asks for a checkpoint after each command that makes a layer.
    fn attach(&self, request: &mut RunRequest, disks: &[usize]) -> Result<(), BuildError> {
        let first = usize::from(self.found.is_none());
        for (i, &d) in disks.iter().enumerate() {
            let mut size = disk::open(&request.disks[d].disk.path)?.size();
            if let Some(f) = &self.found {
                size = size.max(disk::open(&f.image(i))?.size());
            }
            for (n, path) in self.overlays(i).iter().enumerate() {
                let below = self
                    .below(first + n)
                    .map(|k| PathBuf::from(format!("../{k}/{}", layer::image_file(i))));
                Qcow2Image::create(path, size, below.as_deref().map(|b| (b, "qcow2")))?;
            }
            if self.found.is_some() {
                let boot = &mut request.disks[d].disk;
                boot.path = self.overlays(i)[0].clone();
                boot.format = Format::Qcow2;
            }
        }
        request.checkpoints = (0..self.new.len())
            .map(|c| Checkpoint {
                after: c,
                overlays: disks
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        let files = self.overlays(i);
                        (d, files[c + 1 - first].clone())
                    })
                    .collect(),
            })
            .collect();
        Ok(())
    }

    /// After a successful run: commits the new layers (`logged` is the
    /// run's output, `marks[c]` how much of it command `c` ended at) and
    /// makes each build image from its top overlay (a fresh run's raw one
    /// in place). Returns the output of
    /// the whole script (the cached layer's, then the run's).
    pub fn finish(
        mut self,
        images: &mut [GuestImage<'_>],
        logged: &[String],
        marks: &[usize],
        create: &CreateOptions,
    ) -> Result<Vec<String>, BuildError> {
        let mut output = self
            .found
            .as_ref()
            .map(|f| f.manifest.output.clone())
            .unwrap_or_default();
        let all = self.new.len();
        if let Err(e) = self.commit(images, &output, logged, marks, all, create) {
            tracing::warn!("step cache: cannot keep the layers of this run: {e}");
        }
        for (i, img) in images.iter_mut().enumerate() {
            let top = self.new.top(i);
            let built = &mut img.built;
            // A fresh run's build image holds the state after command 1:
            // what the later commands changed is written into it.
            if self.found.is_none() && built.format != Format::Vmdk {
                apply_in_place(&self.overlays(i), &built.path, built.format)?;
                continue;
            }
            let staging = disk::capability::staging_path(&built.path);
            disk::convert_file(&top, &staging, Target::from(built.format), None, create)?;
            std::fs::rename(&staging, &built.path).map_err(BuildError::io("move", &staging))?;
        }
        output.extend_from_slice(logged);
        Ok(output)
    }

    /// After a run whose script failed: keeps the layers of the commands
    /// before the failure (`taken` checkpoints were taken), so the script
    /// fixed resumes there; the build images are left as they are.
    pub fn keep(
        mut self,
        images: &[GuestImage<'_>],
        logged: &[String],
        marks: &[usize],
        taken: usize,
        create: &CreateOptions,
    ) {
        let before = self
            .found
            .as_ref()
            .map(|f| f.manifest.output.clone())
            .unwrap_or_default();
        let upto = taken.min(self.new.len());
        if let Err(e) = self.commit(images, &before, logged, marks, upto, create) {
            tracing::warn!("step cache: cannot keep the layers of this run: {e}");
        }
    }

    /// Writes the first layer of a fresh run and the manifests of the
    /// first `upto` new layers.
    fn commit(
        &mut self,
        images: &[GuestImage<'_>],
        before: &[String],
        logged: &[String],
        marks: &[usize],
        upto: usize,
        create: &CreateOptions,
    ) -> Result<(), CacheError> {
        let names: Vec<(String, String)> = images
            .iter()
            .map(|img| {
                let name = img.built.path.file_name().unwrap_or_default();
                let format = img.built.format.extension();
                (name.to_string_lossy().into_owned(), format.to_string())
            })
            .collect();
        if self.found.is_none() && upto > 0 {
            for (i, img) in images.iter().enumerate() {
                let to = self.new.image(0, i);
                disk::convert_file(&img.built.path, &to, Target::Qcow2, None, create)?;
            }
        }
        let mut below: Option<(Key, Manifest)> = self
            .found
            .as_ref()
            .map(|f| (f.key.clone(), f.manifest.clone()));
        let seconds = self.started.elapsed().as_secs_f64();
        for j in 0..upto {
            let mut output = before.to_vec();
            output.extend_from_slice(&logged[..marks.get(j).copied().unwrap_or(0)]);
            let info = LayerInfo {
                label: &self.label,
                commands: self.skipped() + j + 1,
                images: &names,
                output,
                seconds,
            };
            let m = self
                .new
                .commit(j, &info, below.as_ref().map(|(k, m)| (k, m)))?;
            below = Some((self.new.key(j).clone(), m));
        }
        Ok(())
    }
}

/// Writes into the build image `image` (raw or qcow2) what the qcow2
/// `overlays` (in order, the last one the top, which reads through the
/// others into `image`'s state) hold themselves: afterwards `image` reads
/// as the top does. Only the clusters the run wrote are copied, not the
/// whole image (`qemu-img commit` in effect).
fn apply_in_place(overlays: &[PathBuf], image: &Path, format: Format) -> Result<(), BuildError> {
    let Some(top) = overlays.last() else {
        return Ok(());
    };
    let mut ranges = Vec::new();
    for o in overlays {
        ranges.extend(disk::qcow2_own::own_extents(o)?);
    }
    ranges.sort_by_key(|e| e.start);
    let reader = disk::open(top)?;
    let target = InPlace::open(image, format)?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0;
    for e in ranges {
        let mut pos = e.start.max(done);
        let end = e.start + e.len;
        while pos < end {
            let n = usize::try_from(end - pos).map_or(CHUNK, |n| n.min(CHUNK));
            reader.read_at(&mut buf[..n], pos)?;
            target.write_at(&buf[..n], pos, image)?;
            pos += n as u64;
        }
        done = done.max(end);
    }
    target.close()
}

/// The bytes copied at a time by [`apply_in_place`].
const CHUNK: usize = 1 << 20;

/// A build image written in place.
enum InPlace {
    Raw(std::fs::File),
    Qcow2(Qcow2Image),
}

impl InPlace {
    fn open(image: &Path, format: Format) -> Result<InPlace, BuildError> {
        Ok(match format {
            Format::Qcow2 => InPlace::Qcow2(Qcow2Image::open(image, true)?),
            _ => InPlace::Raw(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(image)
                    .map_err(BuildError::io("open", image))?,
            ),
        })
    }

    fn write_at(&self, buf: &[u8], pos: u64, image: &Path) -> Result<(), BuildError> {
        match self {
            InPlace::Raw(f) => f
                .write_all_at(buf, pos)
                .map_err(BuildError::io("write", image)),
            InPlace::Qcow2(q) => Ok(q.write_at(buf, pos)?),
        }
    }

    fn close(self) -> Result<(), BuildError> {
        match self {
            InPlace::Raw(_) => Ok(()),
            InPlace::Qcow2(q) => Ok(q.close()?),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tool(name: &str, args: &[&str]) {
        let out = Command::new(name).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{name} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A build image in `format`, a chain of two overlays on a copy of it
    /// written by qemu-io (data over data, across a cluster boundary, a
    /// zeroed cluster): applied in place, the image reads as the top does
    /// (`qemu-img compare`).
    fn applies(format: Format) {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let fmt = format.extension();
        let image = p(&format!("image.{fmt}"));
        tool(
            "qemu-img",
            &["create", "-f", fmt, &image.to_string_lossy(), "4M"],
        );
        tool(
            "qemu-io",
            &["-f", fmt, "-c", "write -P 1 0 4M", &image.to_string_lossy()],
        );
        tool(
            "qemu-img",
            &[
                "convert",
                "-f",
                fmt,
                "-O",
                "qcow2",
                &image.to_string_lossy(),
                &p("layer1.qcow2").to_string_lossy(),
            ],
        );
        let (o2, top) = (p("o2.qcow2"), p("top.qcow2"));
        Qcow2Image::create(&o2, 4 << 20, Some((Path::new("layer1.qcow2"), "qcow2"))).unwrap();
        Qcow2Image::create(&top, 4 << 20, Some((Path::new("o2.qcow2"), "qcow2"))).unwrap();
        for (file, cmd) in [
            (&o2, "write -P 5 0 64k"),
            (&o2, "write -P 8 2M 4k"),
            (&top, "write -P 6 32k 64k"),
            (&top, "write -z 1M 64k"),
            (&top, "write -P 7 3M 100"),
        ] {
            tool(
                "qemu-io",
                &["-f", "qcow2", "-c", cmd, &file.to_string_lossy()],
            );
        }
        apply_in_place(&[o2, top.clone()], &image, format).unwrap();
        tool(
            "qemu-img",
            &[
                "compare",
                "-f",
                fmt,
                "-F",
                "qcow2",
                &image.to_string_lossy(),
                &top.to_string_lossy(),
            ],
        );
    }

    #[test]
    fn overlays_applied_in_place_make_a_raw_image_read_as_the_top() {
        applies(Format::Raw);
    }

    #[test]
    fn overlays_applied_in_place_make_a_qcow2_image_read_as_the_top() {
        applies(Format::Qcow2);
    }
}
