//! The findings' lifecycle, for what an alert pipeline reads (the JSON lines, the syslog sink):
//! each finding has one identity, its pair and kind (and, for ARP findings, the address), and
//! one episode from the moment its rule starts holding until it stops:
//! * `firing` when it starts;
//! * `escalated` when its severity rises (a count growing inside one severity is not an event);
//! * `resolved` once its rule has stopped holding for the hold-down ([`HOLD_DOWN_S`] nominal
//!   seconds, so a finding that blinks off for one refresh does not flap), or when its pair is
//!   gone (not evaluated for [`GONE_AFTER`]: the agent evaluates every live pair at least every
//!   10 s).
//!
//! A finding that fires again after it resolved is a new episode: the same identity, the next
//! episode number, a new `id`.
//!
//! When CUCM reports the phone unregistered (`--cucm-syslog`), its forecasts' episodes end
//! with `cucm-unregistered`, carrying the reason and whether the forecast named it: the
//! prediction has come true, or been overtaken. The rule may go on holding on the history it
//! saw; the episode stays closed (no `escalated`, no `resolved`, not exported as a firing
//! finding) until the rule stops holding, and a later firing is a new episode.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    net::IpAddr,
    time::Duration,
};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    findings::{Finding, Severity},
    report::PhoneRow,
};

/// How long (nominal seconds, divided by `--time-scale`) a finding must stop holding before it
/// is resolved.
pub const HOLD_DOWN_S: f64 = 60.0;
/// A finding whose pair has not been evaluated for this long is resolved (its pair expired).
pub const GONE_AFTER: Duration = Duration::from_secs(30);

/// What happened to a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Its rule started holding.
    Firing,
    /// Its severity rose.
    Escalated,
    /// Its rule stopped holding (after the hold-down), or its pair is gone.
    Resolved,
    /// CUCM unregistered the phone: the forecast's episode ends.
    #[serde(rename = "cucm-unregistered")]
    CucmUnregistered,
}

impl Event {
    /// The JSON spelling (also the syslog MSGID).
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Firing => "firing",
            Event::Escalated => "escalated",
            Event::Resolved => "resolved",
            Event::CucmUnregistered => "cucm-unregistered",
        }
    }
}

/// The pair a finding is on, as the rows name it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Subject {
    /// The phone's address.
    pub phone: Option<String>,
    /// The phone's port of the latest connection.
    pub phone_port: Option<u16>,
    /// The server's address.
    pub server: Option<String>,
    /// The server's port.
    pub server_port: Option<u16>,
    /// sccp, sip, …
    pub protocol: Option<&'static str>,
    /// The device name, when known.
    pub device: Option<String>,
}

impl Subject {
    /// The pair's key, when the finding is on one.
    pub fn key(&self) -> Option<(IpAddr, IpAddr, u16)> {
        let phone = self.phone.as_deref()?.parse().ok()?;
        let server = self.server.as_deref()?.parse().ok()?;
        Some((phone, server, self.server_port?))
    }

    fn of(p: &PhoneRow) -> Self {
        Self {
            phone: Some(p.phone.clone()),
            phone_port: Some(p.phone_port),
            server: Some(p.server.clone()),
            server_port: Some(p.server_port),
            protocol: Some(p.protocol),
            device: p.device.clone(),
        }
    }
}

/// One transition, as a JSON line and a syslog message carry it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// firing, escalated or resolved.
    pub event: Event,
    /// The episode's stable id: the identity's hash and the episode number.
    pub id: String,
    /// The pair.
    #[serde(flatten)]
    pub subject: Subject,
    /// The finding as last evaluated (for `resolved`: as it was before it stopped holding).
    #[serde(flatten)]
    pub finding: Finding,
    /// For `cucm-unregistered`: what CUCM said, and whether a forecast named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cucm: Option<crate::cucm::join::RowUnregistration>,
}

#[derive(Debug)]
struct Active {
    /// The pair's key, parsed once (the metrics ask for it at every scrape).
    key: Option<(IpAddr, IpAddr, u16)>,
    episode: u32,
    severity: Severity,
    subject: Subject,
    finding: Finding,
    /// Wall time (ns) since which the rule has not held, while it is being held down.
    absent_since: Option<u64>,
    /// Wall time (ns) the finding's pair was last evaluated.
    evaluated_ns: u64,
    /// CUCM unregistered the phone: the episode has ended, and the entry only waits for the
    /// rule to stop holding.
    closed: bool,
}

/// The findings being followed and the episodes so far.
#[derive(Debug, Default)]
pub struct Lifecycle {
    active: HashMap<u64, Active>,
    /// Episodes opened per identity (so a re-fired finding gets the next number). Bounded:
    /// cleared when it passes [`Self::EPISODES_KEPT`] identities.
    episodes: HashMap<u64, u32>,
}

/// The identity of a finding on `pair` (None: not tied to a pair).
fn identity(pair: Option<&PhoneRow>, f: &Finding) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pair.map(|p| (&p.phone, &p.server, p.server_port, p.segment)).hash(&mut h);
    f.kind.as_str().hash(&mut h);
    // ARP findings are about an address; a pair can have one per address.
    f.fields.get("ip").map(Value::to_string).hash(&mut h);
    h.finish()
}

impl Lifecycle {
    const EPISODES_KEPT: usize = 200_000;

    /// Follows the findings of the pairs just evaluated (`rows`) and of no pair (`global`,
    /// which are always evaluated whole), at wall time `now_ns`; `hold_down` is the hold-down
    /// in wall time. Returns the transitions, in order.
    pub fn observe(
        &mut self,
        now_ns: u64,
        rows: &[PhoneRow],
        global: &[Finding],
        hold_down: Duration,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        // The identities holding now, per evaluated subject; each evaluated subject's other
        // active identities are not holding.
        let mut holding: HashMap<u64, (Option<&PhoneRow>, &Finding)> = HashMap::new();
        let mut evaluated_pairs = std::collections::HashSet::new();
        for p in rows {
            for f in &p.findings {
                let id = identity(Some(p), f);
                // One finding per identity: the most severe.
                match holding.get(&id) {
                    Some((_, g)) if g.severity >= f.severity => {}
                    _ => {
                        holding.insert(id, (Some(p), f));
                    }
                }
            }
            evaluated_pairs.insert((p.phone.as_str(), p.server.as_str(), p.server_port));
        }
        for f in global {
            holding.insert(identity(None, f), (None, f));
        }

        let subject_of = |p: &Option<&PhoneRow>| p.map_or_else(Subject::default, Subject::of);
        for (id, (row, f)) in &holding {
            match self.active.get_mut(id) {
                None => {
                    if self.episodes.len() > Self::EPISODES_KEPT {
                        self.episodes.clear();
                    }
                    let episode = self.episodes.entry(*id).or_default();
                    *episode += 1;
                    let subject = subject_of(row);
                    let a = Active {
                        key: subject.key(),
                        episode: *episode,
                        severity: f.severity,
                        subject,
                        finding: (*f).clone(),
                        absent_since: None,
                        evaluated_ns: now_ns,
                        closed: false,
                    };
                    out.push(transition(Event::Firing, *id, &a));
                    self.active.insert(*id, a);
                }
                Some(a) => {
                    a.absent_since = None;
                    a.evaluated_ns = now_ns;
                    // Copied only when they changed: every pair with a finding is evaluated
                    // again and again, most of the time to the same finding.
                    let moved = row.is_some_and(|p| {
                        a.subject.phone_port != Some(p.phone_port) || a.subject.device != p.device
                    });
                    if moved {
                        a.subject = subject_of(row);
                    }
                    if a.finding != **f {
                        a.finding = (*f).clone();
                    }
                    if f.severity > a.severity {
                        a.severity = f.severity;
                        if !a.closed {
                            out.push(transition(Event::Escalated, *id, a));
                        }
                    }
                }
            }
        }
        let mut resolved = Vec::new();
        for (id, a) in &mut self.active {
            if holding.contains_key(id) {
                continue;
            }
            let global = a.subject.phone.is_none();
            let s = &a.subject;
            let was_evaluated = global
                || evaluated_pairs.contains(&(
                    s.phone.as_deref().unwrap_or(""),
                    s.server.as_deref().unwrap_or(""),
                    s.server_port.unwrap_or(0),
                ));
            if was_evaluated {
                a.evaluated_ns = now_ns;
                let since = *a.absent_since.get_or_insert(now_ns);
                if now_ns.saturating_sub(since) >= hold_down.as_nanos() as u64 {
                    resolved.push(*id);
                }
            } else if now_ns.saturating_sub(a.evaluated_ns) >= GONE_AFTER.as_nanos() as u64 {
                resolved.push(*id);
            }
        }
        resolved.sort_unstable();
        for id in resolved {
            if let Some(a) = self.active.remove(&id).filter(|a| !a.closed) {
                out.push(transition(Event::Resolved, id, &a));
            }
        }
        out
    }

    /// Findings being followed (firing, or held down).
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// The findings being followed, with their pairs: what the metrics export (a finding is
    /// there from `firing` to `resolved`).
    pub fn findings(&self) -> impl Iterator<Item = (&Subject, &Finding)> {
        self.active.values().filter(|a| !a.closed).map(|a| (&a.subject, &a.finding))
    }

    /// CUCM unregistered `phone`: the episodes of its forecasts (`kinds`) end, each with a
    /// `cucm-unregistered` transition carrying `note`.
    pub fn unregistered(
        &mut self,
        phone: IpAddr,
        kinds: &[crate::findings::Kind],
        note: &crate::cucm::join::RowUnregistration,
    ) -> Vec<Transition> {
        let mut ids: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, a)| {
                !a.closed && a.key.is_some_and(|k| k.0 == phone) && kinds.contains(&a.finding.kind)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids {
            if let Some(a) = self.active.get_mut(&id) {
                a.closed = true;
                let mut t = transition(Event::CucmUnregistered, id, a);
                t.cucm = Some(note.clone());
                out.push(t);
            }
        }
        out
    }

    /// The worst severity followed per pair, by (phone, server, server port).
    pub fn worst_by_pair(&self) -> HashMap<(IpAddr, IpAddr, u16), Severity> {
        let mut worst: HashMap<(IpAddr, IpAddr, u16), Severity> = HashMap::new();
        for a in self.active.values() {
            if let Some(key) = a.key {
                let w = worst.entry(key).or_insert(a.severity);
                *w = (*w).max(a.finding.severity);
            }
        }
        worst
    }
}

fn transition(event: Event, id: u64, a: &Active) -> Transition {
    let mut finding = a.finding.clone();
    if event == Event::Resolved {
        finding.fields = Map::new();
    }
    Transition {
        event,
        id: format!("{id:016x}-{}", a.episode),
        subject: a.subject.clone(),
        finding,
        cucm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Kind;

    const S: u64 = 1_000_000_000;
    const HOLD: Duration = Duration::from_secs(6);

    fn row(findings: Vec<Finding>) -> PhoneRow {
        PhoneRow {
            phone: "192.0.2.31".into(),
            server: "192.0.2.202".into(),
            server_port: 2000,
            protocol: "sccp",
            findings,
            ..PhoneRow::default()
        }
    }

    fn missed(sev: Severity, count: u64) -> Finding {
        Finding::new(Kind::MissedKeepalive, sev, 0, format!("{count} missed")).with("count", count)
    }

    fn events(t: &[Transition]) -> Vec<(Event, Severity)> {
        t.iter().map(|t| (t.event, t.finding.severity)).collect()
    }

    #[test]
    fn one_firing_one_escalation_per_step_and_one_resolution_after_the_hold_down() {
        let mut l = Lifecycle::default();
        let w = Severity::Warning;
        let c = Severity::Critical;
        assert_eq!(
            events(&l.observe(0, &[row(vec![missed(w, 1)])], &[], HOLD)),
            [(Event::Firing, w)]
        );
        // The count grows inside one severity: nothing.
        assert!(l.observe(S, &[row(vec![missed(w, 2)])], &[], HOLD).is_empty());
        assert_eq!(
            events(&l.observe(2 * S, &[row(vec![missed(c, 3)])], &[], HOLD)),
            [(Event::Escalated, c)]
        );
        assert!(l.observe(3 * S, &[row(vec![missed(c, 4)])], &[], HOLD).is_empty());
        // Back down to warning: not an event.
        assert!(l.observe(4 * S, &[row(vec![missed(w, 4)])], &[], HOLD).is_empty());
        // It stops holding; it blinks back within the hold-down: still the same episode.
        assert!(l.observe(5 * S, &[row(vec![])], &[], HOLD).is_empty());
        assert!(l.observe(7 * S, &[row(vec![missed(w, 1)])], &[], HOLD).is_empty());
        assert!(l.observe(8 * S, &[row(vec![])], &[], HOLD).is_empty());
        assert!(l.observe(13 * S, &[row(vec![])], &[], HOLD).is_empty());
        let done = l.observe(14 * S, &[row(vec![])], &[], HOLD);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].event, Event::Resolved);
        assert_eq!(l.active(), 0);
        // Again: a new episode of the same identity.
        let again = l.observe(20 * S, &[row(vec![missed(w, 1)])], &[], HOLD);
        assert_eq!(again[0].event, Event::Firing);
        assert!(again[0].id.ends_with("-2"), "{}", again[0].id);
        assert_eq!(again[0].id.split('-').next(), done[0].id.split('-').next());
    }

    #[test]
    fn a_pair_that_is_no_longer_evaluated_resolves_after_it_is_gone() {
        let mut l = Lifecycle::default();
        assert_eq!(l.observe(0, &[row(vec![missed(Severity::Warning, 1)])], &[], HOLD).len(), 1);
        // Other pairs are evaluated; this one is not (it expired).
        assert!(l.observe(10 * S, &[], &[], HOLD).is_empty());
        let gone = l.observe(GONE_AFTER.as_nanos() as u64 + 1, &[], &[], HOLD);
        assert_eq!(events(&gone), [(Event::Resolved, Severity::Warning)]);
    }
}
