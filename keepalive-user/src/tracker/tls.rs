//! TLS (SCCP 2443, SIP 5061): keepalives inferred from record timing, size and answer, since
//! the message types are encrypted.
//!
//! What the wire still shows (the classifier walks every record header of a segment: content
//! type, length): a phone's keepalive is an application-data record of one size, sent on a
//! fixed period (SCCP: 30 s to the primary, 60 s to the backup; SIP: a REGISTER every
//! granted − delta). The primary answers with a record (KeepAliveAck, 200 OK) within
//! milliseconds; an SCCP backup answers with a bare TCP ACK. Call signalling on the same
//! connection has other sizes and comes in bursts.
//!
//! So each pair *learns* its keepalive: the phone's application-data records are kept, up to
//! [`OBSERVED`], until [`LEARN_RECORDS`] of one size are spaced regularly, at least
//! [`MIN_PERIOD_S`] apart, none of them in a burst of its size (the bodiless requests a phone
//! sends after its Register are a KeepAlive's size, and the first KeepAlive comes one period
//! after them). No size is fixed in advance: the cipher suite decides the overhead
//! (AES-GCM in TLS 1.2 adds 29 bytes to SCCP's 12-byte KeepAlive, TLS 1.3 adds 22). Those
//! records become the pair's first keepalives, with the answers and TCP ACKs they got; from
//! then on a record of the learned size is a keepalive unless it comes sooner than half a
//! period after the previous one on its connection, or after the SYN of a new connection (a
//! phone never sends early, and registers before its first KeepAlive), and every other record is
//! counted as something else. Until then the row is `learning` and has no keepalives: no rule
//! guesses. When the learned size stops appearing for [`RELEARN_PERIODS`] periods while the
//! phone still sends (a new TLS session may use another cipher), the pair learns again.
//!
//! An answer is the first server application-data record after a keepalive, within half a
//! period, of the answer size: the size two answers agreed on (a lone record of another size,
//! such as a TLS 1.3 session ticket right after the first KeepAlive to a backup, answers
//! nothing). While learning, the first [`ANSWER_CANDIDATES`] server records in the window are
//! all kept, since a server may first send what it had queued (the answers to the phone's
//! requests after its Register) and the ack after them. SIP over TLS carries no visible
//! Expires: the row's Expires stay unknown and each REGISTER is due one learned period after
//! the answer to the previous one (the phone refreshes `granted − delta` after its 200 OK).
//!
//! In TLS 1.3 every record after the handshake is `application_data` on the wire (RFC 8446
//! §5.2: the true type is inside the encryption). Alerts, KeyUpdate and NewSessionTicket
//! messages then look like application data too; they are rare and of other sizes, so they
//! are counted with the other records and never form a period.

use std::collections::VecDeque;

use keepalive_common::wire::{App, Event, TlsContent};
use serde::Serialize;

use super::{
    pair::{secs, Answer, Keepalive, Pair},
    Settings,
};

/// Phone records remembered while learning.
pub const OBSERVED: usize = 16;
/// Regular records of one size needed to learn a keepalive.
pub const LEARN_RECORDS: usize = 3;
/// The shortest keepalive period that is learned (nominal seconds; a lab's time scale shrinks
/// it): bursts of call signalling are closer than this.
pub const MIN_PERIOD_S: f64 = 5.0;
/// Two intervals are one timer when they differ by at most this fraction of the longer (plus
/// [`super::pair::INTERVAL_TOLERANCE_S`]): a keepalive whose first copy was lost arrives late
/// by its retransmission delay, which at case study 2's 3.36 s is 3 % of SIP's 115 s.
pub const PERIOD_TOLERANCE: f64 = 0.12;
/// The pair learns again when its keepalive size has not been seen for this many periods
/// while the phone sent other records.
pub const RELEARN_PERIODS: f64 = 3.0;
/// How long an answer may take while nothing is learned yet (nominal seconds).
const LEARNING_ANSWER_S: f64 = 15.0;

/// Server records kept per phone record while learning, as candidate answers: a CUCM may send
/// what it had queued (the answers to a phone's requests, call signalling) before the ack.
pub const ANSWER_CANDIDATES: usize = 4;

/// A phone record seen while learning, with the server records that may answer it.
#[derive(Clone, Debug)]
struct Observed {
    ka: Keepalive,
    /// Record length.
    len: u16,
    /// The first server records within the answer window: µs after the record, and length.
    answers: [(u32, u16); ANSWER_CANDIDATES],
    /// How many of `answers` are filled.
    answered: u8,
}

impl Observed {
    fn new(ka: Keepalive, len: u16) -> Self {
        Self { ka, len, answers: [(0, 0); ANSWER_CANDIDATES], answered: 0 }
    }

    /// The candidate answers: when each came (ns) and its length.
    fn answers(&self) -> impl Iterator<Item = (u64, u16)> + '_ {
        self.answers[..usize::from(self.answered)]
            .iter()
            .map(|&(us, len)| (self.ka.first_ns + u64::from(us) * 1_000, len))
    }
}

/// What a pair has learned about its keepalive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learned {
    /// Length of the keepalive record (the TLS record header's length field).
    pub record_len: u16,
    /// The period it was learned with (s, first copy to first copy).
    pub period_s: f64,
    /// When it was learned.
    pub since_ns: u64,
}

/// The inference state of one TLS pair.
#[derive(Clone, Debug, Default)]
pub struct TlsState {
    observed: VecDeque<Observed>,
    /// The keepalive, once learned.
    pub learned: Option<Learned>,
    /// The answer record's length, once two answers agreed.
    pub answer_len: Option<u16>,
    /// The lengths of the latest candidate answers, while `answer_len` is unknown.
    recent_answers: [u16; 2],
    /// Application-data records from the phone that are not keepalives.
    pub other_records: u64,
    /// Application-data records from the phone, all of them.
    pub phone_records: u64,
    /// Records from the server, all of them.
    pub server_records: u64,
    /// Handshake, alert and change-cipher-spec records (either side).
    pub control_records: u64,
    /// When the latest keepalive was answered, and on which phone port.
    last_answer: Option<(u16, u64)>,
    /// Times the pair learned again.
    pub relearned: u64,
}

/// What a report shows of a TLS pair's inference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TlsSummary {
    /// `learning` until a keepalive is learned, then `learned`.
    pub state: &'static str,
    /// The keepalive record's length (bytes of the record, as its header states).
    pub keepalive_record_bytes: Option<u16>,
    /// The answer record's length.
    pub answer_record_bytes: Option<u16>,
    /// The period the keepalive was learned with (s).
    pub learned_period_s: Option<f64>,
    /// Application-data records from the phone that were not keepalives (call signalling).
    pub other_records: u64,
    /// Handshake, alert and change-cipher-spec records.
    pub control_records: u64,
}

impl TlsState {
    /// The summary a report shows.
    pub fn summary(&self) -> TlsSummary {
        TlsSummary {
            state: if self.learned.is_some() { "learned" } else { "learning" },
            keepalive_record_bytes: self.learned.map(|l| l.record_len),
            answer_record_bytes: self.answer_len,
            learned_period_s: self.learned.map(|l| super::super::findings::round(l.period_s, 3)),
            other_records: self.other_records,
            control_records: self.control_records,
        }
    }

    /// Enough seen to be a phone rather than a candidate: the phone sent application data
    /// and the server answered the handshake (a spoofed SYN never gets this far).
    pub fn established(&self) -> bool {
        self.phone_records > 0 && self.server_records > 0
    }

    /// A copy of the phone's segment `seq` seen again at `ts_ns` while learning.
    fn copy_seen(&mut self, port: u16, seq: u32, ts_ns: u64) -> bool {
        match self.observed.iter_mut().rev().find(|o| o.ka.phone_port == port && o.ka.seq == seq) {
            Some(o) => {
                o.ka.copy_seen(ts_ns);
                true
            }
            None => false,
        }
    }

    /// The server's cumulative ACK `ack` at `ts_ns` covers records seen while learning.
    pub fn tcp_ack(&mut self, port: u16, ack: u32, ts_ns: u64) {
        for o in self.observed.iter_mut().rev().take(4) {
            let ka = &mut o.ka;
            if ka.phone_port == port
                && ka.tcp_ack_ns().is_none()
                && !super::tcp::seq_after(ka.end(), ack)
            {
                ka.set_tcp_ack_ns(ts_ns);
            }
        }
    }
}

/// Record lengths that are one message: SCCP's are exact (the same plaintext under the same
/// cipher); a SIP REGISTER grows by a byte when its CSeq gains a digit, so SIP allows 1/32.
fn same_size(app: App, learned: u16, len: u16) -> bool {
    let tolerance = if app == App::SipTls { learned / 32 } else { 0 };
    learned.abs_diff(len) <= tolerance
}

/// Two intervals of one timer (see [`PERIOD_TOLERANCE`]).
fn regular(a: f64, b: f64, min_period: f64) -> bool {
    a >= min_period
        && b >= min_period
        && (a - b).abs() <= PERIOD_TOLERANCE * a.max(b) + super::pair::INTERVAL_TOLERANCE_S
}

/// A new segment on a TLS connection: its records, in order.
pub fn segment(pair: &mut Pair, ev: &Event, from_phone: bool, settings: &Settings) {
    let mut st = pair.tls.take().unwrap_or_default();
    let mut keepalive_taken = false;
    for (content, len) in ev.tls_records() {
        if content != TlsContent::ApplicationData {
            st.control_records += 1;
            if !from_phone {
                st.server_records += 1;
            }
            continue;
        }
        if from_phone {
            st.phone_records += 1;
            // One keepalive per segment at most: a second record of the size in the same
            // segment is not the timer.
            keepalive_taken |= phone_record(pair, &mut st, ev, len, keepalive_taken, settings);
        } else {
            st.server_records += 1;
            server_record(pair, &mut st, ev.ts_ns, ev.dst_port, len, settings);
        }
    }
    pair.tls = Some(st);
}

/// A copy of the phone's segment `seq` seen again: the keepalive it carried (learned or still
/// being learned) gets the copy.
pub fn retransmission(pair: &mut Pair, port: u16, seq: u32, ts_ns: u64) {
    if let Some(ka) = pair.history.iter_mut().rev().find(|k| k.phone_port == port && k.seq == seq) {
        ka.copy_seen(ts_ns);
        return;
    }
    if let Some(st) = pair.tls.as_mut() {
        st.copy_seen(port, seq, ts_ns);
    }
}

/// An application-data record of `len` bytes from the phone; `true` when it is a keepalive.
fn phone_record(
    pair: &mut Pair,
    st: &mut TlsState,
    ev: &Event,
    len: u16,
    keepalive_taken: bool,
    settings: &Settings,
) -> bool {
    let port = ev.src_port;
    let end = ev.seq.wrapping_add(u32::from(ev.payload_len));
    let ka = Keepalive::new(ev.ts_ns, ev.seq, end, port, ev.dst_mac);
    if let Some(l) = st.learned {
        // Since the previous keepalive on this connection or, on a new one, since its SYN: a
        // phone's first KeepAlive comes a period after it registers, and the bodiless
        // requests it sends right after registering (TimeDateReq, ButtonTemplateReq, …) are
        // a KeepAlive's size.
        let previous = pair.history.iter().rev().find(|k| k.phone_port == port).map(|k| k.first_ns);
        let since = previous.or_else(|| {
            pair.reconnects.iter().rev().find(|r| r.new_port == port).map(|r| r.time_ns)
        });
        let early = since.is_some_and(|t| secs(ev.ts_ns.saturating_sub(t)) < l.period_s / 2.0);
        if !keepalive_taken && !early && same_size(pair.app, l.record_len, len) {
            push(pair, st, ka);
            // What a later relearning may use starts after the latest keepalive.
            st.observed.clear();
            return true;
        }
        st.other_records += 1;
        observe(st, Observed::new(ka, len));
        let last = pair.history.back().map_or(l.since_ns, |k| k.first_ns.max(l.since_ns));
        if secs(ev.ts_ns.saturating_sub(last)) > RELEARN_PERIODS * l.period_s
            && learn(pair, st, settings)
        {
            st.relearned += 1;
        }
        return false;
    }
    observe(st, Observed::new(ka, len));
    learn(pair, st, settings);
    false
}

fn observe(st: &mut TlsState, o: Observed) {
    if st.observed.len() == OBSERVED {
        st.observed.pop_front();
    }
    st.observed.push_back(o);
}

/// Looks for [`LEARN_RECORDS`] regular records of one size among those observed; when found,
/// they become the pair's first keepalives. The most recent such run wins, and of two sizes
/// whose runs end together, the shorter period.
fn learn(pair: &mut Pair, st: &mut TlsState, settings: &Settings) -> bool {
    let min_period = settings.wall_s(MIN_PERIOD_S);
    let obs = &st.observed;
    // (index of the run's last record, period, the run's indices)
    let mut best: Option<(usize, f64, Vec<usize>)> = None;
    for (c, newest) in obs.iter().enumerate().rev() {
        let alike = |i: usize| {
            obs[i].ka.phone_port == newest.ka.phone_port
                && same_size(pair.app, newest.len, obs[i].len)
        };
        // A record with another of its size closer than the shortest period is in a burst
        // (the requests after a Register, a call's messages), never a timer's.
        let lone = |i: usize| {
            !(0..obs.len()).any(|j| {
                j != i
                    && alike(j)
                    && secs(obs[i].ka.first_ns.abs_diff(obs[j].ka.first_ns)) < min_period
            })
        };
        let members: Vec<usize> = (0..=c).filter(|&i| alike(i) && lone(i)).collect();
        if members.len() < LEARN_RECORDS {
            continue;
        }
        // The latest triple ending at `c` whose two intervals are one timer.
        let t = |i: usize| obs[i].ka.first_ns;
        let mut found: Option<(f64, [usize; 3])> = None;
        'outer: for (bi, &b) in members.iter().enumerate().rev().skip(1) {
            for &a in members[..bi].iter().rev() {
                let (i1, i2) = (secs(t(b) - t(a)), secs(t(c) - t(b)));
                if regular(i1, i2, min_period) {
                    found = Some((i1.min(i2), [a, b, c]));
                    break 'outer;
                }
            }
        }
        let Some((period, run)) = found else {
            continue;
        };
        let better = match &best {
            None => true,
            Some((bc, bp, _)) => c > *bc || (c == *bc && period < *bp),
        };
        if better {
            best = Some((c, period, run.to_vec()));
        }
        // Runs ending earlier cannot win over one ending here.
        if best.as_ref().is_some_and(|(bc, _, _)| *bc == c) {
            break;
        }
    }
    let Some((_, period_s, run)) = best else {
        return false;
    };
    let record_len = st.observed[run[0]].len;
    let observed = std::mem::take(&mut st.observed);
    st.learned = Some(Learned { record_len, period_s, since_ns: observed[run[0]].ka.first_ns });
    // The answer's size is one at least two of the run's answers share; an answer of another
    // size (a TLS 1.3 session ticket sent as the handshake ends, just after the first
    // KeepAlive to a backup) answers nothing.
    let app = pair.app;
    // Each member counts a size once, however many of its candidates have it. Of the sizes
    // most members share, one as long as the keepalive (SCCP's KeepAliveAck is, under the same
    // cipher), else the one that came last after its keepalive (queued records go first).
    let answered_with = |o: &Observed, a: u16| o.answers().any(|(_, b)| same_size(app, a, b));
    st.answer_len = run
        .iter()
        .flat_map(|&i| observed[i].answers().enumerate().map(|(at, (_, len))| (len, at)))
        .map(|(a, at)| {
            let n = run.iter().filter(|&&i| answered_with(&observed[i], a)).count();
            (a, (n, same_size(app, record_len, a), at))
        })
        .filter(|(_, (n, _, _))| *n >= 2)
        .max_by_key(|(_, rank)| *rank)
        .map(|(a, _)| a);
    // Without one, the run's answers become the candidates (`answer_fits` records them).
    st.recent_answers = [0; 2];
    for (i, o) in observed.into_iter().enumerate() {
        if !run.contains(&i) {
            continue;
        }
        // The first candidate of the answer size or, with none agreed, the first candidate.
        let answer = match st.answer_len {
            Some(a) => o.answers().find(|&(_, len)| same_size(app, a, len)),
            None => o.answers().next(),
        };
        push(pair, st, o.ka);
        if let Some((ts, _)) = answer.filter(|(_, len)| answer_fits(app, st, *len)) {
            let last = pair.history.len() - 1;
            answered(pair, st, last, ts);
        }
    }
    true
}

/// Whether a server record of `len` bytes can be an answer: of the learned answer size, or,
/// before two answers agreed on one, of the size of one of the latest two candidates (which
/// then becomes the answer size). So a lone record of another size is never taken for an
/// answer: one stray record must not make a backup a primary.
fn answer_fits(app: App, st: &mut TlsState, len: u16) -> bool {
    if let Some(a) = st.answer_len {
        return same_size(app, a, len);
    }
    if st.recent_answers.iter().any(|&a| a != 0 && same_size(app, a, len)) {
        st.answer_len = Some(len);
        return true;
    }
    st.recent_answers = [st.recent_answers[1], len];
    false
}

/// Appends a keepalive; on SIP it is due one period after the previous one's answer.
fn push(pair: &mut Pair, st: &TlsState, mut ka: Keepalive) {
    if pair.app == App::SipTls {
        let due = st
            .learned
            .zip(st.last_answer.filter(|(p, _)| *p == ka.phone_port))
            .map(|(l, (_, at))| at.saturating_add((l.period_s * 1e9) as u64));
        ka = ka.with_sip(0, due, None);
    }
    pair.push_keepalive(ka);
}

/// An application-data record of `len` bytes from the server to `port`: the answer to the
/// latest keepalive still unanswered, if it fits.
fn server_record(
    pair: &mut Pair,
    st: &mut TlsState,
    ts_ns: u64,
    port: u16,
    len: u16,
    settings: &Settings,
) {
    let window_s = st.learned.map_or(settings.wall_s(LEARNING_ANSWER_S), |l| l.period_s / 2.0);
    if st.learned.is_some() {
        // The latest keepalive on this connection, if nothing answered it yet.
        if let Some(i) = pair.history.iter().rposition(|k| k.phone_port == port) {
            let ka = &pair.history[i];
            let in_window = ts_ns >= ka.first_ns && secs(ts_ns - ka.first_ns) <= window_s;
            if ka.answer == Answer::None && in_window && answer_fits(pair.app, st, len) {
                answered(pair, st, i, ts_ns);
                return;
            }
        }
    }
    // Learning, or a record answering none: it may answer a record observed since (which a
    // relearning would take).
    let Some(o) = st.observed.iter_mut().rev().find(|o| o.ka.phone_port == port) else {
        return;
    };
    let in_window = ts_ns >= o.ka.first_ns && secs(ts_ns - o.ka.first_ns) <= window_s;
    let n = usize::from(o.answered);
    if in_window && n < ANSWER_CANDIDATES {
        let us = u32::try_from((ts_ns - o.ka.first_ns) / 1_000).unwrap_or(u32::MAX);
        o.answers[n] = (us, len);
        o.answered += 1;
    }
}

/// Keepalive `i` of the history was answered at `ts_ns`.
fn answered(pair: &mut Pair, st: &mut TlsState, i: usize, ts_ns: u64) {
    pair.answer(i, ts_ns);
    st.last_answer = Some((pair.history[i].phone_port, ts_ns));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a secure pair can hold for learning, as README's memory figures state it: the
    /// records observed (kept while the pair learns, and after it for a relearning) and the
    /// state itself.
    #[test]
    fn a_learning_pair_holds_at_most_what_readme_says() {
        let most = OBSERVED * std::mem::size_of::<Observed>() + std::mem::size_of::<TlsState>();
        assert!(most <= 1_600, "{most} bytes: README (Hostile traffic) says 1.6 KB");
    }
}
