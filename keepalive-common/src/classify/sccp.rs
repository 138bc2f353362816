//! SCCP (Skinny): walks the PDUs that start in a segment and records each message id.
//!
//! PDU layout (Wireshark `packet-skinny.c`): `u32 LE length` (message id + body), `u32 LE header
//! version`, `u32 LE message id`, body; the whole PDU is `length + 8` bytes. Several PDUs may
//! share a segment and one may span segments: the bytes of a PDU that run past the segment end
//! are reported in `spill` so the caller can skip them at the start of the next segment.
//! A segment carrying a Register is marked for a payload copy (`copy_len`), for the device
//! name in its body.

use super::TcpMatch;
use crate::{
    reader::Reader,
    wire::{sccp_msg, Event, MAX_PDUS, SIP_COPY_MAX},
};

/// Largest plausible PDU length; anything larger is not SCCP (or we lost alignment).
const MAX_PDU_LEN: u32 = 0x1_0000;
/// Header versions seen on the wire: 0 (basic) and the protocol versions (v10 = 0x0A, ...,
/// v22 = 0x16). A little headroom above v22; garbage has random high bytes.
const MAX_HEADER_VERSION: u32 = 0x3f;
const PDU_HLEN: usize = 12;

#[inline(always)]
pub(super) fn parse<R: Reader + ?Sized>(r: &R, m: &TcpMatch, skip: u32, ev: &mut Event) {
    let skip = skip as usize;
    if skip >= m.payload_len {
        // The whole segment is the middle of a PDU that started earlier.
        ev.spill = (skip - m.payload_len) as u32;
        return;
    }
    let end = m.payload_off + m.payload_len;
    let mut off = m.payload_off + skip;
    let mut i = 0;
    while i < MAX_PDUS {
        if off + PDU_HLEN > end {
            break;
        }
        let Some(h) = r.bytes::<PDU_HLEN>(off) else {
            break;
        };
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let version = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if !(4..=MAX_PDU_LEN).contains(&len) || version > MAX_HEADER_VERSION {
            break;
        }
        let id = sccp_msg::from_wire(u32::from_le_bytes([h[8], h[9], h[10], h[11]]));
        ev.pdus[i] = id;
        if id == sccp_msg::REGISTER {
            // The Register body starts with the device name (`SEP…`): copy the segment, as
            // for SIP, so userspace can name the phone. Once per registration, so cheap.
            let present = r.len().saturating_sub(m.payload_off);
            let copy = if m.payload_len < present { m.payload_len } else { present };
            ev.copy_len = if copy < SIP_COPY_MAX { copy } else { SIP_COPY_MAX } as u16;
        }
        ev.pdu_count += 1;
        let next = off + 8 + len as usize;
        if next > end {
            ev.spill = (next - end) as u32;
            break;
        }
        off = next;
        i += 1;
    }
}
