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
//!
//! The frames, captures and lab the tests, benchmarks and demo build are in a crate of their
//! own, `keepalive-lab` (not shipped).

pub mod agent;
pub mod analyze;
pub mod cli;
pub mod config;
pub mod cucm;
pub mod findings;
pub mod flow_count;
pub mod loader;
pub mod preflight;
pub mod record;
pub mod report;
pub mod source;
pub mod tracker;
