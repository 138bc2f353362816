//! The live source: records from the XDP program's per-CPU event rings ([`EventRings`]),
//! polled every [`POLL_EVERY`] on a tokio timer.
//!
//! The rings never wake the agent: a wakeup from XDP is an inter-processor interrupt paid by
//! the packet that makes it (6.5 µs per event with the kernel's BPF ring buffer, whose default
//! wakes a reader that has caught up for every event; BENCHMARKS.md). Polling the rings'
//! positions costs a few cache lines per CPU, 100 times a second.

use std::time::Duration;

use tokio::time::{interval, Interval, MissedTickBehavior};

use crate::{record::Record, source::rings::EventRings};

/// Async reader of decoded records.
#[derive(Debug)]
pub struct LiveSource {
    rings: EventRings,
    tick: Interval,
    clock_offset_ns: i128,
}

/// How often the rings are drained. Each CPU's event ring holds at least 1 024 events
/// (`loader::ring_sizes`), so one CPU may record 100 000 events a second before one is lost.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// Records taken from the rings per batch: the tracker's lock is held while a batch is
/// ingested, so a backlog is taken in pieces.
pub const MAX_BATCH: usize = 4096;

impl LiveSource {
    /// Reads `rings` (from [`Probe::rings`](crate::loader::Probe::rings)). Needs a tokio
    /// runtime with the time driver.
    pub fn new(rings: EventRings) -> Self {
        let mut tick = interval(POLL_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { rings, tick, clock_offset_ns: realtime_minus_monotonic_ns() }
    }

    /// Waits for the next batch and appends its records to `out` in time order (event times
    /// are converted from CLOCK_MONOTONIC to nanoseconds since the epoch). Returns how many
    /// were appended, at most [`MAX_BATCH`]; when more were waiting, the next call returns at
    /// once with them.
    pub async fn next_batch(&mut self, out: &mut Vec<Record>) -> usize {
        loop {
            let start = out.len();
            let n = self.rings.drain(out, MAX_BATCH);
            for r in &mut out[start..] {
                r.event.ts_ns = (i128::from(r.event.ts_ns) + self.clock_offset_ns).max(0) as u64;
            }
            if n > 0 {
                return n;
            }
            self.tick.tick().await;
        }
    }

    /// Records that did not decode (counted, never fatal).
    pub fn bad_records(&self) -> u64 {
        self.rings.bad_records
    }
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, in ns: added to `bpf_ktime_get_ns()` to get wall time.
pub fn realtime_minus_monotonic_ns() -> i128 {
    fn now(clock: libc::clockid_t) -> i128 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    }
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC)
}
