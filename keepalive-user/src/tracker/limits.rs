//! How much state the tracker may hold, and what it forgot to stay within that.
//!
//! Every bound comes from one number, the phones a site has (`--max-phones`), so an engineer
//! sizes the agent once. A flood on the voice VLAN (spoofed SYNs, ARP replies from random
//! addresses, SIP headers that never end) lands in the tables that evict first:
//! * a pair becomes a *phone* only once it has carried a keepalive (SCCP KeepAlive, a SIP
//!   REGISTER) or an SCCP Register; until then it is a *candidate*, held in a table of its own
//!   ([`Limits::candidates`]) that evicts its oldest entry when full and forgets an entry after
//!   [`CANDIDATE_TIMEOUT_S`];
//! * phones are evicted only when their own table is full, the longest-idle first, in batches
//!   (a scan of 200 000 pairs per eviction would cost a millisecond each);
//! * each pair keeps streams for its last [`PORTS_KEPT`] connections;
//! * ARP addresses are bounded, the addresses of tracked phones and servers kept first;
//! * partial SIP messages share one byte budget, and a header block that does not end within
//!   [`MAX_SIP_HEAD`] is given up on.
//!
//! Every eviction is counted by reason ([`Evictions`]): in `stats`, the metrics and the log.

use serde::Serialize;

/// The default of `--max-phones`: a large campus (the agent at 100 000 phones is measured in
/// BENCHMARKS.md), with room to spare.
pub const DEFAULT_MAX_PHONES: usize = 200_000;
/// The largest `--max-phones` accepted: the flow maps and the tables are sized from it.
pub const MAX_MAX_PHONES: usize = 4_000_000;
/// Nominal seconds a candidate may wait for its first keepalive. A phone that connects sends
/// its Register or REGISTER within milliseconds of the handshake; a connection the agent
/// joined mid-way shows a keepalive within one SCCP interval (30 s), and one that does not is
/// simply made a candidate again by its next segment.
pub const CANDIDATE_TIMEOUT_S: f64 = 60.0;
/// Connections (phone ports) whose streams a pair keeps: the current one, the one it replaced
/// (its late retransmissions and its RST), and one more.
pub const PORTS_KEPT: usize = 3;
/// A SIP header block longer than this without its blank line is given up on. A REGISTER's
/// headers are well under 2 KiB; kamailio reads messages into a 64 KiB buffer (`BUF_SIZE`).
pub const MAX_SIP_HEAD: usize = 16 * 1024;

/// Bounds of the tracker's tables, all derived from one number of phones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Phone↔server pairs that have carried a keepalive.
    pub phones: usize,
    /// Pairs that have not (yet): handshakes, SYNs, other traffic on a tracked port.
    pub candidates: usize,
    /// IPv4 addresses in the ARP table.
    pub arp_addresses: usize,
    /// Bytes of partial SIP messages held, over all connections.
    pub sip_buffer_bytes: usize,
}

impl Limits {
    /// The limits for a site of `phones` phone↔server pairs (at least 1).
    pub fn for_phones(phones: usize) -> Self {
        let phones = phones.clamp(1, MAX_MAX_PHONES);
        Self {
            phones,
            // An eighth: a whole site reconnecting at once (a CUCM restart) fits 1 in 8 at a
            // time, and a flood is held to ~1 KiB per candidate.
            candidates: (phones / 8).max(256),
            // One address a pair: every phone and server, and the other hosts of the VLAN
            // (ARP matters for the servers' addresses, which are kept first).
            arp_addresses: phones.max(1024),
            // 64 bytes a phone on average (at least 1 MiB): a site where one phone in thirty
            // has a REGISTER split across segments at the same moment.
            sip_buffer_bytes: phones.saturating_mul(64).max(1 << 20),
        }
    }

    /// Phones evicted at once when the phone table is full (1/64 of it): the scan for the
    /// longest-idle ones is paid once per batch.
    pub fn phone_batch(&self) -> usize {
        (self.phones / 64).max(1)
    }

    /// ARP addresses evicted at once when the ARP table is full.
    pub fn arp_batch(&self) -> usize {
        (self.arp_addresses / 64).max(1)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::for_phones(DEFAULT_MAX_PHONES)
    }
}

/// What the tracker forgot before its time, by reason, and the candidates' flow (created =
/// promoted + evicted + held).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evictions {
    /// Candidates created (a pair's first segment).
    pub candidates_created: u64,
    /// Candidates that carried a keepalive and became phones.
    pub promoted: u64,
    /// Candidates dropped, oldest first, because the candidate table was full.
    pub candidates_full: u64,
    /// Candidates dropped because no keepalive came within [`CANDIDATE_TIMEOUT_S`].
    pub candidate_timeout: u64,
    /// Phones dropped, longest-idle first, because the phone table was full.
    pub phones_full: u64,
    /// Streams of a pair's older connections dropped beyond [`PORTS_KEPT`].
    pub old_connections: u64,
    /// ARP addresses dropped, oldest first, because the ARP table was full.
    pub arp_full: u64,
    /// ARP anomalies forgotten (MAC changes first) because the anomaly list was full.
    pub arp_anomalies_full: u64,
    /// Partial SIP messages dropped because the reassembly budget was spent.
    pub sip_budget: u64,
    /// Partial SIP messages dropped because their headers did not end within [`MAX_SIP_HEAD`].
    pub sip_oversized: u64,
}

impl Evictions {
    /// Evictions by reason, as the metrics label them.
    pub fn by_reason(&self) -> [(&'static str, u64); 8] {
        [
            ("candidates-full", self.candidates_full),
            ("candidate-timeout", self.candidate_timeout),
            ("phones-full", self.phones_full),
            ("old-connection", self.old_connections),
            ("arp-full", self.arp_full),
            ("arp-anomalies-full", self.arp_anomalies_full),
            ("sip-budget", self.sip_budget),
            ("sip-oversized", self.sip_oversized),
        ]
    }

    /// Evictions of every reason.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use keepalive_common::wire::Config;

    use super::*;
    use crate::{
        source::{capture::Frame, offline::HostProbe},
        tracker::{Settings, Tracker},
    };
    use keepalive_lab::fixtures::{
        self, arp_frame, phone_eth, sccp_keepalive, tcp_frame, Eth, Net, Tcp,
    };

    const CUCM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 202);
    const S: u64 = 1_000_000_000;

    /// A tracker within `limits`, fed through the host twin of the XDP program.
    struct Feed {
        probe: HostProbe,
        tracker: Tracker,
    }

    impl Feed {
        fn new(limits: Limits) -> Self {
            Self {
                probe: HostProbe::new(Config::DEFAULT),
                tracker: Tracker::with_limits(Settings::default(), Config::DEFAULT, limits),
            }
        }

        fn frame(&mut self, ts_ns: u64, data: &[u8]) {
            if let Some(rec) = self.probe.process(&Frame { ts_ns, ifindex: 1, data }) {
                self.tracker.ingest(&rec);
            }
        }

        /// A phone at `ip` that sends a KeepAlive from `port` and gets its Ack.
        fn keepalive(&mut self, ts_ns: u64, ip: Ipv4Addr, port: u16, seq: u32) {
            let net = Net::between(IpAddr::V4(ip), IpAddr::V4(CUCM));
            let ka = sccp_keepalive();
            self.frame(ts_ns, &tcp_frame(&phone_eth(), &net, &Tcp::data(port, 2000, seq, 1), &ka));
            let ack = fixtures::sccp_keepalive_ack();
            let back = Tcp::data(2000, port, seq, seq + ka.len() as u32);
            self.frame(ts_ns + 1_000_000, &tcp_frame(&phone_eth(), &net.reversed(), &back, &ack));
        }

        /// A bare SYN from `ip:port` to the CUCM.
        fn syn(&mut self, ts_ns: u64, ip: Ipv4Addr, port: u16) {
            let net = Net::between(IpAddr::V4(ip), IpAddr::V4(CUCM));
            let tcp = Tcp { flags: 0x02, ..Tcp::data(port, 2000, 7, 0) };
            self.frame(ts_ns, &tcp_frame(&phone_eth(), &net, &tcp, &[]));
        }

        fn assert_adds_up(&self) {
            let (e, t) = (&self.tracker.evictions, &self.tracker);
            assert_eq!(
                e.candidates_created,
                e.promoted + e.candidates_full + e.candidate_timeout + t.candidate_count() as u64,
                "{e:?}"
            );
        }
    }

    fn spoofed(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a80_0000 + n)
    }

    #[test]
    fn a_syn_flood_stays_in_the_candidates_and_the_phones_keep_their_rows() {
        let limits = Limits::for_phones(1_000);
        let mut f = Feed::new(limits);
        let phones: Vec<Ipv4Addr> = (1..=20).map(|n| Ipv4Addr::new(10, 0, 0, n)).collect();
        for (k, ip) in phones.iter().enumerate() {
            f.keepalive(k as u64 * 1_000, *ip, 40_000, 100);
        }
        for n in 0..50_000 {
            f.syn(S + u64::from(n) * 10_000, spoofed(n), 1024 + (n % 60_000) as u16);
        }
        for (k, ip) in phones.iter().enumerate() {
            f.keepalive(2 * S + k as u64 * 1_000, *ip, 40_000, 112);
        }
        let t = &f.tracker;
        assert_eq!(t.phone_count(), 20, "only the phones that sent a KeepAlive are phones");
        assert!(t.phones().all(|p| phones.contains(&match p.key.phone {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => unreachable!(),
        })));
        assert!(t.phones().all(|p| (p.keepalives, p.acks) == (2, 2)));
        assert_eq!(t.candidate_count(), limits.candidates);
        assert_eq!(t.evictions.candidates_full, 50_000 - limits.candidates as u64);
        assert!(t.stream_count() <= 2 * 20 + limits.candidates, "{}", t.stream_count());
        f.assert_adds_up();

        // A minute later (the candidate timeout) the flood is gone; the phones stay.
        f.tracker.advance(2 * S + 61 * S);
        f.tracker.expire(3600 * S);
        assert_eq!((f.tracker.candidate_count(), f.tracker.phone_count()), (0, 20));
        assert_eq!(f.tracker.evictions.candidate_timeout, limits.candidates as u64);
        f.tracker.expire_streams();
        assert_eq!(f.tracker.stream_count(), 40);
        f.assert_adds_up();
    }

    #[test]
    fn a_full_phone_table_evicts_the_longest_idle_phones_in_a_batch() {
        let limits = Limits::for_phones(128);
        let mut f = Feed::new(limits);
        for n in 0..128 {
            f.keepalive(u64::from(n) * S, spoofed(n), 40_000, 100);
        }
        assert_eq!(f.tracker.phone_count(), 128);
        // Phone 0 stays active: it must not be among the evicted.
        f.keepalive(200 * S, spoofed(0), 40_000, 112);
        f.keepalive(201 * S, spoofed(1_000), 40_000, 100);
        let t = &f.tracker;
        assert_eq!(t.evictions.phones_full, limits.phone_batch() as u64);
        assert_eq!(t.phone_count(), 128 - limits.phone_batch() + 1);
        let kept: Vec<IpAddr> = t.phones().map(|p| p.key.phone).collect();
        assert!(
            kept.contains(&IpAddr::V4(spoofed(0))) && kept.contains(&IpAddr::V4(spoofed(1_000)))
        );
        assert!(!kept.contains(&IpAddr::V4(spoofed(1))), "the longest idle went first");
        // Totals never go down: the evicted phones' keepalives are kept in the totals.
        let held: u64 = t.phones().map(|p| p.keepalives).sum();
        let gone: u64 = t.expired.values().map(|e| e.keepalives).sum();
        assert_eq!(held + gone, 130);
        f.assert_adds_up();
    }

    #[test]
    fn one_address_on_many_ports_keeps_streams_for_its_last_connections() {
        let mut f = Feed::new(Limits::for_phones(100));
        let ip = Ipv4Addr::new(10, 0, 0, 9);
        f.keepalive(0, ip, 40_000, 100);
        for port in 1..=10_000u16 {
            f.syn(S + u64::from(port) * 1_000, ip, port);
        }
        let t = &f.tracker;
        assert_eq!(t.phone_count(), 1);
        assert!(t.stream_count() <= 2 * PORTS_KEPT, "{} streams", t.stream_count());
        assert_eq!(t.evictions.old_connections, 10_000 + 1 - PORTS_KEPT as u64);
    }

    #[test]
    fn endless_sip_headers_are_given_up_and_the_budget_holds() {
        let limits = Limits { sip_buffer_bytes: 256 * 1024, ..Limits::for_phones(1_000) };
        let mut f = Feed::new(limits);
        let header = b"X-Filler: 0123456789012345678901234567890123456789012345678901234567\r\n";
        // 64 connections at once, each sending headers and never the blank line.
        let start = b"REGISTER sip:10.0.0.202 SIP/2.0\r\n".to_vec();
        let mut seqs = [1u32; 64];
        for k in 0..40u64 {
            for (c, seq) in (0..64u32).zip(&mut seqs) {
                let net = Net::between(IpAddr::V4(spoofed(c)), IpAddr::V4(CUCM));
                let payload = if k == 0 { start.clone() } else { header.repeat(20) };
                let tcp = Tcp::data(5000, 5060, *seq, 1);
                let ts = k * S + u64::from(c) * 1_000;
                f.frame(ts, &tcp_frame(&phone_eth(), &net, &tcp, &payload));
                *seq += payload.len() as u32;
                assert!(f.tracker.sip_buffered() <= limits.sip_buffer_bytes);
            }
        }
        let e = &f.tracker.evictions;
        // Each connection's partial message is dropped at least once, for its size or for the
        // budget that 64 of them at 16 KiB would pass.
        assert!(e.sip_oversized > 0 && e.sip_budget > 0, "{e:?}");
        assert!(e.sip_oversized + e.sip_budget >= 64, "{e:?}");
        assert_eq!(f.tracker.phone_count(), 0, "no REGISTER was ever complete");
    }

    #[test]
    fn spoofed_arp_replies_are_bounded_expire_and_the_servers_address_is_kept() {
        let limits = Limits { arp_addresses: 1_024, ..Limits::for_phones(100) };
        let mut f = Feed::new(limits);
        f.keepalive(0, Ipv4Addr::new(10, 0, 0, 9), 40_000, 100);
        let reply = |spa: Ipv4Addr, mac: [u8; 6]| {
            arp_frame(&Eth::new(mac, [2; 6]), fixtures::ARP_REPLY, mac, spa, [2; 6], spoofed(0))
        };
        f.frame(S, &reply(CUCM, [0, 0x0c, 0x29, 0, 0, 1]));
        for n in 0..20_000u32 {
            let m = n.to_be_bytes();
            f.frame(
                2 * S + u64::from(n) * 1_000,
                &reply(spoofed(100 + n), [2, 9, m[0], m[1], m[2], m[3]]),
            );
        }
        let t = &f.tracker;
        assert!(t.arp.len() <= limits.arp_addresses, "{}", t.arp.len());
        assert!(t.evictions.arp_full >= 20_000 - 1_024, "{:?}", t.evictions);
        assert_eq!(t.arp.macs(CUCM), vec![[0, 0x0c, 0x29, 0, 0, 1]], "the CUCM's entry is kept");

        // Two hours on, with the phone still sending: an hour's idle expiry forgets every
        // spoofed sender but not the CUCM, whose answer is older still.
        f.keepalive(2 * 3600 * S, Ipv4Addr::new(10, 0, 0, 9), 40_000, 200);
        let held = f.tracker.arp.len();
        f.tracker.expire(3600 * S);
        assert_eq!(f.tracker.arp.len(), 1, "only the CUCM's address is left");
        assert_eq!(f.tracker.stats.expired_arp, held as u64 - 1);
        assert_eq!(f.tracker.arp.macs(CUCM), vec![[0, 0x0c, 0x29, 0, 0, 1]]);
        assert_eq!(f.tracker.phone_count(), 1);
    }

    #[test]
    fn limits_follow_the_phones_and_stay_positive() {
        let d = Limits::default();
        assert_eq!((d.phones, d.candidates), (200_000, 25_000));
        assert_eq!(d.phone_batch(), 3_125);
        let one = Limits::for_phones(0);
        assert_eq!((one.phones, one.candidates, one.phone_batch()), (1, 256, 1));
        assert!(one.sip_buffer_bytes >= MAX_SIP_HEAD, "one message always fits");
        assert_eq!(Limits::for_phones(usize::MAX).phones, MAX_MAX_PHONES);
    }
}
