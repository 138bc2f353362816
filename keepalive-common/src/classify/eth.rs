//! Ethernet II and up to [`MAX_VLANS`] stacked VLAN tags (802.1Q `0x8100`, 802.1ad `0x88a8`,
//! and the pre-standard QinQ `0x9100`).

use super::L2;
use crate::{
    reader::Reader,
    wire::{Event, MAX_VLANS},
};

pub(super) const ETH_P_IP: u16 = 0x0800;
pub(super) const ETH_P_ARP: u16 = 0x0806;
pub(super) const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ1: u16 = 0x9100;
pub(super) const ETH_HLEN: usize = 14;
pub(super) const VLAN_HLEN: usize = 4;

/// Whether `ethertype` is a VLAN tag's TPID.
#[inline(always)]
pub(super) const fn is_vlan(ethertype: u16) -> bool {
    matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1)
}

/// The innermost ethertype and the link-layer facts; `None` for a runt (not ours to judge).
#[inline(always)]
pub(super) fn parse<R: Reader + ?Sized>(r: &R) -> Option<(u16, L2)> {
    let mut ethertype = r.be16(12)?;
    let mut l2 = L2 { vlans: [0; MAX_VLANS], vlan_count: 0, l3_off: ETH_HLEN, ethernet: true };
    let mut i = 0;
    while i < MAX_VLANS {
        if !is_vlan(ethertype) {
            break;
        }
        let tag = r.bytes::<4>(l2.l3_off)?;
        l2.vlans[i] = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        l2.vlan_count += 1;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l2.l3_off += VLAN_HLEN;
        i += 1;
    }
    Some((ethertype, l2))
}

/// An inner frame that starts at its IP header (GRE's IP payloads): the EtherType its version
/// nibble stands for, and no link layer. A version that is neither 4 nor 6 is not IP.
#[inline(always)]
pub(super) fn parse_bare_ip<R: Reader + ?Sized>(r: &R) -> Option<(u16, L2)> {
    let ethertype = match r.u8_at(0)? >> 4 {
        4 => ETH_P_IP,
        6 => ETH_P_IPV6,
        _ => 0,
    };
    Some((ethertype, L2 { vlans: [0; MAX_VLANS], vlan_count: 0, l3_off: 0, ethernet: false }))
}

/// Destination and source MAC.
#[inline(always)]
pub(super) fn fill_macs<R: Reader + ?Sized>(r: &R, ev: &mut Event) {
    if let Some(m) = r.bytes::<12>(0) {
        ev.dst_mac = [m[0], m[1], m[2], m[3], m[4], m[5]];
        ev.src_mac = [m[6], m[7], m[8], m[9], m[10], m[11]];
    }
}
