//! The `qemu` backend: spawns `qemu-system-x86_64` directly and drives it
//! over QMP (the `qapi` crate's types, see [`super::qmp`]).
//!
//! QEMU's stderr goes to a file in [`VmSpec::runtime_dir`] and is quoted in
//! errors; the QMP socket lives there too. Disks are attached with the
//! host page cache in write-back mode: the guest's flushes reach the image
//! files, and QEMU flushes everything when it quits, so the host sees all
//! data once the VM is gone.
//!
//! A checkpoint ([`Vm::checkpoint`]) is an external snapshot
//! (`blockdev-snapshot-sync` into an overlay b9 created): the disk's
//! current file becomes read-only and keeps its state, writes go on into
//! the overlay.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use qapi::qmp::RunState;

use super::backend::{
    remove_if_exists, Accelerator, Hypervisor, Vm, VmDisk, VmError, VmShare, VmSpec, VmState,
};
use super::qmp::{Events, Qmp};
use crate::disk::Format;
use b9_protocol::agent::PORT_NAME;

/// The QEMU binary used when none is configured (looked up in `PATH`).
pub const DEFAULT_BINARY: &str = "qemu-system-x86_64";

/// How long QEMU may take to open its sockets and answer QMP.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one QMP command in [`Vm::state`] may take.
const STATE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an external snapshot (`blockdev-snapshot-sync`) may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// The grace period a dropped VM gets before it is killed.
const DROP_GRACE: Duration = Duration::from_secs(5);
/// How many lines of QEMU's stderr an error quotes.
const STDERR_LINES: usize = 20;

/// Runs VMs as `qemu-system-x86_64` child processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qemu {
    /// The QEMU binary: a path, or a name looked up in `PATH`.
    pub binary: PathBuf,
}

impl Default for Qemu {
    fn default() -> Self {
        Qemu {
            binary: PathBuf::from(DEFAULT_BINARY),
        }
    }
}

impl Qemu {
    /// The binary as an executable path: a name without `/` is looked up
    /// in `PATH`.
    pub fn resolve_binary(&self) -> Result<PathBuf, VmError> {
        if self.binary.components().count() > 1 {
            return if is_executable(&self.binary) {
                Ok(self.binary.clone())
            } else {
                Err(VmError::Start(format!(
                    "the QEMU binary {} does not exist or is not executable",
                    self.binary.display()
                )))
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(&self.binary))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| {
                VmError::Start(format!(
                    "{} not found in PATH; install QEMU (Debian: apt-get install \
                     qemu-system-x86) or set the QEMU binary in the configuration",
                    self.binary.display()
                ))
            })
    }
}

/// A regular file with an execute bit.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Hypervisor for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn start(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmError> {
        let binary = self.resolve_binary()?;
        let files = RuntimeFiles::new(spec);
        files.prepare(&spec.runtime_dir)?;
        let child = spawn(&binary, spec, &files)?;
        let mut vm = QemuVm {
            child,
            exit: None,
            qmp: None,
            files,
            snapshots: 0,
            tops: Vec::new(),
        };
        vm.await_monitor(START_TIMEOUT)?;
        vm.check_agent_socket()?;
        Ok(Box::new(vm))
    }
}

/// The files QEMU makes for a VM: its sockets and its stderr.
#[derive(Clone, Debug)]
struct RuntimeFiles {
    qmp_socket: PathBuf,
    agent_socket: PathBuf,
    stderr: PathBuf,
}

impl RuntimeFiles {
    fn new(spec: &VmSpec) -> Self {
        RuntimeFiles {
            qmp_socket: spec.runtime_dir.join("qmp.sock"),
            agent_socket: spec.agent_socket.clone(),
            stderr: spec.runtime_dir.join("qemu.stderr"),
        }
    }

    /// Creates the runtime directory and removes stale sockets.
    fn prepare(&self, runtime_dir: &Path) -> Result<(), VmError> {
        std::fs::create_dir_all(runtime_dir).map_err(|source| VmError::Io {
            op: "create",
            path: runtime_dir.to_path_buf(),
            source,
        })?;
        for socket in [&self.qmp_socket, &self.agent_socket] {
            remove_if_exists(socket)?;
        }
        Ok(())
    }

    /// Removes everything (best effort; the first error is returned).
    fn remove(&self) -> Result<(), VmError> {
        let results =
            [&self.qmp_socket, &self.agent_socket, &self.stderr].map(|p| remove_if_exists(p));
        results.into_iter().collect()
    }

    /// The last lines QEMU wrote to stderr, or an empty string.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read(&self.stderr).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.trim_end().lines().collect();
        let skip = lines.len().saturating_sub(STDERR_LINES);
        lines[skip..].join("\n")
    }
}

/// Starts QEMU with stderr going to its file; QEMU is killed when the
/// calling thread (or b9) ends.
fn spawn(binary: &Path, spec: &VmSpec, files: &RuntimeFiles) -> Result<Child, VmError> {
    let stderr = File::create(&files.stderr).map_err(|source| VmError::Io {
        op: "create",
        path: files.stderr.clone(),
        source,
    })?;
    let args = command_line(spec, files);
    tracing::debug!("starting {} {:?}", binary.display(), args);
    super::parent_death::command(binary)?
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|source| VmError::Io {
            op: "run",
            path: binary.to_path_buf(),
            source,
        })
}

/// QEMU's arguments for `spec`.
fn command_line(spec: &VmSpec, files: &RuntimeFiles) -> Vec<OsString> {
    let mut args = Args::default();
    machine_args(&mut args, spec);
    console_args(&mut args, spec);
    for (index, disk) in spec.disks.iter().enumerate() {
        disk_args(&mut args, index, disk);
    }
    for (index, share) in spec.shares.iter().enumerate() {
        share_args(&mut args, index, share);
    }
    agent_args(&mut args, &files.agent_socket);
    monitor_args(&mut args, &files.qmp_socket);
    network_args(&mut args, spec.network);
    args.0
}

/// An argument list under construction.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    /// Adds an option and its value.
    fn opt(&mut self, name: &str, value: impl Into<OsString>) {
        self.0.push(name.into());
        self.0.push(value.into());
    }

    /// Adds an option without a value.
    fn flag(&mut self, name: &str) {
        self.0.push(name.into());
    }
}

/// Machine, accelerator, memory, CPUs, direct kernel boot, panic handling.
fn machine_args(args: &mut Args, spec: &VmSpec) {
    args.flag("-nodefaults");
    args.flag("-no-user-config");
    args.opt("-name", escape(OsStr::new(&spec.name)));
    args.opt("-display", "none");
    args.opt("-machine", "pc");
    match spec.accel {
        Accelerator::Kvm => {
            args.opt("-accel", "kvm");
            args.opt("-cpu", "host");
        }
        Accelerator::Tcg => args.opt("-accel", "tcg"),
    }
    args.opt("-m", spec.memory_mb.to_string());
    args.opt("-smp", spec.cpus.to_string());
    args.opt("-kernel", &spec.kernel);
    args.opt("-initrd", &spec.initrd);
    args.opt("-append", &spec.cmdline);
    // A guest reboot (panic=-1) ends QEMU; a pvpanic report ends it too,
    // after a GUEST_PANICKED event.
    args.flag("-no-reboot");
    args.opt("-action", "panic=shutdown");
    args.opt("-device", "pvpanic");
}

/// The serial console, written to the console log.
fn console_args(args: &mut Args, spec: &VmSpec) {
    args.opt(
        "-chardev",
        option("file,id=con,path=", &spec.console_log, ""),
    );
    args.opt("-serial", "chardev:con");
}

/// One disk: a file node, a format node and a virtio-blk device.
fn disk_args(args: &mut Args, index: usize, disk: &VmDisk) {
    let ro = if disk.read_only { ",read-only=on" } else { "" };
    let file_node = format!("driver=file,node-name=f{index},filename=");
    let cache = format!(",cache.direct=off,cache.no-flush=off{ro}");
    args.opt("-blockdev", option(&file_node, &disk.path, &cache));
    let driver = format_driver(disk.format);
    args.opt(
        "-blockdev",
        format!("driver={driver},node-name=d{index},file=f{index}{ro}"),
    );
    let device = format!("virtio-blk-pci,drive=d{index},serial=");
    args.opt("-device", option(&device, OsStr::new(&disk.serial), ""));
}

/// QEMU's block driver for a format.
fn format_driver(format: Format) -> &'static str {
    match format {
        Format::Raw => "raw",
        Format::Qcow2 => "qcow2",
        Format::Vmdk => "vmdk",
    }
}

/// One 9p share.
fn share_args(args: &mut Args, index: usize, share: &VmShare) {
    let ro = if share.read_only { ",readonly=on" } else { "" };
    let fsdev = format!("local,id=fs{index},path=");
    let model = format!(",security_model=none{ro}");
    args.opt("-fsdev", option(&fsdev, &share.path, &model));
    let device = format!("virtio-9p-pci,fsdev=fs{index},mount_tag=");
    args.opt("-device", option(&device, OsStr::new(&share.tag), ""));
}

/// The agent's virtio-serial port, listening on the agent socket.
fn agent_args(args: &mut Args, socket: &Path) {
    args.opt("-device", "virtio-serial-pci");
    let chardev = option("socket,id=agent,path=", socket, ",server=on,wait=off");
    args.opt("-chardev", chardev);
    args.opt(
        "-device",
        format!("virtserialport,chardev=agent,name={PORT_NAME}"),
    );
}

/// The QMP monitor on its socket.
fn monitor_args(args: &mut Args, socket: &Path) {
    let chardev = option("socket,id=qmp,path=", socket, ",server=on,wait=off");
    args.opt("-chardev", chardev);
    args.opt("-mon", "chardev=qmp,mode=control");
}

/// User-mode networking, or none. No option ROM: direct kernel boot does
/// not need it and SeaBIOS boots faster without.
fn network_args(args: &mut Args, network: bool) {
    if network {
        args.opt("-netdev", "user,id=net0");
        args.opt("-device", "virtio-net-pci,netdev=net0,romfile=");
    } else {
        args.opt("-nic", "none");
    }
}

/// `prefix` + the escaped `value` + `suffix`.
fn option(prefix: &str, value: impl AsRef<OsStr>, suffix: &str) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend(escape(value.as_ref()).as_bytes());
    bytes.extend(suffix.as_bytes());
    OsString::from_vec(bytes)
}

/// A value inside a QEMU option string: commas are doubled.
fn escape(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        out.push(byte);
        if byte == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// A running QEMU process.
struct QemuVm {
    child: Child,
    /// The exit status once reaped.
    exit: Option<ExitStatus>,
    qmp: Option<Qmp>,
    files: RuntimeFiles,
    /// External snapshots taken so far (numbers their node names).
    snapshots: usize,
    /// Each snapshotted disk's active node (`d<index>` until then).
    tops: Vec<(usize, String)>,
}

impl QemuVm {
    /// Waits until QMP answers; fails with QEMU's stderr if it exits.
    fn await_monitor(&mut self, timeout: Duration) -> Result<(), VmError> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("the QMP socket did not appear");
        while Instant::now() < deadline {
            if let Some(status) = self.reap() {
                return Err(VmError::Start(self.early_exit_message(status)));
            }
            if self.files.qmp_socket.exists() {
                let left = deadline.saturating_duration_since(Instant::now());
                match Qmp::connect(&self.files.qmp_socket, left) {
                    Ok(qmp) => {
                        self.qmp = Some(qmp);
                        return Ok(());
                    }
                    Err(e) => last_error = e.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(VmError::Start(format!(
            "QEMU did not answer on its monitor within {timeout:?}: {last_error}{}",
            self.stderr_suffix()
        )))
    }

    /// The agent socket must exist once QMP answers.
    fn check_agent_socket(&self) -> Result<(), VmError> {
        if self.files.agent_socket.exists() {
            Ok(())
        } else {
            Err(VmError::Start(format!(
                "QEMU runs but the agent socket {} does not exist{}",
                self.files.agent_socket.display(),
                self.stderr_suffix()
            )))
        }
    }

    /// The message for QEMU ending before it answered QMP.
    fn early_exit_message(&self, status: ExitStatus) -> String {
        format!("QEMU exited at start ({status}){}", self.stderr_suffix())
    }

    /// `": <stderr tail>"`, or nothing when QEMU wrote nothing.
    fn stderr_suffix(&self) -> String {
        let tail = self.files.stderr_tail();
        if tail.is_empty() {
            String::new()
        } else {
            format!(":\n{tail}")
        }
    }

    /// The exit status if QEMU has ended (reaps it).
    fn reap(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// The events QMP reported so far.
    fn events(&self) -> Events {
        self.qmp.as_ref().map(Qmp::events).unwrap_or_default()
    }

    /// Why the VM is gone, for [`VmState::Gone`].
    fn gone_reason(&self, status: ExitStatus, events: &Events) -> String {
        let mut reason = format!("QEMU ended ({status})");
        if let Some(cause) = &events.shutdown {
            reason.push_str(&format!(" after a shutdown ({cause})"));
        }
        reason + &self.stderr_suffix()
    }

    /// Asks QMP for the run state.
    fn query_state(&mut self) -> VmState {
        let Some(qmp) = self.qmp.as_mut() else {
            return VmState::Running;
        };
        match qmp.execute(&qapi::qmp::query_status {}, STATE_TIMEOUT) {
            Ok(info) => match info.status {
                RunState::guest_panicked => VmState::Panicked,
                RunState::shutdown | RunState::internal_error => {
                    VmState::Gone(format!("QEMU reports the run state {:?}", info.status))
                }
                _ => VmState::Running,
            },
            // Slow or closing monitor: the process is alive, so still running.
            Err(e) => {
                tracing::debug!("query-status: {e}");
                VmState::Running
            }
        }
    }

    /// Polls for the exit until `deadline`.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = crate::wait::wait_until(&mut self.child, Some(deadline))
                .ok()
                .flatten();
        }
        self.exit
    }

    /// SIGKILL and reap.
    fn kill(&mut self) -> Result<(), VmError> {
        if let Err(e) = self.child.kill() {
            tracing::debug!("kill QEMU: {e}");
        }
        let status = self
            .child
            .wait()
            .map_err(|e| VmError::Monitor(format!("cannot reap the killed QEMU: {e}")))?;
        self.exit = Some(status);
        Ok(())
    }
}

impl Vm for QemuVm {
    fn state(&mut self) -> VmState {
        let events = self.events();
        if events.panicked {
            return VmState::Panicked;
        }
        if let Some(status) = self.reap() {
            return VmState::Gone(self.gone_reason(status, &events));
        }
        if let Some(cause) = events.shutdown {
            return VmState::Gone(format!("the VM shut down ({cause})"));
        }
        self.query_state()
    }

    fn checkpoint(&mut self, overlays: &[(usize, PathBuf)]) -> Result<(), VmError> {
        let qmp = self
            .qmp
            .as_mut()
            .ok_or_else(|| VmError::Monitor("no QMP connection".into()))?;
        // All disks in one transaction would be atomic; the guest's file
        // systems are frozen, so one after another is as good.
        for (disk, path) in overlays {
            self.snapshots += 1;
            let node = format!("d{disk}-{}", self.snapshots);
            let top = match self.tops.iter_mut().find(|(d, _)| d == disk) {
                Some((_, top)) => std::mem::replace(top, node.clone()),
                None => {
                    self.tops.push((*disk, node.clone()));
                    format!("d{disk}")
                }
            };
            let command = qapi::qmp::blockdev_snapshot_sync(qapi::qmp::BlockdevSnapshotSync {
                device: None,
                node_name: Some(top),
                snapshot_file: path.to_string_lossy().into_owned(),
                snapshot_node_name: Some(node),
                format: Some("qcow2".into()),
                mode: Some(qapi::qmp::NewImageMode::existing),
            });
            qmp.execute(&command, SNAPSHOT_TIMEOUT)
                .map_err(|e| VmError::Monitor(e.to_string()))?;
        }
        Ok(())
    }

    fn stop(&mut self, grace: Duration) -> Result<(), VmError> {
        if self.reap().is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + grace;
        if let Some(qmp) = self.qmp.as_mut() {
            // QEMU may exit before it answers; the exit is what counts.
            if let Err(e) = qmp.execute(&qapi::qmp::quit {}, grace) {
                tracing::debug!("QMP quit: {e}");
            }
        }
        if self.wait_until(deadline).is_none() {
            tracing::warn!("QEMU did not quit within {grace:?}; killing it");
            self.kill()?;
        }
        Ok(())
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        if let Err(e) = self.stop(DROP_GRACE) {
            tracing::warn!("stopping QEMU: {e}");
        }
        self.qmp = None;
        if let Err(e) = self.files.remove() {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec::sample("/b/a,b.qcow2")
    }

    fn joined(spec: &VmSpec) -> String {
        let args = command_line(spec, &RuntimeFiles::new(spec));
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn command_line_has_every_device() {
        let line = joined(&spec());
        for part in [
            "-accel tcg",
            "-m 512",
            "-smp 2",
            "-kernel /k/vmlinuz",
            "-append console=ttyS0 quiet",
            "-chardev file,id=con,path=/b/console.log",
            "driver=file,node-name=f0,filename=/b/a,,b.qcow2,cache.direct=off,cache.no-flush=off,read-only=on",
            "driver=qcow2,node-name=d0,file=f0,read-only=on",
            "virtio-blk-pci,drive=d0,serial=b9-root",
            "-fsdev local,id=fs0,path=/src,security_model=none -device",
            "virtio-9p-pci,fsdev=fs0,mount_tag=src",
            "socket,id=agent,path=/r/agent.sock,server=on,wait=off",
            "virtserialport,chardev=agent,name=org.b9.agent.0",
            "socket,id=qmp,path=/r/qmp.sock,server=on,wait=off",
            "-nic none",
            "-no-reboot",
        ] {
            assert!(line.contains(part), "{part:?} missing in {line}");
        }
    }

    #[test]
    fn kvm_and_network() {
        let mut spec = spec();
        spec.accel = Accelerator::Kvm;
        spec.network = true;
        let line = joined(&spec);
        assert!(line.contains("-accel kvm -cpu host"), "{line}");
        assert!(line.contains("-netdev user,id=net0"), "{line}");
        assert!(!line.contains("-nic none"), "{line}");
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let qemu = Qemu {
            binary: "qemu-system-does-not-exist".into(),
        };
        let err = qemu.resolve_binary().unwrap_err().to_string();
        assert!(err.contains("not found in PATH"), "{err}");
        let qemu = Qemu {
            binary: "/nonexistent/qemu".into(),
        };
        assert!(qemu.resolve_binary().is_err());
    }
}
