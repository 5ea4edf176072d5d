//! The `libvirt` backend: renders `xml-templates/domain.xml` into a
//! transient domain and has the helper `b9-libvirt` (the only program that
//! links libvirt, through the `virt` crate) create it on a libvirt
//! connection, `qemu:///system` by default or a remote URI. [`wire`]
//! describes the helper's protocol and why it is a separate program.
//!
//! The domain runs QEMU as the calling user (a static DAC seclabel without
//! relabelling), so it can open images in build directories under 0700
//! parents and create the agent socket there. A guest panic (pvpanic) leaves
//! the domain crashed (`on_crash` = preserve) so [`Vm::state`] can say so;
//! stopping destroys the domain, which removes a transient domain entirely.
//! The domain is created with libvirt's auto-destroy flag and the helper
//! destroys it when b9 goes away, so none outlives b9, even a killed one.
//!
//! A checkpoint ([`Vm::checkpoint`], the step cache's layers) is a
//! disk-only external snapshot of the domain into b9's overlays, taken by
//! the helper (`Request::Snapshot`, docs/PROTOCOL.md#helper-snapshot); only
//! a local domain can, whose disks are b9's files (a remote one's are run
//! volumes: its steps are cached whole only).

mod backing;
pub mod remote;
pub mod shares;
mod xml;

use std::io::BufReader;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::backend::{remove_if_exists, Hypervisor, Vm, VmError, VmSpec, VmState};
use b9_protocol::libvirt::{self as wire, DomainState, Reply, Request, SnapshotDisk, Stage};

/// The connection URI used when none is configured.
pub const DEFAULT_URI: &str = "qemu:///system";

/// How long a helper may take to exit after its stdin closed.
const HELPER_EXIT: Duration = Duration::from_secs(10);

/// Runs VMs as transient libvirt domains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Libvirt {
    /// The connection URI (`qemu:///system`, `qemu+ssh://host/system`...).
    pub uri: String,
    /// The libvirt network attached when a spec asks for a network.
    pub network: Option<String>,
}

impl Default for Libvirt {
    fn default() -> Self {
        Libvirt {
            uri: DEFAULT_URI.to_string(),
            network: None,
        }
    }
}

impl Hypervisor for Libvirt {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn start(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmError> {
        let xml = self.domain_xml(spec)?;
        let mut helper = Helper::spawn()?;
        tracing::debug!("creating libvirt domain on {}:\n{xml}", self.uri);
        self.create(&mut helper, spec, xml, None)?;
        let vm = LibvirtVm {
            helper,
            uri: self.uri.clone(),
            agent_socket: spec.agent_socket.clone(),
            disks: spec.disks.len(),
        };
        vm.check_agent_socket()?;
        Ok(Box::new(vm))
    }
}

impl Libvirt {
    /// Has `helper` create the domain `xml` of `spec` (relayed with `relay`).
    fn create(
        &self,
        helper: &mut Helper,
        spec: &VmSpec,
        xml: String,
        relay: Option<wire::Relay>,
    ) -> Result<(), VmError> {
        remove_if_exists(&spec.agent_socket)?;
        let start = Request::Start {
            uri: self.uri.clone(),
            xml,
            relay,
        };
        match helper.call(&start)? {
            Reply::Started => Ok(()),
            Reply::Failed {
                stage: Stage::Connect,
                message,
            } => Err(VmError::Start(format!(
                "cannot connect to libvirt at {}: {message}\nhint: is libvirtd running? \
                 Start it with `virtlogd -d; libvirtd -d` (or your service manager)",
                self.uri
            ))),
            Reply::Failed { message, .. } => Err(VmError::Start(format!(
                "libvirt at {} cannot start the domain {}: {message}",
                self.uri, spec.name
            ))),
            other => Err(VmError::Start(unexpected(&other))),
        }
    }
}

/// A reply that does not answer the request.
fn unexpected(reply: &Reply) -> String {
    format!("the libvirt helper gave an unexpected answer: {reply:?}")
}

/// A running `b9-libvirt`.
struct Helper {
    child: Child,
    /// Closed (dropped) to tell the helper to finish.
    to: Option<ChildStdin>,
    from: BufReader<ChildStdout>,
}

impl Helper {
    /// Starts the helper in its own process group, so a Ctrl-C at the
    /// terminal reaches b9 (which stops the VM) and not the helper.
    fn spawn() -> Result<Helper, VmError> {
        let path = crate::vm::sibling::program(wire::HELPER)?;
        let mut child = Command::new(&path)
            .args(["--protocol", &wire::VERSION.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| VmError::Io {
                op: "start",
                path: path.clone(),
                source,
            })?;
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(VmError::Start(format!(
                "{} started without pipes",
                path.display()
            )));
        };
        Ok(Helper {
            child,
            to: Some(to),
            from: BufReader::new(from),
        })
    }

    /// Sends a request and reads its reply.
    fn call(&mut self, request: &Request) -> Result<Reply, VmError> {
        self.call_with_progress(request, &mut |_, _| {})
    }

    /// Sends `request` and waits for its reply, handing the transfer
    /// progress the helper reports on the way to `progress`.
    fn call_with_progress(
        &mut self,
        request: &Request,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Reply, VmError> {
        let lost = VmError::LostHelper;
        let to = self
            .to
            .as_mut()
            .ok_or_else(|| lost("already told to finish".to_string()))?;
        wire::send(to, request).map_err(|e| lost(e.to_string()))?;
        loop {
            match wire::receive(&mut self.from) {
                Ok(Some(Reply::Progress { done, total })) => progress(done, total),
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => return Err(lost(self.exit_status())),
                Err(e) => return Err(lost(e.to_string())),
            }
        }
    }

    /// How the helper ended, once its output closed.
    fn exit_status(&mut self) -> String {
        match self.child.wait() {
            Ok(status) => format!("it ended with {status}"),
            Err(e) => e.to_string(),
        }
    }
}

impl Drop for Helper {
    /// Closes the helper's stdin (it destroys a domain it still holds and
    /// exits) and reaps it; one that does not exit in time is killed.
    fn drop(&mut self) {
        drop(self.to.take());
        let deadline = Some(Instant::now() + HELPER_EXIT);
        if let Ok(Some(_)) = crate::wait::wait_until(&mut self.child, deadline) {
            return;
        }
        tracing::warn!("the libvirt helper did not exit; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A transient domain, held by its helper.
struct LibvirtVm {
    helper: Helper,
    uri: String,
    agent_socket: PathBuf,
    /// How many disks the domain has (`vda`, `vdb`...).
    disks: usize,
}

impl LibvirtVm {
    /// The agent socket must exist once the domain runs.
    fn check_agent_socket(&self) -> Result<(), VmError> {
        if self.agent_socket.exists() {
            Ok(())
        } else {
            Err(VmError::Start(format!(
                "the domain runs but the agent socket {} does not exist \
                 (a remote libvirt host makes it on its own file system)",
                self.agent_socket.display()
            )))
        }
    }
}

impl Vm for LibvirtVm {
    fn state(&mut self) -> VmState {
        match self.helper.call(&Request::State) {
            Ok(Reply::State(DomainState::Running)) => VmState::Running,
            Ok(Reply::State(DomainState::Crashed)) => VmState::Panicked,
            Ok(Reply::State(DomainState::Gone(why))) => VmState::Gone(why),
            Ok(other) => VmState::Gone(unexpected(&other)),
            Err(e) => VmState::Gone(e.to_string()),
        }
    }

    fn checkpoint(&mut self, overlays: &[(usize, PathBuf)]) -> Result<(), VmError> {
        let disks = (0..self.disks)
            .map(|index| {
                let overlay = overlays
                    .iter()
                    .find(|(d, _)| *d == index)
                    .map(|(_, path)| remote::utf8(path))
                    .transpose()?;
                Ok(SnapshotDisk {
                    target: xml::virtio_disk_name(index),
                    overlay,
                })
            })
            .collect::<Result<Vec<_>, VmError>>()?;
        match self.helper.call(&Request::Snapshot { disks })? {
            Reply::Done => Ok(()),
            Reply::Failed { message, .. } => Err(VmError::Monitor(format!(
                "libvirt at {} cannot snapshot the domain's disks: {message}",
                self.uri
            ))),
            other => Err(VmError::Monitor(unexpected(&other))),
        }
    }

    fn stop(&mut self, _grace: Duration) -> Result<(), VmError> {
        // Destroying is synchronous: libvirt kills QEMU (TERM, then KILL).
        match self.helper.call(&Request::Stop) {
            Ok(Reply::Stopped) => Ok(()),
            Ok(Reply::Failed { message, .. }) => Err(VmError::Monitor(format!(
                "libvirt at {} cannot destroy the domain: {message}",
                self.uri
            ))),
            Ok(other) => Err(VmError::Monitor(unexpected(&other))),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LibvirtVm {
    fn drop(&mut self) {
        if let Err(e) = self.stop(Duration::ZERO) {
            tracing::warn!("{e}");
        }
        if let Err(e) = remove_if_exists(&self.agent_socket) {
            tracing::warn!("{e}");
        }
    }
}
