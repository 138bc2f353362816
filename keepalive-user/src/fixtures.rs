//! Frame builder: Ethernet frames with VLAN/QinQ tags, IPv4 (options) or IPv6 (extension
//! headers), TCP (options) or UDP, and ARP, with correct IP and TCP/UDP checksums so the frames
//! are valid on a real wire (tcpreplay) and in Wireshark. Also SCCP PDUs and SIP messages.
//!
//! Used by the classifier and kernel tests, the capture writer, the benchmarks and the lab.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// 802.1Q tag protocol id.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad (QinQ service tag) protocol id.
pub const TPID_8021AD: u16 = 0x88a8;

/// Link layer of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eth {
    /// Source MAC.
    pub src: [u8; 6],
    /// Destination MAC.
    pub dst: [u8; 6],
    /// VLAN tags, outer first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
}

impl Eth {
    /// Untagged frame from `src` to `dst`.
    pub fn new(src: [u8; 6], dst: [u8; 6]) -> Self {
        Self { src, dst, vlans: Vec::new() }
    }

    /// Adds an 802.1Q tag (inside any tags already present).
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlans.push((TPID_8021Q, id));
        self
    }

    /// Adds an 802.1ad service tag as the outermost tag.
    pub fn qinq(mut self, outer: u16) -> Self {
        self.vlans.insert(0, (TPID_8021AD, outer));
        self
    }

    fn header(&self, ethertype: u16) -> Vec<u8> {
        let mut f = Vec::with_capacity(22);
        f.extend_from_slice(&self.dst);
        f.extend_from_slice(&self.src);
        for (tpid, id) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }
}

/// Network layer of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Net {
    /// IPv4 with optional options (padded to 4 bytes).
    V4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
        /// Raw option bytes.
        options: Vec<u8>,
    },
    /// IPv6 with optional extension headers: (header type, body without the next/len bytes).
    V6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
        /// Extension headers: type (0, 43, 60 or 44) and body.
        ext: Vec<(u8, Vec<u8>)>,
    },
}

impl Net {
    /// IPv4 or IPv6 between two addresses of the same family.
    pub fn between(src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Self::V4 { src: s, dst: d, options: Vec::new() },
            (IpAddr::V6(s), IpAddr::V6(d)) => Self::V6 { src: s, dst: d, ext: Vec::new() },
            _ => panic!("mixed address families"),
        }
    }

    /// The same addresses, reversed.
    pub fn reversed(&self) -> Self {
        match self {
            Self::V4 { src, dst, options } => {
                Self::V4 { src: *dst, dst: *src, options: options.clone() }
            }
            Self::V6 { src, dst, ext } => Self::V6 { src: *dst, dst: *src, ext: ext.clone() },
        }
    }
}

/// TCP header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte.
    pub flags: u8,
    /// Window.
    pub window: u16,
    /// Raw options (padded to 4 bytes).
    pub options: Vec<u8>,
}

impl Tcp {
    /// A PSH|ACK data segment header.
    pub fn data(sport: u16, dport: u16, seq: u32, ack: u32) -> Self {
        Self { sport, dport, seq, ack, flags: 0x18, window: 64240, options: Vec::new() }
    }
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for c in chunks {
        for &b in *c {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pad4(mut v: Vec<u8>) -> Vec<u8> {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// Builds an Ethernet frame carrying `l4` (already complete, checksum field zero at
/// `csum_off`) over `net` with IP protocol `proto`; fills in every checksum.
fn ip_frame(eth: &Eth, net: &Net, proto: u8, mut l4: Vec<u8>, csum_off: usize) -> Vec<u8> {
    let len = l4.len();
    match net {
        Net::V4 { src, dst, options } => {
            let pseudo =
                [&src.octets()[..], &dst.octets()[..], &[0, proto], &(len as u16).to_be_bytes()]
                    .concat();
            let c = checksum(&[&pseudo, &l4]);
            l4[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
            let options = pad4(options.clone());
            let ihl = 20 + options.len();
            let mut h = vec![0x40 | (ihl / 4) as u8, 0];
            h.extend_from_slice(&((ihl + len) as u16).to_be_bytes());
            h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
            h.extend_from_slice(&src.octets());
            h.extend_from_slice(&dst.octets());
            h.extend_from_slice(&options);
            let c = checksum(&[&h]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            [eth.header(0x0800), h, l4].concat()
        }
        Net::V6 { src, dst, ext } => {
            let pseudo = [
                &src.octets()[..],
                &dst.octets()[..],
                &(len as u32).to_be_bytes(),
                &[0, 0, 0, proto],
            ]
            .concat();
            let c = checksum(&[&pseudo, &l4]);
            l4[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
            let mut exts = Vec::new();
            let first = ext.first().map_or(proto, |e| e.0);
            for (i, (kind, body)) in ext.iter().enumerate() {
                let next = ext.get(i + 1).map_or(proto, |e| e.0);
                if *kind == 44 {
                    // Fragment header: fixed 8 bytes; body holds offset/flags/id (6 bytes).
                    let mut b = body.clone();
                    b.resize(6, 0);
                    exts.extend_from_slice(&[next, 0]);
                    exts.extend_from_slice(&b);
                } else {
                    // Options headers: total length a multiple of 8.
                    let mut b = body.clone();
                    while !(b.len() + 2).is_multiple_of(8) {
                        b.push(0);
                    }
                    exts.extend_from_slice(&[next, ((b.len() + 2) / 8 - 1) as u8]);
                    exts.extend_from_slice(&b);
                }
            }
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&((exts.len() + len) as u16).to_be_bytes());
            h.extend_from_slice(&[first, 64]);
            h.extend_from_slice(&src.octets());
            h.extend_from_slice(&dst.octets());
            [eth.header(0x86dd), h, exts, l4].concat()
        }
    }
}

/// A TCP segment in an Ethernet frame.
pub fn tcp_frame(eth: &Eth, net: &Net, tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
    let options = pad4(tcp.options.clone());
    let doff = 20 + options.len();
    let mut t = Vec::with_capacity(doff + payload.len());
    t.extend_from_slice(&tcp.sport.to_be_bytes());
    t.extend_from_slice(&tcp.dport.to_be_bytes());
    t.extend_from_slice(&tcp.seq.to_be_bytes());
    t.extend_from_slice(&tcp.ack.to_be_bytes());
    t.extend_from_slice(&[((doff / 4) as u8) << 4, tcp.flags]);
    t.extend_from_slice(&tcp.window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(&options);
    t.extend_from_slice(payload);
    ip_frame(eth, net, 6, t, 16)
}

/// A UDP datagram in an Ethernet frame.
pub fn udp_frame(eth: &Eth, net: &Net, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    ip_frame(eth, net, 17, u, 6)
}

/// ARP operation: request.
pub const ARP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const ARP_REPLY: u16 = 2;

/// An ARP frame (padded to the 60-byte Ethernet minimum, as a NIC sends it).
pub fn arp_frame(
    eth: &Eth,
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = eth.header(0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f.resize(f.len().max(60), 0);
    f
}

/// One SCCP PDU: `length` (id + body), header version 0x16 (protocol v22), message id, body.
pub fn sccp_pdu(id: u32, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + body.len());
    p.extend_from_slice(&((4 + body.len()) as u32).to_le_bytes());
    p.extend_from_slice(&0x16u32.to_le_bytes());
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(body);
    p
}

/// The 12 bytes of a real SCCP KeepAlive: `04 00 00 00 16 00 00 00 00 00 00 00`.
pub fn sccp_keepalive() -> Vec<u8> {
    sccp_pdu(keepalive_common::wire::sccp_msg::KEEPALIVE, &[])
}

/// The 12 bytes of an SCCP KeepAliveAck.
pub fn sccp_keepalive_ack() -> Vec<u8> {
    sccp_pdu(keepalive_common::wire::sccp_msg::KEEPALIVE_ACK, &[])
}

/// An SCCP Register message body: device name (16 bytes, NUL padded) and station fields.
pub fn sccp_register(device: &str) -> Vec<u8> {
    let mut body = [0u8; 16].to_vec();
    body[..device.len().min(15)].copy_from_slice(&device.as_bytes()[..device.len().min(15)]);
    body.extend_from_slice(&[0u8; 4]); // reserved
    body.extend_from_slice(&1u32.to_le_bytes()); // instance
    body.extend_from_slice(&[10, 0, 0, 1]); // station ip
    body.extend_from_slice(&8u32.to_le_bytes()); // device type
    body.extend_from_slice(&2u32.to_le_bytes()); // max streams
    sccp_pdu(keepalive_common::wire::sccp_msg::REGISTER, &body)
}

/// Parameters of a Cisco-style SIP REGISTER.
#[derive(Clone, Debug)]
pub struct SipRegister<'a> {
    /// Phone address (Via, Contact).
    pub phone: IpAddr,
    /// Phone's TCP source port.
    pub phone_port: u16,
    /// Registrar address.
    pub server: IpAddr,
    /// Extension (From/To user).
    pub ext: &'a str,
    /// Device name (`SEP…`).
    pub device: &'a str,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// Expires header value (3600 primary, 0 for a backup keepalive).
    pub expires: u32,
}

fn host(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    }
}

/// A SIP REGISTER as a Cisco 8961 sends it over TCP. `expires == 0` makes it the backup
/// keepalive (`;expires=0;cisco-keep-alive` on the Contact).
pub fn sip_register(p: &SipRegister<'_>) -> Vec<u8> {
    let (phone, server) = (host(p.phone), host(p.server));
    let keep = if p.expires == 0 { ";cisco-keep-alive" } else { "" };
    format!(
        "REGISTER sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {phone}:{pp};branch=z9hG4bK{cseq:08x}\r\n\
         From: <sip:{ext}@{server}>;tag=0024142ddf2400{cseq}\r\n\
         To: <sip:{ext}@{server}>\r\n\
         Call-ID: {cid}\r\n\
         Max-Forwards: 70\r\n\
         Date: Mon, 23 Nov 2026 18:07:34 GMT\r\n\
         CSeq: {cseq} REGISTER\r\n\
         User-Agent: Cisco-CP8961/9.4.2\r\n\
         Contact: <sip:{ext}@{phone}:{pp};transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-0024142ddf24>\";+u.sip!devicename.ccm.cisco.com=\"{dev}\";+u.sip!model.ccm.cisco.com=\"540\";expires={exp}{keep}\r\n\
         Supported: replaces,join,sdp-anat,norefersub,resource-priority,extended-refer,X-cisco-callinfo,X-cisco-serviceuri,X-cisco-escapecodes,X-cisco-service-control,X-cisco-srtp-fallback,X-cisco-monrec,X-cisco-config,X-cisco-sis-7.0.0,X-cisco-xsi-8.5.1\r\n\
         Reason: SIP;cause=200;text=\"cisco-alarm:25 Name=SEP0024142DDF24 Load=SIP70.9-4-2SR3-1S Last=initialized\"\r\n\
         Expires: {exp}\r\n\
         Content-Length: 0\r\n\r\n",
        pp = p.phone_port,
        cseq = p.cseq,
        ext = p.ext,
        cid = p.call_id,
        dev = p.device,
        exp = p.expires,
    )
    .into_bytes()
}

/// The registrar's 200 OK to a REGISTER, granting `granted` seconds.
pub fn sip_register_ok(p: &SipRegister<'_>, granted: u32) -> Vec<u8> {
    let (phone, server) = (host(p.phone), host(p.server));
    format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/TCP {phone}:{pp};branch=z9hG4bK{cseq:08x}\r\n\
         From: <sip:{ext}@{server}>;tag=0024142ddf2400{cseq}\r\n\
         To: <sip:{ext}@{server}>;tag=1460498~c9d5a9ba\r\n\
         Call-ID: {cid}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Date: Mon, 23 Nov 2026 18:07:34 GMT\r\n\
         Server: Cisco-CUCM12.5\r\n\
         Contact: <sip:{ext}@{phone}:{pp};transport=tcp>;expires={granted}\r\n\
         Expires: {granted}\r\n\
         Content-Length: 0\r\n\r\n",
        pp = p.phone_port,
        cseq = p.cseq,
        ext = p.ext,
        cid = p.call_id,
    )
    .into_bytes()
}

/// MAC of the simulated phone in fixtures.
pub const PHONE_MAC: [u8; 6] = [0x00, 0x24, 0x14, 0x2d, 0xdf, 0x24];
/// MAC of the simulated CUCM in fixtures.
pub const CUCM_MAC: [u8; 6] = [0x00, 0x0c, 0x29, 0x90, 0x10, 0xcf];
/// MAC of the ASA answering proxy ARP in DOMAIN.md's first case study.
pub const ASA_MAC: [u8; 6] = [0xf4, 0x0f, 0x1b, 0x1e, 0x26, 0xa9];

/// What the classifier must say about a fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Not ours.
    Pass,
    /// Followed protocol, but broken.
    Malformed,
    /// Tracked TCP segment.
    Tcp,
    /// ARP.
    Arp,
}

/// One named frame and its expected classification.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// Short unique name.
    pub name: &'static str,
    /// The frame.
    pub frame: Vec<u8>,
    /// Expected outcome.
    pub expect: Expect,
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().expect("fixture address"))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().expect("fixture address"))
}

/// The phone → CUCM link layer used by most fixtures.
pub fn phone_eth() -> Eth {
    Eth::new(PHONE_MAC, CUCM_MAC)
}

/// A Cisco-style REGISTER for the fixtures (phone 10.147.230.189:50708 → 178.215.139.22).
pub fn fixture_register(expires: u32) -> Vec<u8> {
    sip_register(&SipRegister {
        phone: v4("10.147.230.189"),
        phone_port: 50708,
        server: v4("178.215.139.22"),
        ext: "4001",
        device: "SEP0024142DDF24",
        call_id: "0024142d-df240003-6d1e2a5c-4c3b0b1f@10.147.230.189",
        cseq: 101,
        expires,
    })
}

/// `frame` with the bytes at the given offsets overwritten (for malformed-header fixtures).
fn patched(mut frame: Vec<u8>, bytes: &[(usize, u8)]) -> Vec<u8> {
    for &(at, b) in bytes {
        frame[at] = b;
    }
    frame
}

/// The corpus: every encapsulation, protocol and edge the classifier must handle.
pub fn corpus() -> Vec<Fixture> {
    let e = phone_eth();
    let n4 = Net::between(v4("10.10.20.31"), v4("10.10.10.202"));
    let n6 = Net::between(v6("2001:db8:110::31"), v6("2001:db8:10::202"));
    let ka = sccp_keepalive();
    let to_cucm = Tcp::data(51234, 2000, 0x1000_0000, 0x2000_0000);
    let from_cucm = Tcp::data(2000, 51234, 0x2000_0000, 0x1000_000c);
    let sip4 = Net::between(v4("10.147.230.189"), v4("178.215.139.22"));
    let to_sip = Tcp::data(50708, 5060, 7_000_000, 9_000_000);
    let reg = fixture_register(3600);
    let mut f = vec![
        Fixture {
            name: "sccp-keepalive",
            frame: tcp_frame(&e, &n4, &to_cucm, &ka),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-keepalive-ack",
            frame: tcp_frame(
                &Eth::new(CUCM_MAC, PHONE_MAC),
                &n4.reversed(),
                &from_cucm,
                &sccp_keepalive_ack(),
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-two-pdus",
            frame: tcp_frame(
                &e,
                &n4,
                &to_cucm,
                &[sccp_register("SEP0024142DDF24"), ka.clone()].concat(),
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-pdu-spills",
            frame: tcp_frame(
                &e,
                &n4,
                &to_cucm,
                &[ka.clone(), sccp_register("SEP0024142DDF24")[..20].to_vec()].concat(),
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-dot1q",
            frame: tcp_frame(&e.clone().vlan(110), &n4, &to_cucm, &ka),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-qinq",
            frame: tcp_frame(&e.clone().vlan(110).qinq(3001), &n4, &to_cucm, &ka),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-ipv4-options",
            frame: tcp_frame(
                &e,
                &Net::V4 {
                    src: [10, 10, 20, 31].into(),
                    dst: [10, 10, 10, 202].into(),
                    options: vec![0x94, 4, 0, 0],
                },
                &to_cucm,
                &ka,
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-tcp-options",
            frame: tcp_frame(
                &e,
                &n4,
                &Tcp { options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], ..to_cucm.clone() },
                &ka,
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-ipv6",
            frame: tcp_frame(&e, &n6, &to_cucm, &ka),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-ipv6-ext-headers",
            frame: tcp_frame(
                &e.clone().vlan(110),
                &Net::V6 {
                    src: "2001:db8:110::31".parse().unwrap(),
                    dst: "2001:db8:10::202".parse().unwrap(),
                    ext: vec![(0, vec![1, 4, 0, 0, 0, 0]), (60, vec![1, 4, 0, 0, 0, 0])],
                },
                &to_cucm,
                &ka,
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-ipv6-first-fragment",
            frame: tcp_frame(
                &e,
                &Net::V6 {
                    src: "2001:db8:110::31".parse().unwrap(),
                    dst: "2001:db8:10::202".parse().unwrap(),
                    ext: vec![(44, vec![0, 1, 0, 0, 0, 7])],
                },
                &to_cucm,
                &ka,
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-syn",
            frame: tcp_frame(
                &e,
                &n4,
                &Tcp { flags: 0x02, options: vec![2, 4, 5, 0xb4], ..to_cucm.clone() },
                &[],
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            // A pure ACK is 54 bytes; a NIC pads it to 60. The IP length must win.
            name: "sccp-ack-padded",
            frame: {
                let mut fr = tcp_frame(&e, &n4, &Tcp { flags: 0x10, ..to_cucm.clone() }, &[]);
                fr.resize(60, 0xee);
                fr
            },
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-register",
            frame: tcp_frame(&e, &sip4, &to_sip, &reg),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-register-backup",
            frame: tcp_frame(&e.clone().vlan(110), &sip4, &to_sip, &fixture_register(0)),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-register-split-1",
            frame: tcp_frame(&e, &sip4, &to_sip, &reg[..200]),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-register-split-2",
            frame: tcp_frame(&e, &sip4, &Tcp { seq: 7_000_200, ..to_sip.clone() }, &reg[200..]),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-200-ok",
            frame: tcp_frame(
                &Eth::new(CUCM_MAC, PHONE_MAC),
                &sip4.reversed(),
                &Tcp::data(5060, 50708, 9_000_000, 7_000_000 + reg.len() as u32),
                &sip_register_ok(
                    &SipRegister {
                        phone: v4("10.147.230.189"),
                        phone_port: 50708,
                        server: v4("178.215.139.22"),
                        ext: "4001",
                        device: "SEP0024142DDF24",
                        call_id: "x@y",
                        cseq: 101,
                        expires: 3600,
                    },
                    120,
                ),
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-invite",
            frame: tcp_frame(
                &e,
                &sip4,
                &to_sip,
                b"INVITE sip:4002@178.215.139.22 SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n",
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-subscribe",
            frame: tcp_frame(
                &e,
                &sip4,
                &to_sip,
                b"SUBSCRIBE sip:4002@178.215.139.22 SIP/2.0\r\n\r\n",
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-crlf-keepalive",
            frame: tcp_frame(&e, &sip4, &to_sip, b"\r\n\r\n"),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-ipv6",
            frame: tcp_frame(
                &e,
                &Net::between(v6("2001:db8:110::189"), v6("2001:db8:10::22")),
                &to_sip,
                &reg,
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sccp-tls-handshake",
            frame: tcp_frame(
                &e,
                &n4,
                &Tcp::data(51235, 2443, 1, 1),
                &[22, 3, 3, 0, 0x40, 1, 0, 0, 0x3c],
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "sip-tls-appdata",
            frame: tcp_frame(
                &e,
                &sip4,
                &Tcp::data(50709, 5061, 1, 1),
                &[23, 3, 3, 0x02, 0x10, 0xaa, 0xbb],
            ),
            expect: Expect::Tcp,
        },
        Fixture {
            name: "arp-request",
            frame: arp_frame(
                &Eth::new(PHONE_MAC, [0xff; 6]),
                ARP_REQUEST,
                PHONE_MAC,
                [10, 10, 20, 31].into(),
                [0; 6],
                [10, 10, 10, 202].into(),
            ),
            expect: Expect::Arp,
        },
        Fixture {
            name: "arp-reply-asa",
            frame: arp_frame(
                &Eth::new(ASA_MAC, PHONE_MAC),
                ARP_REPLY,
                ASA_MAC,
                [10, 10, 10, 202].into(),
                PHONE_MAC,
                [10, 10, 20, 31].into(),
            ),
            expect: Expect::Arp,
        },
        Fixture {
            name: "arp-reply-dot1q",
            frame: arp_frame(
                &Eth::new(CUCM_MAC, PHONE_MAC).vlan(110),
                ARP_REPLY,
                CUCM_MAC,
                [10, 10, 10, 202].into(),
                PHONE_MAC,
                [10, 10, 20, 31].into(),
            ),
            expect: Expect::Arp,
        },
        Fixture {
            name: "other-tcp-https",
            frame: tcp_frame(&e, &n4, &Tcp::data(51000, 443, 1, 1), b"\x17\x03\x03\x00\x10hello"),
            expect: Expect::Pass,
        },
        Fixture {
            name: "other-udp-sip",
            frame: udp_frame(&e, &sip4, 5060, 5060, b"REGISTER sip:x SIP/2.0\r\n\r\n"),
            expect: Expect::Pass,
        },
        Fixture {
            name: "other-udp-ipv6",
            frame: udp_frame(&e, &n6, 53, 53, b"dns"),
            expect: Expect::Pass,
        },
        Fixture {
            name: "other-icmp",
            // A UDP frame re-labelled as protocol 1 (ICMP echo).
            frame: patched(udp_frame(&e, &n4, 0, 0, &[8, 0, 0, 0, 0, 1, 0, 1]), &[(14 + 9, 1)]),
            expect: Expect::Pass,
        },
        Fixture {
            name: "other-ipv4-later-fragment",
            // Fragment offset 16 × 8 bytes: no TCP header in this fragment.
            frame: patched(tcp_frame(&e, &n4, &to_cucm, &ka), &[(14 + 6, 0x00), (14 + 7, 0x10)]),
            expect: Expect::Pass,
        },
        Fixture {
            name: "other-lldp",
            frame: [&[0x01, 0x80, 0xc2, 0, 0, 0x0e][..], &PHONE_MAC, &[0x88, 0xcc], &[0u8; 46]]
                .concat(),
            expect: Expect::Pass,
        },
        Fixture {
            name: "other-three-tags",
            frame: tcp_frame(&e.clone().vlan(110).vlan(111).qinq(3001), &n4, &to_cucm, &ka),
            expect: Expect::Pass,
        },
        Fixture {
            name: "bad-ipv4-ihl",
            // IHL 3 (12 bytes): shorter than the fixed IPv4 header.
            frame: patched(tcp_frame(&e, &n4, &to_cucm, &ka), &[(14, 0x43)]),
            expect: Expect::Malformed,
        },
        Fixture {
            name: "bad-tcp-doff",
            // TCP data offset 2 (8 bytes): shorter than the fixed TCP header.
            frame: patched(tcp_frame(&e, &n4, &to_cucm, &ka), &[(14 + 20 + 12, 0x20)]),
            expect: Expect::Malformed,
        },
        Fixture {
            // The ports say SCCP, but the TCP header ends after 10 bytes.
            name: "bad-ipv4-truncated-tcp",
            frame: tcp_frame(&e, &n4, &to_cucm, &ka)[..14 + 20 + 10].to_vec(),
            expect: Expect::Malformed,
        },
    ];
    // A REGISTER larger than the copy window: the event carries the first SIP_COPY_MAX bytes.
    let mut big = reg.clone();
    let pad = format!("X-Pad: {}\r\n\r\n", "a".repeat(600));
    big.truncate(big.len() - 2);
    big.extend_from_slice(pad.as_bytes());
    f.push(Fixture {
        name: "sip-register-large",
        frame: tcp_frame(&e, &sip4, &to_sip, &big),
        expect: Expect::Tcp,
    });
    f
}
