//! Findings: rules over the tracker's state, one file per rule, each producing [`Finding`]s with
//! a stable `kind` (docs/DESIGN.md's contract: kinds are added, never renamed), a severity and a
//! sentence a network engineer can act on.
//!
//! The rules run in an order that lets later ones cite earlier ones: the ARP anomalies and
//! next-hop changes are known before a KeepAlive left unanswered is explained, so its message
//! can say where the KeepAlive went and who answered ARP for the server just before.

pub mod arp_multiple_responders;
pub mod first_transmission_loss;
pub mod intermittent_loss;
pub mod missed_keepalive;
pub mod next_hop_mac_change;
pub mod reconnect;
pub mod rto_growth;
pub mod schedule;
pub mod unanswered_keepalive;

use keepalive_common::wire::App;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::tracker::{arp::ArpTable, Pair, Settings, Tracker};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Something is wrong; the phone still works.
    Warning,
    /// The phone is unregistering or about to.
    Critical,
}

impl Severity {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// What a finding is: its JSON `kind`, kebab-case. A contract (docs/DESIGN.md): kinds are
/// added, never renamed, and a rule can only name a kind listed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Successive keepalives need retransmission and the delay grows geometrically.
    RtoGrowth,
    /// The first copy of (nearly) every keepalive is lost, the retransmission gets through.
    FirstTransmissionLoss,
    /// Scattered losses, retransmitted at the minimum RTO.
    IntermittentLoss,
    /// A keepalive to a primary never got its KeepAliveAck / 2xx.
    UnansweredKeepalive,
    /// A gap longer than the expected interval allows.
    MissedKeepalive,
    /// The phone tore its connection down and opened a new one.
    Reconnect,
    /// The phone's frames to its server switched destination MAC.
    NextHopMacChange,
    /// Two or more MACs answered ARP for the same address within a short window.
    ArpMultipleResponders,
    /// The MAC answering ARP for an address changed for good (info).
    ArpMacChange,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::RtoGrowth,
        Kind::FirstTransmissionLoss,
        Kind::IntermittentLoss,
        Kind::UnansweredKeepalive,
        Kind::MissedKeepalive,
        Kind::Reconnect,
        Kind::NextHopMacChange,
        Kind::ArpMultipleResponders,
        Kind::ArpMacChange,
    ];

    /// The JSON spelling (the same as serde's; a test holds them together).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RtoGrowth => "rto-growth",
            Kind::FirstTransmissionLoss => "first-transmission-loss",
            Kind::IntermittentLoss => "intermittent-loss",
            Kind::UnansweredKeepalive => "unanswered-keepalive",
            Kind::MissedKeepalive => "missed-keepalive",
            Kind::Reconnect => "reconnect",
            Kind::NextHopMacChange => "next-hop-mac-change",
            Kind::ArpMultipleResponders => "arp-multiple-responders",
            Kind::ArpMacChange => "arp-mac-change",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Stable kind, e.g. `rto-growth`.
    pub kind: Kind,
    /// Severity.
    pub severity: Severity,
    /// What happened and what to check, in one or two sentences.
    pub message: String,
    /// When the evidence was seen (epoch seconds; the latest relevant event).
    pub time: f64,
    /// Kind-specific fields (`factor`, `evidence`, `cycles_to_unregister`, ...).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Finding {
    /// A finding without extra fields.
    pub fn new(kind: Kind, severity: Severity, time_ns: u64, message: String) -> Self {
        Self { kind, severity, message, time: epoch_s(time_ns), fields: Map::new() }
    }

    /// Adds a field.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }
}

/// What every rule may read besides its pair.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Thresholds.
    pub settings: &'a Settings,
    /// The latest time seen (the end of the capture, or now).
    pub now_ns: u64,
    /// ARP knowledge, for linking.
    pub arp: &'a ArpTable,
}

/// Findings of one pair, most severe first.
pub fn for_pair(pair: &Pair, ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(arp_multiple_responders::for_pair(pair, ctx));
    out.extend(next_hop_mac_change::check(pair, ctx));
    out.extend(unanswered_keepalive::check(pair, ctx));
    // The schedule is the costliest thing the rules read: computed once for all three.
    let points = schedule::points(pair, ctx.settings);
    let explained = out.len();
    out.extend(rto_growth::check(pair, ctx, &points));
    out.extend(first_transmission_loss::check(pair, ctx, &points));
    // Loss an unanswered keepalive, MAC aging or RTO growth explains is not reported twice.
    if !out[..explained].iter().any(|f| f.kind == Kind::UnansweredKeepalive)
        && out.len() == explained
    {
        out.extend(intermittent_loss::check(pair, ctx, &points));
    }
    out.extend(missed_keepalive::check(pair, ctx));
    out.extend(reconnect::check(pair, ctx));
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.time.total_cmp(&b.time)));
    if matches!(pair.app, App::SccpTls | App::SipTls) {
        let how = tls_inference(pair);
        for f in &mut out {
            f.message.push_str(&how);
            f.fields.insert("inferred_from".to_owned(), "tls-record-timing".into());
        }
    }
    out
}

/// The sentence a finding on a TLS row ends with: what its keepalives were inferred from.
fn tls_inference(pair: &Pair) -> String {
    match pair.tls.as_deref().and_then(|t| t.learned) {
        Some(l) => format!(
            " (TLS: inferred from record timing; the {} is the {}-byte record the phone sends \
             every {})",
            keepalive_word(pair, false),
            l.record_len,
            span(l.period_s)
        ),
        None => " (TLS: keepalives not learned from record timing yet)".to_owned(),
    }
}

/// Findings not tied to one pair (ARP anomalies no tracked phone was involved in).
pub fn global(tracker: &Tracker, ctx: &Context<'_>) -> Vec<Finding> {
    arp_multiple_responders::unattached(tracker, ctx)
}

/// Nanoseconds since the epoch as seconds, rounded to the microsecond.
pub fn epoch_s(ns: u64) -> f64 {
    (ns / 1_000) as f64 / 1e6
}

/// `HH:MM:SS.mmm` (UTC) of an epoch time, for messages.
pub fn clock(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let (s, ms) = (ms / 1000, ms % 1000);
    format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// A duration in seconds, readably (`17 µs`, `0.42 s`, `6.7 s`, `16 min`).
pub fn span(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 10.0 {
        format!("{:.2} s", s)
    } else if s < 120.0 {
        format!("{:.0} s", s)
    } else {
        format!("{:.0} min", s / 60.0)
    }
}

/// What a keepalive is called on this pair's protocol.
pub fn keepalive_word(pair: &Pair, plural: bool) -> &'static str {
    match (pair.app, plural) {
        (App::Sip | App::SipTls, false) => "REGISTER",
        (App::Sip | App::SipTls, true) => "REGISTERs",
        (_, false) => "KeepAlive",
        (_, true) => "KeepAlives",
    }
}

/// What acknowledges a keepalive on this pair's protocol.
pub fn ack_word(pair: &Pair) -> &'static str {
    match pair.app {
        App::Sip | App::SipTls => "200 OK",
        _ => "KeepAliveAck",
    }
}

/// Rounds to `digits` decimals (JSON numbers readable by people).
pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    /// The kinds are a contract: these spellings never change (new kinds are added to the list).
    #[test]
    fn kinds_serialise_as_the_contract_spells_them() {
        let contract = [
            "rto-growth",
            "first-transmission-loss",
            "intermittent-loss",
            "unanswered-keepalive",
            "missed-keepalive",
            "reconnect",
            "next-hop-mac-change",
            "arp-multiple-responders",
            "arp-mac-change",
        ];
        for (kind, spelled) in super::Kind::ALL.into_iter().zip(contract) {
            assert_eq!(serde_json::to_value(kind).unwrap(), spelled);
            assert_eq!(kind.as_str(), spelled);
            assert_eq!(kind.to_string(), spelled);
        }
    }

    use super::*;

    #[test]
    fn clock_and_span() {
        // 2024-01-01 18:07:34.418 UTC
        let ns = (1_704_132_454_u64 * 1000 + 418) * 1_000_000;
        assert_eq!(clock(ns), "18:07:34.418");
        assert_eq!(span(0.000_017), "17 µs");
        assert_eq!(span(0.42), "0.42 s");
        assert_eq!(span(960.0), "16 min");
    }
}
