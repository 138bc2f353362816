//! The state of one phone↔server pair: one row of every report. A reconnect from a new source
//! port stays in the same pair. Histories are bounded so that a pair costs the same after a day
//! as after a minute.

use std::{collections::VecDeque, net::IpAddr};

use keepalive_common::wire::{App, Encap};

use super::limits::PORTS_KEPT;

/// Keepalives remembered per pair: 6 minutes of SCCP, 23 of SIP. The findings look at recent
/// behaviour (the last 10 keepalives; `intermittent-loss` all 12), and the tracker's memory at
/// 100 000 phones is dominated by this history (12 was 16 until the agent had to fit 100 000
/// phones in 200 MB).
pub const HISTORY: usize = 12;
/// Intervals closer than this are the same timer with jitter (well under Linux's 200 ms minimum
/// RTO, so a keepalive one retransmission late is not mistaken for jitter).
pub const INTERVAL_TOLERANCE_S: f64 = 0.05;
/// Retransmissions, reconnects and next-hop changes remembered per pair.
pub const EVENTS_KEPT: usize = 32;

/// Identity of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    /// The phone's address.
    pub phone: IpAddr,
    /// The server's (CUCM's) address.
    pub server: IpAddr,
    /// The server's tracked port.
    pub server_port: u16,
    /// The segment the pair's frames arrived in when encapsulated (VXLAN VNI, ERSPAN session,
    /// GRE key; 0 otherwise): the same addresses in two segments are two pairs.
    pub segment: u32,
}

/// The role of the server for this phone, read off the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Keepalives are acknowledged at application level (KeepAliveAck, 2xx granting a binding).
    Primary,
    /// Keepalives get only TCP ACKs (SCCP), or are `Expires: 0` REGISTERs (SIP).
    Backup,
    /// Not enough seen yet.
    Unknown,
}

impl Role {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Backup => "backup",
            Self::Unknown => "unknown",
        }
    }
}

/// How a keepalive's transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// No final response (yet).
    None,
    /// A 2xx (SIP) or KeepAliveAck (SCCP).
    Ok,
    /// 401/407: the phone retries with credentials at once.
    Challenged,
    /// Another final response.
    Rejected(u16),
}

/// One keepalive: an SCCP KeepAlive or a SIP REGISTER transaction, counted once however many
/// copies crossed the wire.
///
/// The tracker keeps [`HISTORY`] of these per pair, so this is the largest part of its memory
/// (100 000 phones × 12): 48 bytes, with later times stored as offsets from the first copy —
/// microseconds in 32 bits, which spans 71 minutes forwards (and ±35 minutes for the due
/// time); anything further saturates, which the rules read as "very late" either way.
#[derive(Clone, Debug)]
pub struct Keepalive {
    /// Time of the first copy seen.
    pub first_ns: u64,
    /// Last copy seen, µs after the first.
    last_us: u32,
    /// The server's TCP ACK covering it, µs after the first copy ([`NONE_U32`]: not yet).
    tcp_ack_us: u32,
    /// SIP: when the refresh timer was due, µs relative to the first copy ([`NONE_I32`]: no
    /// schedule).
    due_us: i32,
    /// Sequence number of the segment that carried it.
    pub seq: u32,
    /// SIP: hash of Call-ID and CSeq, to match the response.
    pub txn: u32,
    /// SIP: the expiry asked for ([`NONE_U32`]: none).
    expires: u32,
    /// The application answer.
    pub answer: Answer,
    /// Bytes from `seq` to the end of the message (see [`Keepalive::end`]).
    len: u16,
    /// The phone's port at the time.
    pub phone_port: u16,
    /// Copies seen (1 = no retransmission visible; saturates at 255).
    pub copies: u8,
    /// Destination MAC of the frame that carried the first copy.
    pub dst_mac: [u8; 6],
}

const NONE_U32: u32 = u32::MAX;
const NONE_I32: i32 = i32::MIN;

/// `ns` as µs after `base`, saturating (never [`NONE_U32`]).
fn offset_us(base: u64, ns: u64) -> u32 {
    u32::try_from(ns.saturating_sub(base) / 1_000).unwrap_or(NONE_U32 - 1).min(NONE_U32 - 1)
}

/// Sets a text field, allocating only when it changes.
pub fn set_text(slot: &mut Option<Box<str>>, value: &str) {
    if slot.as_deref() != Some(value) {
        *slot = Some(value.into());
    }
}

impl Keepalive {
    /// A keepalive whose first copy was seen at `first_ns` in the segment `seq..end`.
    pub fn new(first_ns: u64, seq: u32, end: u32, phone_port: u16, dst_mac: [u8; 6]) -> Self {
        Self {
            first_ns,
            last_us: 0,
            tcp_ack_us: NONE_U32,
            due_us: NONE_I32,
            seq,
            // A SIP message is at most 64 KiB (the assembler gives up beyond that).
            len: u16::try_from(end.wrapping_sub(seq)).unwrap_or(u16::MAX),
            txn: 0,
            expires: NONE_U32,
            answer: Answer::None,
            copies: 1,
            phone_port,
            dst_mac,
        }
    }

    /// A SIP REGISTER: its transaction, when the refresh was due, and the expiry it asked for.
    pub fn with_sip(mut self, txn: u32, due_ns: Option<u64>, expires: Option<u32>) -> Self {
        self.txn = txn;
        self.due_us = due_ns.map_or(NONE_I32, |due| {
            let us = (i128::from(due) - i128::from(self.first_ns)) / 1_000;
            i32::try_from(us.clamp(i128::from(NONE_I32 + 1), i128::from(i32::MAX)))
                .unwrap_or(i32::MAX)
        });
        self.expires = expires.map_or(NONE_U32, |e| e.min(NONE_U32 - 1));
        self
    }

    /// End sequence number of the message (for TCP ACK matching).
    pub fn end(&self) -> u32 {
        self.seq.wrapping_add(u32::from(self.len))
    }

    /// Time of the last copy seen (the one that got through, when retransmitted).
    pub fn last_ns(&self) -> u64 {
        self.first_ns + u64::from(self.last_us) * 1_000
    }

    /// Another copy seen at `ts_ns`.
    pub fn copy_seen(&mut self, ts_ns: u64) {
        self.copies = self.copies.saturating_add(1);
        self.last_us = offset_us(self.first_ns, ts_ns);
    }

    /// When the server's TCP ACK covered it.
    pub fn tcp_ack_ns(&self) -> Option<u64> {
        (self.tcp_ack_us != NONE_U32).then(|| self.first_ns + u64::from(self.tcp_ack_us) * 1_000)
    }

    /// The server's TCP ACK covered it at `ts_ns`.
    pub fn set_tcp_ack_ns(&mut self, ts_ns: u64) {
        self.tcp_ack_us = offset_us(self.first_ns, ts_ns);
    }

    /// SIP: when the phone's refresh timer was due (last 2xx + granted − delta).
    pub fn due_ns(&self) -> Option<u64> {
        (self.due_us != NONE_I32).then(|| {
            let due = i128::from(self.first_ns) + i128::from(self.due_us) * 1_000;
            u64::try_from(due.max(0)).unwrap_or(u64::MAX)
        })
    }

    /// SIP: the expiry asked for.
    pub fn expires(&self) -> Option<u32> {
        (self.expires != NONE_U32).then_some(self.expires)
    }

    /// Acknowledged at application level.
    pub fn acked(&self) -> bool {
        self.answer == Answer::Ok
    }

    /// Seconds from the first to the last copy, when the first copy was retransmitted.
    pub fn retransmission_delay_s(&self) -> Option<f64> {
        (self.copies > 1).then(|| secs(self.last_ns().saturating_sub(self.first_ns)))
    }
}

/// The last [`EVENTS_KEPT`] events of one kind, allocated with the first: most pairs never see
/// a retransmission, a reconnect or a MAC change, and an empty deque costs 32 bytes a pair
/// where this costs 8.
#[derive(Clone, Debug)]
#[allow(clippy::box_collection, reason = "the box is the point: 8 bytes while empty, not 32")]
pub struct Recent<T>(Option<Box<VecDeque<T>>>);

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> Recent<T> {
    /// Appends `v`, forgetting the oldest beyond [`EVENTS_KEPT`].
    pub fn push(&mut self, v: T) {
        let d = self.0.get_or_insert_with(Box::default);
        if d.len() == EVENTS_KEPT {
            d.pop_front();
        }
        d.push_back(v);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.0.iter().flat_map(|d| d.iter())
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |d| d.len())
    }

    /// None kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest.
    pub fn back(&self) -> Option<&T> {
        self.0.as_ref()?.back()
    }
}

/// A retransmitted segment.
#[derive(Clone, Copy, Debug)]
pub struct Retransmission {
    /// When the copy was seen.
    pub time_ns: u64,
    /// Time since the first copy, when the first copy was seen.
    pub delay_ns: Option<u64>,
    /// Sent by the phone (else by the server).
    pub from_phone: bool,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    /// When.
    pub time_ns: u64,
    /// The phone sent it (else the server).
    pub by_phone: bool,
    /// RST (else FIN).
    pub reset: bool,
}

/// A new connection after an earlier one.
#[derive(Clone, Copy, Debug)]
pub struct Reconnect {
    /// Time of the SYN.
    pub time_ns: u64,
    /// The earlier connection's phone port.
    pub old_port: u16,
    /// The new phone port.
    pub new_port: u16,
    /// How the earlier connection ended, if that was seen.
    pub closed: Option<Close>,
    /// Keepalives on the earlier connection left without an application answer.
    pub unanswered_before: u32,
}

/// The phone's frames to the server switched destination MAC.
#[derive(Clone, Copy, Debug)]
pub struct MacChange {
    /// First frame with the new MAC.
    pub time_ns: u64,
    /// Interface it was seen on.
    pub ifindex: u32,
    /// Previous destination MAC.
    pub from: [u8; 6],
    /// New destination MAC.
    pub to: [u8; 6],
}

/// The current connection.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    /// The phone's port.
    pub phone_port: u16,
    /// Ended, if seen.
    pub closed: Option<Close>,
}

/// Everything known about one phone↔server pair.
#[derive(Clone, Debug)]
pub struct Pair {
    /// Identity.
    pub key: PairKey,
    /// The phone's current source port.
    pub phone_port: u16,
    /// Protocol of the server port.
    pub app: App,
    /// The outer layer the pair's latest frame was peeled from (with `key.segment`).
    pub encap: Encap,
    /// VLAN ids of the phone's frames, outer first (see [`Pair::vlans`]).
    vlan_ids: [u16; 2],
    vlan_count: u8,
    /// The phone's MAC (source of its frames).
    pub phone_mac: [u8; 6],
    /// Device name (SIP Contact, SCCP Register).
    pub device: Option<Box<str>>,
    /// Model (SIP Contact).
    pub model: Option<Box<str>>,
    /// User-Agent.
    pub user_agent: Option<Box<str>>,
    /// Keepalives seen, each counted once.
    pub keepalives: u64,
    /// KeepAliveAcks / 2xx to REGISTER.
    pub acks: u64,
    /// Recent keepalives, oldest first.
    pub history: VecDeque<Keepalive>,
    /// Sum and count of application ack latencies, and the largest (ns).
    pub ack_latency: (u64, u64, u64),
    /// SIP: the expiry the phone asked for most recently (non-zero).
    pub expires_requested: Option<u32>,
    /// SIP: the expiry the server granted most recently.
    pub expires_granted: Option<u32>,
    /// SIP: time of the last 2xx to a REGISTER.
    pub last_ok_ns: Option<u64>,
    /// SIP: the phone sends `Expires: 0` / `cisco-keep-alive` REGISTERs (a backup keepalive).
    pub sip_backup_keepalives: u64,
    /// SCCP: a Register seen from the phone.
    pub sccp_register_seen: bool,
    /// SCCP: RegisterAck seen.
    pub sccp_registered: bool,
    /// SCCP: RegisterReject seen.
    pub sccp_rejected: bool,
    /// Recent retransmissions, both directions.
    pub retransmissions: Recent<Retransmission>,
    /// All retransmissions seen.
    pub retransmission_count: u64,
    /// The connection in use.
    pub connection: Option<Connection>,
    /// Recent reconnects.
    pub reconnects: Recent<Reconnect>,
    /// All reconnects seen.
    pub reconnect_count: u64,
    /// Destination MAC of the phone's frames, per interface. Read on every frame from the
    /// phone: held inline for the one interface a pair is nearly always seen on (in a `Vec`
    /// it was a cache miss of its own on every segment, 6 % of `analyze`'s time).
    pub next_hop: smallvec::SmallVec<[(u32, [u8; 6]); 1]>,
    /// Recent destination MAC changes.
    pub mac_changes: Recent<MacChange>,
    /// First and last frame of the pair.
    pub first_ns: u64,
    /// Last frame of the pair.
    pub last_ns: u64,
    /// Next keepalive serial.
    pub next_id: u64,
    /// Phone ports of the connections whose streams the tracker keeps, a ring written at
    /// `ports_next` (0: none).
    ports: [u16; PORTS_KEPT],
    ports_next: u8,
    /// TLS: what the keepalive inference has learned (see [`super::tls`]); `None` on clear
    /// text.
    pub tls: Option<Box<super::tls::TlsState>>,
}

impl Pair {
    /// A pair first seen at `ts_ns`.
    pub fn new(key: PairKey, app: App, ts_ns: u64) -> Self {
        Self {
            key,
            phone_port: 0,
            app,
            encap: Encap::None,
            vlan_ids: [0; 2],
            vlan_count: 0,
            phone_mac: [0; 6],
            device: None,
            model: None,
            user_agent: None,
            keepalives: 0,
            acks: 0,
            history: VecDeque::new(),
            ack_latency: (0, 0, 0),
            expires_requested: None,
            expires_granted: None,
            last_ok_ns: None,
            sip_backup_keepalives: 0,
            sccp_register_seen: false,
            sccp_registered: false,
            sccp_rejected: false,
            retransmissions: Recent::default(),
            retransmission_count: 0,
            connection: None,
            reconnects: Recent::default(),
            reconnect_count: 0,
            next_hop: smallvec::SmallVec::new(),
            mac_changes: Recent::default(),
            first_ns: ts_ns,
            last_ns: ts_ns,
            next_id: 0,
            ports: [0; PORTS_KEPT],
            ports_next: 0,
            tls: None,
        }
    }

    /// The pair has carried a keepalive or an SCCP Register, or (TLS) application data after a
    /// handshake the server answered: a phone, not a candidate (see [`super::limits`]).
    pub fn is_phone(&self) -> bool {
        self.keepalives > 0
            || self.sccp_register_seen
            || self.tls.as_ref().is_some_and(|t| t.established())
    }

    /// Notes a connection from `phone_port`; returns the port of the oldest connection kept
    /// when this one replaces it, whose streams the tracker then forgets.
    pub fn note_port(&mut self, phone_port: u16) -> Option<u16> {
        if self.ports.contains(&phone_port) {
            return None;
        }
        let i = usize::from(self.ports_next);
        let old = std::mem::replace(&mut self.ports[i], phone_port);
        self.ports_next = ((i + 1) % PORTS_KEPT) as u8;
        (old != 0).then_some(old)
    }

    /// Phone ports of the connections kept.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().copied().filter(|p| *p != 0)
    }

    /// The role, from what the server answers.
    pub fn role(&self) -> Role {
        let app_acked = self.acks > 0 || self.sccp_registered;
        let tcp_only =
            || self.history.iter().filter(|k| k.tcp_ack_ns().is_some() && k.answer == Answer::None);
        match self.app {
            // TLS: from the recent answers only, since an answer is inferred (a stray record
            // taken for one must not make a backup a primary for good). Both primaries and
            // backups of SIP answer with a response record (docs/DOMAIN.md): a SIP/TLS backup
            // reads as a primary.
            App::SccpTls | App::SipTls => {
                if self.history.iter().any(Keepalive::acked) {
                    Role::Primary
                } else if tcp_only().count() >= 2 {
                    Role::Backup
                } else {
                    Role::Unknown
                }
            }
            App::Sip => {
                let latest_backup = self.history.back().is_some_and(|k| k.expires() == Some(0));
                if latest_backup || (self.sip_backup_keepalives > 0 && !app_acked) {
                    Role::Backup
                } else if self.expires_granted.is_some_and(|g| g > 0) {
                    Role::Primary
                } else {
                    Role::Unknown
                }
            }
            _ if app_acked => Role::Primary,
            _ => {
                if tcp_only().count() >= 2 {
                    Role::Backup
                } else {
                    Role::Unknown
                }
            }
        }
    }

    /// VLAN ids of the phone's frames, outer first.
    pub fn vlans(&self) -> &[u16] {
        &self.vlan_ids[..usize::from(self.vlan_count).min(2)]
    }

    /// The VLAN ids of the phone's latest frame (at most two are kept: 802.1Q, QinQ).
    pub fn set_vlans(&mut self, ids: &[u16]) {
        let n = ids.len().min(2);
        self.vlan_ids = [0; 2];
        self.vlan_ids[..n].copy_from_slice(&ids[..n]);
        self.vlan_count = n as u8;
    }

    /// Appends a keepalive, keeping the history bounded; returns its id (a serial within the
    /// pair: the history holds ids `next_id − len .. next_id`).
    pub fn push_keepalive(&mut self, ka: Keepalive) -> u64 {
        self.next_id += 1;
        self.keepalives += 1;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        } else if self.history.capacity() == 0 {
            // Exactly the history, once: growing by doubling would end at 16 slots for 12.
            self.history.reserve_exact(HISTORY);
        }
        self.history.push_back(ka);
        self.next_id - 1
    }

    /// The keepalive with this id, if still remembered.
    pub fn keepalive_mut(&mut self, id: u64) -> Option<&mut Keepalive> {
        let front = self.next_id - self.history.len() as u64;
        let i = usize::try_from(id.checked_sub(front)?).ok()?;
        self.history.get_mut(i)
    }

    /// Records an application acknowledgement of `ka` (its index in `history`) at `ts_ns`.
    pub fn answer(&mut self, index: usize, ts_ns: u64) {
        let Some(ka) = self.history.get_mut(index) else {
            return;
        };
        if ka.acked() {
            return;
        }
        ka.answer = Answer::Ok;
        self.acks += 1;
        let lat = ts_ns.saturating_sub(ka.first_ns);
        self.ack_latency.0 += lat;
        self.ack_latency.1 += 1;
        self.ack_latency.2 = self.ack_latency.2.max(lat);
    }

    /// Keepalive intervals in seconds: between the first copies of consecutive keepalives,
    /// skipping the immediate retry after a SIP challenge.
    pub fn intervals(&self) -> Vec<f64> {
        self.history
            .iter()
            .zip(self.history.iter().skip(1))
            .filter(|(prev, _)| prev.answer != Answer::Challenged)
            .map(|(a, b)| secs(b.first_ns.saturating_sub(a.first_ns)))
            .collect()
    }

    /// The keepalive interval the phone runs on, learned from the wire: the most common recent
    /// interval (within [`INTERVAL_TOLERANCE_S`]), the shortest such on a tie. Phones never send
    /// early, but a keepalive that arrives late makes the interval before it longer and the one
    /// after it shorter, so neither the shortest nor the median alone is the timer once some
    /// keepalives are late; a run of ever later ones leaves only distinct intervals, and then
    /// the shortest is the timer. A timer that drifts by a few ms per cycle is learned with its
    /// drift. Intervals under half the median are ignored: a keepalive sent at once after a
    /// re-registration is not the timer.
    pub fn learned_interval_s(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.intervals().into_iter().filter(|i| *i > 0.0).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        v.retain(|i| *i >= median / 2.0);
        let mut best: Option<(usize, f64)> = None;
        for (i, &low) in v.iter().enumerate() {
            let n = v[i..].iter().take_while(|x| **x - low <= INTERVAL_TOLERANCE_S).count();
            if best.is_none_or(|(m, _)| n > m) {
                best = Some((n, low));
            }
        }
        best.map(|(_, low)| low)
    }

    pub(super) fn push_retransmission(&mut self, r: Retransmission) {
        self.retransmission_count += 1;
        self.retransmissions.push(r);
    }

    pub(super) fn push_reconnect(&mut self, r: Reconnect) {
        self.reconnect_count += 1;
        self.reconnects.push(r);
    }

    pub(super) fn note_next_hop(&mut self, ts_ns: u64, ifindex: u32, mac: [u8; 6]) {
        if mac == [0; 6] {
            // Cooked and raw-IP captures carry no destination MAC.
            return;
        }
        match self.next_hop.iter_mut().find(|(i, _)| *i == ifindex) {
            Some((_, m)) if *m == mac => {}
            Some((_, m)) => {
                self.mac_changes.push(MacChange { time_ns: ts_ns, ifindex, from: *m, to: mac });
                *m = mac;
            }
            None => self.next_hop.push((ifindex, mac)),
        }
    }
}

/// Nanoseconds as seconds.
pub fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}
