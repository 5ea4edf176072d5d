//! Network settings with the classic ioctls (no netlink, no tools), static
//! from the job or from a DHCP lease (`dhcp.rs`), and the script's
//! resolv.conf.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use b9_protocol::agent::Network;

use crate::dhcp;
use crate::disks::{Mounts, SYSROOT};
use crate::port::log;
use crate::sys;

/// `struct ifreq` with the address or flags member.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

/// `struct rtentry` (x86_64 layout).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// Parses `a.b.c.d/len` into the address and its netmask.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "24"));
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("bad IPv4 address {s:?}"))?;
    let len: u32 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("bad prefix length in {s:?}"))?;
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Ok((addr, Ipv4Addr::from(mask)))
}

/// What an interface is given: from the job (static) or from a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The interface address.
    pub address: Ipv4Addr,
    /// Its netmask.
    pub mask: Ipv4Addr,
    /// The default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers for the script's resolv.conf, possibly none.
    pub dns: Vec<Ipv4Addr>,
}

impl Settings {
    /// The static settings of the job.
    pub fn from_job(net: &Network) -> Result<Settings, String> {
        let (address, mask) = parse_cidr(&net.address)?;
        let gateway = optional_addr(&net.gateway, "gateway")?;
        let dns = optional_addr(&net.dns, "DNS server")?;
        Ok(Settings {
            address,
            mask,
            gateway,
            dns: dns.into_iter().collect(),
        })
    }

    /// The settings of a DHCP lease.
    pub fn from_lease(lease: &dhcp::Lease) -> Settings {
        Settings {
            address: lease.address,
            mask: lease.mask,
            gateway: lease.router,
            dns: lease.dns.clone(),
        }
    }
}

/// An address field that may be empty.
fn optional_addr(text: &str, what: &str) -> Result<Option<Ipv4Addr>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| format!("bad {what} {text:?}"))
}

/// Brings up lo and the first other interface with the job's static
/// settings or a DHCP lease, and gives the script a resolv.conf naming the
/// DNS servers.
pub fn configure(net: &Network, mounts: &mut Mounts) -> Result<(), String> {
    let iface =
        first_interface(Path::new("/sys/class/net")).ok_or("no network interface besides lo")?;
    let sock = socket().map_err(|e| format!("socket: {e}"))?;
    let fd = sock.as_raw_fd();
    set_up(fd, "lo").map_err(|e| format!("lo up: {e}"))?;
    let settings = if net.dhcp {
        set_up(fd, &iface).map_err(|e| format!("{iface} up: {e}"))?;
        let lease = dhcp::obtain(&iface)?;
        log(format!(
            "DHCP: lease of {} from {}",
            lease.address, lease.server
        ));
        Settings::from_lease(&lease)
    } else {
        Settings::from_job(net)?
    };
    apply(fd, &iface, &settings)?;
    resolv_conf(&settings.dns, mounts)
}

/// Gives `iface` its address, netmask and default route.
fn apply(fd: i32, iface: &str, s: &Settings) -> Result<(), String> {
    set_addr(fd, iface, libc::SIOCSIFADDR, s.address)
        .map_err(|e| format!("{iface} address: {e}"))?;
    set_addr(fd, iface, libc::SIOCSIFNETMASK, s.mask)
        .map_err(|e| format!("{iface} netmask: {e}"))?;
    set_up(fd, iface).map_err(|e| format!("{iface} up: {e}"))?;
    if let Some(gateway) = s.gateway {
        add_default_route(fd, gateway).map_err(|e| format!("default route: {e}"))?;
    }
    let via = s
        .gateway
        .map_or_else(|| "no gateway".to_string(), |g| format!("via {g}"));
    let dns: Vec<String> = s.dns.iter().map(Ipv4Addr::to_string).collect();
    log(format!(
        "network: {iface} {}/{} {via}, DNS [{}]",
        s.address,
        dhcp::prefix_len(s.mask),
        dns.join(", ")
    ));
    Ok(())
}

/// The first interface other than `lo`, by name.
pub fn first_interface(class: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(class)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = sys::check(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `fd` is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> io::Result<IfReq> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    let b = name.as_bytes();
    if b.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    req.name[..b.len()].copy_from_slice(b);
    Ok(req)
}

fn sockaddr_in(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; plain data.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn set_addr(fd: i32, name: &str, request: libc::c_ulong, addr: Ipv4Addr) -> io::Result<()> {
    let mut req = ifreq(name)?;
    let sa = sockaddr_in(addr);
    // SAFETY: copying a 16-byte sockaddr into the 24-byte union.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&sa as *const libc::sockaddr).cast::<u8>(),
            req.data.as_mut_ptr(),
            std::mem::size_of::<libc::sockaddr>(),
        )
    };
    // SAFETY: a valid ifreq for the request.
    sys::check(unsafe { libc::ioctl(fd, request, &mut req) }).map(drop)
}

fn set_up(fd: i32, name: &str) -> io::Result<()> {
    let mut req = ifreq(name)?;
    // SAFETY: a valid ifreq.
    sys::check(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) })?;
    let flags =
        i16::from_ne_bytes([req.data[0], req.data[1]]) | (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: a valid ifreq.
    sys::check(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req) }).map(drop)
}

fn add_default_route(fd: i32, gateway: Ipv4Addr) -> io::Result<()> {
    let mut rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr_in(gateway),
        rt_genmask: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        rt_flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: std::ptr::null_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: a valid rtentry.
    sys::check(unsafe { libc::ioctl(fd, libc::SIOCADDRT, &mut rt) }).map(drop)
}

/// Lays a resolv.conf naming `dns` over the image's, without changing the
/// image: a bind mount over the file (or over what its link points at).
fn resolv_conf(dns: &[Ipv4Addr], mounts: &mut Mounts) -> Result<(), String> {
    if dns.is_empty() {
        log("no DNS server: leaving the image's resolv.conf alone");
        return Ok(());
    }
    let Some(target) = resolv_target(Path::new(SYSROOT)) else {
        log("the image has no /etc/resolv.conf: leaving DNS alone");
        return Ok(());
    };
    let text = resolv_text(dns);
    let ours = PathBuf::from("/run/b9-resolv.conf");
    std::fs::write(&ours, &text).map_err(|e| e.to_string())?;
    if !target.exists() {
        // A dangling link into the new root's fresh /run or /tmp.
        if let Some(parent) = target.parent() {
            sys::mkdir_p(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&target, &text).map_err(|e| e.to_string())?;
        return Ok(());
    }
    sys::mount(&ours.to_string_lossy(), &target, "", libc::MS_BIND, "")
        .map_err(|e| e.to_string())?;
    mounts.push(target);
    Ok(())
}

/// `nameserver` lines for `dns`.
fn resolv_text(dns: &[Ipv4Addr]) -> String {
    dns.iter().map(|d| format!("nameserver {d}\n")).collect()
}

/// Where the image's resolv.conf really is (host path), following links
/// inside the root; a dangling link counts only into /run or /tmp.
fn resolv_target(root: &Path) -> Option<PathBuf> {
    let etc = crate::users::resolve_in_root(root, "/etc")?;
    let file = etc.join("resolv.conf");
    let meta = std::fs::symlink_metadata(&file).ok()?;
    if !meta.file_type().is_symlink() {
        return Some(file);
    }
    let resolved = crate::users::resolve_partial(root, "/etc/resolv.conf")?;
    let scratch = [root.join("run"), root.join("tmp")];
    (resolved.exists() || scratch.iter().any(|s| resolved.starts_with(s))).then_some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("10.0.2.15/24"),
            Ok((Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            parse_cidr("192.168.1.7/0").map(|r| r.1),
            Ok(Ipv4Addr::UNSPECIFIED)
        );
        assert!(parse_cidr("10.0.2.15/33").is_err());
        assert!(parse_cidr("nonsense/8").is_err());
    }

    #[test]
    fn static_settings() {
        let net = Network {
            dhcp: false,
            address: "10.0.2.15/24".into(),
            gateway: "10.0.2.2".into(),
            dns: "10.0.2.3".into(),
        };
        assert_eq!(
            Settings::from_job(&net),
            Ok(Settings {
                address: Ipv4Addr::new(10, 0, 2, 15),
                mask: Ipv4Addr::new(255, 255, 255, 0),
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            })
        );
        let bare = Network {
            gateway: String::new(),
            dns: " ".into(),
            ..net.clone()
        };
        let s = Settings::from_job(&bare);
        assert_eq!(s.map(|s| (s.gateway, s.dns)), Ok((None, vec![])));
        let bad = Network {
            gateway: "10.0.2".into(),
            ..net
        };
        assert!(Settings::from_job(&bad).is_err());
    }

    #[test]
    fn lease_settings_and_resolv_text() {
        let dns = vec![Ipv4Addr::new(192, 168, 122, 1), Ipv4Addr::new(9, 9, 9, 9)];
        let lease = dhcp::Lease {
            address: Ipv4Addr::new(192, 168, 122, 57),
            mask: Ipv4Addr::new(255, 255, 255, 0),
            router: Some(Ipv4Addr::new(192, 168, 122, 1)),
            dns: dns.clone(),
            server: Ipv4Addr::new(192, 168, 122, 1),
        };
        let s = Settings::from_lease(&lease);
        assert_eq!((s.address, s.gateway), (lease.address, lease.router));
        assert_eq!(
            resolv_text(&s.dns),
            "nameserver 192.168.122.1\nnameserver 9.9.9.9\n"
        );
    }

    #[test]
    fn first_non_lo_interface() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        for n in ["lo", "eth1", "eth0"] {
            std::fs::create_dir(d.path().join(n))?;
        }
        assert_eq!(first_interface(d.path()).as_deref(), Some("eth0"));
        Ok(())
    }

    #[test]
    fn rtentry_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn resolv_conf_links() -> io::Result<()> {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir()?;
        let r = d.path();
        std::fs::create_dir_all(r.join("etc"))?;
        assert_eq!(resolv_target(r), None);
        symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            r.join("etc/resolv.conf"),
        )?;
        assert_eq!(
            resolv_target(r),
            Some(r.join("run/systemd/resolve/stub-resolv.conf"))
        );
        std::fs::remove_file(r.join("etc/resolv.conf"))?;
        symlink("/nowhere/resolv.conf", r.join("etc/resolv.conf"))?;
        assert_eq!(resolv_target(r), None);
        Ok(())
    }
}
