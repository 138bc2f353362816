//! The outer layers a remote mirror or a campus fabric wraps a frame in, peeled to the inner
//! frame that the Ethernet/VLAN/IP/TCP walk then reads:
//! - GRE (RFC 2784, with RFC 2890's key and sequence number) carrying Ethernet (transparent
//!   Ethernet bridging, 0x6558) or an IP packet (0x0800, 0x86dd);
//! - ERSPAN as Cisco switches send it (draft-foschiano-erspan-03): type I (GRE protocol 0x88BE
//!   without a sequence number, no ERSPAN header), type II (0x88BE with one, §4.1) and type III
//!   (0x22EB, §4.2, with its optional platform-specific subheader);
//! - VXLAN (RFC 7348 §5) on the configured UDP port.
//!
//! A tunnel is read in two steps, so that the first one costs bare traffic almost nothing:
//! the IP walk only sees that a packet is GRE, or UDP to the VXLAN port ([`Link::Gre`],
//! [`Link::Vxlan`] at the transport header); reading that header then says where the inner
//! frame starts, what link layer it has, and what identifies its segment (VNI, ERSPAN
//! session id, GRE key). In the kernel each step is a program of its own. GRE of another
//! version (PPTP's enhanced GRE is version 1), with source routing (RFC 1701's R bit), or of
//! another protocol type is not ours: it passes.

use super::{ip::L3, Decision, Outcome};
use crate::{
    reader::Reader,
    wire::{Config, Encap},
};

/// Outer layers peeled before giving up: a frame wrapped deeper passes (counted as
/// `encap_too_deep`).
pub const MAX_ENCAP: usize = 2;

/// The link layer an inner frame starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header (VLAN tags may follow).
    Ethernet,
    /// An IPv4 or IPv6 header, told apart by its version nibble (GRE's IP payloads, ERSPAN
    /// type III's IP frame type).
    Ip,
    /// A GRE header (an IP packet's protocol 47), not read yet.
    Gre,
    /// The UDP header of a datagram to the VXLAN port, its VXLAN header not read yet.
    Vxlan,
}

/// Where a peeled layer's inner frame is, and what it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inner {
    /// Offset of the inner frame from the start of the frame this layer was read in.
    pub off: usize,
    /// Its link layer.
    pub link: Link,
    /// The layer's kind; [`Encap::None`] for the first step, which finds a tunnel header and
    /// peels nothing yet.
    pub encap: Encap,
    /// What identifies the inner segment: the VNI, the ERSPAN session id or the GRE key; 0
    /// when the layer carries none.
    pub segment: u32,
}

/// IP protocol number of GRE.
pub(super) const IPPROTO_GRE: u8 = 47;
/// IP protocol number of UDP.
pub(super) const IPPROTO_UDP: u8 = 17;

/// GRE header fields (RFC 2784 §2.1, RFC 2890 §2).
mod gre {
    use core::ops::Range;

    /// Flags and version, then the protocol type.
    pub const FLAGS: Range<usize> = 0..2;
    pub const PROTOCOL: Range<usize> = 2..4;
    /// The fixed part; each optional field present adds 4 bytes, in this order: checksum and
    /// reserved, key, sequence number.
    pub const HLEN: usize = 4;
    pub const CHECKSUM_PRESENT: u16 = 0x8000;
    pub const ROUTING_PRESENT: u16 = 0x4000;
    pub const KEY_PRESENT: u16 = 0x2000;
    pub const SEQ_PRESENT: u16 = 0x1000;
    pub const VERSION: u16 = 0x0007;

    pub const ETHERNET: u16 = 0x6558;
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const ERSPAN_I_II: u16 = 0x88be;
    pub const ERSPAN_III: u16 = 0x22eb;
}

/// ERSPAN headers (draft-foschiano-erspan-03 §4.1, §4.2). Both begin with the same word:
/// version (4 bits), VLAN (12), CoS (3), encapsulation type or BSO (2), truncated (1) and the
/// session id (10).
mod erspan {
    /// Type II: that word and the 20-bit index.
    pub const II_LEN: usize = 8;
    /// Type III: that word, the 32-bit timestamp, the SGT and the word ending in the O bit.
    pub const III_LEN: usize = 12;
    /// Type III's optional platform-specific subheader (O bit set).
    pub const III_PLATFORM_LEN: usize = 8;
    pub const VERSION_II: u8 = 1;
    pub const VERSION_III: u8 = 2;
    pub const SESSION_MASK: u32 = 0x3ff;
    /// Type III's last word: P (1), frame type (5), hardware id (6), D (1), granularity (2),
    /// O (1).
    pub const FT_SHIFT: u16 = 10;
    pub const FT_MASK: u16 = 0x1f;
    pub const FT_ETHERNET: u16 = 0;
    pub const FT_IP: u16 = 2;
    pub const O_BIT: u16 = 1;
}

/// VXLAN header (RFC 7348 §5): flags (the I flag says the VNI is valid), 24 reserved bits, the
/// 24-bit VNI and 8 reserved bits; after the 8-byte UDP header.
mod vxlan {
    pub const UDP_HLEN: usize = 8;
    pub const HLEN: usize = 8;
    pub const FLAG_I: u8 = 0x08;
}

#[inline(always)]
fn tunnel(off: usize, link: Link, encap: Encap, segment: u32) -> Decision {
    Decision::Tunnel(Inner { off, link, encap, segment })
}

/// The first step for a GRE packet: its header is at `l3.l4_off`.
#[inline(always)]
pub(super) fn gre_at(l3: &L3) -> Decision {
    tunnel(l3.l4_off, Link::Gre, Encap::None, 0)
}

/// A GRE header at the start of `r`.
#[inline(always)]
pub(super) fn gre<R: Reader + ?Sized>(r: &R) -> Decision {
    let off = 0;
    let Some(h) = r.bytes::<{ gre::HLEN }>(off) else {
        return Decision::Skip(Outcome::Malformed);
    };
    let flags = u16::from_be_bytes([h[gre::FLAGS.start], h[gre::FLAGS.start + 1]]);
    let protocol = u16::from_be_bytes([h[gre::PROTOCOL.start], h[gre::PROTOCOL.start + 1]]);
    if flags & (gre::VERSION | gre::ROUTING_PRESENT) != 0 {
        return Decision::Skip(Outcome::Pass);
    }
    let checksum = usize::from(flags & gre::CHECKSUM_PRESENT != 0) * 4;
    let key_off = off + gre::HLEN + checksum;
    let key = if flags & gre::KEY_PRESENT != 0 {
        match r.be32(key_off) {
            Some(k) => k,
            None => return Decision::Skip(Outcome::Malformed),
        }
    } else {
        0
    };
    let seq = flags & gre::SEQ_PRESENT != 0;
    let body = key_off + usize::from(flags & gre::KEY_PRESENT != 0) * 4 + usize::from(seq) * 4;
    match protocol {
        gre::ETHERNET => tunnel(body, Link::Ethernet, Encap::GreEthernet, key),
        gre::IPV4 | gre::IPV6 => tunnel(body, Link::Ip, Encap::GreIp, key),
        // Type I has no sequence number and no ERSPAN header: the mirrored frame follows.
        gre::ERSPAN_I_II if !seq => tunnel(body, Link::Ethernet, Encap::ErspanI, 0),
        gre::ERSPAN_I_II => {
            let Some(w) = r.be32(body) else {
                return Decision::Skip(Outcome::Malformed);
            };
            if (w >> 28) as u8 != erspan::VERSION_II {
                return Decision::Skip(Outcome::Pass);
            }
            let session = w & erspan::SESSION_MASK;
            tunnel(body + erspan::II_LEN, Link::Ethernet, Encap::ErspanII, session)
        }
        gre::ERSPAN_III => {
            let Some(e) = r.bytes::<{ erspan::III_LEN }>(body) else {
                return Decision::Skip(Outcome::Malformed);
            };
            let w = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            if (w >> 28) as u8 != erspan::VERSION_III {
                return Decision::Skip(Outcome::Pass);
            }
            let last = u16::from_be_bytes([e[10], e[11]]);
            let platform = usize::from(last & erspan::O_BIT != 0) * erspan::III_PLATFORM_LEN;
            let link = match (last >> erspan::FT_SHIFT) & erspan::FT_MASK {
                erspan::FT_ETHERNET => Link::Ethernet,
                erspan::FT_IP => Link::Ip,
                _ => return Decision::Skip(Outcome::Pass),
            };
            let session = w & erspan::SESSION_MASK;
            tunnel(body + erspan::III_LEN + platform, link, Encap::ErspanIII, session)
        }
        _ => Decision::Skip(Outcome::Pass),
    }
}

/// The first step for a UDP datagram whose header starts at `l3.l4_off`: VXLAN when it goes
/// to the configured port, otherwise not ours (one load of the port, then out).
#[inline(always)]
pub(super) fn udp<R: Reader + ?Sized>(r: &R, cfg: &Config, l3: &L3) -> Decision {
    // The same load as TCP's ports (the compiler shares it between the two).
    let Some(ports) = r.bytes::<4>(l3.l4_off) else {
        return Decision::Skip(Outcome::Pass);
    };
    let dst = u16::from_be_bytes([ports[2], ports[3]]);
    if cfg.vxlan_port == 0 || dst != cfg.vxlan_port {
        return Decision::Skip(Outcome::Pass);
    }
    tunnel(l3.l4_off, Link::Vxlan, Encap::None, 0)
}

/// A UDP header to the VXLAN port at the start of `r`, and the VXLAN header after it.
#[inline(always)]
pub(super) fn vxlan<R: Reader + ?Sized>(r: &R) -> Decision {
    let off = vxlan::UDP_HLEN;
    let Some(h) = r.bytes::<{ vxlan::HLEN }>(off) else {
        return Decision::Skip(Outcome::Malformed);
    };
    // Without the I flag the VNI is not valid (RFC 7348 §5): another protocol on this port
    // (VXLAN-GPE's next-protocol bit, say) is not read as Ethernet.
    if h[0] & vxlan::FLAG_I == 0 {
        return Decision::Skip(Outcome::Pass);
    }
    let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
    tunnel(off + vxlan::HLEN, Link::Ethernet, Encap::Vxlan, vni)
}
