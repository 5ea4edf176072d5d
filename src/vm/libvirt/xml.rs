//! The domain XML for a [`VmSpec`]: `xml-templates/domain.xml` with its
//! `{{KEY}}` placeholders filled in, every value escaped. A local domain
//! names local files (kernel, disks, agent socket, console log); a remote
//! one names the volumes b9 uploaded ([`Placement::Remote`]), and its agent
//! channel and console are opened over the connection (docs/PROTOCOL.md#helper-remote).

use std::path::Path;

use super::Libvirt;
use crate::disk::Format;
use crate::vm::backend::{Accelerator, VmDisk, VmError, VmShare, VmSpec};
use b9_protocol::agent::PORT_NAME;

/// The domain template, with `{{KEY}}` placeholders.
const DOMAIN_TEMPLATE: &str = include_str!("../../../xml-templates/domain.xml");

/// The `network` value for user-mode networking (`<interface
/// type='user'>`: NAT through the host, no libvirt network needed, what a
/// session libvirt offers); any other value names a libvirt network.
pub const USER_NETWORK: &str = "user";

/// Where the domain's files are.
#[derive(Clone, Copy, Debug)]
pub enum Placement<'a> {
    /// On this machine: the spec's paths.
    Local,
    /// On a remote host: volumes of `pool`.
    Remote {
        /// The storage pool.
        pool: &'a str,
        /// The kernel volume's path on the host.
        kernel: &'a str,
        /// The initramfs volume's path on the host.
        initrd: &'a str,
        /// The volume of each of the spec's disks, in order.
        volumes: &'a [String],
    },
}

impl Libvirt {
    /// The domain XML for `spec` on this (local) connection.
    pub fn domain_xml(&self, spec: &VmSpec) -> Result<String, VmError> {
        self.domain_xml_at(spec, Placement::Local)
    }

    /// The domain XML for `spec` with its files at `placement`.
    pub fn domain_xml_at(
        &self,
        spec: &VmSpec,
        placement: Placement<'_>,
    ) -> Result<String, VmError> {
        let interface = self.interface_xml(spec.network)?;
        let (kernel, initrd, disks, channel, console, seclabel) = match placement {
            Placement::Local => (
                path(&spec.kernel)?,
                path(&spec.initrd)?,
                disks_xml(&spec.disks)?,
                local_channel_xml(&spec.agent_socket)?,
                local_console_xml(&spec.console_log)?,
                if is_session(&self.uri) {
                    String::new()
                } else {
                    seclabel_xml()
                },
            ),
            Placement::Remote {
                pool,
                kernel,
                initrd,
                volumes,
            } => (
                text(kernel),
                text(initrd),
                volume_disks_xml(&spec.disks, pool, volumes)?,
                remote_channel_xml(),
                REMOTE_CONSOLE_XML.to_string(),
                String::new(),
            ),
        };
        let values = [
            ("DOMAIN_TYPE", raw(domain_type(spec.accel))),
            ("NAME", text(&spec.name)),
            ("MEMORY_MB", raw(&spec.memory_mb.to_string())),
            ("CPUS", raw(&spec.cpus.to_string())),
            ("KERNEL", kernel),
            ("INITRD", initrd),
            ("CMDLINE", text(&spec.cmdline)),
            ("CPU_XML", raw(cpu_xml(spec.accel))),
            ("DISKS_XML", disks),
            ("SHARES_XML", shares_xml(&spec.shares)?),
            ("CHANNEL_XML", channel),
            ("CONSOLE_XML", console),
            ("INTERFACE_XML", interface),
            ("SECLABEL_XML", seclabel),
        ];
        render(DOMAIN_TEMPLATE, &values)
    }

    /// The `<interface>` for the configured network, if asked for.
    fn interface_xml(&self, network: bool) -> Result<String, VmError> {
        match (network, &self.network) {
            (false, _) => Ok(String::new()),
            (true, Some(name)) if name == USER_NETWORK => Ok(
                "    <interface type='user'>\n      <model type='virtio'/>\n      \
                 <rom enabled='no'/>\n    </interface>"
                    .to_string(),
            ),
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
}

/// The agent's port on a local unix socket b9 connects to.
fn local_channel_xml(socket: &Path) -> Result<String, VmError> {
    Ok(format!(
        "    <channel type='unix'>\n      <source mode='bind' path='{}'/>\n      \
         <target type='virtio' name='{}'/>\n    </channel>",
        path(socket)?,
        escape_xml(PORT_NAME)
    ))
}

/// The agent's port on a socket libvirt places itself, opened by
/// `virDomainOpenChannel`.
fn remote_channel_xml() -> String {
    format!(
        "    <channel type='unix'>\n      <source mode='bind'/>\n      \
         <target type='virtio' name='{}'/>\n    </channel>",
        escape_xml(PORT_NAME)
    )
}

/// The serial console written to a local file.
fn local_console_xml(log: &Path) -> Result<String, VmError> {
    Ok(format!(
        "    <serial type='file'>\n      <source path='{}'/>\n      \
         <target port='0'/>\n    </serial>",
        path(log)?
    ))
}

/// The serial console on a pty, opened by `virDomainOpenConsole`.
const REMOTE_CONSOLE_XML: &str =
    "    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n    \
     <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>";

/// A session daemon's URI (`qemu:///session`): its QEMU runs as the
/// calling user already, and it has no DAC security driver.
fn is_session(uri: &str) -> bool {
    uri.split('?')
        .next()
        .is_some_and(|u| u.trim_end_matches('/').ends_with("/session"))
}

/// QEMU as the calling user, without relabelling (build directories
/// under 0700 parents).
fn seclabel_xml() -> String {
    format!(
        "  <seclabel type='static' model='dac' relabel='no'>\n    \
         <label>+{}:+{}</label>\n  </seclabel>",
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    )
}

/// `type='kvm'` or `type='qemu'` (TCG).
fn domain_type(accel: Accelerator) -> &'static str {
    match accel {
        Accelerator::Kvm => "kvm",
        Accelerator::Tcg => "qemu",
    }
}

/// The host CPU model under KVM; QEMU's default under TCG.
fn cpu_xml(accel: Accelerator) -> &'static str {
    match accel {
        Accelerator::Kvm => "  <cpu mode='host-passthrough'/>",
        Accelerator::Tcg => "",
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

/// The `<disk>` elements of volumes of `pool`, `vda`, `vdb`...
fn volume_disks_xml(disks: &[VmDisk], pool: &str, volumes: &[String]) -> Result<String, VmError> {
    if disks.len() != volumes.len() {
        return Err(VmError::Start(format!(
            "{} disks but {} volumes",
            disks.len(),
            volumes.len()
        )));
    }
    let mut out = String::new();
    for (index, (disk, volume)) in disks.iter().zip(volumes).enumerate() {
        let read_only = if disk.read_only {
            "      <readonly/>\n"
        } else {
            ""
        };
        out.push_str(&format!(
            "    <disk type='volume' device='disk'>\n      \
             <driver name='qemu' type='{format}' cache='writeback'/>\n      \
             <source pool='{pool}' volume='{volume}'/>\n      \
             <target dev='{target}' bus='virtio'/>\n      \
             <serial>{serial}</serial>\n{read_only}    </disk>\n",
            format = format_name(disk.format),
            pool = escape_xml(pool),
            volume = escape_xml(volume),
            target = virtio_disk_name(index),
            serial = escape_xml(&disk.serial),
        ));
    }
    Ok(out)
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
pub(super) fn virtio_disk_name(index: usize) -> String {
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
fn escape_xml(value: &str) -> String {
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
fn render(template: &str, values: &[(&str, String)]) -> Result<String, VmError> {
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
    fn remote_domain_names_volumes_and_opens_channel_and_console() {
        let mut spec = spec();
        spec.shares.clear();
        let volumes = ["b9-c-1-0".to_string()];
        let placement = Placement::Remote {
            pool: "b9",
            kernel: "/pool/b9-appliance-k",
            initrd: "/pool/b9-appliance-i",
            volumes: &volumes,
        };
        let xml = Libvirt::default().domain_xml_at(&spec, placement).unwrap();
        for part in [
            "<kernel>/pool/b9-appliance-k</kernel>",
            "<disk type='volume' device='disk'>",
            "<source pool='b9' volume='b9-c-1-0'/>",
            "<serial>b9-root</serial>\n      <readonly/>",
            "<source mode='bind'/>",
            "<console type='pty'>",
        ] {
            assert!(xml.contains(part), "{part:?} missing in\n{xml}");
        }
        for local in ["/b/", "/r/agent.sock", "seclabel", "/k/vmlinuz"] {
            assert!(!xml.contains(local), "{local:?} in\n{xml}");
        }
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
        let user = Libvirt {
            network: Some(USER_NETWORK.into()),
            ..Libvirt::default()
        };
        let xml = user.domain_xml(&spec).unwrap();
        assert!(xml.contains("<interface type='user'>"), "{xml}");
        assert!(!xml.contains("<source network="), "{xml}");
    }

    #[test]
    fn a_session_domain_has_no_seclabel() {
        let system = Libvirt::default().domain_xml(&spec()).unwrap();
        assert!(
            system.contains("<seclabel type='static' model='dac'"),
            "{system}"
        );
        let session = Libvirt {
            uri: "qemu:///session".into(),
            ..Libvirt::default()
        };
        let xml = session.domain_xml(&spec()).unwrap();
        assert!(!xml.contains("<seclabel"), "{xml}");
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
