//! A small DHCP client (RFC 2131): DISCOVER, OFFER, REQUEST, ACK on a UDP
//! socket bound to port 68 of one interface, which is up but has no
//! address yet. The replies are asked for as broadcasts, so the kernel
//! delivers them before the interface has an address. No renewal: the
//! lease only has to outlive one script.
//!
//! The packet builder and the parser are plain functions over bytes, and the
//! exchange runs over a [`Transport`], so all of it is tested without a
//! network. A malformed or foreign packet is skipped, never trusted.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::port::log;
use crate::sys;

/// How many DISCOVERs (and REQUESTs) are sent before giving up.
const TRIES: u32 = 4;
/// How long one try waits for its answer.
const WAIT: Duration = Duration::from_secs(2);
/// The BOOTP fixed part: op .. file.
const FIXED: usize = 236;
/// The magic cookie that starts the options.
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// BOOTP packets are at least this long (RFC 951); some servers insist.
const MIN_LEN: usize = 300;
/// The broadcast bit of `flags`: answer by broadcast, we have no address.
const BROADCAST: u16 = 0x8000;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHER: u8 = 1;

const OPT_PAD: u8 = 0;
const OPT_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_REQUESTED: u8 = 50;
const OPT_TYPE: u8 = 53;
const OPT_SERVER: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_END: u8 = 255;

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client looks for servers.
    Discover = 1,
    /// Server offers an address.
    Offer = 2,
    /// Client asks for the offered address.
    Request = 3,
    /// Server confirms.
    Ack = 5,
    /// Server refuses.
    Nak = 6,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Discover),
            2 => Some(Kind::Offer),
            3 => Some(Kind::Request),
            5 => Some(Kind::Ack),
            6 => Some(Kind::Nak),
            _ => None,
        }
    }
}

/// What one exchange is about: its id and the client's hardware address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The transaction id.
    pub xid: u32,
    /// The interface's MAC address.
    pub mac: [u8; 6],
}

/// A server's reply, as far as the client uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// OFFER, ACK or NAK.
    pub kind: Kind,
    /// The address for the client (`yiaddr`).
    pub address: Ipv4Addr,
    /// The server identifier (option 54).
    pub server: Option<Ipv4Addr>,
    /// The subnet mask (option 1).
    pub mask: Option<Ipv4Addr>,
    /// The first router (option 3).
    pub router: Option<Ipv4Addr>,
    /// The DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
}

/// The settings a lease gives the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The client's address.
    pub address: Ipv4Addr,
    /// Its netmask (the class's default when the server gave none).
    pub mask: Ipv4Addr,
    /// The default gateway, if any.
    pub router: Option<Ipv4Addr>,
    /// DNS servers, possibly none.
    pub dns: Vec<Ipv4Addr>,
    /// The server that granted it.
    pub server: Ipv4Addr,
}

/// Sends packets to the servers and receives their answers.
pub trait Transport {
    /// Broadcasts one packet.
    fn send(&mut self, packet: &[u8]) -> io::Result<()>;
    /// The next packet received before `deadline`; `None` once it passed.
    fn recv(&mut self, deadline: Instant) -> io::Result<Option<Vec<u8>>>;
}

/// Obtains a lease on `iface` (up, without an address).
pub fn obtain(iface: &str) -> Result<Lease, String> {
    let mac = read_mac(
        Path::new("/sys/class/net")
            .join(iface)
            .join("address")
            .as_path(),
    )?;
    let mut socket =
        UdpTransport::open(iface).map_err(|e| format!("DHCP socket on {iface}: {e}"))?;
    let client = Client {
        xid: transaction_id(),
        mac,
    };
    log(format!("DHCP on {iface} ({})", format_mac(&mac)));
    exchange(&mut socket, client, TRIES, WAIT)
}

/// DISCOVER -> OFFER -> REQUEST -> ACK, each step retried `tries` times
/// with `wait` per try; a NAK starts over (and uses up a try).
pub fn exchange(
    t: &mut dyn Transport,
    client: Client,
    tries: u32,
    wait: Duration,
) -> Result<Lease, String> {
    let mut left = tries;
    while left > 0 {
        let Some(offer) = discover(t, client, &mut left, wait)? else {
            break;
        };
        match request(t, client, &offer, &mut left, wait)? {
            Some(lease) => return Ok(lease),
            None => log("DHCP: no acknowledgement: starting over"),
        }
    }
    Err(format!(
        "no DHCP lease after {tries} tries of {}s",
        wait.as_secs()
    ))
}

/// Sends DISCOVERs until an OFFER comes (or the tries run out).
fn discover(
    t: &mut dyn Transport,
    client: Client,
    left: &mut u32,
    wait: Duration,
) -> Result<Option<Reply>, String> {
    let packet = build(client, Kind::Discover, None);
    while *left > 0 {
        *left -= 1;
        t.send(&packet).map_err(|e| format!("DHCP DISCOVER: {e}"))?;
        let offer = await_reply(t, client, wait, |r| {
            r.kind == Kind::Offer && r.server.is_some() && !r.address.is_unspecified()
        })?;
        if offer.is_some() {
            return Ok(offer);
        }
        log(format!("DHCP: no offer within {}s", wait.as_secs()));
    }
    Ok(None)
}

/// Sends REQUESTs for `offer` until its server ACKs (a lease) or NAKs
/// (`None`, as when the tries run out).
fn request(
    t: &mut dyn Transport,
    client: Client,
    offer: &Reply,
    left: &mut u32,
    wait: Duration,
) -> Result<Option<Lease>, String> {
    let packet = build(client, Kind::Request, Some((offer.address, offer.server)));
    while *left > 0 {
        *left -= 1;
        t.send(&packet).map_err(|e| format!("DHCP REQUEST: {e}"))?;
        let from_server = |r: &Reply| r.server.is_none() || r.server == offer.server;
        let answer = await_reply(t, client, wait, |r| {
            from_server(r)
                && (r.kind == Kind::Nak || (r.kind == Kind::Ack && r.address == offer.address))
        })?;
        match answer {
            Some(r) if r.kind == Kind::Ack => return Ok(Some(lease(&r, offer))),
            Some(_) => {
                log("DHCP: the server refused the request (NAK)");
                return Ok(None);
            }
            None => log(format!("DHCP: no answer within {}s", wait.as_secs())),
        }
    }
    Ok(None)
}

/// The first reply for `client` that `wanted` accepts, within `wait`;
/// anything else received meanwhile is skipped.
fn await_reply(
    t: &mut dyn Transport,
    client: Client,
    wait: Duration,
    wanted: impl Fn(&Reply) -> bool,
) -> Result<Option<Reply>, String> {
    let deadline = Instant::now() + wait;
    while let Some(packet) = t.recv(deadline).map_err(|e| format!("DHCP receive: {e}"))? {
        if let Some(reply) = parse(&packet, client).filter(|r| wanted(r)) {
            return Ok(Some(reply));
        }
    }
    Ok(None)
}

/// The lease an ACK grants (options the ACK lacks come from the offer).
fn lease(ack: &Reply, offer: &Reply) -> Lease {
    let dns = if ack.dns.is_empty() {
        offer.dns.clone()
    } else {
        ack.dns.clone()
    };
    Lease {
        address: ack.address,
        mask: ack
            .mask
            .or(offer.mask)
            .unwrap_or_else(|| class_mask(ack.address)),
        router: ack.router.or(offer.router),
        dns,
        server: ack.server.or(offer.server).unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// The classful default netmask of `addr` (RFC 2132 leaves a missing
/// option 1 to the client).
fn class_mask(addr: Ipv4Addr) -> Ipv4Addr {
    match addr.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

/// A DISCOVER, or a REQUEST for `(address, server)`.
pub fn build(client: Client, kind: Kind, asked: Option<(Ipv4Addr, Option<Ipv4Addr>)>) -> Vec<u8> {
    let mut p = vec![0u8; FIXED];
    p[0] = BOOTREQUEST;
    p[1] = HTYPE_ETHER;
    p[2] = 6;
    p[4..8].copy_from_slice(&client.xid.to_be_bytes());
    p[10..12].copy_from_slice(&BROADCAST.to_be_bytes());
    p[28..34].copy_from_slice(&client.mac);
    p.extend_from_slice(&COOKIE);
    p.extend_from_slice(&[OPT_TYPE, 1, kind as u8]);
    if let Some((address, server)) = asked {
        p.extend_from_slice(&[OPT_REQUESTED, 4]);
        p.extend_from_slice(&address.octets());
        if let Some(server) = server {
            p.extend_from_slice(&[OPT_SERVER, 4]);
            p.extend_from_slice(&server.octets());
        }
    }
    p.extend_from_slice(&[OPT_PARAMS, 3, OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_END]);
    if p.len() < MIN_LEN {
        p.resize(MIN_LEN, OPT_PAD);
    }
    p
}

/// A server reply to `client`, or `None` for anything else: a request, a
/// reply to another transaction or machine, a BOOTP reply without a
/// message type, or a malformed packet.
pub fn parse(packet: &[u8], client: Client) -> Option<Reply> {
    let fixed = packet.get(..FIXED + COOKIE.len())?;
    let ours = fixed[0] == BOOTREPLY
        && fixed[1] == HTYPE_ETHER
        && fixed[2] == 6
        && fixed[4..8] == client.xid.to_be_bytes()
        && fixed[28..34] == client.mac
        && fixed[FIXED..] == COOKIE;
    if !ours {
        return None;
    }
    let (mut kind, mut server, mut mask, mut router, mut dns) = (None, None, None, None, vec![]);
    for (code, value) in options(&packet[FIXED + COOKIE.len()..])? {
        match code {
            OPT_TYPE => kind = Some(Kind::from_byte(single(value)?)?),
            OPT_SERVER => server = Some(ipv4(value)?),
            OPT_MASK => mask = Some(netmask(value)?),
            OPT_ROUTER => router = addresses(value)?.first().copied(),
            OPT_DNS => dns = addresses(value)?,
            _ => {}
        }
    }
    Some(Reply {
        kind: kind.filter(|k| matches!(k, Kind::Offer | Kind::Ack | Kind::Nak))?,
        address: ipv4(&fixed[16..20])?,
        server,
        mask,
        router,
        dns,
    })
}

/// The options as (code, value) pairs, up to END (or the end of the
/// packet); `None` when an option runs past the packet.
fn options(mut rest: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut found = Vec::new();
    while let Some((&code, tail)) = rest.split_first() {
        match code {
            OPT_PAD => rest = tail,
            OPT_END => break,
            _ => {
                let (&len, tail) = tail.split_first()?;
                let value = tail.get(..usize::from(len))?;
                found.push((code, value));
                rest = &tail[usize::from(len)..];
            }
        }
    }
    Some(found)
}

fn single(value: &[u8]) -> Option<u8> {
    match value {
        [b] => Some(*b),
        _ => None,
    }
}

fn ipv4(value: &[u8]) -> Option<Ipv4Addr> {
    let octets: [u8; 4] = value.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

/// A list of addresses: a non-empty multiple of four bytes.
fn addresses(value: &[u8]) -> Option<Vec<Ipv4Addr>> {
    if value.is_empty() || !value.len().is_multiple_of(4) {
        return None;
    }
    value.chunks_exact(4).map(ipv4).collect()
}

/// A netmask: contiguous ones, then zeros.
fn netmask(value: &[u8]) -> Option<Ipv4Addr> {
    let mask = ipv4(value)?;
    let bits = u32::from(mask);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(mask)
}

/// The prefix length of a contiguous netmask.
pub fn prefix_len(mask: Ipv4Addr) -> u32 {
    u32::from(mask).leading_ones()
}

/// The MAC address in a sysfs `address` file (`52:54:00:12:34:56`).
fn read_mac(path: &Path) -> Result<[u8; 6], String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse_mac(text.trim()).ok_or_else(|| format!("bad MAC address {:?}", text.trim()))
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| {
            let hex = h.len() == 2 && h.bytes().all(|b| b.is_ascii_hexdigit());
            hex.then(|| u8::from_str_radix(h, 16).ok()).flatten()
        })
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A random transaction id (`getrandom`; the clock if that has nothing yet).
fn transaction_id() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: `buf` is valid for 4 bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == 4 {
        return u32::from_ne_bytes(buf);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.subsec_nanos() ^ (now.as_secs() as u32) ^ std::process::id().rotate_left(16)
}

/// UDP on 0.0.0.0:68 of one interface, broadcasting to port 67.
struct UdpTransport {
    socket: UdpSocket,
}

impl UdpTransport {
    fn open(iface: &str) -> io::Result<UdpTransport> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))?;
        socket.set_broadcast(true)?;
        bind_to_device(&socket, iface)?;
        Ok(UdpTransport { socket })
    }
}

impl Transport for UdpTransport {
    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.socket
            .send_to(packet, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
            .map(drop)
    }

    fn recv(&mut self, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(e) if is_retry(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Timeouts and interruptions: look at the clock again.
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// `SO_BINDTODEVICE`: send and receive on `iface` only.
fn bind_to_device(socket: &UdpSocket, iface: &str) -> io::Result<()> {
    let name = sys::cstr(iface)?;
    let bytes = name.as_bytes_with_nul();
    // SAFETY: `bytes` is a valid buffer of the given length for the call.
    sys::check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    const CLIENT: Client = Client {
        xid: 0x1234_5678,
        mac: [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef],
    };
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
    const OFFERED: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 57);

    /// A server reply with the given options (already encoded).
    fn reply(client: Client, yiaddr: Ipv4Addr, options: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; FIXED];
        p[0] = BOOTREPLY;
        p[1] = HTYPE_ETHER;
        p[2] = 6;
        p[4..8].copy_from_slice(&client.xid.to_be_bytes());
        p[16..20].copy_from_slice(&yiaddr.octets());
        p[28..34].copy_from_slice(&client.mac);
        p.extend_from_slice(&COOKIE);
        p.extend_from_slice(options);
        p
    }

    fn full_options(kind: Kind) -> Vec<u8> {
        let mut o = vec![OPT_TYPE, 1, kind as u8, OPT_SERVER, 4, 192, 168, 122, 1];
        o.extend_from_slice(&[OPT_MASK, 4, 255, 255, 255, 0]);
        o.extend_from_slice(&[OPT_ROUTER, 8, 192, 168, 122, 1, 10, 0, 0, 1]);
        o.extend_from_slice(&[OPT_DNS, 8, 192, 168, 122, 1, 9, 9, 9, 9]);
        o.extend_from_slice(&[51, 4, 0, 0, 14, 16, OPT_PAD, OPT_END, 77, 77]);
        o
    }

    /// The options of a packet we built, by code.
    fn option(p: &[u8], code: u8) -> Option<Vec<u8>> {
        options(&p[FIXED + 4..])?
            .into_iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.to_vec())
    }

    #[test]
    fn discover_is_a_broadcast_bootrequest() {
        let p = build(CLIENT, Kind::Discover, None);
        assert_eq!(p.len(), MIN_LEN);
        assert_eq!(&p[..4], &[BOOTREQUEST, HTYPE_ETHER, 6, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&p[10..12], &[0x80, 0]);
        assert_eq!(&p[12..28], &[0; 16], "no addresses yet");
        assert_eq!(&p[28..34], &CLIENT.mac);
        assert_eq!(&p[34..44], &[0; 10]);
        assert_eq!(&p[FIXED..FIXED + 4], &COOKIE);
        assert_eq!(option(&p, OPT_TYPE), Some(vec![1]));
        assert_eq!(option(&p, OPT_PARAMS), Some(vec![1, 3, 6]));
        assert_eq!(option(&p, OPT_REQUESTED), None);
        assert_eq!(option(&p, OPT_SERVER), None);
    }

    #[test]
    fn request_names_the_address_and_the_server() {
        let p = build(CLIENT, Kind::Request, Some((OFFERED, Some(SERVER))));
        assert_eq!(option(&p, OPT_TYPE), Some(vec![3]));
        assert_eq!(option(&p, OPT_REQUESTED), Some(OFFERED.octets().to_vec()));
        assert_eq!(option(&p, OPT_SERVER), Some(SERVER.octets().to_vec()));
        assert_eq!(option(&p, OPT_PARAMS), Some(vec![1, 3, 6]));
        assert_eq!(&p[12..16], &[0; 4], "ciaddr stays 0 in SELECTING");
    }

    #[test]
    fn a_full_reply_parses() {
        let r = parse(&reply(CLIENT, OFFERED, &full_options(Kind::Offer)), CLIENT);
        assert_eq!(
            r,
            Some(Reply {
                kind: Kind::Offer,
                address: OFFERED,
                server: Some(SERVER),
                mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                router: Some(SERVER),
                dns: vec![SERVER, Ipv4Addr::new(9, 9, 9, 9)],
            })
        );
    }

    #[test]
    fn foreign_packets_are_skipped() {
        let good = reply(CLIENT, OFFERED, &full_options(Kind::Offer));
        let other_xid = Client {
            xid: 1,
            mac: CLIENT.mac,
        };
        let other_mac = Client {
            xid: CLIENT.xid,
            mac: [2; 6],
        };
        assert_eq!(parse(&good, other_xid), None);
        assert_eq!(parse(&good, other_mac), None);
        let mut request = good.clone();
        request[0] = BOOTREQUEST;
        assert_eq!(parse(&request, CLIENT), None);
        let mut cookie = good.clone();
        cookie[FIXED] = 0;
        assert_eq!(parse(&cookie, CLIENT), None);
        let mut hlen = good;
        hlen[2] = 16;
        assert_eq!(parse(&hlen, CLIENT), None);
        let bootp = reply(CLIENT, OFFERED, &[OPT_END]);
        assert_eq!(parse(&bootp, CLIENT), None, "no message type");
        let discover = reply(CLIENT, OFFERED, &[OPT_TYPE, 1, 1]);
        assert_eq!(parse(&discover, CLIENT), None, "not a server message");
    }

    #[test]
    fn truncated_packets_never_parse() {
        let good = reply(CLIENT, OFFERED, &full_options(Kind::Ack));
        let end = good.len() - 3; // the bytes after END do not matter
        for len in 0..end {
            let cut = &good[..len];
            let parsed = parse(cut, CLIENT);
            // Cutting inside an option is malformed; cutting between options
            // may leave a valid but shorter reply, never a wrong one.
            if let Some(r) = parsed {
                assert_eq!(r.address, OFFERED);
                assert!(len >= FIXED + 4 + 3, "{len}");
            }
        }
        assert!(parse(&good[..FIXED + 3], CLIENT).is_none());
    }

    #[test]
    fn malformed_options_are_rejected() {
        for bad in [
            &[OPT_TYPE, 1, 5, OPT_MASK, 9, 255][..], // runs past the end
            &[OPT_TYPE, 2, 5, 5],                    // type of two bytes
            &[OPT_TYPE, 1, 99],                      // unknown type
            &[OPT_TYPE, 1, 5, OPT_MASK, 3, 255, 255, 0], // short mask
            &[OPT_TYPE, 1, 5, OPT_MASK, 4, 255, 0, 255, 0], // holes in the mask
            &[OPT_TYPE, 1, 5, OPT_ROUTER, 0],        // empty router list
            &[OPT_TYPE, 1, 5, OPT_DNS, 6, 1, 1, 1, 1, 2, 2], // DNS not a multiple of 4
            &[OPT_TYPE, 1, 5, OPT_SERVER, 5, 1, 2, 3, 4, 5], // server of 5 bytes
            &[OPT_TYPE, 1, 5, 200],                  // length byte missing
        ] {
            assert_eq!(parse(&reply(CLIENT, OFFERED, bad), CLIENT), None, "{bad:?}");
        }
    }

    #[test]
    fn pads_and_missing_end_are_fine() {
        let p = reply(CLIENT, OFFERED, &[OPT_PAD, OPT_PAD, OPT_TYPE, 1, 5]);
        let r = parse(&p, CLIENT).map(|r| (r.kind, r.mask, r.router, r.dns));
        assert_eq!(r, Some((Kind::Ack, None, None, vec![])));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Deterministic noise over every length around the fixed part.
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        };
        for len in 0..400 {
            let mut p = reply(CLIENT, OFFERED, &[]);
            p.resize(len.max(FIXED + 4), 0);
            p.truncate(len);
            for b in p.iter_mut().skip(FIXED + 4) {
                *b = next();
            }
            let _ = parse(&p, CLIENT);
        }
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("52:54:00:ab:CD:ef"), Some(CLIENT.mac));
        assert_eq!(parse_mac("52:54:00:ab:cd"), None);
        assert_eq!(parse_mac("52:54:00:ab:cd:ef:01"), None);
        assert_eq!(parse_mac("52:54:00:ab:cd:e"), None);
        assert_eq!(parse_mac("52:54:00:ab:cd:+f"), None);
        assert_eq!(format_mac(&CLIENT.mac), "52:54:00:ab:cd:ef");
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 255, 0)), 24);
        assert_eq!(
            class_mask(Ipv4Addr::new(10, 1, 2, 3)),
            Ipv4Addr::new(255, 0, 0, 0)
        );
        assert_eq!(
            class_mask(Ipv4Addr::new(172, 16, 0, 9)),
            Ipv4Addr::new(255, 255, 0, 0)
        );
        assert_eq!(class_mask(OFFERED), Ipv4Addr::new(255, 255, 255, 0));
    }

    /// A server script: what it answers to each packet the client sends.
    struct Fake {
        sent: Vec<Vec<u8>>,
        answers: VecDeque<Vec<Vec<u8>>>,
        pending: VecDeque<Vec<u8>>,
    }

    impl Fake {
        fn new(answers: Vec<Vec<Vec<u8>>>) -> Fake {
            Fake {
                sent: Vec::new(),
                answers: answers.into(),
                pending: VecDeque::new(),
            }
        }

        fn kinds_sent(&self) -> Vec<u8> {
            self.sent
                .iter()
                .filter_map(|p| option(p, OPT_TYPE).and_then(|v| v.first().copied()))
                .collect()
        }
    }

    impl Transport for Fake {
        fn send(&mut self, packet: &[u8]) -> io::Result<()> {
            self.sent.push(packet.to_vec());
            self.pending = self.answers.pop_front().unwrap_or_default().into();
            Ok(())
        }

        fn recv(&mut self, _deadline: Instant) -> io::Result<Option<Vec<u8>>> {
            Ok(self.pending.pop_front())
        }
    }

    fn run(fake: &mut Fake) -> Result<Lease, String> {
        exchange(fake, CLIENT, 4, Duration::from_millis(1))
    }

    #[test]
    fn a_lease_after_offer_and_ack() {
        let offer = reply(CLIENT, OFFERED, &full_options(Kind::Offer));
        let ack = reply(
            CLIENT,
            OFFERED,
            &[OPT_TYPE, 1, 5, OPT_SERVER, 4, 192, 168, 122, 1],
        );
        let mut fake = Fake::new(vec![vec![offer], vec![ack]]);
        let lease = run(&mut fake);
        assert_eq!(
            lease,
            Ok(Lease {
                address: OFFERED,
                mask: Ipv4Addr::new(255, 255, 255, 0),
                router: Some(SERVER),
                dns: vec![SERVER, Ipv4Addr::new(9, 9, 9, 9)],
                server: SERVER,
            }),
            "options missing from the ACK come from the OFFER"
        );
        assert_eq!(fake.kinds_sent(), vec![1, 3]);
        assert_eq!(
            option(&fake.sent[1], OPT_REQUESTED),
            Some(OFFERED.octets().to_vec())
        );
    }

    #[test]
    fn junk_and_silence_are_retried() {
        let offer = reply(CLIENT, OFFERED, &full_options(Kind::Offer));
        let ack = reply(CLIENT, OFFERED, &full_options(Kind::Ack));
        let stranger = reply(
            Client {
                xid: 9,
                mac: CLIENT.mac,
            },
            OFFERED,
            &full_options(Kind::Offer),
        );
        let mut fake = Fake::new(vec![
            vec![],
            vec![vec![1, 2, 3], stranger, offer[..250].to_vec(), offer],
            vec![ack.clone()],
        ]);
        assert_eq!(run(&mut fake).map(|l| l.address), Ok(OFFERED));
        assert_eq!(fake.kinds_sent(), vec![1, 1, 3]);
    }

    #[test]
    fn a_nak_starts_over() {
        let offer = reply(CLIENT, OFFERED, &full_options(Kind::Offer));
        let nak = reply(CLIENT, Ipv4Addr::UNSPECIFIED, &[OPT_TYPE, 1, 6]);
        let ack = reply(CLIENT, OFFERED, &full_options(Kind::Ack));
        let mut fake = Fake::new(vec![vec![offer.clone()], vec![nak], vec![offer], vec![ack]]);
        assert_eq!(run(&mut fake).map(|l| l.address), Ok(OFFERED));
        assert_eq!(fake.kinds_sent(), vec![1, 3, 1, 3]);
    }

    #[test]
    fn an_ack_for_another_address_is_ignored() {
        let offer = reply(CLIENT, OFFERED, &full_options(Kind::Offer));
        let wrong = reply(
            CLIENT,
            Ipv4Addr::new(192, 168, 122, 99),
            &full_options(Kind::Ack),
        );
        let mut fake = Fake::new(vec![vec![offer], vec![wrong]]);
        assert!(run(&mut fake).is_err());
        assert_eq!(fake.kinds_sent(), vec![1, 3, 3, 3], "four tries in all");
    }

    #[test]
    fn silence_gives_up_after_the_tries() {
        let mut fake = Fake::new(vec![]);
        let err = run(&mut fake).err().unwrap_or_default();
        assert!(err.contains("no DHCP lease after 4 tries"), "{err}");
        assert_eq!(fake.kinds_sent(), vec![1, 1, 1, 1]);
    }
}
