//! What `b9 farm` shows of a host: versions, CPUs, memory, KVM, the pool's
//! space and the b9 domains running.

use b9_protocol::libvirt::HostInfo;
use virt::connect::Connect;

/// Describes the host of `conn`; what cannot be asked stays empty.
pub fn describe(conn: &Connect, pool: &str) -> HostInfo {
    let mut info = HostInfo {
        libvirt: conn.lib_version().map(version).unwrap_or_default(),
        qemu: conn.hyp_version().map(version).unwrap_or_default(),
        free_bytes: conn.free_memory().unwrap_or(0),
        ..HostInfo::default()
    };
    if let Ok(node) = conn.node_info() {
        info.cpus = node.cpus;
        info.memory_kib = node.memory;
    }
    info.kvm = conn
        .capabilities()
        .is_ok_and(|caps| caps.contains("<domain type='kvm'"));
    info.pool = conn
        .lookup_storage_pool_by_name(pool)
        .and_then(|p| p.info())
        .ok()
        .map(|i| (i.capacity, i.available));
    info.domains = conn
        .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        .map(|domains| {
            domains
                .iter()
                .filter_map(|d| d.name().ok())
                .filter(|n| n.starts_with("b9-"))
                .collect()
        })
        .unwrap_or_default();
    info
}

/// libvirt's `major * 1_000_000 + minor * 1000 + micro` as text.
fn version(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000)
}
