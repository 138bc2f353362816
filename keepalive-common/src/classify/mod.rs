//! The packet classifier: decides what a frame is and fills an [`Event`] with what the tracker
//! needs. Written once; the XDP program and the capture reader both call it.
//!
//! It runs in stages so that unrelated traffic costs as little as possible and so that the XDP
//! program can consult per-flow state before the application bytes are read:
//! 0. [`gate`]: the EtherType, the IP protocol and the ports, against a bit set of the tracked
//!    ports. The kernel's first program is this and nothing else: what it lets through is
//!    tail-called into the program that runs the stages below.
//! 1. [`decide`]: Ethernet, VLAN tags, IPv4/IPv6, TCP ports — offsets only, nothing written.
//!    Unrelated traffic leaves here after the fewest loads possible. A GRE, ERSPAN or VXLAN
//!    packet is a [`Decision::Tunnel`]: where its inner frame starts ([`tunnel`]). The host
//!    peels in a loop ([`peel`]); the XDP program hands the inner frame to a second program.
//! 2. [`fill`]: for a match, a zeroed [`Event`] gets addresses, MACs, TCP header fields or the
//!    ARP body.
//! 3. [`classify_app`]: the application bytes of a tracked segment: SCCP PDUs, the SIP start
//!    line, or the TLS record headers.
//!
//! Stages 2 and 3 read the inner frame through a reader based at its offset ([`At`] here, the
//! XDP reader's own base in the kernel), and [`Peeled::stamp`] writes what the outer layers
//! said into the event. [`classify`] runs all three with no carried state (a segment that
//! starts mid-PDU is not resumed).

mod arp;
mod eth;
mod gate;
mod ip;
mod sccp;
mod sip;
mod tcp;
pub mod tls;
pub mod tunnel;

use crate::{
    reader::Reader,
    wire::{App, Config, Counters, Encap, Event, EventKind, MAX_VLANS},
};
pub use gate::gate;
pub use tunnel::{Inner, Link, MAX_ENCAP};

/// What the classifier decided about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a frame keepalive follows: leave it alone.
    Pass,
    /// A frame of a followed protocol that is truncated or malformed (counted, not recorded).
    Malformed,
    /// A TCP segment on a tracked port; the event is filled.
    Tcp,
    /// An ARP request or reply; the event is filled.
    Arp,
}

/// Link-layer facts of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2 {
    /// VLAN ids, outer first.
    pub vlans: [u16; MAX_VLANS],
    /// Number of tags.
    pub vlan_count: u8,
    /// Offset of the network header.
    pub l3_off: usize,
    /// Whether the frame has an Ethernet header (an IP packet peeled from GRE has none).
    pub ethernet: bool,
}

/// A TCP segment on a tracked port, located by offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpMatch {
    /// Link layer.
    pub l2: L2,
    /// Protocol of the matched port.
    pub app: App,
    /// 4 or 6.
    pub ip_version: u8,
    /// Offset of the TCP header.
    pub l4_off: usize,
    /// Offset of the TCP payload.
    pub payload_off: usize,
    /// Length of the TCP payload, from the IP length fields (Ethernet padding excluded).
    pub payload_len: usize,
}

/// Result of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// [`Outcome::Pass`] or [`Outcome::Malformed`]: nothing to record.
    Skip(Outcome),
    /// An ARP frame (IPv4 over Ethernet) whose body is at `l2.l3_off`.
    Arp(L2),
    /// A TCP segment on a tracked port.
    Tcp(TcpMatch),
    /// A GRE, ERSPAN or VXLAN packet: the inner frame to read next.
    Tunnel(Inner),
}

/// Stage 1: what is this Ethernet frame? Reads headers, writes nothing. One layer only: a
/// tunnel is a [`Decision::Tunnel`] (see [`peel`]).
#[inline(always)]
pub fn decide<R: Reader + ?Sized>(r: &R, cfg: &Config) -> Decision {
    decide_link(r, cfg, Link::Ethernet)
}

/// [`decide`] for a frame that starts with `link`.
#[inline(always)]
pub fn decide_link<R: Reader + ?Sized>(r: &R, cfg: &Config, link: Link) -> Decision {
    let parsed = match link {
        Link::Ethernet => eth::parse(r),
        Link::Ip => eth::parse_bare_ip(r),
        Link::Gre => return tunnel::gre(r),
        Link::Vxlan => return tunnel::vxlan(r),
    };
    let Some((ethertype, l2)) = parsed else {
        return Decision::Skip(Outcome::Pass);
    };
    let l3 = match ethertype {
        eth::ETH_P_ARP => return arp::decide(r, l2),
        eth::ETH_P_IP => ip::parse_v4(r, l2.l3_off),
        eth::ETH_P_IPV6 => ip::parse_v6(r, l2.l3_off),
        // A GRE payload whose version nibble is neither 4 nor 6 is broken, not foreign.
        _ if link == Link::Ip => return Decision::Skip(Outcome::Malformed),
        _ => return Decision::Skip(Outcome::Pass),
    };
    match l3 {
        Ok(l3) => match l3.proto {
            ip::IPPROTO_TCP => tcp::decide(r, cfg, l2, l3),
            tunnel::IPPROTO_GRE => tunnel::gre_at(&l3),
            _ => tunnel::udp(r, cfg, &l3),
        },
        Err(o) => Decision::Skip(o),
    }
}

/// What the outer layers of a frame said, for its event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peeled {
    /// Offset of the inner frame in the whole frame (0 when not encapsulated).
    pub base: usize,
    /// Layers peeled.
    pub layers: u8,
    /// The innermost layer's kind.
    pub encap: Encap,
    /// The innermost layer's segment id that is not 0 (VNI, ERSPAN session, GRE key).
    pub segment: u32,
}

impl Peeled {
    /// One more step, `inner` read in the frame at `self.base`: a layer when its kind is
    /// known, the way to a tunnel header otherwise.
    #[inline(always)]
    pub fn push(&mut self, inner: &Inner) {
        self.base += inner.off;
        if inner.encap == Encap::None {
            return;
        }
        self.layers += 1;
        self.encap = inner.encap;
        if inner.segment != 0 {
            self.segment = inner.segment;
        }
    }

    /// Writes the layers into a filled event; a TCP event's payload offset becomes the whole
    /// frame's.
    #[inline(always)]
    pub fn stamp(&self, ev: &mut Event) {
        ev.encap = self.encap as u8;
        ev.segment = self.segment;
        if ev.kind == EventKind::Tcp as u8 {
            ev.payload_off = ev.payload_off.wrapping_add(self.base as u16);
        }
    }
}

/// Counts one peeled layer in the per-CPU counters.
#[inline(always)]
pub fn count_encap(counters: &mut Counters, encap: Encap) {
    match encap {
        Encap::GreEthernet | Encap::GreIp => counters.encap_gre += 1,
        Encap::ErspanI | Encap::ErspanII | Encap::ErspanIII => counters.encap_erspan += 1,
        Encap::Vxlan => counters.encap_vxlan += 1,
        Encap::None => {}
    }
}

/// Stage 1 on the host: [`decide`], peeling up to [`MAX_ENCAP`] outer layers (each counted).
/// The decision's offsets are relative to `peeled.base`: read the inner frame with
/// [`At`]`::new(r, peeled.base)`. A frame wrapped deeper passes, counted in `encap_too_deep`.
pub fn peel<R: Reader + ?Sized>(
    r: &R,
    cfg: &Config,
    counters: &mut Counters,
) -> (Decision, Peeled) {
    let mut peeled = Peeled::default();
    let mut d = decide(r, cfg);
    while let Decision::Tunnel(inner) = d {
        count_encap(counters, inner.encap);
        if inner.encap != Encap::None && usize::from(peeled.layers) == MAX_ENCAP {
            counters.encap_too_deep += 1;
            return (Decision::Skip(Outcome::Pass), peeled);
        }
        peeled.push(&inner);
        d = decide_link(&At::new(r, peeled.base), cfg, inner.link);
    }
    (d, peeled)
}

/// A reader over the bytes of `r` from `base` on: an inner frame.
#[derive(Debug)]
pub struct At<'a, R: ?Sized> {
    r: &'a R,
    base: usize,
}

impl<'a, R: Reader + ?Sized> At<'a, R> {
    /// The view of `r` from `base`.
    #[inline(always)]
    pub fn new(r: &'a R, base: usize) -> Self {
        Self { r, base }
    }
}

impl<R: Reader + ?Sized> Reader for At<'_, R> {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.r.bytes(self.base.checked_add(off)?)
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.r.len().saturating_sub(self.base)
    }
}

/// Stage 2: fills `ev` (which must be zeroed) for a match. Returns the final outcome: a frame
/// whose body turns out truncated is [`Outcome::Malformed`].
#[inline(always)]
pub fn fill<R: Reader + ?Sized>(r: &R, d: &Decision, ev: &mut Event) -> Outcome {
    match d {
        Decision::Skip(o) => *o,
        // Peel first: a tunnel is not an event of its own.
        Decision::Tunnel(_) => Outcome::Pass,
        Decision::Arp(l2) => {
            ev.vlans = l2.vlans;
            ev.vlan_count = l2.vlan_count;
            arp::fill(r, l2.l3_off, ev)
        }
        Decision::Tcp(m) => {
            ev.vlans = m.l2.vlans;
            ev.vlan_count = m.l2.vlan_count;
            if m.l2.ethernet {
                eth::fill_macs(r, ev);
            }
            if ip::fill_addrs(r, m.l2.l3_off, m.ip_version, ev).is_none() {
                return Outcome::Malformed;
            }
            tcp::fill(r, m, ev)
        }
    }
}

/// Stage 3: the application bytes of a tracked TCP segment.
///
/// `skip` is how many bytes at the start of this segment belong to an SCCP PDU or a TLS record
/// that began in an earlier segment (0 when unknown or aligned); see
/// [`crate::wire::FlowStats`].
#[inline(always)]
pub fn classify_app<R: Reader + ?Sized>(r: &R, m: &TcpMatch, skip: u32, ev: &mut Event) {
    if m.payload_len == 0 {
        return;
    }
    match m.app {
        App::Sccp => sccp::parse(r, m, skip, ev),
        App::Sip => sip::parse(r, m, ev),
        App::SccpTls | App::SipTls => tls::parse(r, m, skip, ev),
        App::None => {}
    }
}

/// All stages, outer layers peeled, with no carried flow state. `ev` must be zeroed.
pub fn classify<R: Reader + ?Sized>(r: &R, cfg: &Config, ev: &mut Event) -> Outcome {
    let (d, peeled) = peel(r, cfg, &mut Counters::default());
    let inner = At::new(r, peeled.base);
    let o = fill(&inner, &d, ev);
    if let (Outcome::Tcp, Decision::Tcp(m)) = (o, &d) {
        classify_app(&inner, m, 0, ev);
    }
    if matches!(o, Outcome::Tcp | Outcome::Arp) {
        peeled.stamp(ev);
    }
    o
}

/// IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) of an IPv4 address, as events store it.
#[inline(always)]
pub const fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]
}

/// Writes `a` IPv4-mapped into an address field of a zeroed event: only the six non-zero
/// bytes. Assigning a whole [`v4_mapped`] array makes LLVM emit the ten zero bytes as a call to
/// BPF's byte-at-a-time `memset` subprogram, twice per matched packet.
#[inline(always)]
fn set_v4_mapped(dst: &mut [u8; 16], a: [u8; 4]) {
    dst[10] = 0xff;
    dst[11] = 0xff;
    dst[12] = a[0];
    dst[13] = a[1];
    dst[14] = a[2];
    dst[15] = a[3];
}
