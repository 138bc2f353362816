//! keepalive: tracks Cisco IP phone keepalives (SCCP and SIP over TCP, plus ARP) and explains
//! which phones are about to unregister, and why.
//!
//! Data flows one way: a [`source`] yields [`record::Record`]s (from a capture file through the
//! host classifier, or from the XDP program's event rings), the [`tracker`] keeps per
//! phone↔server state, the [`findings`] rules read that state, and a [`report`] shows it.
//!
//! * [`cli`]: argument parsing and validation (no work).
//! * [`config`]: the `run --config` file, read through the same flag parsers.
//! * [`agent`]: `keepalive run`, the live agent (view, stats socket, metrics).
//! * [`analyze`]: `keepalive analyze`, a capture file into a report.
//! * [`source`]: capture files, the host classifier, the live event rings.
//! * [`preflight`]: what `run` needs of the kernel and its capabilities, checked first.
//! * [`loader`]: loads the XDP program, attaches it, reads its maps.
//! * [`record`]: decodes event-ring records into [`record::Record`]s and renders them as JSON.
//! * [`tracker`]: per-pair state (keepalives, answers, retransmissions, reconnects, ARP).
//! * [`findings`]: one rule per finding kind.
//! * [`report`]: the JSON document and the table.
//! * [`lab`]: network namespaces, SCCP phone/CUCM simulators and staged faults (demo, lab tests).
//! * [`fixtures`]: builds Ethernet frames (every encapsulation, SCCP and SIP payloads) and timed
//!   scenario captures for tests, benchmarks and the lab.

pub mod agent;
pub mod analyze;
pub mod cli;
pub mod config;
pub mod findings;
pub mod fixtures;
pub mod flow_count;
pub mod lab;
pub mod loader;
pub mod preflight;
pub mod record;
pub mod report;
pub mod source;
pub mod tracker;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// Sleeps `d` in steps of at most 50 ms, returning early (`false`) as soon as `stop` is set:
/// the threads of the lab's simulators and the agent's flow counter stop within a step.
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
