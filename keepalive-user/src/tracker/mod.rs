//! The tracker: turns a stream of [`Record`]s, from any source, into per phone↔server state
//! ([`Pair`]) and an ARP table ([`ArpTable`]). It decides nothing about health; the rules in
//! [`crate::findings`] read the state it keeps.
//!
//! * [`pair`]: the state of one row (keepalives, answers, retransmissions, reconnects, MACs).
//! * [`tcp`]: sequence analysis of one direction (new data, retransmissions and their delay).
//! * [`sccp`]: SCCP KeepAlive/KeepAliveAck pairing and registration.
//! * [`sip`]: SIP reassembly, header parsing and REGISTER transactions.
//! * [`tls`]: keepalives on TLS (2443, 5061), inferred from record sizes, timing and answers.
//! * [`arp`]: who answers ARP for which address.
//! * [`limits`]: the bounds of all this state, and what was evicted to stay within them.

pub mod arp;
pub mod latency;
pub mod limits;
pub mod pair;
pub mod sccp;
pub mod sip;
pub mod tcp;
pub mod tls;

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr},
    ops::Range,
};

use indexmap::IndexMap;
use keepalive_common::wire::{tcp_flags, App, Config, Encap, Event, EventKind, FlowKey};

use self::limits::CANDIDATE_TIMEOUT_S;
pub use self::{
    arp::ArpTable,
    limits::{Evictions, Limits},
    pair::{Pair, PairKey, Role},
};
use self::{
    pair::{Close, Connection, Reconnect, Retransmission},
    tcp::{Stream, Verdict},
};
use crate::record::{addr, Record};

/// Timers and thresholds. Every one is a setting a site may change (docs/DOMAIN.md); a lab that
/// scales its timers down scales these the same way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// How long past its refresh CUCM waits before unregistering a phone (s).
    pub grace_s: f64,
    /// How long before expiry a SIP phone refreshes its registration (s).
    pub delta_s: f64,
    /// Answers to one ARP request closer than this come from rival responders (s).
    pub arp_window_s: f64,
    /// Lateness below this is jitter, not loss (s). Real time: a lost segment costs at least
    /// one minimum RTO (200 ms on Linux, about 100 ms on the phones in docs/DOMAIN.md), so the
    /// floor sits 20 ms under the smallest of them. A phone whose timer slips once by a few
    /// tens of milliseconds (a busy phone, a busy router timestamping the frame) shifts its
    /// schedule for good, and every keepalive after it arrives that much "late": below the
    /// floor that is a new schedule, above it a lost first copy each time.
    pub late_floor_s: f64,
    /// A retransmission delay (both copies seen) below this is a duplicate, not a loss (s).
    /// Both copies are on the wire, so no schedule jitter blurs it; a replay shrinks it (see
    /// [`Settings::replayed`]).
    pub retransmission_floor_s: f64,
    /// Streams idle longer than this are forgotten (s); pairs stay.
    pub idle_stream_s: f64,
    /// Protocol timers run this many times faster than their nominal values (a lab that scales
    /// a 30 s KeepAlive to 3 s uses 10): a SIP binding granted for 120 s is refreshed after
    /// (120 − delta)/scale wall seconds. 1 in real networks.
    pub time_scale: f64,
}

/// The smallest lateness a sped-up replay can show (s): tcpreplay's pacing and the agent's
/// ring polling blur a schedule by about a millisecond of real time.
pub const REPLAY_JITTER_S: f64 = 0.005;

impl Settings {
    /// Settings for protocol timers scaled down by `factor`: grace and delta shrink with them.
    /// The jitter floor and the ARP window do not: TCP's retransmission timer and ARP replies
    /// run in real time whatever the phones' timers do (Linux's minimum RTO is 200 ms).
    #[must_use]
    pub fn scaled(self, factor: f64) -> Self {
        let f = if factor.is_finite() && factor > 0.0 { factor } else { 1.0 };
        Self {
            grace_s: self.grace_s / f,
            delta_s: self.delta_s / f,
            time_scale: self.time_scale * f,
            ..self
        }
    }

    /// Settings for a capture replayed `time_scale` times faster: everything in it ran faster,
    /// TCP's retransmission timer and ARP answers included, so the floors and the ARP window
    /// shrink too. Lateness is measured against a schedule, and a replayer's pacing drifts by
    /// real microseconds per frame, so the lateness floor stops at [`REPLAY_JITTER_S`]: a replay
    /// sped up until an RTO is shorter than that shows losses only where both copies are in the
    /// capture (a retransmission is two copies of the same bytes, whatever the pacing).
    #[must_use]
    pub fn replayed(self) -> Self {
        Self {
            late_floor_s: (self.late_floor_s / self.time_scale).max(REPLAY_JITTER_S),
            retransmission_floor_s: self.retransmission_floor_s / self.time_scale,
            arp_window_s: self.arp_window_s / self.time_scale,
            ..self
        }
    }

    /// Wall seconds of a nominal protocol time (e.g. a granted SIP expiry).
    pub fn wall_s(&self, nominal_s: f64) -> f64 {
        nominal_s / self.time_scale
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grace_s: 15.0,
            delta_s: 5.0,
            arp_window_s: 1.0,
            late_floor_s: 0.08,
            retransmission_floor_s: 0.05,
            idle_stream_s: 3600.0,
            time_scale: 1.0,
        }
    }
}

/// What the tracker has consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Records fed.
    pub records: u64,
    /// TCP records.
    pub tcp: u64,
    /// ARP records.
    pub arp: u64,
    /// Copies of a frame seen again on another interface (ignored).
    pub other_interface: u64,
    /// SIP messages parsed.
    pub sip_messages: u64,
    /// Pairs forgotten after being idle (see [`Tracker::expire`]).
    pub expired_pairs: u64,
    /// ARP addresses forgotten after being idle (see [`Tracker::expire`]).
    pub expired_arp: u64,
}

/// Counts of pairs that were forgotten, so totals never go down when a pair expires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Keepalives of forgotten pairs.
    pub keepalives: u64,
    /// Acks of forgotten pairs.
    pub acks: u64,
    /// Retransmissions of forgotten pairs.
    pub retransmissions: u64,
    /// Reconnects of forgotten pairs.
    pub reconnects: u64,
}

/// One slot of the pair table. Slots are reused; the generation tells a stream whether the
/// pair it was made for still holds the slot.
#[derive(Debug)]
struct Slot {
    generation: u32,
    /// Not a phone yet (see [`limits`]).
    candidate: bool,
    pair: Option<Pair>,
}

/// Why a pair is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    Idle,
    CandidatesFull,
    CandidateTimeout,
    PhonesFull,
}

/// Per-pair state and the ARP table, fed one record at a time, within [`Limits`].
#[derive(Debug)]
pub struct Tracker {
    /// Settings in force.
    pub settings: Settings,
    config: Config,
    limits: Limits,
    /// The pair table: phones and candidates, with free slots in `free`.
    slots: Vec<Slot>,
    free: Vec<usize>,
    index: FastMap<PairKey, usize>,
    /// The IPv4 addresses of the pairs held (phones and servers), each with how many pairs
    /// have it: what ARP expiry and eviction keep.
    addresses: FastMap<Ipv4Addr, u32>,
    /// Connection directions, in an order a cursor can walk a slice at a time (see
    /// [`Tracker::expire_streams_some`]).
    streams: FastIndexMap<StreamKey, Stream>,
    /// Where the streams' expiry continues.
    streams_cursor: usize,
    /// Candidates in the order they were made, with their first time (entries of candidates
    /// since promoted or removed are skipped when met).
    queue: VecDeque<(PairKey, u64)>,
    phones: usize,
    candidates: usize,
    /// Bytes of partial SIP messages held by all streams.
    sip_bytes: usize,
    /// ARP knowledge.
    pub arp: ArpTable,
    /// Time of the first and latest record.
    pub first_ns: Option<u64>,
    /// Time of the latest record ("now" for the findings).
    pub now_ns: u64,
    /// Counts.
    pub stats: TrackerStats,
    /// What was forgotten to stay within the limits, by reason.
    pub evictions: Evictions,
    /// Totals of forgotten pairs, per protocol.
    pub expired: HashMap<App, Expired>,
    /// Ack latency and retransmission delay distributions, cumulative.
    pub latency: latency::Latencies,
    sip_out: Vec<sip::Parsed>,
}

/// The two directions' flow keys of the connection from `phone_port` on the pair `pk`.
/// The hasher of the tracker's tables: foldhash's quality variant, seeded per process. With
/// std's SipHash, hashing and probing these tables took a sixth of `analyze`'s time on the
/// bench's campus capture (perf); the per-process seed keeps a flood of spoofed addresses
/// from aiming at one bucket.
pub(crate) type Hasher = foldhash::quality::RandomState;
/// A hash map with [`Hasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, Hasher>;
/// An index map with [`Hasher`].
pub(crate) type FastIndexMap<K, V> = IndexMap<K, V, Hasher>;

fn flow_keys(pk: &PairKey, phone_port: u16) -> [StreamKey; 2] {
    let octets = |a: IpAddr| match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let (phone, server) = (octets(pk.phone), octets(pk.server));
    let flow = |src_addr, dst_addr, src_port, dst_port| StreamKey {
        flow: FlowKey { src_addr, dst_addr, src_port, dst_port },
        segment: pk.segment,
    };
    [
        flow(phone, server, phone_port, pk.server_port),
        flow(server, phone, pk.server_port, phone_port),
    ]
}

/// One direction of one connection in one segment (see [`PairKey::segment`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StreamKey {
    flow: FlowKey,
    segment: u32,
}

impl StreamKey {
    fn of(ev: &Event) -> Self {
        Self { flow: ev.flow_key(), segment: ev.segment }
    }

    fn reverse(&self) -> Self {
        let f = &self.flow;
        Self {
            flow: FlowKey {
                src_addr: f.dst_addr,
                dst_addr: f.src_addr,
                src_port: f.dst_port,
                dst_port: f.src_port,
            },
            segment: self.segment,
        }
    }
}

impl Tracker {
    /// A tracker for traffic classified with `config` (it names the server ports), within the
    /// default [`Limits`].
    pub fn new(settings: Settings, config: Config) -> Self {
        Self::with_limits(settings, config, Limits::default())
    }

    /// The same within `limits`.
    pub fn with_limits(settings: Settings, config: Config, limits: Limits) -> Self {
        Self {
            settings,
            config,
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            index: FastMap::default(),
            addresses: FastMap::default(),
            streams: FastIndexMap::default(),
            streams_cursor: 0,
            queue: VecDeque::new(),
            phones: 0,
            candidates: 0,
            sip_bytes: 0,
            arp: ArpTable::default(),
            first_ns: None,
            now_ns: 0,
            stats: TrackerStats::default(),
            evictions: Evictions::default(),
            expired: HashMap::new(),
            latency: latency::Latencies::default(),
            sip_out: Vec::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Feeds one record.
    pub fn ingest(&mut self, rec: &Record) {
        let ev = &rec.event;
        self.stats.records += 1;
        self.first_ns.get_or_insert(ev.ts_ns);
        self.now_ns = self.now_ns.max(ev.ts_ns);
        match ev.kind {
            k if k == EventKind::Tcp as u8 => {
                self.stats.tcp += 1;
                self.tcp(ev, &rec.payload);
            }
            k if k == EventKind::Arp as u8 => {
                self.stats.arp += 1;
                let v4 = |a: [u8; 16]| Ipv4Addr::new(a[12], a[13], a[14], a[15]);
                let window = (self.settings.arp_window_s * 1e9) as u64;
                self.arp.observe(
                    ev.ts_ns,
                    ev.arp_op,
                    v4(ev.src_addr),
                    ev.arp_sha,
                    v4(ev.dst_addr),
                    ev.arp_tha,
                    window,
                );
                self.evictions.arp_anomalies_full = self.arp.anomalies_dropped;
                if self.arp.len() > self.limits.arp_addresses {
                    self.evict_arp();
                }
            }
            _ => {}
        }
    }

    /// Moves "now" forward to `now_ns` (the live agent's clock), so that silence counts even
    /// when no record arrives.
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }

    /// Forgets pairs not heard from for `idle_ns` (with their streams), so a long-running agent
    /// holds only phones that are alive, and candidates older than [`CANDIDATE_TIMEOUT_S`].
    /// ARP addresses not answered for `idle_ns` go too, except those of the pairs held. The
    /// counts of forgotten phones move to [`Tracker::expired`]. (The live agent runs the three
    /// parts apart, the pairs a range of slots at a time: `agent::evaluator`.)
    pub fn expire(&mut self, idle_ns: u64) {
        self.expire_candidates();
        self.expire_idle(idle_ns, 0..self.slots.len());
        self.expire_arp(idle_ns);
    }

    /// Forgets candidates older than [`CANDIDATE_TIMEOUT_S`] (oldest first, from their queue:
    /// only the expired ones are looked at).
    pub fn expire_candidates(&mut self) {
        while self.expire_candidates_some(usize::MAX) == usize::MAX {}
    }

    /// The same for `budget` entries of the queue at most; returns how many it took (fewer
    /// than `budget`: none expired is left).
    pub fn expire_candidates_some(&mut self, budget: usize) -> usize {
        let now = self.now_ns;
        let timeout = (self.settings.wall_s(CANDIDATE_TIMEOUT_S) * 1e9) as u64;
        let mut taken = 0;
        while taken < budget {
            let Some(&(key, first_ns)) = self.queue.front() else {
                break;
            };
            if now.saturating_sub(first_ns) <= timeout {
                break;
            }
            self.queue.pop_front();
            taken += 1;
            if let Some(i) = self.candidate_slot(&key, first_ns) {
                self.remove(i, Removal::CandidateTimeout);
            }
        }
        taken
    }

    /// Forgets the pairs in the slots `slots` ([`Tracker::slot_count`]) not heard from for
    /// `idle_ns`.
    pub fn expire_idle(&mut self, idle_ns: u64, slots: Range<usize>) {
        let now = self.now_ns;
        for i in slots.start..slots.end.min(self.slots.len()) {
            let idle = self.slots[i]
                .pair
                .as_ref()
                .is_some_and(|p| now.saturating_sub(p.last_ns) > idle_ns);
            if idle {
                self.remove(i, Removal::Idle);
            }
        }
    }

    /// Forgets ARP addresses not answered for `idle_ns`, except those of the pairs held.
    pub fn expire_arp(&mut self, idle_ns: u64) {
        self.expire_arp_some(idle_ns, usize::MAX);
    }

    /// The same for the next `budget` addresses only, from where the last call stopped (the
    /// live agent's refreshes walk the table a slice at a time).
    pub fn expire_arp_some(&mut self, idle_ns: u64, budget: usize) {
        let tracked = &self.addresses;
        let n = self.arp.expire_some(self.now_ns, idle_ns, budget, |ip| tracked.contains_key(&ip));
        self.stats.expired_arp += n as u64;
    }

    /// Forgets streams idle for longer than the setting (pairs and their history stay), and
    /// any left behind by a removed pair.
    pub fn expire_streams(&mut self) {
        self.streams_cursor = 0;
        self.expire_streams_some(self.streams.len());
    }

    /// The same for the next `budget` streams only, from where the last call stopped: a
    /// stream removed is replaced in its place by the last one (`swap_remove`), which is then
    /// judged in its turn.
    pub fn expire_streams_some(&mut self, budget: usize) {
        let idle = (self.settings.idle_stream_s * 1e9) as u64;
        let now = self.now_ns;
        let mut i = self.streams_cursor;
        for _ in 0..budget {
            if i >= self.streams.len() {
                i = 0;
                if self.streams.is_empty() {
                    break;
                }
            }
            let Some((_, s)) = self.streams.get_index(i) else {
                break;
            };
            let keep = self
                .slots
                .get(s.pair)
                .filter(|slot| slot.generation == s.generation)
                .and_then(|slot| slot.pair.as_ref())
                .is_some_and(|p| now.saturating_sub(p.last_ns) <= idle);
            if keep {
                i += 1;
            } else if let Some((_, s)) = self.streams.swap_remove_index(i) {
                self.sip_bytes = self.sip_bytes.saturating_sub(s.sip_buffered());
            }
        }
        self.streams_cursor = i;
    }

    /// Streams (connection directions) held.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Phones held (pairs that have carried a keepalive).
    pub fn phone_count(&self) -> usize {
        self.phones
    }

    /// Candidates held (pairs that have not, yet).
    pub fn candidate_count(&self) -> usize {
        self.candidates
    }

    /// Bytes of partial SIP messages held.
    pub fn sip_buffered(&self) -> usize {
        self.sip_bytes
    }

    /// The phones: every pair that has carried a keepalive (candidates are not listed).
    pub fn phones(&self) -> impl Iterator<Item = &Pair> {
        self.phone_slots().map(|(_, p)| p)
    }

    /// The phones with their slot numbers (stable while the phone is held; see
    /// [`Tracker::phone_at`]).
    pub fn phone_slots(&self) -> impl Iterator<Item = (usize, &Pair)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.candidate)
            .filter_map(|(i, s)| s.pair.as_ref().map(|p| (i, p)))
    }

    /// The phone in slot `i`, if one is.
    pub fn phone_at(&self, i: usize) -> Option<&Pair> {
        self.slots.get(i).filter(|s| !s.candidate).and_then(|s| s.pair.as_ref())
    }

    /// Slots in the pair table (phones, candidates and free slots).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The phone with this key.
    pub fn pair(&self, key: &PairKey) -> Option<&Pair> {
        self.index.get(key).and_then(|&i| self.phone_at(i))
    }

    /// The slot of the candidate `key` made at `first_ns`, if it is still one.
    fn candidate_slot(&self, key: &PairKey, first_ns: u64) -> Option<usize> {
        let &i = self.index.get(key)?;
        let slot = &self.slots[i];
        (slot.candidate && slot.pair.as_ref().is_some_and(|p| p.first_ns == first_ns)).then_some(i)
    }

    /// A new pair, as a candidate; the oldest candidate makes room when the table is full.
    fn create(&mut self, pk: PairKey, app: App, ts_ns: u64) -> usize {
        while self.candidates >= self.limits.candidates {
            let Some((key, first_ns)) = self.queue.pop_front() else {
                break;
            };
            if let Some(i) = self.candidate_slot(&key, first_ns) {
                self.remove(i, Removal::CandidatesFull);
            }
        }
        // Entries of promoted candidates are skipped only when met: compact now and then.
        if self.queue.len() > 2 * self.limits.candidates + 1024 {
            let (index, slots) = (&self.index, &self.slots);
            self.queue.retain(|(k, first)| {
                index.get(k).is_some_and(|&i| {
                    slots[i].candidate
                        && slots[i].pair.as_ref().is_some_and(|p| p.first_ns == *first)
                })
            });
        }
        let pair = Some(Pair::new(pk, app, ts_ns));
        let i = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i];
                (slot.candidate, slot.pair) = (true, pair);
                i
            }
            None => {
                self.slots.push(Slot { generation: 0, candidate: true, pair });
                self.slots.len() - 1
            }
        };
        self.index.insert(pk, i);
        for a in v4_of(&pk) {
            *self.addresses.entry(a).or_default() += 1;
        }
        self.queue.push_back((pk, ts_ns));
        self.candidates += 1;
        self.evictions.candidates_created += 1;
        i
    }

    /// A candidate that has carried a keepalive becomes a phone; the longest-idle phones make
    /// room when the table is full.
    fn promote(&mut self, i: usize) {
        if self.phones >= self.limits.phones {
            self.evict_idle_phones(i);
        }
        self.slots[i].candidate = false;
        self.candidates -= 1;
        self.phones += 1;
        self.evictions.promoted += 1;
    }

    /// Removes a batch of the longest-idle phones (never slot `keep`).
    fn evict_idle_phones(&mut self, keep: usize) {
        let mut idle: Vec<(u64, usize)> =
            self.phone_slots().filter(|(i, _)| *i != keep).map(|(i, p)| (p.last_ns, i)).collect();
        let n = self.limits.phone_batch().min(idle.len());
        if n == 0 {
            return;
        }
        idle.select_nth_unstable(n - 1);
        for &(_, i) in &idle[..n] {
            self.remove(i, Removal::PhonesFull);
        }
    }

    /// Removes the pair in slot `i` with its streams, counting why.
    fn remove(&mut self, i: usize, why: Removal) {
        let slot = &mut self.slots[i];
        let Some(p) = slot.pair.take() else {
            return;
        };
        // Streams still pointing here are now stale (see `Stream::generation`).
        slot.generation = slot.generation.wrapping_add(1);
        let was_candidate = std::mem::replace(&mut slot.candidate, false);
        self.free.push(i);
        self.index.remove(&p.key);
        for a in v4_of(&p.key) {
            if let Some(n) = self.addresses.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    self.addresses.remove(&a);
                }
            }
        }
        for port in p.ports() {
            self.forget_connection(&p.key, port);
        }
        if was_candidate {
            self.candidates -= 1;
        } else {
            self.phones -= 1;
            let e = self.expired.entry(p.app).or_default();
            e.keepalives += p.keepalives;
            e.acks += p.acks;
            e.retransmissions += p.retransmission_count;
            e.reconnects += p.reconnect_count;
        }
        match why {
            Removal::Idle => self.stats.expired_pairs += 1,
            Removal::CandidatesFull => self.evictions.candidates_full += 1,
            Removal::CandidateTimeout => self.evictions.candidate_timeout += 1,
            Removal::PhonesFull => self.evictions.phones_full += 1,
        }
    }

    /// Forgets both streams of one connection.
    fn forget_connection(&mut self, pk: &PairKey, phone_port: u16) {
        for key in flow_keys(pk, phone_port) {
            if let Some(s) = self.streams.swap_remove(&key) {
                self.sip_bytes = self.sip_bytes.saturating_sub(s.sip_buffered());
            }
        }
    }

    /// Removes a batch of the ARP addresses heard from longest ago, keeping those of tracked
    /// phones and servers while others are left.
    fn evict_arp(&mut self) {
        let tracked = &self.addresses;
        let n = self.arp.evict_oldest(self.limits.arp_batch(), |ip| tracked.contains_key(&ip));
        self.evictions.arp_full += n as u64;
    }

    /// Which end of a new direction is the phone: the end not on a tracked port; when both
    /// are, the sender of a bare SYN, else the sender (the server end is the destination).
    fn phone_is_src(&self, ev: &Event, reverse: Option<&Stream>) -> bool {
        if let Some(r) = reverse {
            return !r.from_phone;
        }
        let tracked = |p: u16| self.config.app_for(p, 0) != App::None;
        match (tracked(ev.src_port), tracked(ev.dst_port)) {
            (true, false) => false,
            (false, true) => true,
            _ => {
                ev.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) != tcp_flags::ACK | tcp_flags::SYN
            }
        }
    }

    /// Whether `s` still belongs to the pair it was made for.
    fn current(&self, s: &Stream) -> bool {
        self.slots.get(s.pair).is_some_and(|slot| slot.generation == s.generation)
    }

    /// The index in `streams` of this segment's direction, created (with its pair) on first
    /// sight; `None` for a copy seen on another interface than the direction's first. One
    /// lookup for a known direction (the index is what the caller reads the stream by).
    fn stream_for(&mut self, ev: &Event) -> Option<usize> {
        let key = StreamKey::of(ev);
        match self.streams.get_full(&key) {
            Some((i, _, s)) if self.current(s) => return (s.ifindex == ev.ifindex).then_some(i),
            Some(_) => {
                if let Some(s) = self.streams.swap_remove(&key) {
                    self.sip_bytes = self.sip_bytes.saturating_sub(s.sip_buffered());
                }
            }
            None => {}
        }
        let rkey = key.reverse();
        let reverse = self.streams.get(&rkey).filter(|r| self.current(r));
        let from_phone = self.phone_is_src(ev, reverse);
        let src = addr(ev.src_addr, ev.ip_version);
        let dst = addr(ev.dst_addr, ev.ip_version);
        let segment = ev.segment;
        let (pk, phone_port) = if from_phone {
            let pk = PairKey { phone: src, server: dst, server_port: ev.dst_port, segment };
            (pk, ev.src_port)
        } else {
            let pk = PairKey { phone: dst, server: src, server_port: ev.src_port, segment };
            (pk, ev.dst_port)
        };
        let i = match self.index.get(&pk) {
            Some(&i) => i,
            None => self.create(pk, App::from_u8(ev.app), ev.ts_ns),
        };
        let replaced = self.slots[i].pair.as_mut().and_then(|p| p.note_port(phone_port));
        if let Some(old) = replaced {
            self.forget_connection(&pk, old);
            self.evictions.old_connections += 1;
        }
        let mut stream = Stream::new(i, from_phone, ev.ifindex);
        stream.generation = self.slots[i].generation;
        Some(self.streams.insert_full(key, stream).0)
    }

    fn tcp(&mut self, ev: &Event, payload: &[u8]) {
        let Some(i) = self.stream_for(ev) else {
            self.stats.other_interface += 1;
            return;
        };
        let Some((_, stream)) = self.streams.get_index_mut(i) else {
            return;
        };
        let from_phone = stream.from_phone;
        let slot_index = stream.pair;
        let Some(pair) = self.slots[slot_index].pair.as_mut() else {
            return;
        };
        pair.last_ns = ev.ts_ns;
        pair.encap = Encap::from_u8(ev.encap);
        let phone_port = if from_phone { ev.src_port } else { ev.dst_port };
        if from_phone {
            pair.set_vlans(&ev.vlans[..usize::from(ev.vlan_count).min(2)]);
            pair.phone_mac = ev.src_mac;
            pair.note_next_hop(ev.ts_ns, ev.ifindex, ev.dst_mac);
        }
        connection(pair, ev, from_phone, phone_port);
        // A new answer adds its latency to the pair's sum: the difference is the latency.
        let (acks_before, latency_before) = (pair.acks, pair.ack_latency.0);
        let protocol = crate::record::app_name(pair.app);

        let verdict = stream.segment(ev.ts_ns, ev.seq, ev.payload_len, ev.tcp_flags);
        match verdict {
            Verdict::Retransmission { delay_ns, keepalive } => {
                if let Some(d) = delay_ns {
                    self.latency.retransmission(protocol, pair.role().as_str(), d as f64 / 1e9);
                }
                pair.push_retransmission(Retransmission {
                    time_ns: ev.ts_ns,
                    delay_ns,
                    from_phone,
                });
                if let Some(ka) = keepalive.and_then(|id| pair.keepalive_mut(id)) {
                    ka.copy_seen(ev.ts_ns);
                } else if from_phone && matches!(pair.app, App::SccpTls | App::SipTls) {
                    tls::retransmission(pair, phone_port, ev.seq, ev.ts_ns);
                }
            }
            Verdict::New if ev.payload_len > 0 => {
                let app = App::from_u8(ev.app);
                match app {
                    App::Sccp => sccp::segment(pair, stream, ev, payload, from_phone),
                    App::Sip => {
                        let mut out = std::mem::take(&mut self.sip_out);
                        let before = stream.sip_buffered();
                        let oversized =
                            stream.feed_sip(ev.ts_ns, ev.seq, ev.payload_len, payload, &mut out);
                        let after = stream.sip_buffered();
                        self.evictions.sip_oversized += u64::from(oversized);
                        self.sip_bytes = (self.sip_bytes + after).saturating_sub(before);
                        if self.sip_bytes > self.limits.sip_buffer_bytes {
                            stream.drop_sip();
                            self.sip_bytes = self.sip_bytes.saturating_sub(after);
                            self.evictions.sip_budget += 1;
                        }
                        self.stats.sip_messages += out.len() as u64;
                        for m in out.drain(..) {
                            if let Some((seq, id)) =
                                sip::message(pair, ev, from_phone, m, &self.settings)
                            {
                                stream.tag(seq, id);
                            }
                        }
                        self.sip_out = out;
                    }
                    App::SccpTls | App::SipTls => {
                        tls::segment(pair, ev, from_phone, &self.settings);
                    }
                    App::None => {}
                }
            }
            _ => {}
        }
        if !from_phone && ev.tcp_flags & tcp_flags::ACK != 0 {
            tcp_ack(pair, ev.ack, ev.ts_ns);
        }
        if pair.acks > acks_before {
            let n = pair.acks - acks_before;
            let each = pair.ack_latency.0.saturating_sub(latency_before) as f64 / 1e9 / n as f64;
            let role = pair.role().as_str();
            for _ in 0..n {
                self.latency.ack(protocol, role, each);
            }
        }
        let is_phone = pair.is_phone();
        if is_phone && self.slots[slot_index].candidate {
            self.promote(slot_index);
        }
    }
}

/// Connection lifecycle: SYNs from the phone, FIN/RST from either end.
fn connection(pair: &mut Pair, ev: &Event, from_phone: bool, phone_port: u16) {
    let syn = ev.tcp_flags & tcp_flags::SYN != 0;
    let ack = ev.tcp_flags & tcp_flags::ACK != 0;
    if from_phone && syn && !ack {
        match pair.connection {
            Some(c) if c.phone_port == phone_port && c.closed.is_none() => {}
            Some(c) => {
                let unanswered_before = pair
                    .history
                    .iter()
                    .filter(|k| k.phone_port == c.phone_port && !k.acked())
                    .count() as u32;
                pair.push_reconnect(Reconnect {
                    time_ns: ev.ts_ns,
                    old_port: c.phone_port,
                    new_port: phone_port,
                    closed: c.closed,
                    unanswered_before,
                });
                pair.connection = Some(Connection { phone_port, closed: None });
            }
            None => pair.connection = Some(Connection { phone_port, closed: None }),
        }
        pair.phone_port = phone_port;
        return;
    }
    let conn = pair.connection.get_or_insert(Connection { phone_port, closed: None });
    if conn.phone_port != phone_port {
        // Traffic on another connection without its SYN seen: follow the newest.
        if from_phone && ev.payload_len > 0 {
            *conn = Connection { phone_port, closed: None };
        } else {
            return;
        }
    }
    pair.phone_port = phone_port;
    if ev.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 && conn.closed.is_none() {
        conn.closed = Some(Close {
            time_ns: ev.ts_ns,
            by_phone: from_phone,
            reset: ev.tcp_flags & tcp_flags::RST != 0,
        });
    }
}

/// The server's cumulative ACK covers keepalives: the evidence for a backup (SCCP backups
/// answer with a TCP ACK only).
fn tcp_ack(pair: &mut Pair, ack: u32, ts_ns: u64) {
    let port = pair.phone_port;
    if let Some(t) = pair.tls.as_mut() {
        t.tcp_ack(port, ack, ts_ns);
    }
    for ka in pair.history.iter_mut().rev().take(4) {
        if ka.phone_port == port && ka.tcp_ack_ns().is_none() && !tcp::seq_after(ka.end(), ack) {
            ka.set_tcp_ack_ns(ts_ns);
        }
    }
}

/// The IPv4 addresses of the pairs held in `slots`, phones and servers.
/// The IPv4 addresses of a pair (phone and server).
fn v4_of(pk: &PairKey) -> impl Iterator<Item = Ipv4Addr> {
    [pk.phone, pk.server].into_iter().filter_map(|a| match a {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    })
}
