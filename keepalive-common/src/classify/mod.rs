//! The packet classifier: decides what a frame is and fills an [`Event`] with what the tracker
//! needs. Written once; the XDP program and the capture reader both call it.
//!
//! It runs in stages so that unrelated traffic costs as little as possible and so that the XDP
//! program can consult per-flow state before the application bytes are read:
//! 1. [`decide`]: Ethernet, VLAN tags, IPv4/IPv6, TCP ports — offsets only, nothing written.
//!    Unrelated traffic leaves here after the fewest loads possible.
//! 2. [`fill`]: for a match, a zeroed [`Event`] gets addresses, MACs, TCP header fields or the
//!    ARP body.
//! 3. [`classify_app`]: the application bytes of a tracked segment: SCCP PDUs, the SIP start
//!    line, or the TLS record headers.
//!
//! [`classify`] runs all three with no carried state (a segment that starts mid-PDU is not
//! resumed).

mod arp;
mod eth;
mod ip;
mod sccp;
mod sip;
mod tcp;
pub mod tls;

use crate::{
    reader::Reader,
    wire::{App, Config, Event, MAX_VLANS},
};

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
}

/// Stage 1: what is this frame? Reads headers, writes nothing.
#[inline(always)]
pub fn decide<R: Reader + ?Sized>(r: &R, cfg: &Config) -> Decision {
    let (ethertype, l2) = match eth::parse(r) {
        Some(x) => x,
        None => return Decision::Skip(Outcome::Pass),
    };
    let l3 = match ethertype {
        eth::ETH_P_ARP => return arp::decide(r, l2),
        eth::ETH_P_IP => ip::parse_v4(r, l2.l3_off),
        eth::ETH_P_IPV6 => ip::parse_v6(r, l2.l3_off),
        _ => return Decision::Skip(Outcome::Pass),
    };
    match l3 {
        Ok(l3) => tcp::decide(r, cfg, l2, l3),
        Err(o) => Decision::Skip(o),
    }
}

/// Stage 2: fills `ev` (which must be zeroed) for a match. Returns the final outcome: a frame
/// whose body turns out truncated is [`Outcome::Malformed`].
#[inline(always)]
pub fn fill<R: Reader + ?Sized>(r: &R, d: &Decision, ev: &mut Event) -> Outcome {
    match d {
        Decision::Skip(o) => *o,
        Decision::Arp(l2) => {
            ev.vlans = l2.vlans;
            ev.vlan_count = l2.vlan_count;
            arp::fill(r, l2.l3_off, ev)
        }
        Decision::Tcp(m) => {
            ev.vlans = m.l2.vlans;
            ev.vlan_count = m.l2.vlan_count;
            eth::fill_macs(r, ev);
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

/// All stages, with no carried flow state. `ev` must be zeroed.
#[inline(always)]
pub fn classify<R: Reader + ?Sized>(r: &R, cfg: &Config, ev: &mut Event) -> Outcome {
    let d = decide(r, cfg);
    let o = fill(r, &d, ev);
    if let (Outcome::Tcp, Decision::Tcp(m)) = (o, &d) {
        classify_app(r, m, 0, ev);
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
