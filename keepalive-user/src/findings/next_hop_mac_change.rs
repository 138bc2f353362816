//! `next-hop-mac-change`: the phone's frames to its server switched destination MAC. On the
//! server's segment that is the server's own MAC changing hands (proxy ARP, a duplicate
//! address); through a router it is the gateway changing (an HSRP/VRRP failover).

use std::net::IpAddr;

use super::{clock, Context, Finding, Kind, Severity};
use crate::{
    record::mac,
    tracker::{arp::AnomalyKind, Pair},
};

/// The finding for `pair`, if its next hop changed.
pub fn check(pair: &Pair, ctx: &Context<'_>) -> Option<Finding> {
    // The change to report: the latest one to a MAC whose keepalives went unanswered (the
    // change back to the right MAC after a reconnect explains nothing), else the latest.
    let unanswered_to = |to: [u8; 6]| pair.history.iter().any(|k| k.dst_mac == to && !k.acked());
    let c = pair
        .mac_changes
        .iter()
        .rev()
        .find(|c| unanswered_to(c.to))
        .or_else(|| pair.mac_changes.back())?;
    let mut message = format!(
        "the phone's frames to {} switched destination MAC from {} to {} at {}",
        pair.key.server,
        mac(c.from),
        mac(c.to),
        clock(c.time_ns)
    );
    if pair.mac_changes.len() > 1 {
        message.push_str(&format!(" ({} changes in all)", pair.mac_changes.len()));
    }
    let arp = match pair.key.server {
        IpAddr::V4(ip) => ctx.arp.anomalies.iter().rev().find(|a| {
            a.ip == ip
                && a.kind == AnomalyKind::MultipleResponders
                && a.macs.contains(&c.to)
                && a.time_ns <= c.time_ns
        }),
        IpAddr::V6(_) => None,
    };
    if let Some(a) = arp {
        message.push_str(&format!(
            "; {} was one of {} MACs that answered ARP for {} at {}",
            mac(c.to),
            a.macs.len(),
            a.ip,
            clock(a.time_ns)
        ));
    }
    let unanswered = pair
        .history
        .iter()
        .filter(|k| k.dst_mac == c.to && k.first_ns >= c.time_ns && !k.acked())
        .count();
    let answered = pair.history.iter().filter(|k| k.dst_mac == c.to && k.acked()).count();
    if unanswered > 0 && answered == 0 {
        message.push_str(&format!(
            "; no keepalive sent to {} was answered: whatever owns that MAC is not the server",
            mac(c.to)
        ));
    }
    let severity =
        if unanswered > 0 && answered == 0 { Severity::Critical } else { Severity::Warning };
    let mut f = Finding::new(Kind::NextHopMacChange, severity, c.time_ns, message)
        .with("from", mac(c.from))
        .with("to", mac(c.to))
        .with("count", pair.mac_changes.len());
    if arp.is_some() {
        f = f.with("related", vec![Kind::ArpMultipleResponders.as_str()]);
    }
    Some(f)
}
