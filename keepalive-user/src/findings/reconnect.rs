//! `reconnect`: the phone tore its connection down and opened a new one (a SYN from a new port,
//! or the same port after the connection ended). The message says how the old one ended, which
//! tells a CUCM restart (the server closed it) from a phone giving up (the phone closed it, or
//! keepalives were left unanswered).

use super::{clock, Context, Finding, Kind, Severity};
use crate::tracker::Pair;

/// The finding for `pair`, if it reconnected.
pub fn check(pair: &Pair, _ctx: &Context<'_>) -> Option<Finding> {
    let r = pair.reconnects.back()?;
    let how = match r.closed {
        Some(c) => format!(
            "after {} {} the old connection at {}",
            if c.by_phone { "the phone" } else { "the server" },
            if c.reset { "reset" } else { "closed" },
            clock(c.time_ns)
        ),
        None => "without the old connection's end being seen".to_owned(),
    };
    let unanswered = match r.unanswered_before {
        0 => String::new(),
        1 => ", with a keepalive on it left unanswered".to_owned(),
        n => format!(", with {n} keepalives on it left unanswered"),
    };
    let times = match pair.reconnect_count {
        1 => "once".to_owned(),
        n => format!("{n} times"),
    };
    let message = format!(
        "the phone opened a new connection {times}; the last at {}, from port {} (was {}), {how}{unanswered}",
        clock(r.time_ns),
        r.new_port,
        r.old_port,
    );
    let severity = if pair.reconnect_count >= 3 { Severity::Critical } else { Severity::Warning };
    Some(
        Finding::new(Kind::Reconnect, severity, r.time_ns, message)
            .with("count", pair.reconnect_count)
            .with("closed_by", r.closed.map(|c| if c.by_phone { "phone" } else { "server" })),
    )
}
