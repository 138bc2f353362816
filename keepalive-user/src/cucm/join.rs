//! Where CUCM's word meets the wire: the findings' lifecycle hands the scorer its forecasts,
//! each alarm is joined to the rows (the phone's address, then its device name) and scored,
//! and the rows and the report say what came of it. The agent and `analyze` both drive it;
//! they differ in where the lines and the clock come from.

use std::net::IpAddr;

use serde::Serialize;

use super::{
    score::{horizon_s, Forecast, Outcome, Scorer, Totals, Unregistration, Verdict},
    syslog::{self, CucmEvent, ParseError, Placed},
};
use crate::{
    agent::lifecycle::{Event, Transition},
    findings::{Kind, Severity},
    report::PhoneRow,
    tracker::{Settings, Tracker},
};

/// The finding kinds that forecast an unregistration (when critical).
pub const FORECASTS: [Kind; 3] =
    [Kind::RtoGrowth, Kind::UnansweredKeepalive, Kind::MissedKeepalive];

/// Lines read, by what they were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lines {
    /// Endpoint alarms read.
    pub alarms: u64,
    /// Other CUCM messages (not endpoint alarms), skipped.
    pub other: u64,
    /// Endpoint alarms that could not be read.
    pub malformed: u64,
    /// Alarms whose zone was a name, read as UTC.
    pub zone_assumed_utc: u64,
}

/// The scoring as a report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CucmSection {
    /// Lines read.
    pub lines: Lines,
    /// The totals.
    #[serde(flatten)]
    pub totals: Totals,
    /// Every unregistration remembered, oldest first.
    pub unregistrations: Vec<Unregistration>,
    /// Every forecast remembered, oldest first.
    pub forecasts: Vec<Forecast>,
}

/// What a row shows of its phone's latest unregistration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowUnregistration {
    /// When CUCM unregistered it (epoch seconds).
    pub time: f64,
    /// The reason code.
    pub reason: Option<u32>,
    /// CUCM's name for it.
    pub reason_name: Option<&'static str>,
    /// hit, miss or not-scored.
    pub verdict: Verdict,
    /// How far ahead a forecast named it (s).
    pub lead_s: Option<f64>,
}

impl RowUnregistration {
    /// What a row (and a `cucm-unregistered` transition) shows of `u`.
    pub fn of(u: &Unregistration) -> Self {
        Self {
            time: u.event.time_ns as f64 / 1e9,
            reason: u.reason,
            reason_name: u.reason_name,
            verdict: u.verdict,
            lead_s: u.lead_s,
        }
    }
}

/// The join and the scoring.
#[derive(Clone, Debug, Default)]
pub struct Join {
    scorer: Scorer,
    lines: Lines,
}

impl Join {
    /// One syslog line at `reference_ns` (for a stamp without a year): the alarm, when it is
    /// one. Errors are counted here; the caller logs them rate-limited.
    pub fn line(&mut self, line: &str, reference_ns: u64) -> Result<Option<CucmEvent>, ParseError> {
        match syslog::parse(line, reference_ns) {
            Ok(ev) => {
                self.lines.alarms += 1;
                if ev.placed == Placed::ZoneAssumedUtc {
                    self.lines.zone_assumed_utc += 1;
                }
                Ok(Some(ev))
            }
            Err(ParseError::NotAnEndpointAlarm) => {
                self.lines.other += 1;
                Ok(None)
            }
            Err(e) => {
                self.lines.malformed += 1;
                Err(e)
            }
        }
    }

    /// The lifecycle moved at `now_ns`: a finding that became a critical forecast begins a
    /// prediction then. `rows` are the rows just evaluated (their intervals give the horizon).
    pub fn transitions(
        &mut self,
        now_ns: u64,
        moved: &[Transition],
        rows: &[PhoneRow],
        settings: &Settings,
    ) {
        for t in moved {
            let f = &t.finding;
            let starts = matches!(t.event, Event::Firing | Event::Escalated);
            if !starts || f.severity != Severity::Critical || !FORECASTS.contains(&f.kind) {
                continue;
            }
            let Some((phone, server, port)) = t.subject.key() else { continue };
            let row = rows.iter().find(|r| {
                r.server_port == port
                    && r.phone.parse() == Ok(phone)
                    && r.server.parse() == Ok(server)
            });
            let interval = row
                .and_then(|r| r.interval_s.as_ref().map(|i| i.median))
                .or_else(|| f.fields.get("expected_s").and_then(|v| v.as_f64()))
                .unwrap_or_else(|| settings.wall_s(30.0));
            let grace =
                f.fields.get("grace_s").and_then(|v| v.as_f64()).unwrap_or(settings.grace_s);
            let cycles = f.fields.get("cycles_to_unregister").and_then(|v| v.as_i64());
            self.scorer.forecast(Forecast {
                id: t.id.clone(),
                kind: f.kind.as_str(),
                phone,
                server,
                device: t.subject.device.clone(),
                since_ns: now_ns,
                since: now_ns as f64 / 1e9,
                horizon_s: horizon_s(cycles, interval, grace),
                outcome: Outcome::Pending,
            });
        }
    }

    /// An alarm: joined to the tracker's phones and scored.
    pub fn alarm(&mut self, tracker: &Tracker, ev: CucmEvent) -> &Unregistration {
        let seen = tracker.phones().any(|p| {
            Some(p.key.phone) == ev.ip
                || ev
                    .device
                    .as_deref()
                    .zip(p.device.as_deref())
                    .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
        });
        self.alarm_seen(ev, seen)
    }

    /// An alarm, scored; `seen` says whether keepalive knows the phone.
    pub fn alarm_seen(&mut self, ev: CucmEvent, seen: bool) -> &Unregistration {
        self.scorer.unregistered(ev, seen)
    }

    /// Forecasts whose horizon passed by `now_ns` become false alarms.
    pub fn settle(&mut self, now_ns: u64) {
        self.scorer.settle(now_ns);
    }

    /// The report's section.
    pub fn section(&self) -> CucmSection {
        CucmSection {
            lines: self.lines,
            totals: self.scorer.totals().clone(),
            unregistrations: self.scorer.unregistrations().cloned().collect(),
            forecasts: self.scorer.forecasts().cloned().collect(),
        }
    }

    /// The report's section with only the newest `n` unregistrations and forecasts.
    pub fn section_recent(&self, n: usize) -> CucmSection {
        let newest = |len: usize| len.saturating_sub(n);
        let u: Vec<_> = self.scorer.unregistrations().collect();
        let f: Vec<_> = self.scorer.forecasts().collect();
        CucmSection {
            lines: self.lines,
            totals: self.scorer.totals().clone(),
            unregistrations: u[newest(u.len())..].iter().map(|&x| x.clone()).collect(),
            forecasts: f[newest(f.len())..].iter().map(|&x| x.clone()).collect(),
        }
    }

    /// The totals.
    pub fn totals(&self) -> &Totals {
        self.scorer.totals()
    }

    /// Lines read.
    pub fn lines(&self) -> Lines {
        self.lines
    }

    /// Each row gets its phone's latest unregistration (the primary's row when the phone has
    /// several: CUCM's primary unregisters it).
    pub fn annotate(&self, rows: &mut [PhoneRow]) {
        for r in rows.iter_mut() {
            let Ok(phone) = r.phone.parse::<IpAddr>() else { continue };
            let Some(u) = self.scorer.latest_for(phone) else { continue };
            if r.role == "backup" {
                continue;
            }
            r.unregistered = Some(RowUnregistration::of(u));
        }
    }
}
