//! The guest's optional network, end to end under TCG: a script fetches a
//! file from an HTTP server the test runs on this machine, over QEMU's
//! user-mode networking (static settings; the host's loopback is 10.0.2.2)
//! and over libvirt's `default` network (the agent's DHCP client; the
//! server listens on the network's gateway address). Without a network the
//! guest has no interface besides lo.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::project::*;

/// How long the test's HTTP server waits for requests before it stops.
const SERVE_FOR: Duration = Duration::from_secs(600);
/// How many requests it answers at most.
const MAX_REQUESTS: usize = 8;

/// What the server hands out: big enough for many TCP segments.
fn body() -> String {
    (1..=20_000).map(|i| format!("line {i}\n")).collect()
}

/// A tiny HTTP/1.0 server: `GET /file` gets [`body`], anything else 404.
/// It stops by itself after [`MAX_REQUESTS`] or [`SERVE_FOR`].
struct Server {
    port: u16,
    /// (peer, request line) of each request.
    seen: Arc<Mutex<Vec<(SocketAddr, String)>>>,
}

impl Server {
    fn start(addr: IpAddr) -> Server {
        let listener = TcpListener::bind((addr, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || serve(&listener, &log));
        Server { port, seen }
    }

    fn requests(&self) -> Vec<(SocketAddr, String)> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(listener: &TcpListener, seen: &Mutex<Vec<(SocketAddr, String)>>) {
    let deadline = Instant::now() + SERVE_FOR;
    let mut served = 0;
    while served < MAX_REQUESTS && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, peer)) => {
                served += 1;
                if let Some(line) = answer(stream) {
                    seen.lock().unwrap().push((peer, line));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => return,
        }
    }
}

/// Reads one request's head, answers it; the request line.
fn answer(mut stream: TcpStream) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or_default().to_string();
    let (status, content) = if line.starts_with("GET /file ") {
        ("200 OK", body())
    } else {
        ("404 Not Found", "not here\n".to_string())
    };
    let reply = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{content}",
        content.len()
    );
    stream.write_all(reply.as_bytes()).ok()?;
    Some(line)
}

/// A script that shows the guest's interfaces and resolv.conf, then
/// fetches `url` into the data disk (raw, exported) with busybox wget.
fn fetch_script(url: &str) -> String {
    format!(
        r#"Artifact (IID "net")
  (VmImages
     [ ImageTarget Transient
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     , ImageTarget (LocalFile (Image "out/data.raw" Raw Ext4) KeepSize)
         (EmptyImage "data" Ext4 Raw (ImageSize 64 MB)) (MountPoint "/data")
     ]
     (VmScript X86_64 []
        (Begin
           [ Run "echo" ["interfaces:", "$$(ls", "/sys/class/net)"]
           , Run "sed" ["'s/^/resolv: /'", "/etc/resolv.conf"]
           , Run "wget" ["-O", "/data/got", "{url}"]
           ])))"#
    )
}

/// Gives the project's root image an /etc/resolv.conf of its own, which
/// the guest's settings cover (bind mount) while the script runs.
fn add_resolv_conf(p: &Project) {
    let own = p.p("own-resolv.conf");
    std::fs::write(&own, "nameserver 127.0.0.53\n").unwrap();
    let cmd = format!("write {} /etc/resolv.conf", s(&own));
    ok("debugfs", &["-w", "-R", &cmd, &s(&p.p("root.raw"))]);
    assert_eq!(
        debugfs_cat(&p.p("root.raw"), "/etc/resolv.conf"),
        "nameserver 127.0.0.53\n"
    );
}

/// Builds `fetch_script(url)` with the agent's messages in the log.
fn build_fetch(p: &Project, url: &str) -> String {
    std::fs::write(p.p("net.b9"), fetch_script(url)).unwrap();
    let out = p.b9(&["-v", "build", "-f", "net.b9"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for line in log.lines().filter(|l| {
        [
            "DHCP",
            "network:",
            "interfaces:",
            "resolv:",
            "wget",
            "saved",
        ]
        .iter()
        .any(|k| l.contains(k))
    }) {
        println!("{line}");
    }
    log
}

/// The fetched file is on the exported data disk, intact, and the root
/// image's own resolv.conf was left alone.
fn check_fetched(p: &Project, server: &Server, log: &str) {
    let data = p.p("out/data.raw");
    e2fsck_clean(&data);
    assert!(debugfs_cat(&data, "/got") == body(), "the file differs");
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|(_, l)| l.starts_with("GET /file HTTP/1.")),
        "{requests:?}\n{log}"
    );
    assert_eq!(
        debugfs_cat(&p.p("root.raw"), "/etc/resolv.conf"),
        "nameserver 127.0.0.53\n"
    );
}

#[test]
fn a_qemu_guest_fetches_from_the_host_over_user_networking() {
    let server = Server::start(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let p = Project::with_network("qemu", "", 600, "user");
    add_resolv_conf(&p);
    let log = build_fetch(&p, &format!("http://10.0.2.2:{}/file", server.port));
    assert!(log.contains("interfaces: eth0 lo"), "{log}");
    assert!(
        log.contains("network: eth0 10.0.2.15/24 via 10.0.2.2, DNS [10.0.2.3]"),
        "{log}"
    );
    assert!(log.contains("resolv: nameserver 10.0.2.3"), "{log}");
    check_fetched(&p, &server, &log);
    no_vm_left(&p);
}

#[test]
fn a_libvirt_guest_gets_a_dhcp_lease_and_fetches_from_the_gateway() {
    let gateway = default_network_gateway();
    let server = Server::start(IpAddr::V4(gateway));
    let p = Project::with_network("libvirt", "", 600, "default");
    add_resolv_conf(&p);
    let log = build_fetch(&p, &format!("http://{gateway}:{}/file", server.port));
    assert!(log.contains("interfaces: eth0 lo"), "{log}");
    let lease = log
        .lines()
        .find_map(|l| l.split("DHCP: lease of ").nth(1))
        .unwrap_or_else(|| panic!("no lease in the log: {log}"));
    let (address, from) = lease.split_once(" from ").unwrap();
    let address: Ipv4Addr = address.trim().parse().unwrap();
    assert_eq!(from.trim(), gateway.to_string(), "{log}");
    assert_eq!(address.octets()[..3], gateway.octets()[..3], "{log}");
    let settings = format!("network: eth0 {address}/24 via {gateway}, DNS [{gateway}]");
    assert!(log.contains(&settings), "{settings}\n{log}");
    assert!(
        log.contains(&format!("resolv: nameserver {gateway}")),
        "{log}"
    );
    check_fetched(&p, &server, &log);
    let peers: Vec<IpAddr> = server.requests().iter().map(|(a, _)| a.ip()).collect();
    assert!(peers.contains(&IpAddr::V4(address)), "{peers:?}");
    no_vm_left(&p);
}

#[test]
fn without_a_network_the_guest_has_only_lo() {
    let p = Project::new("qemu", "", 600);
    let out = p.build(
        "alone.b9",
        r#"Artifact (IID "alone")
  (VmImages
     [ ImageTarget Transient
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     ]
     (VmScript X86_64 [] (Run "echo" ["interfaces:", "$$(ls", "/sys/class/net)"])))"#,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("> interfaces:"))
        .unwrap_or_default();
    assert!(line.ends_with("interfaces: lo"), "{log}");
    no_vm_left(&p);
}

/// Makes sure libvirt's `default` network is defined and active (as
/// scripts/start-libvirtd does) and returns its gateway address.
fn default_network_gateway() -> Ipv4Addr {
    const URI: &str = "qemu:///system";
    let list = ok("virsh", &["-c", URI, "net-list", "--all", "--name"]);
    if !list.lines().any(|l| l.trim() == "default") {
        let xml = Path::new("/usr/share/libvirt/networks/default.xml");
        ok("virsh", &["-c", URI, "net-define", &s(xml)]);
    }
    let info = ok("virsh", &["-c", URI, "net-info", "default"]);
    let active = info
        .lines()
        .any(|l| l.starts_with("Active:") && l.ends_with("yes"));
    if !active {
        let out = run("virsh", &["-c", URI, "net-start", "default"]);
        let again = ok("virsh", &["-c", URI, "net-info", "default"]);
        assert!(
            again
                .lines()
                .any(|l| l.starts_with("Active:") && l.ends_with("yes")),
            "cannot start libvirt's default network: {}",
            text(&out)
        );
    }
    let xml = ok("virsh", &["-c", URI, "net-dumpxml", "default"]);
    gateway_of(&xml).unwrap_or_else(|| panic!("no IPv4 address in {xml}"))
}

/// The `address` of the network's first `<ip>` element.
fn gateway_of(xml: &str) -> Option<Ipv4Addr> {
    xml.split("<ip ").skip(1).find_map(|element| {
        let rest = element.split("address=").nth(1)?;
        let quote = rest.chars().next()?;
        rest[1..].split(quote).next()?.parse().ok()
    })
}

#[test]
fn the_gateway_is_read_from_the_network_xml() {
    let xml = "<network>\n  <name>default</name>\n  <ip family='ipv6' address='fd00::1' prefix='64'/>\n  \
               <ip address='192.168.122.1' netmask='255.255.255.0'>\n</ip></network>";
    assert_eq!(gateway_of(xml), Some(Ipv4Addr::new(192, 168, 122, 1)));
    assert_eq!(
        gateway_of("<ip address=\"10.9.8.7\"/>"),
        Some(Ipv4Addr::new(10, 9, 8, 7))
    );
    assert_eq!(gateway_of("<network/>"), None);
}
