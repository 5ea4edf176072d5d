//! `b9 farm` (alias `b9 hosts`): each libvirt host of `[libvirt] hosts`
//! (or the one `connection`) as its libvirt sees it.

use std::io::Write;

use crate::vm::libvirt::remote;
use crate::vm::settings::HypervisorSettings;

use super::session::Session;

/// Writes one paragraph per host to `out`: reachable, versions, CPUs,
/// memory, KVM, pool space, b9 domains running.
pub fn show(session: &Session, out: &mut dyn Write) -> std::io::Result<()> {
    let (uris, pool) = match &session.vm.hypervisor {
        HypervisorSettings::Libvirt {
            connection,
            hosts,
            pool,
            ..
        } if hosts.is_empty() => (vec![connection.clone()], pool.clone()),
        HypervisorSettings::Libvirt { hosts, pool, .. } => (hosts.clone(), pool.clone()),
        HypervisorSettings::Qemu { .. } => {
            return writeln!(out, "no libvirt hosts: [vm] backend is qemu");
        }
    };
    for uri in uris {
        match remote::describe(&uri, &pool) {
            Ok(h) => {
                writeln!(out, "{uri}: reachable")?;
                writeln!(
                    out,
                    "  libvirt {}, QEMU {}, {} CPUs, {} memory ({} free), KVM: {}",
                    h.libvirt,
                    h.qemu,
                    h.cpus,
                    gib(h.memory_kib * 1024),
                    gib(h.free_bytes),
                    if h.kvm { "yes" } else { "no" }
                )?;
                match h.pool {
                    Some((capacity, free)) => writeln!(
                        out,
                        "  pool {pool}: {} free of {}",
                        gib(free),
                        gib(capacity)
                    )?,
                    None => writeln!(out, "  pool {pool}: missing")?,
                }
                writeln!(out, "  b9 domains running: {}", h.domains.len())?;
                for d in &h.domains {
                    writeln!(out, "    {d}")?;
                }
            }
            Err(e) => writeln!(out, "{uri}: unreachable: {e}")?,
        }
    }
    Ok(())
}

/// Bytes in GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}
