//! The refreshes' evaluation, on a thread of its own: which pairs to look at (the sweep), their
//! rows and findings, the findings' lifecycle, its JSON lines and syslog messages, and the
//! metrics text.
//!
//! The event rings are drained by the agent's main task, which needs the state lock for each
//! batch. At 100 000 phones that all change every second, building their rows takes ~0.2 s:
//! done in one hold, the ingest stopped for that long and the rings overflowed. So the evaluator
//! builds rows in slices of [`SLICE`] pairs, and between slices hands the lock to a waiting
//! ingest (`parking_lot`'s fair [`MutexGuard::bump`]); the lifecycle, the JSON lines, the syslog
//! and the metrics rendering need no pair and run without the lock. Nothing is copied: a slice
//! reads the pairs where they are.
//!
//! One evaluation runs at a time. A refresh that comes while one is running is skipped, not
//! queued: the sweep picks by "changed since the last evaluation", so the next one covers it.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use parking_lot::{Mutex, MutexGuard};

use super::lifecycle::Transition;
use super::{
    lifecycle::Lifecycle,
    metrics::{self, Census, Shape},
    snapshot::State,
    syslog::Syslog,
    view, EvictionLog,
};
use crate::{
    cucm::join::{RowUnregistration, FORECASTS},
    report::{PhoneRow, Report},
    tracker::Tracker,
};

/// Pairs whose rows are built per hold of the state lock: 512 held it up to 10 ms on the
/// bench's 100 000 phones (cold caches: each pair is a few scattered cache lines), 128 up to
/// 2.7 ms of CPU (5.4 ms of wall time on the bench's two busy CPUs), so 64.
pub const SLICE: usize = 64;

/// Pairs evaluated on a refresh: those that saw traffic since the last evaluation, plus a slice
/// of all pairs so that each is looked at within this period (for findings that come from
/// silence, such as `missed-keepalive`).
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Pair slots, ARP addresses or connection streams whose idleness is checked per hold of the
/// state lock (~0.4 ms of pairs, ~2 ms of hash-map entries at 100 000 phones). The ARP
/// addresses and the streams are walked this many per refresh, from where the last refresh
/// stopped: at 100 000 phones, the whole table every few refreshes, against limits of an hour
/// by default.
const EXPIRE_SLICE: usize = 16_384;

/// Pair slots the metrics census counts per hold of the state lock: 16 384 held it 11.7 ms on
/// the bench's 100 000 phones (a pair's counters and its key's lookup in the lifecycle's map,
/// cold), so 2 048 should hold it about 1.5 ms (estimated in proportion, not yet measured).
const CENSUS_SLICE: usize = 2_048;

/// One refresh, as the agent's main task asks for it: the expiry, then (for the JSON lines,
/// the syslog and the metrics) the evaluation of findings.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    /// Wall time of the refresh (ns).
    pub now_ns: u64,
    /// Pairs idle this long are forgotten (`--expire`).
    pub expire: Duration,
    /// Evaluate findings (there is a JSON-lines, syslog or metrics consumer).
    pub findings: bool,
    /// The lifecycle's hold-down in wall time.
    pub hold_down: Duration,
    /// The refresh period (the sweep's slice is sized from it).
    pub refresh: Duration,
    /// Render the metrics too, in this shape.
    pub metrics: Option<Shape>,
    /// Evaluate every pair (the last evaluation, when the agent stops).
    pub whole: bool,
}

/// Where the evaluator's transitions go.
#[derive(Debug)]
pub struct Sinks {
    /// `--json`: a JSON line per transition on stdout.
    pub json_lines: bool,
    /// `--syslog`.
    pub syslog: Option<Syslog>,
    /// `--metrics`: where the rendered text goes for the responder.
    pub metrics: metrics::Latest,
}

/// The evaluator thread.
#[derive(Debug)]
pub struct Evaluator {
    jobs: mpsc::SyncSender<Job>,
    busy: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl Evaluator {
    /// Starts the thread, evaluating `state` for `sinks`.
    pub fn start(state: Arc<Mutex<State>>, sinks: Sinks) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let flag = busy.clone();
        let thread = std::thread::Builder::new().name("evaluator".into()).spawn(move || {
            let mut ev = Work {
                state,
                sinks,
                lifecycle: Lifecycle::default(),
                sweep: Sweep::default(),
                evicted: EvictionLog::default(),
            };
            for job in rx {
                let r = ev.evaluate(&job);
                flag.store(false, Ordering::Release);
                r?;
            }
            Ok(())
        })?;
        Ok(Self { jobs, busy, thread })
    }

    /// Hands `job` to the evaluator unless it is still busy with an earlier one; returns
    /// whether it was taken. Never waits.
    pub fn offer(&self, job: Job) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        match self.jobs.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                self.busy.store(false, Ordering::Release);
                false
            }
        }
    }

    /// Waits for the running evaluation, evaluates every pair one last time (`job.whole`), and
    /// stops the thread. Returns what writing the transitions returned.
    pub fn finish(self, job: Job) -> std::io::Result<()> {
        // The channel holds one job: this waits for a running one to take its turn.
        let sent = self.jobs.send(Job { whole: true, ..job });
        drop(self.jobs);
        let r =
            self.thread.join().unwrap_or_else(|_| Err(std::io::Error::other("evaluator panicked")));
        if sent.is_err() {
            // The thread had stopped on an error: that error is the one to report.
            return r.and(Err(std::io::Error::other("the evaluator stopped early")));
        }
        r
    }
}

/// What the evaluator thread owns.
struct Work {
    state: Arc<Mutex<State>>,
    sinks: Sinks,
    lifecycle: Lifecycle,
    sweep: Sweep,
    evicted: EvictionLog,
}

impl Work {
    fn evaluate(&mut self, job: &Job) -> std::io::Result<()> {
        let started = Instant::now();
        let mut held_max = (Duration::ZERO, "");
        let mut cpu_max = 0u64;
        let mut st = self.state.lock();
        let mut held = (Instant::now(), thread_cpu_ns());
        // A slice of `what` done: note how long the lock was held, and let a waiting ingest
        // have it.
        let mut yield_lock =
            |st: &mut MutexGuard<'_, State>, held: &mut (Instant, u64), what: &'static str| {
                held_max = held_max.max((held.0.elapsed(), what));
                cpu_max = cpu_max.max(thread_cpu_ns().saturating_sub(held.1));
                MutexGuard::bump(st);
                *held = (Instant::now(), thread_cpu_ns());
            };

        // The expiry, a slice of pair slots at a time; the hash-map walks when due.
        let idle_ns = job.expire.as_nanos().min(u128::from(u64::MAX)) as u64;
        st.tracker.advance(job.now_ns);
        while st.tracker.expire_candidates_some(EXPIRE_SLICE) == EXPIRE_SLICE {
            yield_lock(&mut st, &mut held, "candidates");
        }
        let mut start = 0;
        while start < st.tracker.slot_count() {
            let end = start + EXPIRE_SLICE;
            st.tracker.expire_idle(idle_ns, start..end);
            start = end;
            yield_lock(&mut st, &mut held, "idle pairs");
        }
        st.tracker.expire_arp_some(idle_ns, EXPIRE_SLICE);
        yield_lock(&mut st, &mut held, "arp");
        st.tracker.expire_streams_some(EXPIRE_SLICE);
        yield_lock(&mut st, &mut held, "streams");
        self.evicted.report(&st.tracker);
        if !job.findings {
            drop(st);
            return self.account(started, held_max, cpu_max, 0);
        }

        let picked = if job.whole {
            (0..st.tracker.slot_count()).collect()
        } else {
            self.sweep.pick(&st.tracker, job.refresh)
        };
        yield_lock(&mut st, &mut held, "sweep");
        let global = Report::unattached(&st.tracker);
        yield_lock(&mut st, &mut held, "network findings");
        let mut rows = Vec::with_capacity(picked.len());
        for slice in picked.chunks(SLICE) {
            rows.extend(Report::rows_at(&st.tracker, slice.iter().copied()));
            // A waiting ingest takes the lock now, and this continues after it (a slot whose
            // pair was evicted meanwhile is skipped; one reused by a new pair is evaluated,
            // which is only early).
            yield_lock(&mut st, &mut held, "rows");
        }
        drop(st);

        let mut moved = self.lifecycle.observe(job.now_ns, &rows, &global, job.hold_down);
        let closed = self.cucm(job.now_ns, &moved, &rows);
        moved.extend(closed);
        drop(rows);
        if self.sinks.json_lines {
            view::print_transitions(&moved)?;
        }
        if let Some(s) = &mut self.sinks.syslog {
            for t in &moved {
                s.send(t);
            }
        }

        let census = job.metrics.map(|shape| {
            let worst = self.lifecycle.worst_by_pair();
            let mut st = self.state.lock();
            let mut census = Census::new(&st);
            let mut start = 0;
            while start < st.tracker.slot_count() {
                let (held, cpu) = (Instant::now(), thread_cpu_ns());
                let end = start + CENSUS_SLICE;
                census.add(&st.tracker, start..end, &worst);
                start = end;
                held_max = held_max.max((held.elapsed(), "census"));
                cpu_max = cpu_max.max(thread_cpu_ns().saturating_sub(cpu));
                MutexGuard::bump(&mut st);
            }
            (census, shape)
        });
        let text =
            census.map(|(c, shape)| Arc::<str>::from(metrics::render(&c, &self.lifecycle, shape)));

        if let Some(text) = text {
            self.sinks.metrics.set(text);
        }
        self.account(started, held_max, cpu_max, picked.len())
    }

    /// CUCM's alarms since the last refresh (`--cucm-syslog`): the forecasts that began are
    /// handed to the scorer, each alarm is joined and scored, and the episodes of the
    /// forecasts it ends are closed. Returns those closing transitions.
    fn cucm(&mut self, now_ns: u64, moved: &[Transition], rows: &[PhoneRow]) -> Vec<Transition> {
        let mut st = self.state.lock();
        let State { tracker, cucm, .. } = &mut *st;
        let Some(c) = cucm.as_mut() else { return Vec::new() };
        c.join.transitions(now_ns, moved, rows, &tracker.settings);
        c.join.settle(now_ns);
        if c.pending.is_empty() {
            return Vec::new();
        }
        // Who keepalive knows, once for the batch (a CUCM restart sends thousands at once).
        let mut ips = std::collections::HashSet::new();
        let mut devices = std::collections::HashSet::new();
        for p in tracker.phones() {
            ips.insert(p.key.phone);
            if let Some(d) = p.device.as_deref() {
                devices.insert(d.to_ascii_uppercase());
            }
        }
        let mut notes = Vec::new();
        for ev in std::mem::take(&mut c.pending) {
            let seen = ev.ip.is_some_and(|ip| ips.contains(&ip))
                || ev.device.as_deref().is_some_and(|d| devices.contains(&d.to_ascii_uppercase()));
            let ip = ev.ip;
            let u = c.join.alarm_seen(ev, seen);
            if let Some(ip) = ip {
                notes.push((ip, RowUnregistration::of(u)));
            }
        }
        drop(st);
        notes.iter().flat_map(|(ip, n)| self.lifecycle.unregistered(*ip, &FORECASTS, n)).collect()
    }

    /// Records one refresh in the agent's stats.
    fn account(
        &self,
        started: Instant,
        (held, what): (Duration, &'static str),
        cpu_ns: u64,
        pairs: usize,
    ) -> std::io::Result<()> {
        let mut st = self.state.lock();
        let e = &mut st.evaluation;
        e.refreshes += 1;
        e.pairs = pairs;
        e.last_us = started.elapsed().as_micros() as u64;
        let held = held.as_micros() as u64;
        if held > e.held_max_us {
            (e.held_max_us, e.held_max_in) = (held, what);
        }
        e.held_cpu_max_us = e.held_cpu_max_us.max(cpu_ns / 1_000);
        Ok(())
    }
}

/// CPU time this thread has run (CLOCK_THREAD_CPUTIME_ID), in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// Which pairs an evaluation looks at.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// Time of the newest event of any pair at the previous evaluation.
    since_ns: u64,
    /// Where the round-robin slice continues.
    next: usize,
}

impl Sweep {
    /// Indices of the pairs to evaluate now: changed since the last call, or in this
    /// refresh's slice of the round robin.
    pub(crate) fn pick(&mut self, tracker: &Tracker, refresh: Duration) -> Vec<usize> {
        let n = tracker.slot_count();
        let per_refresh = refresh.as_secs_f64() / SWEEP_EVERY.as_secs_f64();
        let slice = ((n as f64 * per_refresh).ceil() as usize).clamp(1, n.max(1));
        let start = if self.next >= n { 0 } else { self.next };
        let in_slice = |i: usize| (i + n - start) % n.max(1) < slice;
        let since = self.since_ns;
        let mut latest = since;
        let picked = tracker
            .phone_slots()
            .filter(|(i, p)| {
                latest = latest.max(p.last_ns);
                p.last_ns > since || in_slice(*i)
            })
            .map(|(i, _)| i)
            .collect();
        self.next = start + slice;
        // The newest event seen, not the clock: a record stamped before this evaluation but
        // ingested after it is still "since".
        self.since_ns = latest;
        picked
    }
}
