//! ARP for IPv4 over Ethernet (RFC 826): requests and replies, with both hardware addresses.

use super::{eth, set_v4_mapped, Decision, Outcome, L2};
use crate::{
    reader::Reader,
    wire::{Event, EventKind},
};

const ARP_LEN: usize = 28;

#[inline(always)]
pub(super) fn decide<R: Reader + ?Sized>(r: &R, l2: L2) -> Decision {
    match r.bytes::<6>(l2.l3_off) {
        // htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4; anything else is not ours.
        Some([0, 1, 8, 0, 6, 4]) => Decision::Arp(l2),
        Some(_) => Decision::Skip(Outcome::Pass),
        None => Decision::Skip(Outcome::Malformed),
    }
}

#[inline(always)]
pub(super) fn fill<R: Reader + ?Sized>(r: &R, off: usize, ev: &mut Event) -> Outcome {
    // One bounded load for the whole body: every later use is of initialised bytes (separate
    // optional loads let the compiler compute with undefined registers on the failure paths,
    // which the verifier rejects as pointer arithmetic).
    let Some(a) = r.bytes::<ARP_LEN>(off) else {
        return Outcome::Malformed;
    };
    ev.kind = EventKind::Arp as u8;
    ev.ip_version = 4;
    ev.arp_op = u16::from_be_bytes([a[6], a[7]]);
    ev.arp_sha = [a[8], a[9], a[10], a[11], a[12], a[13]];
    set_v4_mapped(&mut ev.src_addr, [a[14], a[15], a[16], a[17]]);
    ev.arp_tha = [a[18], a[19], a[20], a[21], a[22], a[23]];
    set_v4_mapped(&mut ev.dst_addr, [a[24], a[25], a[26], a[27]]);
    eth::fill_macs(r, ev);
    Outcome::Arp
}
