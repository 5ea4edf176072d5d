//! Checkpoints of a local domain (`Request::Snapshot`, protocol v4): a
//! disk-only external snapshot without metadata into qcow2 overlays b9
//! created, so each disk goes on writing into its overlay and the file it
//! wrote to keeps its state (docs/PROTOCOL.md#helper-snapshot).
//!
//! libvirt 9 takes such snapshots of transient domains. The overlays are
//! reused as they are (`REUSE_EXT`): libvirt attaches the running disk as
//! their backing node and leaves the backing file name in their headers
//! alone (b9 wrote there the name of the cached layer they will sit on).

use b9_protocol::libvirt::SnapshotDisk;
use virt::domain::Domain;

use crate::volume::escape;

/// The snapshot flags: disks only, no snapshot metadata kept by libvirt
/// (a transient domain has nowhere to keep it), b9's overlays used.
const FLAGS: u32 = virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    | virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
    | virt::sys::VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT;

/// Moves the disks of `domain` that have an overlay on to it, all in one
/// snapshot.
pub fn take(domain: &Domain, disks: &[SnapshotDisk]) -> Result<(), String> {
    if disks.iter().all(|d| d.overlay.is_none()) {
        return Ok(());
    }
    domain
        .create_snapshot_xml(&snapshot_xml(disks), FLAGS)
        .map(drop)
        .map_err(|e| e.message().to_string())
}

/// The `<domainsnapshot>`: each disk with its overlay, or `snapshot='no'`
/// (libvirt would otherwise snapshot it too, into a file of its choosing).
fn snapshot_xml(disks: &[SnapshotDisk]) -> String {
    let mut xml = String::from("<domainsnapshot>\n  <disks>\n");
    for d in disks {
        let target = escape(&d.target);
        xml.push_str(&match &d.overlay {
            Some(file) => format!(
                "    <disk name='{target}' snapshot='external' type='file'>\n      \
                 <driver type='qcow2'/>\n      <source file='{}'/>\n    </disk>\n",
                escape(file)
            ),
            None => format!("    <disk name='{target}' snapshot='no'/>\n"),
        });
    }
    xml.push_str("  </disks>\n</domainsnapshot>\n");
    xml
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn disks_without_an_overlay_are_left_out_and_names_escaped() {
        let xml = snapshot_xml(&[
            SnapshotDisk {
                target: "vda".into(),
                overlay: Some("/c/a'b&.qcow2".into()),
            },
            SnapshotDisk {
                target: "vdb".into(),
                overlay: None,
            },
        ]);
        assert!(
            xml.contains("<disk name='vda' snapshot='external' type='file'>"),
            "{xml}"
        );
        assert!(
            xml.contains("<source file='/c/a&apos;b&amp;.qcow2'/>"),
            "{xml}"
        );
        assert!(xml.contains("<disk name='vdb' snapshot='no'/>"), "{xml}");
    }
}
