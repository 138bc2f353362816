//! SIP over TCP: reassembles one direction of a connection into messages and reads the headers
//! the tracker needs (RFC 3261 §7: header names are case-insensitive, compact forms exist,
//! long headers may be folded onto continuation lines; §18.3: over TCP, Content-Length frames
//! the body).
//!
//! Reassembly is in sequence order only: a gap (a segment the source did not see or could not
//! copy whole) drops the partial message and resynchronises on the next segment that starts
//! with a start line. Retransmitted copies are never fed (the caller filters them).

/// The largest message buffered before it is given up on (a REGISTER is a few hundred bytes).
const MAX_MESSAGE: usize = 64 * 1024;

use std::borrow::Cow;

use super::limits::MAX_SIP_HEAD;

/// The headers of one SIP message the tracker cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// `Some(code)` for a response.
    pub status: Option<u16>,
    /// The request method (`REGISTER`, ...) or, for a response, the CSeq method.
    pub method: String,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// `Expires` header.
    pub expires_header: Option<u32>,
    /// `;expires=` of the first Contact.
    pub contact_expires: Option<u32>,
    /// The Contact carries `cisco-keep-alive` (a keepalive to a backup CUCM).
    pub cisco_keep_alive: bool,
    /// `+u.sip!devicename.ccm.cisco.com` of the Contact.
    pub device: Option<String>,
    /// `+u.sip!model.ccm.cisco.com` of the Contact.
    pub model: Option<String>,
    /// User-Agent (requests) or Server (responses).
    pub user_agent: Option<String>,
}

impl Message {
    /// The expiry this message asks for or grants: the Contact parameter wins over the header
    /// (RFC 3261 §10.2.1.1, and CUCM's 200 OK carries both).
    pub fn expires(&self) -> Option<u32> {
        self.contact_expires.or(self.expires_header)
    }

    /// Parses the head of one message (start line and headers; the body is ignored).
    ///
    /// Nothing is allocated but the values kept: the head is read in place (it is valid UTF-8
    /// in any real message), lines are unfolded only where a continuation line follows, and
    /// header names are compared without case in place. Allocating a string per line and per
    /// lower-cased name was a fifth of `analyze`'s time on the bench's campus capture.
    pub fn parse(head: &[u8]) -> Option<Self> {
        Self::parse_framed(head).0
    }

    /// [`Message::parse`], and the head's Content-Length (the first raw line naming it, or its
    /// compact form `l`, whose value is a number), read in the same pass over its lines: `take`
    /// needs both for every message, and reading the head twice was a third of the SIP
    /// parsing's time.
    pub fn parse_framed(head: &[u8]) -> (Option<Self>, Option<usize>) {
        let text = text(head);
        let mut raw = Lines::new(&text);
        let mut length = None;
        let message = {
            let seen = raw.by_ref().inspect(|line| {
                if length.is_none() {
                    length = line_content_length(line);
                }
            });
            Self::parse_lines(Unfolded { lines: seen.peekable() })
        };
        // The lines after an early return (a start line that is not one) are still framing.
        for line in raw {
            if length.is_some() {
                break;
            }
            length = line_content_length(line);
        }
        (message, length)
    }

    fn parse_lines<'a, I: Iterator<Item = &'a str>>(mut lines: Unfolded<'a, I>) -> Option<Self> {
        let start = lines.next()?;
        let mut m = Self::default();
        if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
            m.status = Some(rest.get(..3)?.parse().ok()?);
        } else {
            let (method, rest) = start.split_once(' ')?;
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return None;
            }
            if !rest.trim_end().ends_with("SIP/2.0") {
                return None;
            }
            m.method = method.to_owned();
        }
        let mut contact_seen = false;
        for line in lines {
            let Some((name, value)) = split_colon(&line) else {
                continue;
            };
            let value = value.trim();
            let name = name.trim();
            let is = |n: &str| name.eq_ignore_ascii_case(n);
            if is("call-id") || is("i") {
                m.call_id = value.to_owned();
            } else if is("cseq") {
                let mut it = value.split_whitespace();
                m.cseq = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                if m.status.is_some() {
                    m.method = it.next().unwrap_or_default().to_owned();
                }
            } else if is("expires") {
                m.expires_header = value.parse().ok();
            } else if (is("contact") || is("m")) && !contact_seen {
                contact_seen = true;
                m.read_contact(value);
            } else if is("user-agent") || is("server") {
                m.user_agent = Some(value.to_owned());
            }
        }
        Some(m)
    }

    fn read_contact(&mut self, value: &str) {
        // Parameters of the contact follow the `>` of a name-addr (or the URI itself).
        let first = first_contact(value);
        let params = match first.find('>') {
            Some(i) => &first[i + 1..],
            None => first.split_once(';').map_or("", |(_, p)| p),
        };
        for p in params.split(';') {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = v.trim().trim_matches('"');
            let k = k.trim();
            if k.eq_ignore_ascii_case("expires") {
                self.contact_expires = v.parse().ok();
            } else if k.eq_ignore_ascii_case("cisco-keep-alive") {
                self.cisco_keep_alive = true;
            } else if k.eq_ignore_ascii_case("+u.sip!devicename.ccm.cisco.com") {
                self.device = Some(v.to_owned());
            } else if k.eq_ignore_ascii_case("+u.sip!model.ccm.cisco.com") {
                self.model = Some(v.to_owned());
            }
        }
    }
}

/// A message head as text: borrowed when it is valid UTF-8 (any real SIP head), with the
/// replacement character for what is not otherwise.
fn text(head: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(head) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(head),
    }
}

/// The lines of a text split at each `\n`, as `str::split('\n')` yields them. It finds the
/// byte with `memchr`: `str::split` with a `char` pattern calls `memcmp` for every match to
/// compare the char's one-byte encoding, a tenth of the SIP parsing's time.
#[derive(Clone, Debug)]
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: Some(text) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match memchr::memchr(b'\n', rest.as_bytes()) {
            // An ASCII byte is always a char boundary in valid UTF-8.
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => self.rest.take(),
        }
    }
}

/// `line.split_once(':')`, finding the byte with `memchr` (see [`Lines`]).
fn split_colon(line: &str) -> Option<(&str, &str)> {
    let i = memchr::memchr(b':', line.as_bytes())?;
    Some((&line[..i], &line[i + 1..]))
}

/// The lines of a head without their CR, folded lines joined (RFC 3261 §7.3.1: a line starting
/// with white space continues the one before, joined by one space). A line is borrowed unless
/// it was folded.
struct Unfolded<'a, I: Iterator<Item = &'a str>> {
    lines: std::iter::Peekable<I>,
}

impl<'a, I: Iterator<Item = &'a str>> Iterator for Unfolded<'a, I> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        let strip = |l: &'a str| l.strip_suffix('\r').unwrap_or(l);
        let mut line = Cow::Borrowed(strip(self.lines.next()?));
        while let Some(&next) = self.lines.peek() {
            let next = strip(next);
            if !next.starts_with([' ', '\t']) {
                break;
            }
            let joined = line.to_mut();
            joined.push(' ');
            joined.push_str(next.trim());
            self.lines.next();
        }
        Some(line)
    }
}

/// The first contact of a Contact value: up to the first comma that separates contacts (not
/// one inside quotes or angle brackets).
fn first_contact(value: &str) -> &str {
    let (mut quoted, mut angle) = (false, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => return value[..i].trim(),
            _ => {}
        }
    }
    value.trim()
}

/// One direction of a SIP connection, reassembled into messages.
#[derive(Debug, Default)]
pub struct Assembler {
    buf: Vec<u8>,
    /// Sequence number the next in-order byte has; `None` before the first segment.
    next: Option<u32>,
    /// Time and sequence number of the segment where the buffered message starts.
    start: Option<(u64, u32)>,
}

/// A complete message with the time and sequence number of its first segment.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Time of the first segment (its first copy).
    pub ts_ns: u64,
    /// Sequence number of the first segment.
    pub seq: u32,
    /// The headers.
    pub message: Message,
}

impl Assembler {
    /// Holds no partial message: equivalent to a new assembler.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes of the partial message held.
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Feeds a new (not retransmitted) segment: `payload` holds the first bytes of a segment of
    /// `len` payload bytes starting at `seq`. Complete messages are appended to `out`. Returns
    /// `true` when a partial message was given up on for its size: headers without their blank
    /// line beyond [`MAX_SIP_HEAD`], or a message beyond 64 KiB.
    pub fn feed(
        &mut self,
        ts_ns: u64,
        seq: u32,
        len: u16,
        payload: &[u8],
        out: &mut Vec<Parsed>,
    ) -> bool {
        if self.next != Some(seq) {
            // A gap (or the first segment): whatever was buffered cannot be completed.
            self.reset();
        }
        self.next = Some(seq.wrapping_add(u32::from(len)));
        let headless = if self.buf.is_empty() {
            // Only a start line may begin a message; CRLF keep-alives (RFC 5626 §4.4.1) and the
            // tail of a message whose start we missed are skipped.
            let trimmed = payload.iter().position(|b| !matches!(b, b'\r' | b'\n'));
            let Some(first) = trimmed else {
                return false;
            };
            if !looks_like_start_line(&payload[first..]) {
                return false;
            }
            // Most segments hold whole messages: they are read in place, and only a partial
            // message left at the end is copied.
            let data = &payload[first..];
            let (used, left) = take(data, (ts_ns, seq), out);
            self.start = Some((ts_ns, seq));
            self.keep(left, |buf| buf.extend_from_slice(&data[used..]))
        } else {
            self.buf.extend_from_slice(payload);
            let (used, left) = take(&self.buf, self.start.unwrap_or((0, 0)), out);
            self.keep(left, |buf| {
                buf.drain(..used);
            })
        };
        let oversized = self.buf.len() > MAX_MESSAGE || (headless && self.buf.len() > MAX_SIP_HEAD);
        if payload.len() < usize::from(len) || oversized {
            // The source copied only the first bytes of this segment: the rest is a gap. An
            // oversized message is dropped the same way, and the direction resynchronises on
            // the next segment that starts with a start line.
            self.reset();
            self.next = Some(seq.wrapping_add(u32::from(len)));
        }
        oversized
    }

    fn reset(&mut self) {
        self.buf = Vec::new();
        self.start = None;
    }

    /// After [`take`]: keeps what is `left` of a partial message (`keep` puts it in `buf`), or
    /// nothing; returns whether what is kept has not reached the end of its headers.
    fn keep(&mut self, left: Left, keep: impl FnOnce(&mut Vec<u8>)) -> bool {
        match left {
            Left::Partial { headless } => {
                keep(&mut self.buf);
                headless
            }
            // Most of the time a direction holds no partial message: no memory is kept (a
            // tracker holds two of these per phone). What follows a message and does not
            // start another is dropped the same way: the direction resynchronises on the next
            // segment that starts with a start line.
            Left::Nothing | Left::Garbage => {
                self.reset();
                false
            }
        }
    }
}

/// What [`take`] left after the complete messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Left {
    /// Nothing.
    Nothing,
    /// The start of a message: `headless` when it has not reached the end of its headers.
    Partial { headless: bool },
    /// Bytes that do not start a message.
    Garbage,
}

/// Takes every complete message from the start of `data`, each with the time and sequence
/// number `start` of the segment the buffered bytes began in; returns the bytes used and what
/// is left after them.
fn take(data: &[u8], start: (u64, u32), out: &mut Vec<Parsed>) -> (usize, Left) {
    let mut pos = 0;
    loop {
        let rest = &data[pos..];
        let Some(head_end) = find_head_end(rest) else {
            return (pos, Left::Partial { headless: true });
        };
        let head = &rest[..head_end.0];
        // The head is parsed before its body is known to be complete: a body arriving in a
        // later segment (rare: a REGISTER has none) costs a second parse then.
        let (message, body_len) = Message::parse_framed(head);
        // A Content-Length near usize::MAX (found by the `sip` fuzz target) must not wrap:
        // the message then never completes, and MAX_MESSAGE drops it.
        let total = head_end.1.saturating_add(body_len.unwrap_or(0));
        if rest.len() < total {
            return (pos, Left::Partial { headless: false });
        }
        let (ts_ns, seq) = start;
        if let Some(message) = message {
            out.push(Parsed { ts_ns, seq, message });
        }
        pos += total;
        pos += data[pos..].iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        if pos == data.len() {
            return (pos, Left::Nothing);
        }
        // The next message starts inside the same segment.
        if !looks_like_start_line(&data[pos..]) {
            return (pos, Left::Garbage);
        }
    }
}

fn looks_like_start_line(b: &[u8]) -> bool {
    if b.starts_with(b"SIP/2.0 ") {
        return true;
    }
    let n = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    (3..=16).contains(&n) && b.get(n) == Some(&b' ')
}

/// End of the header block: (end of headers, start of body).
fn find_head_end(b: &[u8]) -> Option<(usize, usize)> {
    if let Some(i) = memchr::memmem::find(b, b"\r\n\r\n") {
        return Some((i, i + 4));
    }
    memchr::memmem::find(b, b"\n\n").map(|i| (i, i + 2))
}

/// The body's length a head declares: the first raw line (framing does not unfold them)
/// named Content-Length (or its compact form `l`) whose value is a number.
#[cfg(test)]
fn content_length(head: &[u8]) -> Option<usize> {
    Lines::new(&text(head)).find_map(line_content_length)
}

fn line_content_length(line: &str) -> Option<usize> {
    let (name, value) = split_colon(line)?;
    let name = name.trim();
    (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
        .then(|| value.trim().parse().ok())?
}

/// A complete SIP message on a pair: REGISTERs from the phone open keepalives, responses to
/// REGISTER answer them (matched by Call-ID and CSeq). Returns the REGISTER's first sequence
/// number and its keepalive id, for the caller to tag the segment in its TCP stream (so a
/// retransmission of it is known as one).
#[must_use]
pub fn message(
    pair: &mut super::Pair,
    ev: &keepalive_common::wire::Event,
    from_phone: bool,
    parsed: Parsed,
    settings: &super::Settings,
) -> Option<(u32, u64)> {
    use super::pair::{Answer, Keepalive};
    let Parsed { ts_ns, seq, message: m } = parsed;
    if let (Some(ua), true) = (m.user_agent.as_deref(), from_phone) {
        super::pair::set_text(&mut pair.user_agent, ua);
    }
    let txn = txn_hash(&m.call_id, m.cseq);
    match (from_phone, m.status) {
        (true, None) if m.method == "REGISTER" => {
            if let Some(device) = m.device.as_deref() {
                super::pair::set_text(&mut pair.device, device);
            }
            if let Some(model) = m.model.as_deref() {
                super::pair::set_text(&mut pair.model, model);
            }
            let expires = m.expires();
            match expires {
                Some(0) => pair.sip_backup_keepalives += 1,
                Some(e) => pair.expires_requested = Some(e),
                None => {}
            }
            if m.cisco_keep_alive && expires != Some(0) {
                pair.sip_backup_keepalives += 1;
            }
            // The phone's refresh timer started at the last 2xx: due granted − delta later.
            let after_challenge =
                pair.history.back().is_some_and(|k| k.answer == Answer::Challenged);
            let due_ns = match (pair.last_ok_ns, pair.expires_granted) {
                (Some(ok), Some(g)) if g > 0 && !after_challenge => {
                    let wait = (settings.wall_s(f64::from(g)) - settings.delta_s).max(0.0);
                    Some(ok.saturating_add((wait * 1e9) as u64))
                }
                _ => None,
            };
            let ka = Keepalive::new(
                ts_ns,
                seq,
                ev.seq.wrapping_add(u32::from(ev.payload_len)),
                ev.src_port,
                ev.dst_mac,
            )
            .with_sip(txn, due_ns, expires);
            let id = pair.push_keepalive(ka);
            return Some((seq, id));
        }
        (false, Some(code)) if m.method.eq_ignore_ascii_case("REGISTER") && code >= 200 => {
            let i = pair.history.iter().rposition(|k| k.txn == txn)?;
            match code {
                200..=299 => {
                    pair.answer(i, ts_ns);
                    pair.last_ok_ns = Some(ts_ns);
                    let asked = pair.history[i].expires();
                    if asked != Some(0) {
                        pair.expires_granted = m.expires().or(asked);
                    }
                }
                401 | 407 => pair.history[i].answer = Answer::Challenged,
                _ => pair.history[i].answer = Answer::Rejected(code),
            }
        }
        _ => {}
    }
    None
}

/// Call-ID and CSeq folded to 32 bits: it only has to tell apart the few transactions in one
/// pair's history.
fn txn_hash(call_id: &str, cseq: u32) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    call_id.hash(&mut h);
    cseq.hash(&mut h);
    let x = h.finish();
    (x ^ (x >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:10.10.10.202 SIP/2.0\r\n\
        Via: SIP/2.0/TCP 10.147.230.189:50708;branch=z9hG4bK1\r\n\
        i: 0024142d-df240002@10.147.230.189\r\n\
        CSeq: 101 REGISTER\r\n\
        m: <sip:1001@10.147.230.189:50708;transport=tcp>;+sip.instance=\"<urn:uuid:1>\";\r\n \
        +u.sip!devicename.ccm.cisco.com=\"SEP0024142DDF24\";+u.sip!model.ccm.cisco.com=\"437\"\r\n\
        USER-AGENT: Cisco-CP8961/9.4.2\r\n\
        Expires: 3600\r\n\
        l: 0\r\n\r\n";

    #[test]
    fn register_headers() {
        let m = Message::parse(REGISTER.as_bytes()).unwrap();
        assert_eq!(m.method, "REGISTER");
        assert_eq!(m.call_id, "0024142d-df240002@10.147.230.189");
        assert_eq!(m.cseq, 101);
        assert_eq!(m.expires(), Some(3600));
        assert_eq!(m.device.as_deref(), Some("SEP0024142DDF24"));
        assert_eq!(m.model.as_deref(), Some("437"));
        assert_eq!(m.user_agent.as_deref(), Some("Cisco-CP8961/9.4.2"));
    }

    #[test]
    fn response_contact_expires_wins() {
        let ok = "SIP/2.0 200 OK\r\nCSeq: 101 REGISTER\r\nCall-ID: x\r\n\
            Contact: <sip:1001@10.1.1.1>;expires=120, <sip:1001@10.1.1.2>;expires=9\r\n\
            Expires: 3600\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(ok.as_bytes()).unwrap();
        assert_eq!((m.status, m.method.as_str(), m.expires()), (Some(200), "REGISTER", Some(120)));
    }

    /// The `sip` fuzz target's crash: a Content-Length of u64::MAX overflowed the message's
    /// total length. The message now never completes (and is dropped by MAX_MESSAGE).
    #[test]
    fn a_content_length_of_u64_max_never_overflows() {
        let msg = "SIP/2.0 200 OK\r\nCSeq: 101 REGISTER\r\nCall-ID: x\r\n\
            Content-Length: 000000000000000000000000000018446744073709551615\r\n\r\n";
        let mut a = Assembler::default();
        let mut out = Vec::new();
        a.feed(1, 1000, msg.len() as u16, msg.as_bytes(), &mut out);
        assert!(out.is_empty(), "a body that long never arrives");
    }

    #[test]
    fn split_messages_and_pipelining() {
        let bytes = REGISTER.as_bytes();
        let mut a = Assembler::default();
        let mut out = Vec::new();
        let (x, y) = bytes.split_at(40);
        a.feed(1, 1000, x.len() as u16, x, &mut out);
        assert!(out.is_empty());
        a.feed(2, 1040, y.len() as u16, y, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].ts_ns, out[0].seq), (1, 1000));
        // Two messages in one segment, then a CRLF keep-alive.
        let two = [bytes, bytes].concat();
        let next = 1000 + bytes.len() as u32;
        a.feed(3, next, two.len() as u16, &two, &mut out);
        assert_eq!(out.len(), 3);
        a.feed(4, next + two.len() as u32, 4, b"\r\n\r\n", &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn gaps_resynchronise() {
        let bytes = REGISTER.as_bytes();
        let mut a = Assembler::default();
        let mut out = Vec::new();
        a.feed(1, 0, 40, &bytes[..40], &mut out);
        // The rest of the message never arrives; the next segment starts a new message.
        a.feed(2, 5000, bytes.len() as u16, bytes, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seq, 5000);
        // A segment copied short: what was copied is used if complete, then resync.
        a.feed(3, 9000, 2000, bytes, &mut out);
        assert_eq!(out.len(), 2);
        a.feed(4, 11000, 10, b"garbage!!!", &mut out);
        assert_eq!(out.len(), 2);
    }

    /// The allocation-free parser reads every head as the one before it did: real REGISTERs
    /// and responses of the corpus and the scenarios, with folded lines, odd case, compact
    /// names, several contacts, invalid UTF-8, and random mutations of all of them.
    #[test]
    fn the_parser_reads_what_its_reference_read() {
        let mut heads: Vec<Vec<u8>> = vec![
            REGISTER.as_bytes().to_vec(),
            b"SIP/2.0 200 OK\r\nCSeq: 7 register\r\ncall-ID:  abc \r\nContact: \"a,b\" <sip:x>;Expires=60, <sip:y>;expires=5\r\nServer: CUCM\r\n\tfolded\r\nCONTENT-LENGTH: 12\r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\nm: sip:a;cisco-keep-alive;expires=0\n l: 3\nExpires: 9\n\n".to_vec(),
            b" leading fold\r\n more\r\nSIP/2.0 401 Unauthorized\r\n".to_vec(),
            b"SIP/2.0 20".to_vec(),
            b"OPTIONS sip:x SIP/2.0\r\nUser-Agent: \xff\xfe phone\r\nContent-Length: \xc2\xa042\r\n".to_vec(),
            b"register sip:x SIP/2.0\r\n".to_vec(),
            Vec::new(),
        ];
        for f in keepalive_lab::fixtures::corpus() {
            if let Some(at) = f.frame.windows(8).position(|w| w == b"REGISTER" || w == b"SIP/2.0 ")
            {
                heads.push(f.frame[at..].to_vec());
            }
        }
        let mut next = keepalive_lab::fixtures::xorshift(0x9e37_79b9_7f4a_7c15);
        let seeds = heads.clone();
        for _ in 0..20_000 {
            let x = next();
            let mut h = seeds[(x as usize) % seeds.len()].clone();
            if h.is_empty() {
                continue;
            }
            for k in 0..(1 + x % 4) {
                let at = ((x >> (8 * k + 3)) as usize) % h.len();
                h[at] = [b' ', b'\t', b'\n', b'\r', b':', b',', b';', b'=', 0xc3, b'L']
                    [(x >> (4 * k)) as usize % 10];
            }
            heads.push(h);
        }
        for h in &heads {
            assert_eq!(Message::parse(h), reference::parse(h), "{:?}", String::from_utf8_lossy(h));
            assert_eq!(
                Message::parse_framed(h),
                (reference::parse(h), reference::content_length(h)),
                "{:?}",
                String::from_utf8_lossy(h)
            );
            assert_eq!(
                content_length(h),
                reference::content_length(h),
                "{:?}",
                String::from_utf8_lossy(h)
            );
        }
    }
}

/// The parser as it was before it stopped allocating (a string per line and per lower-cased
/// name): the oracle the new one is checked against.
#[cfg(test)]
mod reference {
    use super::Message;

    pub(super) fn parse(head: &[u8]) -> Option<Message> {
        let text = String::from_utf8_lossy(head);
        let mut lines = unfold(&text).into_iter();
        let start = lines.next()?;
        let mut m = Message::default();
        if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
            m.status = Some(rest.get(..3)?.parse().ok()?);
        } else {
            let (method, rest) = start.split_once(' ')?;
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return None;
            }
            if !rest.trim_end().ends_with("SIP/2.0") {
                return None;
            }
            m.method = method.to_owned();
        }
        let mut contact_seen = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "call-id" | "i" => m.call_id = value.to_owned(),
                "cseq" => {
                    let mut it = value.split_whitespace();
                    m.cseq = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    if m.status.is_some() {
                        m.method = it.next().unwrap_or_default().to_owned();
                    }
                }
                "expires" => m.expires_header = value.parse().ok(),
                "contact" | "m" if !contact_seen => {
                    contact_seen = true;
                    read_contact(&mut m, value);
                }
                "user-agent" | "server" => m.user_agent = Some(value.to_owned()),
                _ => {}
            }
        }
        Some(m)
    }

    fn read_contact(m: &mut Message, value: &str) {
        // Parameters of the contact follow the `>` of a name-addr (or the URI itself).
        let first = split_contacts(value).into_iter().next().unwrap_or_default();
        let params = match first.find('>') {
            Some(i) => &first[i + 1..],
            None => first.split_once(';').map_or("", |(_, p)| p),
        };
        for p in params.split(';') {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "expires" => m.contact_expires = v.parse().ok(),
                "cisco-keep-alive" => m.cisco_keep_alive = true,
                "+u.sip!devicename.ccm.cisco.com" => m.device = Some(v.to_owned()),
                "+u.sip!model.ccm.cisco.com" => m.model = Some(v.to_owned()),
                _ => {}
            }
        }
    }

    /// Joins folded header lines (a line starting with white space continues the previous one).
    fn unfold(text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with([' ', '\t']) {
                if let Some(last) = out.last_mut() {
                    last.push(' ');
                    last.push_str(line.trim());
                    continue;
                }
            }
            out.push(line.to_owned());
        }
        out
    }

    /// Splits a Contact value on the commas that separate contacts (not those inside quotes or
    /// angle brackets).
    fn split_contacts(value: &str) -> Vec<&str> {
        let (mut out, mut start, mut quoted, mut angle) = (Vec::new(), 0, false, false);
        for (i, c) in value.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '<' if !quoted => angle = true,
                '>' if !quoted => angle = false,
                ',' if !quoted && !angle => {
                    out.push(value[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(value[start..].trim());
        out
    }

    pub(super) fn content_length(head: &[u8]) -> Option<usize> {
        let text = String::from_utf8_lossy(head);
        text.split('\n').find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim().to_ascii_lowercase();
            (name == "content-length" || name == "l").then(|| value.trim().parse().ok())?
        })
    }
}
