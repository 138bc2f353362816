//! `first-transmission-loss`: the first copy of (nearly) every recent keepalive is lost and
//! only the retransmission gets through.
//!
//! The signature of a switch that forgets the phone's MAC between keepalives: port-security
//! aging (or MAC aging) shorter than the keepalive interval drops the first frame after each
//! idle period, and the retransmission passes because the MAC was relearned meanwhile.
//! Seen directly when both copies are visible; from lateness when only the retransmission is.
//!
//! Fires when the first copy of at least 80 % of the last (up to) 10 keepalives was lost, or of
//! each of the last 3 or more (a port that started aging out recently).

use super::{
    keepalive_word,
    schedule::{self, Evidence},
    span, Context, Finding, Kind, Severity,
};
use crate::tracker::Pair;

/// Keepalives looked at.
const WINDOW: usize = 10;
/// At least this many must be in the window.
const MIN_KEEPALIVES: usize = 3;
/// Share of them whose first copy was lost.
const SHARE: f64 = 0.8;

/// The finding for `pair`, if its first copies are lost.
/// `points` is the pair's schedule ([`schedule::points`]).
pub fn check(pair: &Pair, ctx: &Context<'_>, points: &[schedule::Point]) -> Option<Finding> {
    // A keepalive still in flight has not shown whether its first copy got through.
    let points = match points.split_last() {
        Some((last, earlier)) if last.in_flight => earlier,
        _ => points,
    };
    let recent = &points[points.len().saturating_sub(WINDOW)..];
    if recent.len() < MIN_KEEPALIVES {
        return None;
    }
    let trailing = recent.iter().rev().take_while(|p| p.delay.is_some()).count();
    let need = (recent.len() as f64 * SHARE).ceil() as usize;
    // The keepalives judged: the trailing run when it is long enough, else the window.
    let judged =
        if trailing >= MIN_KEEPALIVES { &recent[recent.len() - trailing..] } else { recent };
    let count =
        |e: Evidence| judged.iter().filter(|p| matches!(p.delay, Some((_, x)) if x == e)).count();
    let (retrans, late) = (count(Evidence::Retransmission), count(Evidence::Lateness));
    if trailing < MIN_KEEPALIVES && retrans + late < need {
        return None;
    }
    let n = retrans + late;
    let evidence = if retrans * 2 >= n { Evidence::Retransmission } else { Evidence::Lateness };
    let interval = schedule::interval_s(pair, ctx.settings)
        .map(|t| format!(" (every {})", span(t)))
        .unwrap_or_default();
    let seen = match evidence {
        Evidence::Retransmission => "was lost and only its retransmission got through",
        Evidence::Lateness => {
            "arrived late by a retransmission timeout: the first copy was lost upstream"
        }
    };
    let message = format!(
        "the first copy of {n} of the last {} {}{interval} {seen}. A switch is forgetting the \
         phone's MAC between keepalives: check port-security aging / MAC aging on the phone's \
         access port; it must be longer than the keepalive interval",
        judged.len(),
        keepalive_word(pair, true),
    );
    let last = recent.last()?.last_ns;
    Some(
        Finding::new(Kind::FirstTransmissionLoss, Severity::Warning, last, message)
            .with("evidence", evidence.as_str())
            .with("lost", n)
            .with("of", judged.len()),
    )
}
