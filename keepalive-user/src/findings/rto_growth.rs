//! `rto-growth`: successive keepalives each need a retransmission, and the delay of the copy
//! that gets through grows geometrically.
//!
//! Why it happens: when every first copy is lost, the phone's TCP never gets an RTT sample
//! (Karn's algorithm, RFC 6298 §3: no sample from a retransmitted segment) and keeps the
//! backed-off RTO from one keepalive to the next, doubling it each time (§5.5). Once the delay
//! passes the server's grace period the registration expires (docs/DOMAIN.md, case study 2).
//!
//! The delays come from [`schedule::points`]: measured between the copies when both are seen,
//! else as lateness against the schedule. The rule takes the latest run of at least
//! [`MIN_RUN`] consecutive delayed keepalives, estimates the growth factor as the geometric mean
//! of successive ratios, and projects how many more refreshes stay under the grace.

use super::{
    clock, keepalive_word, round,
    schedule::{self, Evidence},
    span, Context, Finding, Kind, Severity,
};
use crate::tracker::Pair;

/// Consecutive delayed keepalives needed before growth is called.
pub const MIN_RUN: usize = 3;
/// Smallest growth factor called geometric.
pub const MIN_FACTOR: f64 = 1.5;

/// The finding for `pair`, if its retransmission delay grows.
/// `points` is the pair's schedule ([`schedule::points`]).
pub fn check(pair: &Pair, ctx: &Context<'_>, points: &[schedule::Point]) -> Option<Finding> {
    // The latest run of consecutive delayed keepalives.
    let end = points.iter().rposition(|p| p.delay.is_some())?;
    let start = points[..=end].iter().rposition(|p| p.delay.is_none()).map_or(0, |i| i + 1);
    let run = &points[start..=end];
    if run.len() < MIN_RUN {
        return None;
    }
    let delays: Vec<f64> = run.iter().filter_map(|p| p.delay.map(|d| d.0)).collect();
    let ratios: Vec<f64> = delays.windows(2).map(|w| w[1] / w[0]).collect();
    let factor = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    let rising = ratios.iter().filter(|r| **r >= 1.25).count();
    if factor < MIN_FACTOR || rising * 3 < ratios.len() * 2 {
        return None;
    }
    let retrans = run.iter().filter(|p| matches!(p.delay, Some((_, Evidence::Retransmission))));
    let evidence = if retrans.count() * 2 >= run.len() {
        Evidence::Retransmission
    } else {
        Evidence::Lateness
    };
    let last = *delays.last()?;
    let grace = ctx.settings.grace_s;
    let cycles =
        if last >= grace { 0 } else { ((grace / last).ln() / factor.ln()).floor() as u64 + 1 };
    let interval = schedule::interval_s(pair, ctx.settings);
    let shown: Vec<String> = delays.iter().map(|d| format!("{d:.2}")).collect();
    let how = match evidence {
        Evidence::Retransmission => format!(
            "the first copy of each of the last {} {} was retransmitted, after {} s",
            run.len(),
            keepalive_word(pair, true),
            shown.join(", ")
        ),
        Evidence::Lateness => format!(
            "each of the last {} {} arrived late against its schedule, by {} s (only the \
             retransmitted copy reaches this vantage point)",
            run.len(),
            keepalive_word(pair, true),
            shown.join(", ")
        ),
    };
    let outlook = if cycles == 0 {
        format!(
            "the last delay ({}) is already past the server's {} grace: the server unregisters the phone",
            span(last),
            span(grace)
        )
    } else {
        let when =
            interval.map(|t| format!(" (about {})", span(t * cycles as f64))).unwrap_or_default();
        format!(
            "the delay grows ×{factor:.1} per {}; at this rate it passes the server's {} grace \
             in {cycles} more {}{when} and the phone unregisters",
            keepalive_word(pair, false),
            span(grace),
            if cycles == 1 { keepalive_word(pair, false) } else { keepalive_word(pair, true) },
        )
    };
    let message = format!(
        "{how}: {outlook}. Something drops the first frame after each idle interval: check \
         port-security or MAC aging on the phone's switch port (last at {})",
        clock(run[run.len() - 1].last_ns)
    );
    let severity = if cycles <= 2 { Severity::Critical } else { Severity::Warning };
    Some(
        Finding::new(Kind::RtoGrowth, severity, run[run.len() - 1].last_ns, message)
            .with("factor", round(factor, 2))
            .with("evidence", evidence.as_str())
            .with("cycles_to_unregister", cycles)
            .with("delays_s", delays.iter().map(|d| round(*d, 3)).collect::<Vec<_>>())
            .with("grace_s", grace),
    )
}
