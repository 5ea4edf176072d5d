//! `b9 farm` (alias `b9 hosts`): each libvirt host of `[libvirt] hosts`
//! (or the one `connection`) as its libvirt sees it.

use std::fmt;

use crate::vm::libvirt::remote;
use crate::vm::settings::HypervisorSettings;

use super::session::Session;

/// What a host's libvirt reports.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// libvirt's version (`major.minor.micro`).
    pub libvirt: String,
    /// QEMU's version.
    pub qemu: String,
    /// CPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Free memory in bytes.
    pub free_bytes: u64,
    /// Whether the host offers KVM domains.
    pub kvm: bool,
    /// The storage pool's capacity and free bytes; `None` when it is missing.
    pub pool: Option<(u64, u64)>,
    /// The names of the b9 domains running.
    pub domains: Vec<String>,
}

/// One host of the farm: its URI and what it reports, or why it cannot be
/// reached. Its `Display` is the paragraph `b9 farm` prints.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostReport {
    /// The libvirt connection URI.
    pub uri: String,
    /// The name of b9's storage pool.
    pub pool: String,
    /// What the host reports, or the connection error.
    pub host: Result<Host, String>,
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = &self.uri;
        let h = match &self.host {
            Ok(h) => h,
            Err(e) => return writeln!(f, "{uri}: unreachable: {e}"),
        };
        writeln!(f, "{uri}: reachable")?;
        writeln!(
            f,
            "  libvirt {}, QEMU {}, {} CPUs, {} memory ({} free), KVM: {}",
            h.libvirt,
            h.qemu,
            h.cpus,
            gib(h.memory_bytes),
            gib(h.free_bytes),
            if h.kvm { "yes" } else { "no" }
        )?;
        let pool = &self.pool;
        match h.pool {
            Some((capacity, free)) => {
                writeln!(f, "  pool {pool}: {} free of {}", gib(free), gib(capacity))?
            }
            None => writeln!(f, "  pool {pool}: missing")?,
        }
        writeln!(f, "  b9 domains running: {}", h.domains.len())?;
        for d in &h.domains {
            writeln!(f, "    {d}")?;
        }
        Ok(())
    }
}

/// Asks each libvirt host of the configuration what it has; empty when the
/// `[vm]` backend is QEMU (no libvirt hosts).
pub fn hosts(session: &Session) -> Vec<HostReport> {
    let (uris, pool) = match &session.vm.hypervisor {
        HypervisorSettings::Libvirt {
            connection,
            hosts,
            pool,
            ..
        } if hosts.is_empty() => (vec![connection.clone()], pool.clone()),
        HypervisorSettings::Libvirt { hosts, pool, .. } => (hosts.clone(), pool.clone()),
        HypervisorSettings::Qemu { .. } => return Vec::new(),
    };
    uris.into_iter()
        .map(|uri| HostReport {
            host: remote::describe(&uri, &pool)
                .map(|h| Host {
                    libvirt: h.libvirt,
                    qemu: h.qemu,
                    cpus: h.cpus,
                    memory_bytes: h.memory_kib * 1024,
                    free_bytes: h.free_bytes,
                    kvm: h.kvm,
                    pool: h.pool,
                    domains: h.domains,
                })
                .map_err(|e| e.to_string()),
            uri,
            pool: pool.clone(),
        })
        .collect()
}

/// Bytes in GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}
