//! `arp-multiple-responders`: two or more MACs answered ARP for the same address within a short
//! window. The requester takes the first answer (RFC 826 keeps no preference), so if a
//! firewall doing proxy ARP answers before the real owner, traffic goes to the firewall
//! (docs/DOMAIN.md, case study 1: an ASA answered 17 µs before CUCM's VMware NIC).
//!
//! The finding goes on the row of each phone involved (it asked, or its keepalives went to the
//! first responder's MAC); an anomaly no tracked phone was involved in is reported on its own.

use std::net::IpAddr;

use super::{clock, span, Context, Finding, Kind, Severity};
use crate::{
    record::mac,
    tracker::{
        arp::{Anomaly, AnomalyKind},
        pair::secs,
        Pair, Tracker,
    },
};

/// A pair is involved when its phone asked, or when its keepalives went to the MAC that
/// answered first (the one a requester takes) after the anomaly. A phone that keeps using the
/// later responder's MAC (usually the real owner) is not.
fn involves(a: &Anomaly, pair: &Pair) -> bool {
    let asked = a.requester.is_some_and(|(ip, _)| IpAddr::V4(ip) == pair.key.phone);
    let first = a.macs.first().copied();
    let used_first = pair
        .history
        .iter()
        .any(|k| Some(k.dst_mac) == first && k.first_ns.saturating_add(1_000_000_000) >= a.time_ns);
    (IpAddr::V4(a.ip) == pair.key.server && (asked || used_first)) || (asked && used_first)
}

fn finding(a: &Anomaly) -> Finding {
    let macs: Vec<String> = a.macs.iter().map(|m| mac(*m)).collect();
    let within = secs(a.last_ns.saturating_sub(a.time_ns));
    let message = format!(
        "{} MACs answered ARP for {} within {} at {}: {} first, then {}. Whoever asked uses the \
         first answer; if {} is not the owner of {}, look for proxy ARP on the device with that \
         MAC (on an ASA: `sysopt noproxyarp <interface>`)",
        a.macs.len(),
        a.ip,
        span(within.max(1e-6)),
        clock(a.time_ns),
        macs[0],
        macs[1..].join(", "),
        macs[0],
        a.ip
    );
    Finding::new(Kind::ArpMultipleResponders, Severity::Warning, a.time_ns, message)
        .with("ip", a.ip.to_string())
        .with("macs", macs)
}

/// The anomalies `pair` was involved in.
pub fn for_pair(pair: &Pair, ctx: &Context<'_>) -> Vec<Finding> {
    ctx.arp
        .anomalies
        .iter()
        .filter(|a| a.kind == AnomalyKind::MultipleResponders && involves(a, pair))
        .map(finding)
        .collect()
}

/// Anomalies no tracked pair was involved in, and lasting MAC changes (info).
pub fn unattached(tracker: &Tracker, ctx: &Context<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for a in &ctx.arp.anomalies {
        match a.kind {
            AnomalyKind::MultipleResponders => {
                if !tracker.phones().any(|p| involves(a, p)) {
                    out.push(finding(a));
                }
            }
            AnomalyKind::MacChange => out.push(
                Finding::new(
                    Kind::ArpMacChange,
                    Severity::Info,
                    a.time_ns,
                    format!(
                        "ARP for {} is now answered by {} (was {}) since {}",
                        a.ip,
                        mac(a.macs[1]),
                        mac(a.macs[0]),
                        clock(a.time_ns)
                    ),
                )
                .with("ip", a.ip.to_string())
                .with("macs", a.macs.iter().map(|m| mac(*m)).collect::<Vec<_>>()),
            ),
        }
    }
    out
}
