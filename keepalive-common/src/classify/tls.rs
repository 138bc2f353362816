//! TLS (SCCP 2443, SIP 5061): the message types are encrypted, so what is recorded is the
//! framing: the header of every record that starts in the segment (content type, length),
//! up to [`MAX_PDUS`], in the event's `pdus` and `tls_types`.
//!
//! Record header (RFC 8446 §5.1, RFC 5246 §6.2.1): `u8 content type` (20 change_cipher_spec,
//! 21 alert, 22 handshake, 23 application_data), `u16 BE legacy version` (0x0300..=0x0304;
//! TLS 1.3 writes 0x0303), `u16 BE length` of the fragment that follows, at most 2^14 + 2048
//! (RFC 5246 §6.2.3; TLS 1.3 allows 2^14 + 256). A record longer than what is left of the
//! segment continues in the next ones: the bytes beyond this segment go in `spill`, and the
//! caller skips them at the start of the segment that begins where this one ends (as for
//! SCCP). A segment that starts inside a record with no resume state (the flow was not seen
//! from its start) fails the header check and records nothing; the walk finds its footing
//! again at the next segment that starts a record, which for a phone is the next keepalive.
//! A header split across two segments is not reassembled: the walk stops there, and resumes
//! the same way.

use super::TcpMatch;
use crate::{
    reader::Reader,
    wire::{Event, TlsContent, MAX_PDUS},
};

/// The record header's length.
pub const HEADER_LEN: usize = 5;
/// Field ranges of a record header.
mod field {
    use core::ops::Range;
    /// Content type.
    pub const TYPE: usize = 0;
    /// Legacy protocol version, major byte (3 for SSL 3.0 to TLS 1.3).
    pub const VERSION_MAJOR: usize = 1;
    /// Legacy protocol version, minor byte.
    pub const VERSION_MINOR: usize = 2;
    /// Fragment length, big-endian.
    pub const LENGTH: Range<usize> = 3..5;
}
/// The largest fragment any TLS version allows (TLS 1.2's ciphertext bound).
pub const MAX_RECORD_LEN: u16 = (1 << 14) + 2048;

/// A record header's content type and length, if the five bytes are one.
#[inline(always)]
pub fn header(h: &[u8; HEADER_LEN]) -> Option<(TlsContent, u16)> {
    let content = TlsContent::from_wire(h[field::TYPE])?;
    let len = u16::from_be_bytes([h[field::LENGTH.start], h[field::LENGTH.start + 1]]);
    let version_ok = h[field::VERSION_MAJOR] == 3 && h[field::VERSION_MINOR] <= 4;
    (version_ok && len <= MAX_RECORD_LEN).then_some((content, len))
}

#[inline(always)]
pub(super) fn parse<R: Reader + ?Sized>(r: &R, m: &TcpMatch, skip: u32, ev: &mut Event) {
    let skip = skip as usize;
    if skip >= m.payload_len {
        // The whole segment is the middle of a record that started earlier.
        ev.spill = (skip - m.payload_len) as u32;
        return;
    }
    let end = m.payload_off + m.payload_len;
    let mut off = m.payload_off + skip;
    let mut i = 0;
    while i < MAX_PDUS {
        if off + HEADER_LEN > end {
            break;
        }
        let Some(h) = r.bytes::<HEADER_LEN>(off) else {
            break;
        };
        let Some((content, len)) = header(&h) else {
            break;
        };
        ev.pdus[i] = len;
        ev.tls_types |= (content as u16) << (2 * i);
        ev.pdu_count += 1;
        let next = off + HEADER_LEN + len as usize;
        if next > end {
            ev.spill = (next - end) as u32;
            break;
        }
        off = next;
        i += 1;
    }
}
