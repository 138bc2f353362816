//! The gate: the fewest loads that tell a frame the classifier may record (or count as
//! malformed) from one it certainly passes. The XDP and tc programs run it first, alone, and
//! hand only what passes to the classifier's program; offline reading runs it before it builds
//! anything for a frame.
//!
//! It reads what [`super::decide`] reads to leave, and no more: the EtherType (behind up to
//! [`MAX_VLANS`] tags), the IP protocol and, for TCP and UDP, the ports, tested against
//! [`PortFilter`] (one load each) and the VXLAN port. Anything it is unsure of passes it: an IP
//! header with options, a fragment, an IPv6 extension header, a truncated header, GRE. Its one
//! contract, checked on every fixture, truncation and mutation by the classifier tests and the
//! fuzz target: when [`gate`] says `false`, `decide` says [`Outcome::Pass`](super::Outcome).

use super::{
    eth::{ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, VLAN_HLEN},
    ip::IPPROTO_TCP,
    tunnel::{IPPROTO_GRE, IPPROTO_UDP},
};
use crate::{
    reader::Reader,
    wire::{Config, PortFilter, MAX_VLANS},
};

/// IPv4's header without options: version 4, IHL 5.
const V4_NO_OPTIONS: u8 = 0x45;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

/// Whether the frame may be one [`super::decide`] does not pass: ARP, TCP to or from a port of
/// `cfg.port_filter`, UDP to the VXLAN port, GRE, or anything malformed or unusual enough to
/// need the classifier's full walk.
#[inline(always)]
pub fn gate<R: Reader + ?Sized>(r: &R, cfg: &Config) -> bool {
    // A runt has no EtherType: the classifier passes it too.
    let Some(mut ethertype) = r.be16(12) else {
        return false;
    };
    let mut l3 = ETH_HLEN;
    let mut i = 0;
    while i < MAX_VLANS && super::eth::is_vlan(ethertype) {
        // A truncated tag is a runt to the classifier as well.
        let Some(inner) = r.be16(l3 + 2) else {
            return false;
        };
        ethertype = inner;
        l3 += VLAN_HLEN;
        i += 1;
    }
    match ethertype {
        ETH_P_ARP => true,
        ETH_P_IP => v4(r, cfg, l3),
        ETH_P_IPV6 => v6(r, cfg, l3),
        _ => false,
    }
}

#[inline(always)]
fn v4<R: Reader + ?Sized>(r: &R, cfg: &Config, off: usize) -> bool {
    // Version/IHL, total length, fragment field, protocol: the bytes `ip::parse_v4` judges.
    let Some(h) = r.bytes::<10>(off) else {
        return true;
    };
    let proto = h[9];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return proto == IPPROTO_GRE;
    }
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    // Options, a bad version or length, a later fragment: the classifier's to judge and count.
    if h[0] != V4_NO_OPTIONS || total < IPV4_HLEN || fragment != 0 {
        return true;
    }
    ports(r, cfg, proto, off + IPV4_HLEN)
}

#[inline(always)]
fn v6<R: Reader + ?Sized>(r: &R, cfg: &Config, off: usize) -> bool {
    let Some(h) = r.bytes::<8>(off) else {
        return true;
    };
    let next = h[6];
    if h[0] >> 4 != 6 {
        return true;
    }
    match next {
        IPPROTO_TCP | IPPROTO_UDP => ports(r, cfg, next, off + IPV6_HLEN),
        // Extension headers the classifier walks (hop-by-hop, routing, fragment, destination
        // options, authentication), and GRE.
        0 | 43 | 44 | 60 | 51 | IPPROTO_GRE => true,
        _ => false,
    }
}

/// TCP to or from a port that may be tracked, or UDP to the VXLAN port.
#[inline(always)]
fn ports<R: Reader + ?Sized>(r: &R, cfg: &Config, proto: u8, off: usize) -> bool {
    let Some(p) = r.bytes::<4>(off) else {
        return true;
    };
    let (src, dst) = (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]));
    if proto == IPPROTO_UDP {
        return cfg.vxlan_port != 0 && dst == cfg.vxlan_port;
    }
    let set: &PortFilter = &cfg.port_filter;
    set.may_hold(src) || set.may_hold(dst)
}
