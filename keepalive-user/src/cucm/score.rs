//! Scoring keepalive's forecasts against what CUCM decided.
//!
//! A *forecast* is a critical finding that says a phone is about to unregister: `rto-growth`,
//! `unanswered-keepalive` or `missed-keepalive`, from the moment its episode became critical
//! (the lifecycle's `firing` or `escalated`). It states a horizon:
//! * `rto-growth`: its `cycles_to_unregister` more keepalive intervals, plus one, plus the
//!   server's grace;
//! * the others: [`HORIZON_INTERVALS`] keepalive intervals plus the grace (a phone resets
//!   after two unanswered KeepAlives, and CUCM drops a silent phone after about two missed
//!   ones).
//!
//! A forecast begins when keepalive says it (the evaluation that saw it turn critical), and
//! the lead time is measured from then: how long the engineer was warned.
//!
//! An *unregistration* is CUCM's `EndPointUnregistered` (or `EndPointTransientConnection`).
//! It is joined to the forecasts by the phone's address, then by its device name. When its
//! reason is a loss of keepalives or connectivity ([`Class::Connectivity`]), it is a **hit**
//! if a forecast for that phone began before it and its horizon had not passed (the lead time
//! is how long before), else a **miss**. Other reasons are not scored as misses: a CUCM
//! restart or reset is the server's doing, a device reset or logout is on purpose.
//!
//! Each forecast ends **confirmed** (a connectivity unregistration within its horizon),
//! **excused** (an unregistration of another class within its horizon, before or after it
//! began: the CUCM restarted, the phone was reset on purpose), **late** (CUCM had already unregistered the phone for connectivity
//! within the horizon before it: the finding explains what happened, it did not predict it),
//! or, once its horizon has passed without one, a **false alarm**.

use std::{collections::VecDeque, net::IpAddr};

use serde::Serialize;

use super::{
    reason::{Class, Reason},
    syslog::CucmEvent,
};

/// The horizon of a forecast that states no cycles, in keepalive intervals.
pub const HORIZON_INTERVALS: f64 = 3.0;
/// Forecasts and unregistrations remembered (the oldest settled ones go first).
pub const KEPT: usize = 4_096;
/// Lead-time histogram bucket bounds (seconds).
pub const LEAD_BUCKETS: [f64; 10] =
    [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// A forecast's fate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// Its horizon has not passed.
    Pending,
    /// A connectivity unregistration followed, this long after the forecast began.
    Confirmed {
        /// Seconds.
        lead_s: f64,
    },
    /// An unregistration of another class came first.
    Excused,
    /// CUCM had already unregistered the phone for connectivity when it began.
    Late,
    /// The horizon passed without an unregistration.
    FalseAlarm,
}

/// One forecast.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Forecast {
    /// The finding episode's id.
    pub id: String,
    /// `rto-growth`, `unanswered-keepalive`, `missed-keepalive`.
    pub kind: &'static str,
    /// The phone.
    pub phone: IpAddr,
    /// Its server.
    pub server: IpAddr,
    /// Its device name, when known.
    pub device: Option<String>,
    /// When it began (ns).
    #[serde(skip)]
    pub since_ns: u64,
    /// When it began (epoch seconds).
    pub since: f64,
    /// How far ahead it looked (s).
    pub horizon_s: f64,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Forecast {
    fn until_ns(&self) -> u64 {
        self.since_ns.saturating_add((self.horizon_s * 1e9) as u64)
    }

    fn names(&self, ev: &CucmEvent) -> bool {
        ev.ip == Some(self.phone)
            || (ev.ip.is_none()
                && ev.device.is_some()
                && ev.device.as_deref().map(str::to_ascii_uppercase)
                    == self.device.as_deref().map(str::to_ascii_uppercase))
    }
}

/// How a forecast's horizon follows from its finding: `cycles` (rto-growth's
/// `cycles_to_unregister`), the phone's keepalive `interval_s`, and the server's `grace_s`.
pub fn horizon_s(cycles: Option<i64>, interval_s: f64, grace_s: f64) -> f64 {
    match cycles {
        Some(n) => (n.max(0) as f64 + 1.0) * interval_s + grace_s,
        None => HORIZON_INTERVALS * interval_s + grace_s,
    }
}

/// What the scoring says of one unregistration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unregistration {
    /// The alarm.
    #[serde(flatten)]
    pub event: CucmEvent,
    /// The reason code and name.
    pub reason: Option<u32>,
    /// CUCM's name for the reason.
    pub reason_name: Option<&'static str>,
    /// What the reason says about the network.
    pub class: Class,
    /// keepalive saw the phone (its address or device is on a row).
    pub seen: bool,
    /// For a connectivity loss: a forecast named the phone beforehand (`hit`) or not
    /// (`miss`); else `not-scored`.
    pub verdict: Verdict,
    /// How long before the unregistration the forecast began (s), for a hit.
    pub lead_s: Option<f64>,
    /// The forecast's id, for a hit.
    pub forecast: Option<String>,
}

/// An unregistration's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A forecast named the phone beforehand.
    Hit,
    /// None did.
    Miss,
    /// Not a loss of keepalives or connectivity.
    NotScored,
}

/// The totals `stats`, `analyze` and the metrics show.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Unregistrations read, of every reason.
    pub unregistrations: u64,
    /// Connectivity unregistrations a forecast named beforehand.
    pub hits: u64,
    /// Connectivity unregistrations no forecast named.
    pub misses: u64,
    /// Unregistrations of phones keepalive never saw (not behind this vantage point).
    pub unseen: u64,
    /// Forecasts whose horizon passed without an unregistration.
    pub false_alarms: u64,
    /// Forecasts confirmed.
    pub confirmed: u64,
    /// Forecasts ended by an unregistration of another class.
    pub excused: u64,
    /// Forecasts that began after CUCM had already unregistered the phone.
    pub late: u64,
    /// Forecasts still within their horizon.
    pub pending: u64,
    /// Lead times of the hits, per bucket: the i-th counts leads above bound i−1 of
    /// [`LEAD_BUCKETS`] and up to bound i; the last, those above every bound.
    pub lead_buckets: [u64; LEAD_BUCKETS.len() + 1],
    /// Sum of the hits' lead times (s).
    pub lead_sum_s: f64,
    /// By reason code and whether it was predicted: (code, predicted, count).
    pub by_reason: Vec<(u32, bool, u64)>,
}

/// The scoring state.
#[derive(Clone, Debug, Default)]
pub struct Scorer {
    forecasts: VecDeque<Forecast>,
    unregistrations: VecDeque<Unregistration>,
    totals: Totals,
}

impl Scorer {
    /// A forecast began. A second forecast for a phone that already has one pending is not a
    /// new prediction.
    pub fn forecast(&mut self, mut f: Forecast) {
        let pending = self.forecasts.iter().any(|o| {
            o.phone == f.phone && o.outcome == Outcome::Pending && f.since_ns <= o.until_ns()
        });
        if pending {
            return;
        }
        // An unregistration of this phone within the horizon before: the forecast comes after
        // the fact (late), or explains the silence a restart or a reset caused (excused).
        let horizon_ns = (f.horizon_s * 1e9) as u64;
        let before = self.unregistrations.iter().rev().find(|u| {
            f.names(&u.event)
                && u.event.time_ns <= f.since_ns
                && f.since_ns - u.event.time_ns <= horizon_ns
        });
        match before.map(|u| u.class) {
            Some(Class::Connectivity) => {
                f.outcome = Outcome::Late;
                self.totals.late += 1;
            }
            Some(Class::Server | Class::Intentional) => {
                f.outcome = Outcome::Excused;
                self.totals.excused += 1;
            }
            _ => self.totals.pending += 1,
        }
        if self.forecasts.len() == KEPT {
            self.forecasts.pop_front();
        }
        self.forecasts.push_back(f);
    }

    /// CUCM reported `ev`; `seen` says whether keepalive knows the phone.
    pub fn unregistered(&mut self, ev: CucmEvent, seen: bool) -> &Unregistration {
        let t = ev.time_ns;
        self.settle(t);
        let reason = ev.reason;
        let class = reason.map_or(Class::Other, Reason::class);
        let mut verdict = Verdict::NotScored;
        let mut lead_s = None;
        let mut forecast = None;
        // The earliest pending forecast for this phone that began before it.
        let hit = self
            .forecasts
            .iter_mut()
            .filter(|f| f.outcome == Outcome::Pending && f.names(&ev) && f.since_ns <= t)
            .min_by_key(|f| f.since_ns);
        match (class, hit) {
            (Class::Connectivity, Some(f)) => {
                let lead = (t - f.since_ns) as f64 / 1e9;
                f.outcome = Outcome::Confirmed { lead_s: lead };
                (verdict, lead_s, forecast) = (Verdict::Hit, Some(lead), Some(f.id.clone()));
                self.totals.pending -= 1;
                self.totals.confirmed += 1;
            }
            (Class::Connectivity, None) => verdict = Verdict::Miss,
            (_, Some(f)) => {
                f.outcome = Outcome::Excused;
                self.totals.pending -= 1;
                self.totals.excused += 1;
            }
            (_, None) => {}
        }
        let tot = &mut self.totals;
        tot.unregistrations += 1;
        match verdict {
            Verdict::Hit => {
                tot.hits += 1;
                let lead = lead_s.unwrap_or(0.0);
                tot.lead_sum_s += lead;
                let i = LEAD_BUCKETS.iter().position(|&b| lead <= b).unwrap_or(LEAD_BUCKETS.len());
                tot.lead_buckets[i] += 1;
            }
            Verdict::Miss => tot.misses += 1,
            Verdict::NotScored => {}
        }
        if !seen {
            tot.unseen += 1;
        }
        if let Some(code) = reason.map(Reason::code) {
            let predicted = verdict == Verdict::Hit;
            match tot.by_reason.iter_mut().find(|(c, p, _)| *c == code && *p == predicted) {
                Some(e) => e.2 += 1,
                None => tot.by_reason.push((code, predicted, 1)),
            }
        }
        if self.unregistrations.len() == KEPT {
            self.unregistrations.pop_front();
        }
        self.unregistrations.push_back(Unregistration {
            reason: reason.map(Reason::code),
            reason_name: reason.map(Reason::name),
            event: ev,
            class,
            seen,
            verdict,
            lead_s,
            forecast,
        });
        self.unregistrations.back().expect("just pushed")
    }

    /// Forecasts whose horizon ended before `now_ns` without an unregistration become false
    /// alarms.
    pub fn settle(&mut self, now_ns: u64) {
        for f in &mut self.forecasts {
            if f.outcome == Outcome::Pending && f.until_ns() < now_ns {
                f.outcome = Outcome::FalseAlarm;
                self.totals.pending -= 1;
                self.totals.false_alarms += 1;
            }
        }
    }

    /// The totals.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The unregistrations remembered, oldest first.
    pub fn unregistrations(&self) -> impl DoubleEndedIterator<Item = &Unregistration> {
        self.unregistrations.iter()
    }

    /// The forecasts remembered, oldest first.
    pub fn forecasts(&self) -> impl DoubleEndedIterator<Item = &Forecast> {
        self.forecasts.iter()
    }

    /// The latest unregistration of `phone`, if any.
    pub fn latest_for(&self, phone: IpAddr) -> Option<&Unregistration> {
        self.unregistrations.iter().rev().find(|u| u.event.ip == Some(phone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cucm::syslog::{Alarm, Placed};

    const S: u64 = 1_000_000_000;

    fn forecast(phone: &str, since_s: u64, horizon_s: f64) -> Forecast {
        Forecast {
            id: format!("f-{phone}-{since_s}"),
            kind: "rto-growth",
            phone: phone.parse().unwrap(),
            server: "10.0.0.1".parse().unwrap(),
            device: Some("SEP1".into()),
            since_ns: since_s * S,
            since: since_s as f64,
            horizon_s,
            outcome: Outcome::Pending,
        }
    }

    fn unreg(phone: Option<&str>, device: Option<&str>, at_s: u64, reason: u32) -> CucmEvent {
        CucmEvent {
            time_ns: at_s * S,
            placed: Placed::Exact,
            alarm: Alarm::EndPointUnregistered,
            severity: 3,
            device: device.map(str::to_owned),
            ip: phone.map(|p| p.parse().unwrap()),
            protocol: Some("SCCP".into()),
            reason: Some(Reason::from_code(reason)),
            node: None,
            fields: Vec::new(),
        }
    }

    #[test]
    fn a_forecast_then_a_keepalive_timeout_is_a_hit_with_its_lead() {
        let mut s = Scorer::default();
        s.forecast(forecast("10.1.1.1", 100, 300.0));
        let u = s.unregistered(unreg(Some("10.1.1.1"), None, 340, 13), true);
        assert_eq!((u.verdict, u.lead_s), (Verdict::Hit, Some(240.0)));
        let t = s.totals();
        assert_eq!((t.hits, t.misses, t.confirmed, t.pending, t.false_alarms), (1, 0, 1, 0, 0));
        assert_eq!(t.lead_buckets, [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], "240 s: (120, 300]");
        assert_eq!(t.by_reason, vec![(13, true, 1)]);
    }

    #[test]
    fn an_unforecast_loss_is_a_miss_and_a_restart_is_not() {
        let mut s = Scorer::default();
        assert_eq!(
            s.unregistered(unreg(Some("10.1.1.2"), None, 10, 6), true).verdict,
            Verdict::Miss
        );
        assert_eq!(
            s.unregistered(unreg(Some("10.1.1.3"), None, 20, 15), true).verdict,
            Verdict::NotScored
        );
        let u = s.unregistered(unreg(Some("10.9.9.9"), None, 30, 13), false);
        assert!(!u.seen);
        let t = s.totals();
        assert_eq!((t.misses, t.hits, t.unseen, t.unregistrations), (2, 0, 1, 3));
    }

    #[test]
    fn a_forecast_whose_horizon_passes_is_a_false_alarm_unless_excused() {
        let mut s = Scorer::default();
        s.forecast(forecast("10.1.1.4", 0, 60.0));
        s.forecast(forecast("10.1.1.5", 0, 60.0));
        // The second phone is reset on purpose within the horizon: excused, not a hit.
        let u = s.unregistered(unreg(Some("10.1.1.5"), None, 30, 8), true);
        assert_eq!(u.verdict, Verdict::NotScored);
        s.settle(61 * S);
        let t = s.totals();
        assert_eq!((t.false_alarms, t.excused, t.pending), (1, 1, 0));
        // Too late for the first: a miss, the false alarm stands.
        assert_eq!(
            s.unregistered(unreg(Some("10.1.1.4"), None, 90, 13), true).verdict,
            Verdict::Miss
        );
    }

    #[test]
    fn joined_by_device_name_when_the_alarm_has_no_address() {
        let mut s = Scorer::default();
        s.forecast(forecast("10.1.1.6", 0, 100.0));
        // A second forecast for the same pending phone is the same prediction.
        s.forecast(forecast("10.1.1.6", 10, 100.0));
        assert_eq!(s.totals().pending, 1);
        let u = s.unregistered(unreg(None, Some("sep1"), 50, 13), true);
        assert_eq!((u.verdict, u.lead_s), (Verdict::Hit, Some(50.0)));
    }

    #[test]
    fn a_forecast_after_the_unregistration_is_late_not_a_false_alarm() {
        let mut s = Scorer::default();
        assert_eq!(
            s.unregistered(unreg(Some("10.1.1.7"), None, 100, 13), true).verdict,
            Verdict::Miss
        );
        s.forecast(forecast("10.1.1.7", 101, 60.0));
        s.settle(1_000 * S);
        let t = s.totals();
        assert_eq!((t.late, t.false_alarms, t.pending, t.misses), (1, 0, 0, 1));
        assert_eq!(s.forecasts().next().unwrap().outcome, Outcome::Late);
        // After a restart, the silence it caused is excused.
        s.unregistered(unreg(Some("10.1.1.8"), None, 2_000, 15), true);
        s.forecast(forecast("10.1.1.8", 2_005, 60.0));
        s.settle(3_000 * S);
        assert_eq!((s.totals().excused, s.totals().false_alarms), (1, 0));
    }

    #[test]
    fn horizons() {
        assert_eq!(horizon_s(Some(2), 115.0, 10.0), 355.0);
        assert_eq!(horizon_s(None, 30.0, 10.0), 100.0);
    }
}
