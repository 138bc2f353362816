//! TCP: the tracked-port match (the last fast-path exit) and the header fields of a match.

use super::{ip::L3, Decision, Outcome, TcpMatch, L2};
use crate::{
    reader::Reader,
    wire::{App, Config, Event, EventKind, SIP_COPY_MAX},
};

#[inline(always)]
pub(super) fn decide<R: Reader + ?Sized>(r: &R, cfg: &Config, l2: L2, l3: L3) -> Decision {
    let Some(ports) = r.bytes::<4>(l3.l4_off) else {
        return Decision::Skip(Outcome::Pass);
    };
    let app = cfg.app_for(
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    );
    if app == App::None {
        return Decision::Skip(Outcome::Pass);
    }
    // Data offset (byte 12, high nibble).
    let Some(doff) = r.u8_at(l3.l4_off + 12) else {
        return Decision::Skip(Outcome::Malformed);
    };
    let doff = ((doff >> 4) as usize) * 4;
    if doff < 20 || l3.l4_len < doff {
        return Decision::Skip(Outcome::Malformed);
    }
    Decision::Tcp(TcpMatch {
        l2,
        app,
        ip_version: l3.version,
        l4_off: l3.l4_off,
        payload_off: l3.l4_off + doff,
        payload_len: l3.l4_len - doff,
    })
}

#[inline(always)]
pub(super) fn fill<R: Reader + ?Sized>(r: &R, m: &TcpMatch, ev: &mut Event) -> Outcome {
    let Some(h) = r.bytes::<16>(m.l4_off) else {
        return Outcome::Malformed;
    };
    ev.kind = EventKind::Tcp as u8;
    ev.app = m.app as u8;
    ev.src_port = u16::from_be_bytes([h[0], h[1]]);
    ev.dst_port = u16::from_be_bytes([h[2], h[3]]);
    ev.seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    ev.ack = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    ev.tcp_flags = h[13];
    ev.payload_len = m.payload_len as u16;
    ev.payload_off = m.payload_off as u16;
    if m.app == App::Sip {
        // The bytes the XDP program copies after the event: what the frame holds, at most
        // SIP_COPY_MAX. Userspace parses SIP headers from them.
        let present = r.len().saturating_sub(m.payload_off);
        ev.copy_len = min(min(m.payload_len, present), SIP_COPY_MAX) as u16;
    }
    Outcome::Tcp
}

#[inline(always)]
fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}
