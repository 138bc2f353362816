//! SIP: what the segment's start line is (REGISTER, another request, a response and its code,
//! or a continuation). Headers are parsed in userspace from the copied payload.

use super::TcpMatch;
use crate::{
    reader::Reader,
    wire::{Event, SipKind},
};

#[inline(always)]
pub(super) fn parse<R: Reader + ?Sized>(r: &R, m: &TcpMatch, ev: &mut Event) {
    ev.sip_kind = start_line(r, m, ev) as u8;
}

#[inline(always)]
fn start_line<R: Reader + ?Sized>(r: &R, m: &TcpMatch, ev: &mut Event) -> SipKind {
    let off = m.payload_off;
    // The shortest start line we classify is "SIP/2.0 200" (11 bytes) or "ACK sip:x" (9).
    if m.payload_len < 9 {
        return SipKind::Continuation;
    }
    let Some(head) = r.bytes::<8>(off) else {
        return SipKind::Continuation;
    };
    let ninth = r.u8_at(off + 8).unwrap_or(0);
    if &head == b"REGISTER" && ninth == b' ' {
        return SipKind::Register;
    }
    if &head == b"SIP/2.0 " {
        if m.payload_len < 11 {
            return SipKind::Continuation;
        }
        let Some(d) = r.bytes::<3>(off + 8) else {
            return SipKind::Continuation;
        };
        if d.iter().all(u8::is_ascii_digit) {
            let digit = |b: u8| u16::from(b - b'0');
            ev.sip_status = digit(d[0]) * 100 + digit(d[1]) * 10 + digit(d[2]);
            return SipKind::Response;
        }
        return SipKind::Continuation;
    }
    // Another method: 3..=9 upper-case letters then a space (ACK .. SUBSCRIBE).
    let mut n = 0;
    while n < 8 && head[n].is_ascii_uppercase() {
        n += 1;
    }
    let is_request = match n {
        3..=7 => head[n] == b' ',
        8 => ninth == b' ' || (ninth.is_ascii_uppercase() && r.u8_at(off + 9) == Some(b' ')),
        _ => false,
    };
    if is_request {
        SipKind::OtherRequest
    } else {
        SipKind::Continuation
    }
}
