//! The schedule a phone's keepalives should follow, and how each one deviated from it. Shared
//! by the rules that look at timing.
//!
//! * SIP: the phone refreshes `granted − delta` after the 2xx that granted its binding
//!   (docs/DOMAIN.md: 120 − 5 = 115 s); the tracker stamps each REGISTER with that due time.
//! * SCCP (and SIP without a granted expiry): every keepalive is due one interval after the
//!   phone *sent* the previous one. The interval is learned ([`Pair::learned_interval_s`]).
//!   Where the first copies are invisible (the vantage point is past the loss), the phone's send
//!   times are reconstructed: a keepalive that arrives late was still sent on schedule, so the
//!   next one is due one interval after the schedule, not after the late arrival. Where a
//!   retransmitted keepalive's copies were both seen, a phone that restarts its timer when the
//!   keepalive is answered is on time one interval after the copy that got through.
//!
//! A keepalive's delay is its retransmission delay when the first copy was seen (evidence
//! "retransmission"), else its lateness against the schedule (evidence "lateness").

use crate::tracker::{
    pair::{secs, Answer},
    Pair, Settings,
};

/// Where a delay figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Both copies were seen; the delay is between them.
    Retransmission,
    /// Only the late copy was seen; the delay is against the schedule.
    Lateness,
}

impl Evidence {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retransmission => "retransmission",
            Self::Lateness => "lateness",
        }
    }
}

/// One keepalive on the schedule.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Time of the first copy seen.
    pub time_ns: u64,
    /// Time of the last copy seen.
    pub last_ns: u64,
    /// Delay of the copy that got through, and how it is known (`None`: on time).
    pub delay: Option<(f64, Evidence)>,
    /// Seconds since the previous keepalive on the same connection.
    pub gap_s: Option<f64>,
    /// Seconds past its due time (negative: early); `None` when no schedule is known.
    pub lateness_s: Option<f64>,
    /// The latest keepalive, neither acknowledged nor answered yet: a retransmission may still
    /// come, so "no delay" is not known yet.
    pub in_flight: bool,
}

/// The interval the phone is expected to keep (s).
pub fn interval_s(pair: &Pair, settings: &Settings) -> Option<f64> {
    match pair.expires_granted {
        Some(g) if g > 0 && pair.history.iter().any(|k| k.due_ns().is_some()) => {
            Some((settings.wall_s(f64::from(g)) - settings.delta_s).max(settings.wall_s(1.0)))
        }
        _ => pair.learned_interval_s(),
    }
}

/// The pair's recent keepalives against their schedule, oldest first.
pub fn points(pair: &Pair, settings: &Settings) -> Vec<Point> {
    let interval = pair.learned_interval_s();
    let floor = settings.late_floor_s;
    let mut out: Vec<Point> = Vec::with_capacity(pair.history.len());
    // The reconstructed send time of the previous keepalive (learned-interval schedule).
    let mut anchor: Option<u64> = None;
    let mut prev: Option<&crate::tracker::pair::Keepalive> = None;
    let newest = pair.history.len().saturating_sub(1);
    for (i, ka) in pair.history.iter().enumerate() {
        let same_conn = prev.is_some_and(|p| p.phone_port == ka.phone_port);
        let gap_s =
            prev.filter(|_| same_conn).map(|p| secs(ka.first_ns.saturating_sub(p.first_ns)));
        let lateness_s = if let Some(due) = ka.due_ns() {
            Some(signed_s(ka.first_ns, due))
        } else if let (Some(t), Some(a), true) = (interval, anchor, same_conn) {
            let period = (t * 1e9) as u64;
            let mut due = a.saturating_add(period);
            // A phone whose timer restarts once its keepalive is answered sends the next one an
            // interval after the copy that got through. Where both copies of the previous one
            // were seen, a keepalive on that later schedule is on time too (a phone whose timer
            // runs from the send time is early against it by the retransmission delay, at
            // least the floor, and stays on the send schedule).
            if let Some(p) = prev.filter(|p| p.copies > 1) {
                let after_retx = p.last_ns().saturating_add(period);
                if signed_s(ka.first_ns, after_retx) > -floor {
                    due = due.max(after_retx);
                }
            }
            let late = signed_s(ka.first_ns, due);
            if late < floor || late > t / 2.0 {
                // On time, or a whole keepalive was missed: the schedule restarts here.
                anchor = Some(ka.first_ns);
                (late <= t / 2.0).then_some(late)
            } else {
                anchor = Some(due);
                Some(late)
            }
        } else {
            anchor = Some(ka.first_ns);
            None
        };
        if ka.due_ns().is_some() || !same_conn {
            anchor = Some(ka.first_ns);
        }
        let delay = match (ka.retransmission_delay_s(), lateness_s) {
            (Some(d), _) if d >= settings.retransmission_floor_s => {
                Some((d, Evidence::Retransmission))
            }
            (_, Some(l)) if l >= floor => Some((l, Evidence::Lateness)),
            _ => None,
        };
        // Only the newest can still be in flight; older unanswered ones were left unanswered.
        let in_flight = i == newest && ka.answer == Answer::None && ka.tcp_ack_ns().is_none();
        out.push(Point {
            time_ns: ka.first_ns,
            last_ns: ka.last_ns(),
            delay,
            gap_s,
            lateness_s,
            in_flight,
        });
        prev = Some(ka);
    }
    out
}

fn signed_s(a: u64, b: u64) -> f64 {
    if a >= b {
        secs(a - b)
    } else {
        -secs(b - a)
    }
}
