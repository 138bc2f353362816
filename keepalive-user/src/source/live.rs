//! The live source: records from the XDP program's ring buffer, read with tokio's `AsyncFd`
//! (the ring buffer's fd becomes readable when the kernel has submitted records; Linux 5.8).

use std::os::fd::AsRawFd;

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

use crate::record::{Record, RecordError};

/// Async reader of decoded records.
pub struct LiveSource {
    fd: AsyncFd<RingBuf<MapData>>,
    /// Records that did not decode (counted, never fatal).
    pub bad_records: u64,
    clock_offset_ns: i128,
}

impl std::fmt::Debug for LiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSource").field("fd", &self.raw_fd()).finish_non_exhaustive()
    }
}

impl LiveSource {
    /// Wraps a ring buffer taken from the loaded program.
    pub fn new(ring: RingBuf<MapData>) -> std::io::Result<Self> {
        Ok(Self {
            // SAFETY: the RingBuf owns its map fd and keeps it open while the AsyncFd owns it.
            fd: unsafe {
                AsyncFd::register_with_interest(ring, Interest::READABLE)
                    .map_err(|e| e.into_parts().1)?
            },
            bad_records: 0,
            clock_offset_ns: realtime_minus_monotonic_ns(),
        })
    }

    /// Waits for the next batch and appends its records to `out` (event times are converted
    /// from CLOCK_MONOTONIC to nanoseconds since the epoch). Returns how many were appended.
    /// At most [`MAX_BATCH`] records are taken at a time: a full 16 MiB ring holds 110 000, and
    /// taking them all at once kept 18 MiB of batch buffer and held the tracker's lock for as
    /// long as ingesting them took.
    ///
    /// The program wakes this reader at most every few milliseconds per CPU, not for every
    /// event (keepalive-ebpf `submit_flags`), so the ring is also drained every [`DRAIN_EVERY`]
    /// without a wakeup: the events of a burst that came after its last wakeup.
    pub async fn next_batch(&mut self, out: &mut Vec<Record>) -> std::io::Result<usize> {
        loop {
            let before = out.len();
            match tokio::time::timeout(DRAIN_EVERY, self.fd.readable_mut()).await {
                Ok(guard) => {
                    let mut guard = guard?;
                    let ring = guard.get_inner_mut();
                    if drain(ring, out, &mut self.bad_records, self.clock_offset_ns) {
                        // Drained: wait for the next wakeup. (With records left, the readiness
                        // is kept and the next call continues at once.)
                        guard.clear_ready();
                    }
                }
                Err(_) => {
                    drain(self.fd.get_mut(), out, &mut self.bad_records, self.clock_offset_ns);
                }
            }
            if out.len() > before {
                return Ok(out.len() - before);
            }
        }
    }

    /// Raw fd of the ring buffer (for diagnostics).
    pub fn raw_fd(&self) -> i32 {
        self.fd.get_ref().as_raw_fd()
    }
}

/// Records taken from the ring per batch.
pub const MAX_BATCH: usize = 4096;

/// How often the ring is drained without a wakeup.
pub const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Takes up to [`MAX_BATCH`] records; `true` when the ring is empty.
fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Vec<Record>,
    bad_records: &mut u64,
    clock_offset_ns: i128,
) -> bool {
    for _ in 0..MAX_BATCH {
        let Some(item) = ring.next() else {
            return true;
        };
        match Record::decode(&item) {
            Ok(mut rec) => {
                rec.event.ts_ns = (i128::from(rec.event.ts_ns) + clock_offset_ns).max(0) as u64;
                out.push(rec);
            }
            Err(RecordError { .. }) => *bad_records += 1,
        }
    }
    false
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
