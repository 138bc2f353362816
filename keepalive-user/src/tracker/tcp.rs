//! One direction of one TCP connection: tells new data from retransmitted copies by sequence
//! number, and remembers when each recent segment was first seen so a retransmission's delay
//! is measured from the first copy.
//!
//! Rules, as Wireshark's `tcp.analysis` applies them:
//! * SYN and FIN occupy one sequence number each (RFC 9293 §3.4), so a repeated SYN is a
//!   retransmission too;
//! * a segment that does not reach past the highest sequence number seen, or starts before it,
//!   is a retransmission;
//! * a zero- or one-byte segment one below the next sequence number is a TCP keep-alive probe
//!   (RFC 9293 §3.8.4), not a retransmission;
//! * a SYN with a different initial sequence number starts a new connection on the same ports.

use keepalive_common::wire::tcp_flags;

/// Segments remembered per direction for first-copy lookups: a phone has one or two keepalive
/// segments in flight at a time (a REGISTER may take two), and their retransmissions come
/// within seconds, long before the next keepalive.
const RECENT: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Seg {
    seq: u32,
    /// The keepalive's id, truncated ([`NO_KEEPALIVE`]: none): 16 bytes a segment instead of 24.
    keepalive: u32,
    first_ns: u64,
}

const NO_KEEPALIVE: u32 = u32::MAX;

/// What a segment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Carries no sequence space (a pure ACK).
    Empty,
    /// New data (or the first segment seen).
    New,
    /// A copy of data already seen; `delay_ns` when the first copy was seen, and the keepalive
    /// the first copy carried.
    Retransmission {
        /// Time since the first copy.
        delay_ns: Option<u64>,
        /// The keepalive of the first copy.
        keepalive: Option<u64>,
    },
    /// A TCP keep-alive probe.
    Probe,
}

/// Sequence state of one direction.
#[derive(Debug)]
pub struct Stream {
    /// The tracker slot of the pair this direction belongs to.
    pub pair: usize,
    /// The slot's generation when the stream was made: a slot reused by another pair has
    /// another, so a stream left behind never feeds the wrong pair.
    pub generation: u32,
    /// Sent by the phone.
    pub from_phone: bool,
    /// The interface this direction was first seen on; copies seen on another interface (a
    /// capture on `any` records a routed frame twice) are ignored.
    pub ifindex: u32,
    isn: Option<u32>,
    next: Option<u32>,
    /// The last [`RECENT`] new data segments, a ring written at `recent_next` (inline: a
    /// heap deque cost two allocations per phone).
    recent: [Seg; RECENT],
    recent_len: u8,
    recent_next: u8,
    /// SIP reassembly of this direction, only while a message is incomplete (an idle
    /// assembler is equivalent to a new one, and most directions are idle most of the time).
    sip: Option<Box<super::sip::Assembler>>,
}

/// `a` is after `b` in sequence space (RFC 9293 §3.4, modulo 2^32).
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Stream {
    /// A direction first seen on `ifindex`.
    pub fn new(pair: usize, from_phone: bool, ifindex: u32) -> Self {
        Self {
            pair,
            generation: 0,
            from_phone,
            ifindex,
            isn: None,
            next: None,
            recent: [Seg { seq: 0, keepalive: NO_KEEPALIVE, first_ns: 0 }; RECENT],
            recent_len: 0,
            recent_next: 0,
            sip: None,
        }
    }

    /// Feeds a new SIP segment to this direction's reassembly (see
    /// [`super::sip::Assembler::feed`]); `true` when a partial message was given up on for
    /// its size.
    pub fn feed_sip(
        &mut self,
        ts_ns: u64,
        seq: u32,
        len: u16,
        payload: &[u8],
        out: &mut Vec<super::sip::Parsed>,
    ) -> bool {
        // A direction with no partial message feeds a fresh assembler on the stack, boxed only
        // when the segment leaves part of a message (most hold whole ones).
        let mut fresh = super::sip::Assembler::default();
        let a = self.sip.as_deref_mut().unwrap_or(&mut fresh);
        let oversized = a.feed(ts_ns, seq, len, payload, out);
        match (a.is_idle(), self.sip.is_some()) {
            (true, _) => self.sip = None,
            (false, false) => self.sip = Some(Box::new(fresh)),
            (false, true) => {}
        }
        oversized
    }

    /// Bytes of a partial SIP message held by this direction.
    pub fn sip_buffered(&self) -> usize {
        self.sip.as_ref().map_or(0, |a| a.buffered())
    }

    /// Drops the partial SIP message (the reassembly budget is spent); the direction
    /// resynchronises on its next start line.
    pub fn drop_sip(&mut self) {
        self.sip = None;
    }

    /// Classifies a segment and updates the state.
    pub fn segment(&mut self, ts_ns: u64, seq: u32, payload_len: u16, flags: u8) -> Verdict {
        let syn = flags & tcp_flags::SYN != 0;
        let fin = flags & tcp_flags::FIN != 0;
        let len = u32::from(payload_len) + u32::from(syn) + u32::from(fin);
        if syn && self.isn.is_some_and(|isn| isn != seq) {
            // Same ports, new connection.
            self.isn = None;
            self.next = None;
            self.recent_len = 0;
            self.sip = None;
        }
        if syn {
            self.isn = Some(seq);
        }
        if len == 0 {
            return Verdict::Empty;
        }
        let end = seq.wrapping_add(len);
        let Some(next) = self.next else {
            self.next = Some(end);
            self.remember(seq, ts_ns);
            return Verdict::New;
        };
        if !syn && !fin && len <= 1 && seq == next.wrapping_sub(1) {
            return Verdict::Probe;
        }
        if seq_after(end, next) && !seq_after(next, seq) {
            self.next = Some(end);
            self.remember(seq, ts_ns);
            return Verdict::New;
        }
        if seq_after(end, next) {
            self.next = Some(end);
        }
        let first = self.recent().find(|s| s.seq == seq).copied();
        Verdict::Retransmission {
            delay_ns: first.map(|s| ts_ns.saturating_sub(s.first_ns)),
            keepalive: first
                .filter(|s| s.keepalive != NO_KEEPALIVE)
                .map(|s| u64::from(s.keepalive)),
        }
    }

    /// Slots of the remembered segments in `recent`, newest first.
    fn recent_slots(&self) -> impl Iterator<Item = usize> + use<> {
        let (n, next) = (usize::from(self.recent_len), usize::from(self.recent_next));
        (1..=n).map(move |k| (next + RECENT - k) % RECENT)
    }

    /// The remembered segments, newest first.
    fn recent(&self) -> impl Iterator<Item = &Seg> {
        self.recent_slots().map(|i| &self.recent[i])
    }

    fn remember(&mut self, seq: u32, ts_ns: u64) {
        let i = usize::from(self.recent_next);
        self.recent[i] = Seg { seq, keepalive: NO_KEEPALIVE, first_ns: ts_ns };
        self.recent_next = ((i + 1) % RECENT) as u8;
        self.recent_len = (usize::from(self.recent_len) + 1).min(RECENT) as u8;
    }

    /// Ties the keepalive `id` to the segment starting at `seq` (so its copies find it).
    pub fn tag(&mut self, seq: u32, id: u64) {
        if let Some(i) = self.recent_slots().find(|&i| self.recent[i].seq == seq) {
            // Ids beyond 2^32 − 1 keepalives on one pair wrap; the tag then misses.
            self.recent[i].keepalive = u32::try_from(id).unwrap_or(NO_KEEPALIVE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_common::wire::tcp_flags::{ACK, PSH, SYN};

    #[test]
    fn copies_are_retransmissions_with_their_delay() {
        let mut s = Stream::new(0, true, 0);
        assert_eq!(s.segment(0, 100, 0, SYN), Verdict::New);
        assert!(matches!(s.segment(1_000, 100, 0, SYN), Verdict::Retransmission { .. }));
        assert_eq!(s.segment(2_000, 101, 12, PSH | ACK), Verdict::New);
        s.tag(101, 7);
        assert_eq!(
            s.segment(202_000, 101, 12, PSH | ACK),
            Verdict::Retransmission { delay_ns: Some(200_000), keepalive: Some(7) }
        );
        assert_eq!(s.segment(300_000, 113, 0, ACK), Verdict::Empty);
        assert_eq!(s.segment(400_000, 112, 1, ACK), Verdict::Probe);
        assert_eq!(s.segment(500_000, 113, 12, PSH | ACK), Verdict::New);
        // A new SYN with another ISN resets the direction.
        assert_eq!(s.segment(600_000, 9, 0, SYN), Verdict::New);
    }

    #[test]
    fn sequence_wraps() {
        let mut s = Stream::new(0, true, 0);
        assert_eq!(s.segment(0, u32::MAX - 5, 12, ACK), Verdict::New);
        assert_eq!(s.segment(1, 6, 12, ACK), Verdict::New);
        assert!(matches!(s.segment(2, u32::MAX - 5, 12, ACK), Verdict::Retransmission { .. }));
    }
}
