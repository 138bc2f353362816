//! keepalive's test bed, kept out of what ships (`keepalive-user` does not depend on it; its
//! tests, examples, the benchmarks and the demo do):
//! * [`fixtures`]: builds Ethernet frames (every encapsulation, SCCP and SIP payloads) and
//!   timed scenario captures for tests, benchmarks and the lab.
//! * [`lab`]: network namespaces, SCCP phone/CUCM simulators and staged faults (demo, lab tests).

pub mod fixtures;
pub mod lab;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// Sleeps `d` in steps of at most 50 ms, returning early (`false`) as soon as `stop` is set:
/// the threads of the lab's simulators stop within a step.
pub(crate) fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}
