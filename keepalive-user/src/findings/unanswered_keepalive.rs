//! `unanswered-keepalive`: a keepalive to a server that acknowledges keepalives (a primary)
//! never got its KeepAliveAck / 2xx.
//!
//! A keepalive counts as unanswered once it is settled: a later keepalive was sent, the
//! connection ended, or the answer is overdue. The message says where the keepalive went when
//! that explains it: a destination MAC other than the one that carried answered keepalives,
//! and who answered ARP for the server with that MAC (docs/DOMAIN.md, case study 1).

use std::net::IpAddr;

use super::{ack_word, clock, keepalive_word, span, Context, Finding, Kind, Severity};
use crate::{
    record::mac,
    tracker::{
        arp::AnomalyKind,
        pair::{secs, Answer, Keepalive},
        Pair, Role,
    },
};

/// An answer later than this is overdue even without a later keepalive (s).
const OVERDUE_S: f64 = 5.0;

/// The finding for `pair`, if keepalives to its primary went unanswered.
pub fn check(pair: &Pair, ctx: &Context<'_>) -> Option<Finding> {
    if pair.role() != Role::Primary {
        return None;
    }
    let h = &pair.history;
    let settled = |i: usize, k: &Keepalive| {
        h.get(i + 1).is_some()
            || pair.reconnects.iter().any(|r| r.old_port == k.phone_port && r.time_ns >= k.first_ns)
            || pair.connection.is_some_and(|c| c.phone_port == k.phone_port && c.closed.is_some())
            || secs(ctx.now_ns.saturating_sub(k.first_ns)) > OVERDUE_S
    };
    let unanswered: Vec<(usize, &Keepalive)> = h
        .iter()
        .enumerate()
        .filter(|(i, k)| k.answer == Answer::None && k.expires() != Some(0) && settled(*i, k))
        .collect();
    let &(_, last) = unanswered.last()?;
    let mut parts = vec![format!(
        "{} of the last {} {} to primary {} got no {}; the last, at {}",
        unanswered.len(),
        h.len(),
        keepalive_word(pair, true),
        pair.key.server,
        ack_word(pair),
        clock(last.first_ns)
    )];
    if last.copies > 1 {
        parts.push(format!(
            ", was retransmitted {} times over {}",
            last.copies - 1,
            span(secs(last.last_ns().saturating_sub(last.first_ns)))
        ));
    }
    let good_mac = h.iter().rev().find(|k| k.acked()).map(|k| k.dst_mac);
    let mut related = Vec::new();
    if good_mac.is_some_and(|g| g != last.dst_mac && last.dst_mac != [0; 6]) {
        parts.push(format!(
            ", and went to MAC {} instead of {}, which carried the answered ones",
            mac(last.dst_mac),
            mac(good_mac.unwrap_or_default())
        ));
        related.push(Kind::NextHopMacChange.as_str());
    }
    if let IpAddr::V4(server) = pair.key.server {
        let window = 600 * 1_000_000_000;
        if let Some(a) = ctx.arp.anomalies.iter().rev().find(|a| {
            a.ip == server
                && a.kind == AnomalyKind::MultipleResponders
                && a.macs.contains(&last.dst_mac)
                && a.time_ns <= last.first_ns.saturating_add(1_000_000_000)
                && last.first_ns.saturating_sub(a.time_ns) <= window
        }) {
            let first = a.macs.first().copied().unwrap_or_default();
            parts.push(format!(
                ". Just before, at {}, {} MACs answered ARP for {} ({}); {} answered first and \
                 the phone used it: disable proxy ARP on the device with MAC {}",
                clock(a.time_ns),
                a.macs.len(),
                server,
                a.macs.iter().map(|m| mac(*m)).collect::<Vec<_>>().join(", "),
                mac(first),
                mac(last.dst_mac)
            ));
            related.push(Kind::ArpMultipleResponders.as_str());
        }
    }
    let reconnected = pair
        .reconnects
        .iter()
        .find(|r| r.old_port == last.phone_port && r.time_ns >= last.first_ns);
    if let Some(r) = reconnected {
        parts.push(format!(
            ". The phone then reconnected from port {} at {}",
            r.new_port,
            clock(r.time_ns)
        ));
        related.push(Kind::Reconnect.as_str());
    }
    let consecutive = unanswered.windows(2).any(|w| w[1].0 == w[0].0 + 1);
    let severity =
        if reconnected.is_some() || consecutive { Severity::Critical } else { Severity::Warning };
    let mut f = Finding::new(Kind::UnansweredKeepalive, severity, last.last_ns(), parts.concat())
        .with("count", unanswered.len())
        .with("copies", last.copies)
        .with("dst_mac", mac(last.dst_mac));
    if !related.is_empty() {
        f = f.with("related", related);
    }
    Some(f)
}
