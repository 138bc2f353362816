//! Reports: the tracker's state and the findings, as the JSON document docs/DESIGN.md specifies
//! ([`Report`], printed by [`json`]) or a table for people ([`table`]). The live agent renders
//! the same [`Report`].

pub mod json;
pub mod table;

use std::{net::IpAddr, ops::Range};

use keepalive_common::wire::{App, Encap};
use serde::Serialize;

use crate::{
    findings::{self, epoch_s, round, Context, Finding, Severity},
    record::{app_name, mac},
    tracker::{
        pair::secs,
        tls::{TlsState, TlsSummary},
        Pair, Tracker,
    },
};

/// Counts from the source, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceTotals {
    /// Frames seen.
    pub packets: u64,
    /// Frames that became events.
    pub matched: u64,
    /// Frames of a followed protocol that were truncated or malformed.
    pub parse_errors: u64,
    /// Frames skipped because of their link type.
    pub unsupported_link: u64,
    /// Why reading stopped early, if it did.
    pub truncated: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Totals.
    pub summary: Summary,
    /// One row per phone↔server pair, the most severe first.
    pub phones: Vec<PhoneRow>,
    /// ARP anomalies.
    pub arp: Vec<ArpRow>,
    /// Findings not tied to one phone row.
    pub findings: Vec<Finding>,
    /// CUCM's unregistrations and the forecasts' scores, when its syslog is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cucm: Option<crate::cucm::join::CucmSection>,
}

/// Totals of a report.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Frames read.
    pub packets: u64,
    /// Frames keepalive follows (TCP on tracked ports, ARP).
    pub matched: u64,
    /// Phone↔server pairs.
    pub phones: usize,
    /// Distinct phone addresses.
    pub phone_addresses: usize,
    /// Pairs with at least one warning or critical finding.
    pub phones_with_findings: usize,
    /// Findings by severity.
    pub critical: usize,
    /// Warnings.
    pub warning: usize,
    /// Infos.
    pub info: usize,
    /// ARP frames.
    pub arp_frames: u64,
    /// Malformed frames of followed protocols.
    pub parse_errors: u64,
    /// First and last event (epoch seconds).
    pub start: Option<f64>,
    /// Last event.
    pub end: Option<f64>,
    /// Frames skipped for their link type.
    #[serde(skip_serializing_if = "is_zero")]
    pub unsupported_link: u64,
    /// Why reading stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Interval statistics.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Interval {
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

/// One retransmission.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RetransmissionRow {
    /// When the copy was seen (epoch seconds).
    pub time: f64,
    /// Seconds since the first copy (null when the first copy was not seen).
    pub delay_s: Option<f64>,
    /// "phone" or "server".
    pub from: &'static str,
}

/// The tunnel a row's frames were peeled from: two rows may share addresses in two segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Segment {
    /// "gre", "gre-ip", "erspan-i", "erspan-ii", "erspan-iii", "vxlan".
    pub encap: &'static str,
    /// What `id` is: "vni", "erspan-session", "gre-key".
    pub kind: &'static str,
    /// The VNI, ERSPAN session id or GRE key; `None` when the layer carries none (GRE
    /// without a key, ERSPAN type I).
    pub id: Option<u32>,
}

impl Segment {
    fn of(pair: &Pair) -> Option<Self> {
        let encap = pair.encap;
        (encap != Encap::None).then(|| Self {
            encap: encap.name(),
            kind: encap.segment_name(),
            id: (pair.key.segment != 0).then_some(pair.key.segment),
        })
    }

    /// How the table shows it: "vni 5001", "erspan-session 301", "gre".
    pub fn label(&self) -> String {
        match self.id {
            Some(id) => format!("{} {id}", self.kind),
            None => self.encap.to_owned(),
        }
    }
}

/// One phone↔server pair.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhoneRow {
    /// Phone address.
    pub phone: String,
    /// Phone's current port.
    pub phone_port: u16,
    /// Server address.
    pub server: String,
    /// Server port.
    pub server_port: u16,
    /// "sip", "sccp", "sccp-tls", "sip-tls".
    pub protocol: &'static str,
    /// VLAN ids, outer first.
    pub vlan: Vec<u16>,
    /// The tunnel the pair's frames arrived in (ERSPAN, VXLAN, GRE); `None` when bare.
    pub segment: Option<Segment>,
    /// "primary", "backup", "unknown".
    pub role: &'static str,
    /// Device name.
    pub device: Option<String>,
    /// Model (SIP Contact).
    pub model: Option<String>,
    /// User-Agent.
    pub user_agent: Option<String>,
    /// The phone's MAC.
    pub mac: String,
    /// Destination MAC of the phone's latest frames to the server (its next hop).
    pub next_hop: Option<String>,
    /// Keepalives, each counted once.
    pub keepalives: u64,
    /// KeepAliveAcks / 2xx to REGISTER.
    pub acks: u64,
    /// Mean application ack latency (ms).
    pub ack_latency_ms: Option<f64>,
    /// Keepalive intervals.
    pub interval_s: Option<Interval>,
    /// SIP Expires asked.
    pub expires_requested: Option<u32>,
    /// SIP Expires granted.
    pub expires_granted: Option<u32>,
    /// Reconnects.
    pub reconnects: u64,
    /// Recent retransmissions (both directions).
    pub retransmissions: Vec<RetransmissionRow>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Last frame (epoch seconds).
    pub last_seen: f64,
    /// TLS rows: what the keepalive inference has learned (`state` is `learning` until it has
    /// seen 3 regular records of one size). Absent on clear-text rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSummary>,
    /// CUCM's latest unregistration of this phone, when its syslog is read (`--cucm-syslog`),
    /// and whether a forecast named it. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unregistered: Option<crate::cucm::join::RowUnregistration>,
}

impl PhoneRow {
    /// The worst severity among the findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// One ARP anomaly.
#[derive(Clone, Debug, Serialize)]
pub struct ArpRow {
    /// Address answered for.
    pub ip: String,
    /// MACs, in answer order.
    pub macs: Vec<String>,
    /// "multiple-responders" or "mac-change".
    pub kind: &'static str,
    /// When (epoch seconds).
    pub time: f64,
}

fn interval(pair: &Pair) -> Option<Interval> {
    let mut v = pair.intervals();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median =
        if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    Some(Interval { median: round(median, 3), min: round(v[0], 3), max: round(v[v.len() - 1], 3) })
}

/// The order of [`Report::build_top`]'s findings: newest first; equal times by whom and kind,
/// so the cut never depends on the order the rows came in.
fn newest_first(a: &(String, Finding), b: &(String, Finding)) -> std::cmp::Ordering {
    b.1.time
        .total_cmp(&a.1.time)
        .then_with(|| a.0.cmp(&b.0))
        .then(a.1.kind.as_str().cmp(b.1.kind.as_str()))
}

/// The order of the phone rows: worst first, then most findings, then by address.
fn row_order(a: &PhoneRow, b: &PhoneRow) -> std::cmp::Ordering {
    b.worst()
        .cmp(&a.worst())
        .then_with(|| b.findings.len().cmp(&a.findings.len()))
        .then_with(|| a.phone.cmp(&b.phone))
        .then_with(|| a.server.cmp(&b.server))
}

/// The inference summary of a TLS row (a TLS pair that has sent nothing yet is `learning`).
fn tls_summary(pair: &Pair) -> Option<TlsSummary> {
    match pair.app {
        App::SccpTls | App::SipTls => Some(
            pair.tls
                .as_deref()
                .map(TlsState::summary)
                .unwrap_or_else(|| TlsState::default().summary()),
        ),
        _ => None,
    }
}

fn row(pair: &Pair, ctx: &Context<'_>) -> PhoneRow {
    let (sum, n, _) = pair.ack_latency;
    PhoneRow {
        phone: pair.key.phone.to_string(),
        phone_port: pair.phone_port,
        server: pair.key.server.to_string(),
        server_port: pair.key.server_port,
        protocol: app_name(pair.app),
        vlan: pair.vlans().to_vec(),
        segment: Segment::of(pair),
        role: pair.role().as_str(),
        device: pair.device.as_deref().map(str::to_owned),
        model: pair.model.as_deref().map(str::to_owned),
        user_agent: pair.user_agent.as_deref().map(str::to_owned),
        mac: mac(pair.phone_mac),
        next_hop: pair
            .history
            .back()
            .map(|k| k.dst_mac)
            .or(pair.next_hop.first().map(|n| n.1))
            .map(mac),
        keepalives: pair.keepalives,
        acks: pair.acks,
        ack_latency_ms: (n > 0).then(|| round(secs(sum / n) * 1e3, 3)),
        interval_s: interval(pair),
        expires_requested: pair.expires_requested,
        expires_granted: pair.expires_granted,
        reconnects: pair.reconnect_count,
        retransmissions: pair
            .retransmissions
            .iter()
            .map(|r| RetransmissionRow {
                time: epoch_s(r.time_ns),
                delay_s: r.delay_ns.map(|d| round(secs(d), 6)),
                from: if r.from_phone { "phone" } else { "server" },
            })
            .collect(),
        findings: findings::for_pair(pair, ctx),
        last_seen: epoch_s(pair.last_ns),
        tls: tls_summary(pair),
        unregistered: None,
    }
}

impl Report {
    /// The rows of the phones in the slots `indices` ([`Tracker::phone_slots`]): what the live
    /// agent re-evaluates on a refresh without building a whole report.
    pub fn rows_at(tracker: &Tracker, indices: impl Iterator<Item = usize>) -> Vec<PhoneRow> {
        let ctx =
            Context { settings: &tracker.settings, now_ns: tracker.now_ns, arp: &tracker.arp };
        indices.filter_map(|i| tracker.phone_at(i)).map(|p| row(p, &ctx)).collect()
    }

    /// The findings not tied to a pair, evaluated whole.
    pub fn unattached(tracker: &Tracker) -> Vec<Finding> {
        let ctx =
            Context { settings: &tracker.settings, now_ns: tracker.now_ns, arp: &tracker.arp };
        findings::global(tracker, &ctx)
    }

    /// Builds the report of what `tracker` holds.
    pub fn build(tracker: &Tracker, totals: &SourceTotals) -> Self {
        Self::build_filtered(tracker, totals, |_| true)
    }

    /// The same, listing only the phone rows `keep` accepts; the summary still counts every
    /// pair. Rows are built one at a time and the others dropped at once, so asking for one
    /// phone out of 100 000 does not hold the whole list in memory.
    pub fn build_filtered(
        tracker: &Tracker,
        totals: &SourceTotals,
        keep: impl Fn(&PhoneRow) -> bool,
    ) -> Self {
        Self::build_with(tracker, totals, |r, phones| {
            if keep(&r) {
                phones.push(r);
            }
        })
    }

    /// The rows `keep` accepts, worst first, from `offset` on and at most `limit` of them,
    /// with how many rows `keep` accepted in all. Rows are sorted and cut as they are built,
    /// so a page holds `offset + limit` rows at most, however many pairs there are.
    pub fn build_page(
        tracker: &Tracker,
        totals: &SourceTotals,
        keep: impl Fn(&PhoneRow) -> bool,
        offset: usize,
        limit: usize,
    ) -> (Self, usize) {
        let mut pager = Pager::new(keep, offset, limit);
        pager.add(tracker, 0..tracker.slot_count());
        pager.finish(tracker, totals)
    }

    /// The report with only its first `rows` phone rows (worst first, as [`Report::build`]
    /// orders them), and the `newest` most recent findings of every pair and of the network,
    /// newest first, each with whom it is about (`phone → server`, or `network`). What the
    /// terminal view shows, without holding a row for each of 100 000 pairs.
    pub fn build_top(
        tracker: &Tracker,
        totals: &SourceTotals,
        rows: usize,
        newest: usize,
    ) -> (Self, Vec<(String, Finding)>) {
        let mut recent: Vec<(String, Finding)> = Vec::new();
        let keep_newest = |recent: &mut Vec<(String, Finding)>| {
            recent.sort_by(newest_first);
            recent.truncate(newest);
        };
        let mut report = Self::build_with(tracker, totals, |r, phones| {
            for f in &r.findings {
                recent.push((format!("{} → {}", r.phone, r.server), f.clone()));
            }
            if recent.len() > 2 * newest.max(8) {
                keep_newest(&mut recent);
            }
            phones.push(r);
            if phones.len() > 2 * rows.max(8) {
                phones.sort_by(row_order);
                phones.truncate(rows);
            }
        });
        report.phones.truncate(rows);
        recent.extend(report.findings.iter().map(|f| ("network".to_owned(), f.clone())));
        keep_newest(&mut recent);
        (report, recent)
    }

    /// Builds the report, handing each pair's row to `take` with the list of rows to keep.
    fn build_with(
        tracker: &Tracker,
        totals: &SourceTotals,
        mut take: impl FnMut(PhoneRow, &mut Vec<PhoneRow>),
    ) -> Self {
        let mut rows = Rows::default();
        rows.add(tracker, 0..tracker.slot_count(), &mut take);
        rows.finish(tracker, totals)
    }
}

/// A report's rows and counts, accumulated a range of pair slots at a time
/// ([`Tracker::phone_slots`]).
#[derive(Debug, Default)]
struct Rows {
    /// Findings by severity: critical, warning, info.
    counts: [usize; 3],
    pairs: usize,
    with_findings: usize,
    phones: Vec<PhoneRow>,
    addresses: Vec<IpAddr>,
}

impl Rows {
    fn count(&mut self, f: &Finding) {
        self.counts[match f.severity {
            Severity::Critical => 0,
            Severity::Warning => 1,
            Severity::Info => 2,
        }] += 1;
    }

    /// The rows of the pairs in `slots`, each handed to `take` with the rows kept so far.
    fn add(
        &mut self,
        tracker: &Tracker,
        slots: Range<usize>,
        take: &mut impl FnMut(PhoneRow, &mut Vec<PhoneRow>),
    ) {
        let ctx =
            Context { settings: &tracker.settings, now_ns: tracker.now_ns, arp: &tracker.arp };
        for pair in slots.filter_map(|i| tracker.phone_at(i)) {
            let r = row(pair, &ctx);
            self.pairs += 1;
            r.findings.iter().for_each(|f| self.count(f));
            self.with_findings += usize::from(r.worst().is_some_and(|s| s >= Severity::Warning));
            self.addresses.push(pair.key.phone);
            take(r, &mut self.phones);
        }
    }

    /// The report: the rows kept, worst first, and the findings of no pair.
    fn finish(mut self, tracker: &Tracker, totals: &SourceTotals) -> Report {
        let ctx =
            Context { settings: &tracker.settings, now_ns: tracker.now_ns, arp: &tracker.arp };
        let findings = findings::global(tracker, &ctx);
        findings.iter().for_each(|f| self.count(f));
        self.phones.sort_by(row_order);
        self.addresses.sort_unstable();
        self.addresses.dedup();
        let summary = Summary {
            packets: totals.packets,
            matched: totals.matched,
            phones: self.pairs,
            phone_addresses: self.addresses.len(),
            phones_with_findings: self.with_findings,
            critical: self.counts[0],
            warning: self.counts[1],
            info: self.counts[2],
            arp_frames: tracker.arp.frames,
            parse_errors: totals.parse_errors,
            start: tracker.first_ns.map(epoch_s),
            end: tracker.first_ns.map(|_| epoch_s(tracker.now_ns)),
            unsupported_link: totals.unsupported_link,
            truncated: totals.truncated.clone(),
        };
        let arp = tracker
            .arp
            .anomalies
            .iter()
            .map(|a| ArpRow {
                ip: a.ip.to_string(),
                macs: a.macs.iter().map(|m| mac(*m)).collect(),
                kind: a.kind.as_str(),
                time: epoch_s(a.time_ns),
            })
            .collect();
        Report { summary, phones: self.phones, arp, findings, cucm: None }
    }
}

/// A page of rows ([`Report::build_page`]) built a range of pair slots at a time, so that a
/// caller holding the tracker behind a lock can let others take it between ranges (the live
/// agent's stats socket). The page is then of a tracker that changed while it was built: each
/// pair's row is as it was when its range was read.
#[derive(Debug)]
pub struct Pager<K> {
    keep: K,
    offset: usize,
    end: usize,
    matching: usize,
    rows: Rows,
}

impl<K: Fn(&PhoneRow) -> bool> Pager<K> {
    /// A page of the rows `keep` accepts, from `offset` on, at most `limit` of them.
    pub fn new(keep: K, offset: usize, limit: usize) -> Self {
        let end = offset.saturating_add(limit);
        Self { keep, offset, end, matching: 0, rows: Rows::default() }
    }

    /// Adds the pairs in `slots`.
    pub fn add(&mut self, tracker: &Tracker, slots: Range<usize>) {
        let (keep, end, matching) = (&self.keep, self.end, &mut self.matching);
        self.rows.add(tracker, slots, &mut |r, phones| {
            if keep(&r) {
                *matching += 1;
                phones.push(r);
                if phones.len() > end.max(8).saturating_mul(2) {
                    phones.sort_by(row_order);
                    phones.truncate(end);
                }
            }
        });
    }

    /// The page, and how many rows `keep` accepted in all.
    pub fn finish(self, tracker: &Tracker, totals: &SourceTotals) -> (Report, usize) {
        let mut report = self.rows.finish(tracker, totals);
        report.phones.truncate(self.end);
        report.phones.drain(..self.offset.min(report.phones.len()));
        (report, self.matching)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        source::{capture::Frame, offline::HostProbe},
        tracker::Settings,
    };
    use keepalive_common::wire::Config;
    use keepalive_lab::fixtures::scenario::{self, Rng, Vantage};

    /// Pairs with findings (squeezed scale phones, the port-security case) among healthy ones.
    fn tracker() -> Tracker {
        let mut tl = scenario::site(30, 8);
        let mut rng = Rng::new(7);
        for n in 0..40 {
            tl.extend(scenario::scale_phone(1_000 + n, 13, &mut rng));
        }
        tl.extend(scenario::port_security(Vantage::PhoneSide));
        let (mut probe, mut tracker) =
            (HostProbe::new(Config::DEFAULT), Tracker::new(Settings::default(), Config::DEFAULT));
        for (ts, data) in tl.frames() {
            if let Some(rec) = probe.process(&Frame { ts_ns: *ts, ifindex: 0, data }) {
                tracker.ingest(&rec);
            }
        }
        tracker
    }

    #[test]
    fn the_top_rows_and_newest_findings_are_those_of_the_whole_report() {
        let (t, totals) = (tracker(), SourceTotals::default());
        let whole = Report::build(&t, &totals);
        assert!(whole.phones.len() > 60, "{} pairs", whole.phones.len());
        let with_findings = whole.phones.iter().filter(|p| !p.findings.is_empty()).count();
        assert!(
            (10..whole.phones.len() - 10).contains(&with_findings),
            "{with_findings} of {}",
            whole.phones.len()
        );
        let json = |v: &dyn erased::Json| v.json();
        for (rows, newest) in [(0, 0), (1, 1), (5, 7), (25, 10), (1_000, 1_000)] {
            let (top, recent) = Report::build_top(&t, &totals, rows, newest);
            assert_eq!(json(&top.summary), json(&whole.summary), "summary");
            let n = rows.min(whole.phones.len());
            assert_eq!(json(&top.phones), json(&whole.phones[..n].to_vec()), "rows {rows}");
            let mut all: Vec<(String, Finding)> = whole
                .phones
                .iter()
                .flat_map(|p| {
                    p.findings.iter().map(|f| (format!("{} → {}", p.phone, p.server), f.clone()))
                })
                .chain(whole.findings.iter().map(|f| ("network".to_owned(), f.clone())))
                .collect();
            all.sort_by(newest_first);
            all.truncate(newest);
            assert_eq!(json(&recent), json(&all), "newest {newest}");
        }
    }

    /// Comparison through JSON: the report types are not `PartialEq`.
    mod erased {
        pub trait Json {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Json for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }
}
