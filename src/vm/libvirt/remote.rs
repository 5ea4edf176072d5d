//! The remote path (docs/PROTOCOL.md#helper-remote): a libvirt host that
//! shares no file system with b9. Everything reaches it through the
//! helper's connection: the appliance as volumes `b9-appliance-<key>-*`
//! uploaded once per host and reused, each disk uploaded into a volume
//! named with this client and b9's PID (`b9-<client>-<pid>-<n>`; an
//! overlay's backing image in one more, `backing`), written
//! disks downloaded back after a successful run, every run volume deleted
//! when the run ends whatever the outcome; volumes of gone b9 processes of
//! this client are swept before a run. The agent channel and the console
//! are relayed by the helper.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::xml::Placement;
use super::{backing, unexpected, Helper, Libvirt, LibvirtVm};
use crate::events::Direction;
use crate::vm::backend::{Hypervisor, Vm, VmDisk, VmError, VmSpec, VmState};
use crate::vm::farm::Capacity;
use b9_protocol::agent::PORT_NAME;
use b9_protocol::libvirt::{HostInfo, Relay, Reply, Request, Stage};

/// How long deleting a lost run's volumes over a fresh connection may take
/// before b9 leaves them to the next run's sweep.
const RECONNECT: Duration = Duration::from_secs(30);

/// One libvirt host reached over its remote protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteLibvirt {
    /// The domain settings (URI, network).
    pub libvirt: Libvirt,
    /// The storage pool b9 uses there.
    pub pool: String,
}

/// Whether `uri` names another machine (`scheme://host/...`); local
/// URIs (`qemu:///system`, `qemu+unix:///session`) have no host.
pub fn is_remote(uri: &str) -> bool {
    uri.split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .is_some_and(|host| !host.is_empty())
}

/// This machine, as volume names carry it: 8 hex digits of a hash of its
/// host name and machine id.
pub fn client_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut hash = Sha256::new();
        for file in ["/proc/sys/kernel/hostname", "/etc/machine-id"] {
            hash.update(std::fs::read(file).unwrap_or_default());
        }
        hash.finalize()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// The prefix of this client's run volumes.
fn client_prefix() -> String {
    format!("b9-{}-", client_id())
}

/// A fresh volume name of this process.
fn run_volume() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}{}-{}",
        client_prefix(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The PID in one of this client's volume names.
fn volume_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(&client_prefix())?;
    rest.split('-').next()?.parse().ok()
}

impl RemoteLibvirt {
    /// Connects the helper and opens the pool; a missing pool is named
    /// with the command that creates it.
    fn open(&self, helper: &mut Helper) -> Result<(), VmError> {
        let request = Request::Pool {
            uri: self.libvirt.uri.clone(),
            pool: self.pool.clone(),
        };
        match helper.call(&request)? {
            Reply::Done => Ok(()),
            Reply::Failed {
                stage: Stage::Connect,
                message,
            } => Err(VmError::HostLost(format!(
                "cannot connect to libvirt at {}: {message}",
                self.libvirt.uri
            ))),
            Reply::Failed {
                stage: Stage::Pool,
                message,
            } => Err(VmError::Start(format!(
                "libvirt at {} has no usable storage pool '{pool}': {message}\n\
                 hint: its administrator creates it with `virsh -c {uri} pool-define-as {pool} \
                 dir --target /var/lib/b9-pool && virsh -c {uri} pool-build {pool} && \
                 virsh -c {uri} pool-start {pool} && virsh -c {uri} pool-autostart {pool}`",
                self.libvirt.uri,
                pool = self.pool,
                uri = self.libvirt.uri,
            ))),
            other => Err(self.failure("open the pool", other)),
        }
    }

    /// Deletes this client's volumes whose b9 process is gone.
    fn sweep(&self, helper: &mut Helper) -> Result<(), VmError> {
        let names = match helper.call(&Request::Volumes)? {
            Reply::Volumes(names) => names,
            other => return Err(self.failure("list volumes", other)),
        };
        for name in names {
            if volume_pid(&name).is_some_and(crate::stale::is_gone) {
                tracing::debug!(
                    "deleting volume {name} on {} (its b9 is gone)",
                    self.libvirt.uri
                );
                delete(helper, &name);
            }
        }
        Ok(())
    }

    /// Uploads `path` as volume `name`, reporting its progress to
    /// `spec`'s events; its path on the host.
    fn upload(
        &self,
        helper: &mut Helper,
        name: &str,
        path: &Path,
        spec: &VmSpec,
    ) -> Result<String, VmError> {
        let request = Request::Upload {
            name: name.to_string(),
            path: utf8(path)?,
        };
        match helper.call_with_progress(&request, &mut progress(spec, Direction::Upload, path))? {
            Reply::Volume(at) => Ok(at),
            other => Err(self.failure("upload", other)),
        }
    }

    /// The shared volume `name` holding `path` (uploaded when missing,
    /// used only once complete); while another b9 uploads it, this run
    /// uploads its own copy into a run volume recorded in `disks`. Its
    /// path on the host.
    fn shared(
        &self,
        helper: &mut Helper,
        name: &str,
        path: &Path,
        spec: &VmSpec,
        disks: &mut Vec<RunVolume>,
    ) -> Result<String, VmError> {
        let request = Request::Shared {
            name: name.to_string(),
            path: utf8(path)?,
            owner: format!("{}{}", client_prefix(), std::process::id()),
        };
        match helper.call_with_progress(&request, &mut progress(spec, Direction::Upload, path))? {
            Reply::Volume(at) => Ok(at),
            Reply::Busy => {
                tracing::info!(
                    "another b9 is uploading {name} to {}; this run uploads its own copy",
                    self.libvirt.uri
                );
                let own = run_volume();
                disks.push(RunVolume {
                    name: own.clone(),
                    local: path.to_path_buf(),
                    written: false,
                    backing: None,
                });
                self.upload(helper, &own, path, spec)
            }
            other => Err(self.failure("upload", other)),
        }
    }

    /// Uploads a disk of the run (and the backing image of an overlay)
    /// into run volumes recorded in `disks`; the disk's volume name.
    fn upload_disk(
        &self,
        helper: &mut Helper,
        disk: &VmDisk,
        spec: &VmSpec,
        disks: &mut Vec<RunVolume>,
    ) -> Result<String, VmError> {
        let backing = backing::of(&disk.path, disk.format)?;
        let remote_backing = match &backing {
            Some((_, file)) => {
                let name = run_volume();
                // Recorded before the upload: a half-made volume is deleted too.
                disks.push(RunVolume {
                    name: name.clone(),
                    local: file.clone(),
                    written: false,
                    backing: None,
                });
                Some(self.upload(helper, &name, file, spec)?)
            }
            None => None,
        };
        let name = run_volume();
        disks.push(RunVolume {
            name: name.clone(),
            local: disk.path.clone(),
            written: !disk.read_only && !disk.serial.starts_with(super::shares::DISCARDED),
            backing: backing.as_ref().map(|(local, _)| local.clone()),
        });
        let (Some((local, _)), Some(remote)) = (&backing, &remote_backing) else {
            self.upload(helper, &name, &disk.path, spec)?;
            return Ok(name);
        };
        backing::point(&disk.path, remote)?;
        let uploaded = self.upload(helper, &name, &disk.path, spec);
        backing::point(&disk.path, local)?;
        uploaded.map(|_| name)
    }

    /// The appliance's volumes (uploaded when missing); their host paths.
    fn appliance(
        &self,
        helper: &mut Helper,
        spec: &VmSpec,
        disks: &mut Vec<RunVolume>,
    ) -> Result<(String, String), VmError> {
        // One upload per host at a time in this process: a second run
        // waits and then finds the volume there.
        static UPLOADING: Mutex<()> = Mutex::new(());
        let _guard = UPLOADING.lock().unwrap_or_else(|p| p.into_inner());
        let key = appliance_key(&spec.initrd);
        let kernel = format!("b9-appliance-{key}-kernel");
        let kernel = self.shared(helper, &kernel, &spec.kernel, spec, disks)?;
        let initrd = format!("b9-appliance-{key}-initrd");
        let initrd = self.shared(helper, &initrd, &spec.initrd, spec, disks)?;
        Ok((kernel, initrd))
    }

    fn failure(&self, what: &str, reply: Reply) -> VmError {
        match reply {
            Reply::Failed { message, .. } => VmError::Start(format!(
                "libvirt at {} cannot {what}: {message}",
                self.libvirt.uri
            )),
            other => VmError::Start(unexpected(&other)),
        }
    }
}

/// A transfer's progress callback: `Event::Transfer`s of `spec`'s
/// instance naming the local file.
fn progress<'a>(spec: &'a VmSpec, direction: Direction, path: &Path) -> impl FnMut(u64, u64) + 'a {
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    spec.events.transfer(direction, Some(&spec.instance), &name)
}

/// The appliance's cache key (its initramfs is `appliance-<key>.img`), or
/// a hash of the initramfs's path when it is named otherwise.
fn appliance_key(initrd: &Path) -> String {
    let stem = initrd
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.strip_prefix("appliance-") {
        Some(key) if !key.is_empty() => key.chars().take(32).collect(),
        _ => {
            let hash = Sha256::digest(initrd.as_os_str().as_encoded_bytes());
            hash[..16].iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// Deletes a volume, warning on failure.
fn delete(helper: &mut Helper, name: &str) {
    match helper.call(&Request::Delete {
        name: name.to_string(),
    }) {
        Ok(Reply::Done) => {}
        Ok(other) => tracing::warn!("cannot delete volume {name}: {other:?}"),
        Err(e) => tracing::warn!("cannot delete volume {name}: {e}"),
    }
}

/// A path as the helper takes it.
pub(super) fn utf8(path: &Path) -> Result<String, VmError> {
    path.to_str()
        .map(String::from)
        .ok_or_else(|| VmError::Start(format!("libvirt needs UTF-8 paths: {}", path.display())))
}

/// What `b9 farm` shows of the host of `uri` (with its pool `pool`).
pub fn describe(uri: &str, pool: &str) -> Result<HostInfo, VmError> {
    let mut helper = Helper::spawn()?;
    let request = Request::Host {
        uri: uri.to_string(),
        pool: pool.to_string(),
    };
    match helper.call(&request)? {
        Reply::Host(info) => Ok(info),
        Reply::Failed { message, .. } => Err(VmError::HostLost(message)),
        other => Err(VmError::Start(unexpected(&other))),
    }
}

/// The CPUs and free memory of the host of `uri` (`virNodeGetInfo`,
/// `virNodeGetFreeMemory`); an unreachable host is [`VmError::HostLost`].
pub(crate) fn capacity(uri: &str, pool: &str) -> Result<Capacity, VmError> {
    let info = describe(uri, pool)?;
    Ok(Capacity {
        cpus: info.cpus.into(),
        memory: info.free_bytes,
    })
}

impl Hypervisor for RemoteLibvirt {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn start(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmError> {
        if !spec.shares.is_empty() {
            return Err(VmError::Start(format!(
                "libvirt at {} shares no file system with b9: shares must be images",
                self.libvirt.uri
            )));
        }
        let mut helper = Helper::spawn()?;
        self.open(&mut helper)?;
        self.sweep(&mut helper)?;
        let mut disks = Vec::new();
        let (kernel, initrd) = match self.appliance(&mut helper, spec, &mut disks) {
            Ok(paths) => paths,
            Err(e) => {
                self.cleanup(&mut helper, &disks);
                return Err(e);
            }
        };
        let mut volumes = Vec::new();
        for disk in &spec.disks {
            match self.upload_disk(&mut helper, disk, spec, &mut disks) {
                Ok(name) => volumes.push(name),
                Err(e) => {
                    self.cleanup(&mut helper, &disks);
                    return Err(e);
                }
            }
        }
        let placement = Placement::Remote {
            pool: &self.pool,
            kernel: &kernel,
            initrd: &initrd,
            volumes: &volumes,
        };
        let started = self.libvirt.domain_xml_at(spec, placement).and_then(|xml| {
            tracing::debug!("creating libvirt domain on {}:\n{xml}", self.libvirt.uri);
            let relay = Relay {
                agent_socket: utf8(&spec.agent_socket)?,
                port: PORT_NAME.to_string(),
                console_log: utf8(&spec.console_log)?,
            };
            self.libvirt.create(&mut helper, spec, xml, Some(relay))
        });
        if let Err(e) = started {
            self.cleanup(&mut helper, &disks);
            return Err(e);
        }
        let vm = RemoteVm {
            host: self.clone(),
            inner: LibvirtVm {
                helper,
                uri: self.libvirt.uri.clone(),
                agent_socket: spec.agent_socket.clone(),
                disks: spec.disks.len(),
            },
            disks,
            spec: spec.clone(),
        };
        vm.inner.check_agent_socket()?;
        Ok(Box::new(vm))
    }
}

/// A disk's volume for one run.
struct RunVolume {
    name: String,
    local: std::path::PathBuf,
    /// Attached writable: downloaded back after a successful run.
    written: bool,
    /// An overlay's local backing file name, named again after the download.
    backing: Option<String>,
}

impl RemoteLibvirt {
    /// Deletes the run's volumes; those the connection could not delete
    /// (the host was lost: often only b9's connection to it) once more over
    /// a fresh connection.
    fn cleanup(&self, helper: &mut Helper, disks: &[RunVolume]) {
        let left: Vec<String> = disks
            .iter()
            .filter(|disk| {
                let request = Request::Delete {
                    name: disk.name.clone(),
                };
                !matches!(helper.call(&request), Ok(Reply::Done))
            })
            .map(|disk| disk.name.clone())
            .collect();
        if !left.is_empty() {
            self.delete_afresh(left);
        }
    }

    /// Deletes `names` over a new connection, waiting at most [`RECONNECT`]
    /// (a host that is really down is left to the sweep of the next run).
    fn delete_afresh(&self, names: Vec<String>) {
        let host = self.clone();
        let listed = names.join(", ");
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || {
            let deleted = Helper::spawn().and_then(|mut helper| {
                host.open(&mut helper)?;
                for name in &names {
                    let request = Request::Delete { name: name.clone() };
                    match helper.call(&request)? {
                        Reply::Done => {}
                        other => return Err(host.failure("delete a volume", other)),
                    }
                }
                Ok(())
            });
            let _ = done.send(deleted);
        });
        let why = match result.recv_timeout(RECONNECT) {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", RECONNECT.as_secs()),
        };
        tracing::warn!(
            "volumes {listed} are left on {} (the next run from this client deletes them): {why}",
            self.libvirt.uri
        );
    }
}

/// A remote domain and the volumes of its run.
struct RemoteVm {
    host: RemoteLibvirt,
    inner: LibvirtVm,
    disks: Vec<RunVolume>,
    /// The spec's instance and events, for the downloads' progress.
    spec: VmSpec,
}

impl Vm for RemoteVm {
    fn state(&mut self) -> VmState {
        self.inner.state()
    }

    fn stop(&mut self, grace: Duration) -> Result<(), VmError> {
        self.inner.stop(grace)
    }

    fn collect(&mut self) -> Result<(), VmError> {
        for disk in self.disks.iter().filter(|d| d.written) {
            let request = Request::Download {
                name: disk.name.clone(),
                path: utf8(&disk.local)?,
            };
            let mut report = progress(&self.spec, Direction::Download, &disk.local);
            match self.inner.helper.call_with_progress(&request, &mut report)? {
                Reply::Done => {
                    if let Some(name) = &disk.backing {
                        backing::point(&disk.local, name)?;
                    }
                }
                Reply::Failed { message, .. } => {
                    return Err(VmError::Start(format!(
                        "libvirt at {} cannot download the build image {}: {message}",
                        self.inner.uri,
                        disk.local.display()
                    )))
                }
                other => return Err(VmError::Start(unexpected(&other))),
            }
        }
        Ok(())
    }
}

impl Drop for RemoteVm {
    fn drop(&mut self) {
        if let Err(e) = self.inner.stop(Duration::ZERO) {
            tracing::warn!("{e}");
        }
        self.host.cleanup(&mut self.inner.helper, &self.disks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_uris_have_a_host() {
        assert!(!is_remote("qemu:///system"));
        assert!(!is_remote("qemu:///session"));
        assert!(!is_remote("qemu+unix:///system?socket=/x"));
        assert!(is_remote("qemu+ssh://b@host-a/system"));
        assert!(is_remote(
            "qemu+ssh://u@127.0.0.1:22/session?keyfile=/k&no_verify=1"
        ));
        assert!(is_remote("qemu+tls://host/system"));
    }

    #[test]
    fn volume_names_carry_client_and_pid() {
        let name = run_volume();
        assert_eq!(volume_pid(&name), Some(std::process::id() as i32));
        assert_eq!(volume_pid("b9-appliance-abc-kernel"), None);
    }
}
