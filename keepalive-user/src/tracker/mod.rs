//! The tracker: turns a stream of [`Record`]s, from any source, into per phone↔server state
//! ([`Pair`]) and an ARP table ([`ArpTable`]). It decides nothing about health; the rules in
//! [`crate::findings`] read the state it keeps.
//!
//! * [`pair`]: the state of one row (keepalives, answers, retransmissions, reconnects, MACs).
//! * [`tcp`]: sequence analysis of one direction (new data, retransmissions and their delay).
//! * [`sccp`]: SCCP KeepAlive/KeepAliveAck pairing and registration.
//! * [`sip`]: SIP reassembly, header parsing and REGISTER transactions.
//! * [`arp`]: who answers ARP for which address.

pub mod arp;
pub mod pair;
pub mod sccp;
pub mod sip;
pub mod tcp;

use std::{collections::HashMap, net::Ipv4Addr};

use keepalive_common::wire::{tcp_flags, App, Config, Event, EventKind, FlowKey};

pub use self::{
    arp::ArpTable,
    pair::{Pair, PairKey, Role},
};
use self::{
    pair::{Close, Connection, Reconnect, Retransmission},
    tcp::{Stream, Verdict},
};
use crate::record::{addr, Record};

/// Timers and thresholds. Every one is a setting a site may change (DOMAIN.md); a lab that
/// scales its timers down scales these the same way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// How long past its refresh CUCM waits before unregistering a phone (s).
    pub grace_s: f64,
    /// How long before expiry a SIP phone refreshes its registration (s).
    pub delta_s: f64,
    /// Answers to one ARP request closer than this come from rival responders (s).
    pub arp_window_s: f64,
    /// Lateness or retransmission delay below this is jitter, not loss (s). Real time: a lost
    /// segment costs at least one minimum RTO (200 ms on Linux, about 100 ms on the phones in
    /// DOMAIN.md), far above scheduling jitter.
    pub late_floor_s: f64,
    /// Streams idle longer than this are forgotten (s); pairs stay.
    pub idle_stream_s: f64,
    /// Protocol timers run this many times faster than their nominal values (a lab that scales
    /// a 30 s KeepAlive to 3 s uses 10): a SIP binding granted for 120 s is refreshed after
    /// (120 − delta)/scale wall seconds. 1 in real networks.
    pub time_scale: f64,
}

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
            late_floor_s: 0.05,
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

/// Per-pair state and the ARP table, fed one record at a time.
#[derive(Debug)]
pub struct Tracker {
    /// Settings in force.
    pub settings: Settings,
    config: Config,
    /// Pairs, in the order first seen.
    pub pairs: Vec<Pair>,
    index: HashMap<PairKey, usize>,
    streams: HashMap<FlowKey, Stream>,
    /// ARP knowledge.
    pub arp: ArpTable,
    /// Time of the first and latest record.
    pub first_ns: Option<u64>,
    /// Time of the latest record ("now" for the findings).
    pub now_ns: u64,
    /// Counts.
    pub stats: TrackerStats,
    /// Totals of forgotten pairs, per protocol.
    pub expired: HashMap<App, Expired>,
    sip_out: Vec<sip::Parsed>,
}

impl Tracker {
    /// A tracker for traffic classified with `config` (it names the server ports).
    pub fn new(settings: Settings, config: Config) -> Self {
        Self {
            settings,
            config,
            pairs: Vec::new(),
            index: HashMap::new(),
            streams: HashMap::new(),
            arp: ArpTable::default(),
            first_ns: None,
            now_ns: 0,
            stats: TrackerStats::default(),
            expired: HashMap::new(),
            sip_out: Vec::new(),
        }
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
    /// holds only phones that are alive. Their counts move to [`Tracker::expired`].
    pub fn expire(&mut self, idle_ns: u64) {
        let now = self.now_ns;
        if self.pairs.iter().all(|p| now.saturating_sub(p.last_ns) <= idle_ns) {
            return;
        }
        let mut remap = vec![usize::MAX; self.pairs.len()];
        let mut kept = Vec::with_capacity(self.pairs.len());
        for (i, p) in std::mem::take(&mut self.pairs).into_iter().enumerate() {
            if now.saturating_sub(p.last_ns) <= idle_ns {
                remap[i] = kept.len();
                kept.push(p);
            } else {
                let e = self.expired.entry(p.app).or_default();
                e.keepalives += p.keepalives;
                e.acks += p.acks;
                e.retransmissions += p.retransmission_count;
                e.reconnects += p.reconnect_count;
                self.stats.expired_pairs += 1;
            }
        }
        self.pairs = kept;
        self.index = self.pairs.iter().enumerate().map(|(i, p)| (p.key, i)).collect();
        self.streams.retain(|_, s| remap[s.pair] != usize::MAX);
        for s in self.streams.values_mut() {
            s.pair = remap[s.pair];
        }
    }

    /// Forgets streams idle for longer than the setting (pairs and their history stay).
    pub fn expire_streams(&mut self) {
        let idle = (self.settings.idle_stream_s * 1e9) as u64;
        let now = self.now_ns;
        let pairs = &self.pairs;
        self.streams.retain(|_, s| now.saturating_sub(pairs[s.pair].last_ns) <= idle);
    }

    /// Streams (connection directions) held.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The pair with this key.
    pub fn pair(&self, key: &PairKey) -> Option<&Pair> {
        self.index.get(key).map(|&i| &self.pairs[i])
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

    /// The stream of this segment's direction, created (with its pair) on first sight; `None`
    /// for a copy seen on another interface than the direction's first.
    fn stream_for(&mut self, ev: &Event) -> Option<FlowKey> {
        let key = ev.flow_key();
        if let Some(s) = self.streams.get(&key) {
            return (s.ifindex == ev.ifindex).then_some(key);
        }
        let rkey = FlowKey {
            src_addr: key.dst_addr,
            dst_addr: key.src_addr,
            src_port: key.dst_port,
            dst_port: key.src_port,
        };
        let from_phone = self.phone_is_src(ev, self.streams.get(&rkey));
        let src = addr(ev.src_addr, ev.ip_version);
        let dst = addr(ev.dst_addr, ev.ip_version);
        let pk = if from_phone {
            PairKey { phone: src, server: dst, server_port: ev.dst_port }
        } else {
            PairKey { phone: dst, server: src, server_port: ev.src_port }
        };
        let pair = match self.index.get(&pk) {
            Some(&i) => i,
            None => {
                self.pairs.push(Pair::new(pk, App::from_u8(ev.app), ev.ts_ns));
                self.index.insert(pk, self.pairs.len() - 1);
                self.pairs.len() - 1
            }
        };
        self.streams.insert(key, Stream::new(pair, from_phone, ev.ifindex));
        Some(key)
    }

    fn tcp(&mut self, ev: &Event, payload: &[u8]) {
        let Some(key) = self.stream_for(ev) else {
            self.stats.other_interface += 1;
            return;
        };
        let stream = self.streams.get_mut(&key).expect("stream_for inserted it");
        let from_phone = stream.from_phone;
        let pair = &mut self.pairs[stream.pair];
        pair.last_ns = ev.ts_ns;
        let phone_port = if from_phone { ev.src_port } else { ev.dst_port };
        if from_phone {
            pair.set_vlans(&ev.vlans[..usize::from(ev.vlan_count).min(2)]);
            pair.phone_mac = ev.src_mac;
            pair.note_next_hop(ev.ts_ns, ev.ifindex, ev.dst_mac);
        }
        connection(pair, ev, from_phone, phone_port);

        let verdict = stream.segment(ev.ts_ns, ev.seq, ev.payload_len, ev.tcp_flags);
        match verdict {
            Verdict::Retransmission { delay_ns, keepalive } => {
                pair.push_retransmission(Retransmission {
                    time_ns: ev.ts_ns,
                    delay_ns,
                    from_phone,
                });
                if let Some(ka) = keepalive.and_then(|id| pair.keepalive_mut(id)) {
                    ka.copy_seen(ev.ts_ns);
                }
            }
            Verdict::New if ev.payload_len > 0 => {
                let app = App::from_u8(ev.app);
                match app {
                    App::Sccp => sccp::segment(pair, stream, ev, payload, from_phone),
                    App::Sip => {
                        let mut out = std::mem::take(&mut self.sip_out);
                        stream.feed_sip(ev.ts_ns, ev.seq, ev.payload_len, payload, &mut out);
                        self.stats.sip_messages += out.len() as u64;
                        for m in out.drain(..) {
                            sip::message(pair, stream, ev, from_phone, m, &self.settings);
                        }
                        self.sip_out = out;
                    }
                    // TLS: message types are invisible; the timing of the phone's records is
                    // the only keepalive signal, and it is not interpreted yet.
                    _ => {}
                }
            }
            _ => {}
        }
        if !from_phone && ev.tcp_flags & tcp_flags::ACK != 0 {
            tcp_ack(pair, ev.ack, ev.ts_ns);
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
    for ka in pair.history.iter_mut().rev().take(4) {
        if ka.phone_port == port && ka.tcp_ack_ns().is_none() && !tcp::seq_after(ka.end(), ack) {
            ka.set_tcp_ack_ns(ts_ns);
        }
    }
}
