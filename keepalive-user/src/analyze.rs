//! `keepalive analyze`: a capture file through the host classifier and the tracker into a
//! [`Report`]. The same tracker and findings the live agent uses; only the source differs.
//!
//! With CUCM's syslog (`--cucm-syslog FILE`), the analysis also replays what the agent does
//! live: it evaluates the pairs as capture time passes (those that changed, and all of them
//! every [`crate::agent::evaluator::SWEEP_EVERY`]), follows the findings' lifecycle, and
//! scores each unregistration at its time against the forecasts that came before it
//! ([`crate::cucm`]).

use std::{io::IsTerminal, path::Path, sync::atomic::Ordering, time::Duration};

use keepalive_common::wire::{Config, Event};

use crate::{
    agent::{
        evaluator::Sweep,
        lifecycle::{Lifecycle, HOLD_DOWN_S},
    },
    cucm::{join::Join, syslog::CucmEvent},
    record::Record,
    report::{Report, SourceTotals},
    source::{
        capture::{Capture, CaptureError},
        offline::HostProbe,
    },
    tracker::{Settings, Tracker},
};

/// Captures smaller than this never show a progress bar.
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

/// Options of one analysis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Ports and their protocols.
    pub config: Config,
    /// Tracker settings.
    pub settings: Settings,
    /// Show a progress bar on stderr when it is a terminal and the capture is large.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { config: Config::DEFAULT, settings: Settings::default(), progress: false }
    }
}

/// Analyses the capture at `path`.
pub fn file(path: &Path, opts: &Options) -> Result<Report, CaptureError> {
    capture(Capture::open(path)?, opts)
}

/// Analyses capture bytes held in memory (tests and the fuzz target).
pub fn bytes(data: &[u8], opts: &Options) -> Result<Report, CaptureError> {
    let len = data.len() as u64;
    let reader = Box::new(std::io::Cursor::new(data.to_vec()));
    capture(Capture::from_reader(Path::new("<memory>"), reader, len)?, opts)
}

/// Analyses an opened capture.
pub fn capture(cap: Capture, opts: &Options) -> Result<Report, CaptureError> {
    capture_scored(cap, opts, None)
}

/// CUCM's alarms for [`capture_scored`]: read from its syslog, in time order.
#[derive(Debug, Default)]
pub struct Alarms {
    join: Join,
    events: Vec<CucmEvent>,
}

/// What reading a saved CUCM syslog found wrong (the alarms read are kept).
#[derive(Debug)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub error: crate::cucm::syslog::ParseError,
}

impl Alarms {
    /// Reads a saved syslog: every line, placing yearless stamps nearest `reference_ns`.
    /// Returns the alarms and the lines that were endpoint alarms but could not be read.
    pub fn read(text: &str, reference_ns: u64) -> (Self, Vec<LineError>) {
        let mut a = Self::default();
        let mut bad = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match a.join.line(line, reference_ns) {
                Ok(Some(ev)) => a.events.push(ev),
                Ok(None) => {}
                Err(error) => bad.push(LineError { line: i + 1, error }),
            }
        }
        a.events.sort_by_key(|e| e.time_ns);
        (a, bad)
    }

    /// How many alarms were read.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// None were.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// The agent's evaluation, replayed in capture time for the scoring.
struct Replay {
    alarms: std::vec::IntoIter<CucmEvent>,
    next: Option<CucmEvent>,
    join: Join,
    lifecycle: Lifecycle,
    sweep: Sweep,
    step_ns: u64,
    next_eval_ns: u64,
    settings: crate::tracker::Settings,
}

impl Replay {
    fn new(a: Alarms, settings: crate::tracker::Settings) -> Self {
        let mut alarms = a.events.into_iter();
        let next = alarms.next();
        Self {
            alarms,
            next,
            join: a.join,
            lifecycle: Lifecycle::default(),
            sweep: Sweep::default(),
            // An evaluation per nominal second of capture time (the agent refreshes every
            // second of wall time).
            step_ns: (settings.wall_s(1.0) * 1e9) as u64,
            next_eval_ns: 0,
            settings,
        }
    }

    fn hold_down(&self) -> Duration {
        Duration::from_secs_f64(self.settings.wall_s(HOLD_DOWN_S))
    }

    /// The pairs evaluated at `now_ns`, as the agent's refresh does.
    fn evaluate(&mut self, tracker: &Tracker, now_ns: u64) {
        let step = Duration::from_nanos(self.step_ns.max(1));
        let picked = self.sweep.pick(tracker, step);
        let rows = Report::rows_at(tracker, picked.into_iter());
        let global = Report::unattached(tracker);
        let moved = self.lifecycle.observe(now_ns, &rows, &global, self.hold_down());
        self.join.transitions(now_ns, &moved, &rows, &self.settings);
    }

    /// Capture time reached `now_ns`: the alarms due, then an evaluation when one is due.
    fn at(&mut self, tracker: &Tracker, now_ns: u64) {
        while self.next.as_ref().is_some_and(|e| e.time_ns <= now_ns) {
            let ev = self.next.take().expect("checked");
            // What the agent would have evaluated by the alarm's time.
            self.evaluate(tracker, ev.time_ns);
            self.join.alarm(tracker, ev);
            self.next = self.alarms.next();
        }
        if now_ns >= self.next_eval_ns {
            self.evaluate(tracker, now_ns);
            self.next_eval_ns = now_ns + self.step_ns;
        }
    }

    /// The capture ended at `end_ns`: the remaining alarms, and the forecasts settled.
    fn finish(mut self, tracker: &Tracker, end_ns: u64, report: &mut Report) {
        self.evaluate(tracker, end_ns);
        while let Some(ev) = self.next.take() {
            self.join.alarm(tracker, ev);
            self.next = self.alarms.next();
        }
        let last = self.join.section().unregistrations.last().map_or(0, |u| u.event.time_ns);
        self.join.settle(end_ns.max(last));
        self.join.annotate(&mut report.phones);
        report.cucm = Some(self.join.section());
    }
}

/// Analyses an opened capture; with CUCM's `alarms`, scores the forecasts against them.
pub fn capture_scored(
    mut cap: Capture,
    opts: &Options,
    alarms: Option<Alarms>,
) -> Result<Report, CaptureError> {
    let mut replay = alarms.map(|a| Replay::new(a, opts.settings));
    let mut probe = HostProbe::new(opts.config);
    let mut tracker = Tracker::new(opts.settings, opts.config);
    let bar = (opts.progress && cap.len() >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal())
        .then(|| {
            let bar = indicatif::ProgressBar::new(cap.len());
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {wide_bar} {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
    let pos = cap.position();
    let mut n: u64 = 0;
    let mut rec = Record { event: Event::ZERO, payload: Vec::new() };
    let stats = cap
        .for_each_frame(|frame| {
            if probe.process_into(&frame, &mut rec) {
                tracker.ingest(&rec);
            }
            if let Some(r) = &mut replay {
                r.at(&tracker, frame.ts_ns);
            }
            n += 1;
            if n.is_multiple_of(65_536) {
                if let Some(bar) = &bar {
                    bar.set_position(pos.load(Ordering::Relaxed));
                }
            }
        })
        .clone();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let totals = SourceTotals {
        packets: stats.frames,
        matched: probe.counters.matched_tcp + probe.counters.matched_arp,
        parse_errors: probe.counters.parse_errors,
        unsupported_link: stats.unsupported_link,
        truncated: stats.truncated,
    };
    let mut report = Report::build(&tracker, &totals);
    if let Some(r) = replay {
        let end_ns = report.summary.end.map_or(0, |e| (e * 1e9) as u64);
        r.finish(&tracker, end_ns, &mut report);
    }
    Ok(report)
}
