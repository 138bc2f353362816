//! TLS (SCCP 2443, SIP 5061): message types are encrypted, so only the framing of the first
//! record header in the segment is recorded: content type (20 change-cipher-spec, 21 alert,
//! 22 handshake, 23 application data) and record length.

use super::TcpMatch;
use crate::{reader::Reader, wire::Event};

#[inline(always)]
pub(super) fn parse<R: Reader + ?Sized>(r: &R, m: &TcpMatch, ev: &mut Event) {
    if m.payload_len < 5 {
        return;
    }
    let Some(h) = r.bytes::<5>(m.payload_off) else {
        return;
    };
    // A segment that does not start a record (the middle of a large record) has no header.
    if (20..=23).contains(&h[0]) && h[1] == 3 {
        ev.tls_type = h[0];
        ev.tls_len = u16::from_be_bytes([h[3], h[4]]);
    }
}
