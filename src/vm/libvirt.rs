//! The `libvirt` backend: renders `xml-templates/domain.xml` into a
//! transient domain and creates it on a libvirt connection (the `virt`
//! crate), `qemu:///system` by default or a remote URI.
//!
//! The domain runs QEMU as the calling user (a static DAC seclabel without
//! relabelling), so it can open images in build directories under 0700
//! parents and create the agent socket there. A guest panic (pvpanic) leaves
//! the domain crashed (`on_crash` = preserve) so [`Vm::state`] can say so;
//! stopping destroys the domain, which removes a transient domain entirely.

use std::path::{Path, PathBuf};
use std::time::Duration;

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;
use virt::error::ErrorNumber;

use super::backend::{Accel, Backend, Vm, VmDisk, VmError, VmShare, VmSpec, VmState};
use super::protocol::PORT_NAME;
use crate::disk::Format;

/// The connection URI used when none is configured.
pub const DEFAULT_URI: &str = "qemu:///system";

/// The domain template, with `{{KEY}}` placeholders.
const DOMAIN_TEMPLATE: &str = include_str!("../../xml-templates/domain.xml");

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

impl Libvirt {
    /// The domain XML for `spec` on this connection.
    pub fn domain_xml(&self, spec: &VmSpec) -> Result<String, VmError> {
        let interface = self.interface_xml(spec.network)?;
        let uid = rustix::process::getuid().as_raw().to_string();
        let gid = rustix::process::getgid().as_raw().to_string();
        let values = [
            ("DOMAIN_TYPE", raw(domain_type(spec.accel))),
            ("NAME", text(&spec.name)),
            ("MEMORY_MB", raw(&spec.memory_mb.to_string())),
            ("CPUS", raw(&spec.cpus.to_string())),
            ("KERNEL", path(&spec.kernel)?),
            ("INITRD", path(&spec.initrd)?),
            ("CMDLINE", text(&spec.cmdline)),
            ("CPU_XML", raw(cpu_xml(spec.accel))),
            ("DISKS_XML", disks_xml(&spec.disks)?),
            ("SHARES_XML", shares_xml(&spec.shares)?),
            ("AGENT_SOCKET", path(&spec.agent_socket)?),
            ("AGENT_PORT", text(PORT_NAME)),
            ("CONSOLE_LOG", path(&spec.console_log)?),
            ("INTERFACE_XML", interface),
            ("UID", raw(&uid)),
            ("GID", raw(&gid)),
        ];
        render(DOMAIN_TEMPLATE, &values)
    }

    /// The `<interface>` for the configured network, if asked for.
    fn interface_xml(&self, network: bool) -> Result<String, VmError> {
        match (network, &self.network) {
            (false, _) => Ok(String::new()),
            (true, Some(name)) => Ok(format!(
                "    <interface type='network'>\n      <source network='{}'/>\n      \
                 <model type='virtio'/>\n      <rom enabled='no'/>\n    </interface>",
                escape_xml(name)
            )),
            (true, None) => Err(VmError::Start(
                "the VM needs a network, but no libvirt network is configured \
                 (set `network` in the [libvirt] section, e.g. `default`)"
                    .to_string(),
            )),
        }
    }

    /// Opens the connection with a helpful error.
    fn connect(&self) -> Result<Connect, VmError> {
        // libvirt's default handler prints every error to stderr; b9
        // reports them itself.
        virt::error::clear_error_callback();
        Connect::open(Some(&self.uri)).map_err(|e| {
            VmError::Start(format!(
                "cannot connect to libvirt at {}: {}\nhint: is libvirtd running? \
                 Start it with `virtlogd -d; libvirtd -d` (or your service manager)",
                self.uri,
                e.message()
            ))
        })
    }
}

impl Backend for Libvirt {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn start(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmError> {
        let xml = self.domain_xml(spec)?;
        let conn = self.connect()?;
        remove_if_exists(&spec.agent_socket).map_err(VmError::Start)?;
        tracing::debug!("creating libvirt domain on {}:\n{xml}", self.uri);
        let domain = conn.create_domain_xml(&xml, 0).map_err(|e| {
            VmError::Start(format!(
                "libvirt at {} cannot start the domain {}: {}",
                self.uri,
                spec.name,
                e.message()
            ))
        })?;
        let vm = LibvirtVm {
            domain,
            conn,
            uri: self.uri.clone(),
            agent_socket: spec.agent_socket.clone(),
        };
        vm.check_agent_socket()?;
        Ok(Box::new(vm))
    }
}

/// `type='kvm'` or `type='qemu'` (TCG).
fn domain_type(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "qemu",
    }
}

/// The host CPU model under KVM; QEMU's default under TCG.
fn cpu_xml(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "  <cpu mode='host-passthrough'/>",
        Accel::Tcg => "",
    }
}

/// The `<disk>` elements, `vda`, `vdb`...
fn disks_xml(disks: &[VmDisk]) -> Result<String, VmError> {
    let mut out = String::new();
    for (index, disk) in disks.iter().enumerate() {
        out.push_str(&disk_xml(index, disk)?);
    }
    Ok(out)
}

/// One virtio disk.
fn disk_xml(index: usize, disk: &VmDisk) -> Result<String, VmError> {
    let read_only = if disk.read_only {
        "      <readonly/>\n"
    } else {
        ""
    };
    Ok(format!(
        "    <disk type='file' device='disk'>\n      \
         <driver name='qemu' type='{format}' cache='writeback'/>\n      \
         <source file='{source}'/>\n      \
         <target dev='{target}' bus='virtio'/>\n      \
         <serial>{serial}</serial>\n{read_only}    </disk>\n",
        format = format_name(disk.format),
        source = path(&disk.path)?,
        target = virtio_disk_name(index),
        serial = escape_xml(&disk.serial),
    ))
}

/// libvirt's name for an image format.
fn format_name(format: Format) -> &'static str {
    match format {
        Format::Raw => "raw",
        Format::Qcow2 => "qcow2",
        Format::Vmdk => "vmdk",
    }
}

/// `vda`..`vdz`, `vdaa`...: the kernel's naming for the index.
fn virtio_disk_name(index: usize) -> String {
    let mut suffix = Vec::new();
    let mut n = index;
    loop {
        suffix.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    suffix.reverse();
    format!("vd{}", String::from_utf8_lossy(&suffix))
}

/// The 9p `<filesystem>` elements.
fn shares_xml(shares: &[VmShare]) -> Result<String, VmError> {
    let mut out = String::new();
    for share in shares {
        out.push_str(&share_xml(share)?);
    }
    Ok(out)
}

/// One 9p share. `squash` is QEMU's `security_model=none`, as the `qemu`
/// backend uses: files are created as QEMU's user, ownership changes
/// that fail are ignored.
fn share_xml(share: &VmShare) -> Result<String, VmError> {
    let read_only = if share.read_only {
        "      <readonly/>\n"
    } else {
        ""
    };
    Ok(format!(
        "    <filesystem type='mount' accessmode='squash'>\n      \
         <source dir='{source}'/>\n      \
         <target dir='{tag}'/>\n{read_only}    </filesystem>\n",
        source = path(&share.path)?,
        tag = escape_xml(&share.tag),
    ))
}

/// A value as it is (already XML).
fn raw(value: &str) -> String {
    value.to_string()
}

/// A text value, escaped.
fn text(value: &str) -> String {
    escape_xml(value)
}

/// A path, escaped; libvirt takes UTF-8 only.
fn path(value: &Path) -> Result<String, VmError> {
    value
        .to_str()
        .map(escape_xml)
        .ok_or_else(|| VmError::Start(format!("libvirt needs UTF-8 paths: {}", value.display())))
}

/// Escapes the five XML special characters.
pub fn escape_xml(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces each `{{KEY}}` in `template` with its value, in one pass (a
/// value is never scanned again). An unknown key is an error.
pub fn render(template: &str, values: &[(&str, String)]) -> Result<String, VmError> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| VmError::Start("unclosed {{ in the domain template".to_string()))?;
        let key = &after[..end];
        let value = values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| {
                VmError::Start(format!(
                    "unknown placeholder {{{{{key}}}}} in the domain template"
                ))
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Removes a file; a missing one is fine.
fn remove_if_exists(path: &PathBuf) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// A transient domain.
struct LibvirtVm {
    // The domain's reference goes before the connection's.
    domain: Domain,
    conn: Connect,
    uri: String,
    agent_socket: PathBuf,
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

    /// The state from libvirt's answer.
    fn state_of(&self, answer: Result<DomainState, virt::error::Error>) -> VmState {
        match answer {
            Ok(DomainState::Crashed) => VmState::Panicked,
            Ok(DomainState::Shutoff) => VmState::Gone("the domain is shut off".to_string()),
            Ok(_) => VmState::Running,
            Err(e) if is_no_domain(&e) => VmState::Gone("the domain no longer exists".to_string()),
            Err(e) => VmState::Gone(format!("libvirt at {}: {}", self.uri, e.message())),
        }
    }
}

/// The domain does not exist (any more).
fn is_no_domain(error: &virt::error::Error) -> bool {
    matches!(error.code(), Enum::Known(ErrorNumber::NoDomain))
}

/// Destroying a domain that is already gone or not running.
fn is_already_gone(error: &virt::error::Error) -> bool {
    is_no_domain(error) || matches!(error.code(), Enum::Known(ErrorNumber::OperationInvalid))
}

impl Vm for LibvirtVm {
    fn state(&mut self) -> VmState {
        if !self.conn.is_alive().unwrap_or(false) {
            return VmState::Gone(format!("lost the connection to libvirt at {}", self.uri));
        }
        let answer = match self.domain.state() {
            Ok((Enum::Known(state), _reason)) => Ok(state),
            // virt 0.5 drops virDomainGetState's error and reports an
            // unknown state: ask in a way that carries the error.
            Ok((Enum::Unknown(_), _reason)) => self.domain.is_active().map(|active| {
                if active {
                    DomainState::Running
                } else {
                    DomainState::Shutoff
                }
            }),
            Err(e) => Err(e),
        };
        self.state_of(answer)
    }

    fn stop(&mut self, _grace: Duration) -> Result<(), VmError> {
        // destroy() is synchronous: libvirt kills QEMU (TERM, then KILL).
        match self.domain.destroy() {
            Ok(()) => Ok(()),
            Err(e) if is_already_gone(&e) => Ok(()),
            Err(e) => Err(VmError::Monitor(format!(
                "libvirt at {} cannot destroy the domain: {}",
                self.uri,
                e.message()
            ))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            name: "b9-<x>".into(),
            cmdline: "console=ttyS0 a='b'".into(),
            ..VmSpec::sample("/b/a&b {{NAME}}.qcow2")
        }
    }

    #[test]
    fn domain_xml_escapes_and_has_every_device() {
        let xml = Libvirt::default().domain_xml(&spec()).unwrap();
        for part in [
            "<domain type='qemu'>",
            "<name>b9-&lt;x&gt;</name>",
            "<cmdline>console=ttyS0 a=&apos;b&apos;</cmdline>",
            "<source file='/b/a&amp;b {{NAME}}.qcow2'/>",
            "<driver name='qemu' type='qcow2' cache='writeback'/>",
            "<target dev='vda' bus='virtio'/>",
            "<serial>b9-root</serial>\n      <readonly/>",
            "<source dir='/src'/>",
            "<target dir='src'/>",
            "<source mode='bind' path='/r/agent.sock'/>",
            "<target type='virtio' name='org.b9.agent.0'/>",
            "<source path='/b/console.log'/>",
            "<panic model='isa'/>",
            "<seclabel type='static' model='dac' relabel='no'>",
        ] {
            assert!(xml.contains(part), "{part:?} missing in\n{xml}");
        }
        assert!(!xml.contains("<interface"));
    }

    #[test]
    fn network_needs_a_configured_network() {
        let mut spec = spec();
        spec.network = true;
        let err = Libvirt::default()
            .domain_xml(&spec)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no libvirt network is configured"), "{err}");
        let libvirt = Libvirt {
            network: Some("default".into()),
            ..Libvirt::default()
        };
        let xml = libvirt.domain_xml(&spec).unwrap();
        assert!(xml.contains("<source network='default'/>"), "{xml}");
    }

    #[test]
    fn disk_names_follow_the_kernel() {
        assert_eq!(virtio_disk_name(0), "vda");
        assert_eq!(virtio_disk_name(25), "vdz");
        assert_eq!(virtio_disk_name(26), "vdaa");
        assert_eq!(virtio_disk_name(27), "vdab");
        assert_eq!(virtio_disk_name(26 * 27), "vdaaa");
    }

    #[test]
    fn render_rejects_unknown_placeholders() {
        assert!(render("a {{X}} b", &[]).is_err());
        assert!(render("a {{X", &[("X", "1".into())]).is_err());
        let out = render("{{A}}{{B}}", &[("A", "{{B}}".into()), ("B", "2".into())]).unwrap();
        assert_eq!(out, "{{B}}2");
    }
}
