//! `missed-keepalive`: a gap between keepalives longer than the schedule allows, or a silence
//! since the last one.
//!
//! * SIP with a granted binding: a REGISTER later than its due time plus the server's grace
//!   arrives after the server has unregistered the phone (critical).
//! * Otherwise (SCCP, backups): a gap over 1.5 intervals means at least one keepalive is
//!   missing; 3 intervals is when a phone in "delayed" failure detection gives up on the
//!   server (docs/DOMAIN.md), so that is critical.

use super::{clock, keepalive_word, round, schedule, span, Context, Finding, Kind, Severity};
use crate::tracker::{pair::secs, Pair};

/// The finding for `pair`, if keepalives are missing.
pub fn check(pair: &Pair, ctx: &Context<'_>) -> Option<Finding> {
    let interval = schedule::interval_s(pair, ctx.settings)?;
    let grace = ctx.settings.grace_s;
    let sip_due = pair.history.iter().any(|k| k.due_ns().is_some());
    // Largest allowed gap between keepalives, and the critical one.
    let (allowed, critical) = if sip_due {
        (interval + grace, interval + grace)
    } else {
        (interval * 1.5, interval * 3.0)
    };
    let mut worst: Option<(f64, u64, u64)> = None; // (gap, from, to)
    let mut count = 0u64;
    for w in pair.history.iter().collect::<Vec<_>>().windows(2) {
        if w[0].answer == crate::tracker::pair::Answer::Challenged {
            continue;
        }
        let gap = secs(w[1].first_ns.saturating_sub(w[0].first_ns));
        let late = match w[1].due_ns() {
            Some(due) => w[1].first_ns > due.saturating_add((grace * 1e9) as u64),
            None => gap > allowed,
        };
        if late {
            count += 1;
            if worst.is_none_or(|(g, _, _)| gap > g) {
                worst = Some((gap, w[0].first_ns, w[1].first_ns));
            }
        }
    }
    let last = pair.history.back()?;
    let silence = secs(ctx.now_ns.saturating_sub(last.first_ns));
    let silent = silence > allowed;
    if count == 0 && !silent {
        return None;
    }
    let word = keepalive_word(pair, true);
    let (gap, time_ns, message) = if silent {
        (
            silence,
            // Stamped with the last keepalive: the silence began then (and a live agent that
            // re-evaluates it every few seconds keeps reporting the same finding).
            last.first_ns,
            format!(
                "no {} since {} ({} of silence, expected every {}{})",
                word,
                clock(last.first_ns),
                span(silence),
                span(interval),
                if count > 0 { format!("; {count} earlier gaps too") } else { String::new() }
            ),
        )
    } else {
        let (gap, from, to) = worst?;
        (
            gap,
            to,
            format!(
                "{count} gap(s) between {word} longer than the schedule allows: the longest, \
                 {} from {} to {}, against {} expected{}",
                span(gap),
                clock(from),
                clock(to),
                span(interval),
                if sip_due {
                    format!(
                        " plus the {} grace: the server had unregistered the phone",
                        span(grace)
                    )
                } else {
                    String::new()
                }
            ),
        )
    };
    let severity = if gap >= critical { Severity::Critical } else { Severity::Warning };
    Some(
        Finding::new(Kind::MissedKeepalive, severity, time_ns, message)
            .with("gap_s", round(gap, 3))
            .with("expected_s", round(interval, 3))
            .with("count", count + u64::from(silent)),
    )
}
