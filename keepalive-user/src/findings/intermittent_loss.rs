//! `intermittent-loss`: some of a pair's recent keepalives needed a retransmission, but they
//! are scattered among keepalives that got through first time.
//!
//! The signature of plain loss on the path (interface errors, a duplex mismatch, congestion or
//! policing on the voice VLAN), as opposed to a switch forgetting the phone's MAC, which loses
//! the first copy after *every* idle interval ([`super::first_transmission_loss`]) and makes
//! the RTO grow ([`super::rto_growth`]). Loss that those rules, or an unanswered keepalive,
//! already explain is not reported again: [`super::for_pair`] runs this rule only when none of
//! them fired.
//!
//! Fires on at least one lost first copy among the last (up to) [`WINDOW`] keepalives; a
//! warning from [`WARN_AT`] on, else information (one retransmission in a quarter of an hour is
//! worth knowing, not worth a page).

use super::{
    keepalive_word, round,
    schedule::{self, Evidence},
    span, Context, Finding, Kind, Severity,
};
use crate::tracker::Pair;

/// Keepalives looked at (the tracker keeps this many per pair).
pub const WINDOW: usize = crate::tracker::pair::HISTORY;
/// Lost first copies in the window from which the finding is a warning.
pub const WARN_AT: usize = 2;

/// The finding for `pair`, if some of its recent keepalives lost their first copy.
/// `points` is the pair's schedule ([`schedule::points`]).
pub fn check(pair: &Pair, ctx: &Context<'_>, points: &[schedule::Point]) -> Option<Finding> {
    let recent = &points[points.len().saturating_sub(WINDOW)..];
    let lost: Vec<(f64, Evidence, u64)> =
        recent.iter().filter_map(|p| p.delay.map(|(d, e)| (d, e, p.last_ns))).collect();
    let (_, _, last_ns) = *lost.last()?;
    let n = lost.len();
    let retrans = lost.iter().filter(|(_, e, _)| *e == Evidence::Retransmission).count();
    let evidence = if retrans * 2 >= n { Evidence::Retransmission } else { Evidence::Lateness };
    let (lo, hi) =
        lost.iter().fold((f64::MAX, 0.0f64), |(lo, hi), (d, _, _)| (lo.min(*d), hi.max(*d)));
    let after = if (hi - lo) < 0.005 { span(hi) } else { format!("{}–{}", span(lo), span(hi)) };
    let seen = match evidence {
        Evidence::Retransmission => format!("was lost and retransmitted after {after}"),
        Evidence::Lateness => {
            format!(
                "arrived {after} late, a retransmission timeout: the first copy was lost upstream"
            )
        }
    };
    let interval = schedule::interval_s(pair, ctx.settings)
        .map(|t| format!(" (every {})", span(t)))
        .unwrap_or_default();
    let message = format!(
        "the first copy of {n} of the last {} {}{interval} {seen}. The losses are scattered, \
         not after every idle interval, so this is loss on the path rather than MAC aging: check \
         the links between phone and server for interface errors, a duplex mismatch, \
         congestion or policing on the voice VLAN",
        recent.len(),
        keepalive_word(pair, true),
    );
    let severity = if n >= WARN_AT { Severity::Warning } else { Severity::Info };
    Some(
        Finding::new(Kind::IntermittentLoss, severity, last_ns, message)
            .with("evidence", evidence.as_str())
            .with("lost", n)
            .with("of", recent.len())
            .with("delays_s", lost.iter().map(|(d, _, _)| round(*d, 3)).collect::<Vec<_>>()),
    )
}
