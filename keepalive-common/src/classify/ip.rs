//! IPv4 (with options) and IPv6 (with a bounded walk over extension headers).
//! What is not TCP, GRE or UDP, and non-first fragments, leave as [`Outcome::Pass`].

use super::{
    set_v4_mapped,
    tunnel::{IPPROTO_GRE, IPPROTO_UDP},
    Outcome,
};
use crate::{reader::Reader, wire::Event};

pub(super) const IPPROTO_TCP: u8 = 6;
const IPV6_HLEN: usize = 40;
/// Extension headers walked before giving up (a frame with more is passed, not parsed).
const MAX_EXT_HEADERS: usize = 4;

/// Where the transport header starts and how many bytes the IP layer says it occupies.
#[derive(Clone, Copy)]
pub(super) struct L3 {
    pub version: u8,
    /// TCP, GRE or UDP (nothing else leaves this module).
    pub proto: u8,
    pub l4_off: usize,
    pub l4_len: usize,
}

#[inline(always)]
pub(super) fn parse_v4<R: Reader + ?Sized>(r: &R, off: usize) -> Result<L3, Outcome> {
    // Bytes 0..10 hold version/IHL, total length, fragment offset and protocol.
    let h = r.bytes::<10>(off).ok_or(Outcome::Malformed)?;
    if !carried(h[9]) {
        return Err(Outcome::Pass);
    }
    if h[0] >> 4 != 4 {
        return Err(Outcome::Malformed);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if ihl < 20 || total < ihl {
        return Err(Outcome::Malformed);
    }
    // A non-first fragment carries no TCP header.
    if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return Err(Outcome::Pass);
    }
    Ok(L3 { version: 4, proto: h[9], l4_off: off + ihl, l4_len: total - ihl })
}

#[inline(always)]
pub(super) fn parse_v6<R: Reader + ?Sized>(r: &R, off: usize) -> Result<L3, Outcome> {
    let h = r.bytes::<8>(off).ok_or(Outcome::Malformed)?;
    if h[0] >> 4 != 6 {
        return Err(Outcome::Malformed);
    }
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    let mut next = h[6];
    let mut l4_off = off + IPV6_HLEN;
    let mut i = 0;
    while i < MAX_EXT_HEADERS {
        match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                let e = r.bytes::<2>(l4_off).ok_or(Outcome::Malformed)?;
                next = e[0];
                l4_off += (e[1] as usize + 1) * 8;
            }
            // Fragment: 8 bytes; only the first fragment carries the TCP header.
            44 => {
                let e = r.bytes::<4>(l4_off).ok_or(Outcome::Malformed)?;
                if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                    return Err(Outcome::Pass);
                }
                next = e[0];
                l4_off += 8;
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                let e = r.bytes::<2>(l4_off).ok_or(Outcome::Malformed)?;
                next = e[0];
                l4_off += (e[1] as usize + 2) * 4;
            }
            _ => break,
        }
        i += 1;
    }
    if !carried(next) {
        return Err(Outcome::Pass);
    }
    let ext = l4_off - off - IPV6_HLEN;
    if payload < ext {
        return Err(Outcome::Malformed);
    }
    Ok(L3 { version: 6, proto: next, l4_off, l4_len: payload - ext })
}

/// The transports the classifier reads: TCP, and GRE and UDP for what they may carry.
#[inline(always)]
fn carried(proto: u8) -> bool {
    matches!(proto, IPPROTO_TCP | IPPROTO_GRE | IPPROTO_UDP)
}

/// Source and destination addresses of a matched packet.
#[inline(always)]
pub(super) fn fill_addrs<R: Reader + ?Sized>(
    r: &R,
    off: usize,
    version: u8,
    ev: &mut Event,
) -> Option<()> {
    ev.ip_version = version;
    if version == 4 {
        let a = r.bytes::<8>(off + 12)?;
        set_v4_mapped(&mut ev.src_addr, [a[0], a[1], a[2], a[3]]);
        set_v4_mapped(&mut ev.dst_addr, [a[4], a[5], a[6], a[7]]);
    } else {
        ev.src_addr = r.bytes::<16>(off + 8)?;
        ev.dst_addr = r.bytes::<16>(off + 24)?;
    }
    Some(())
}
