//! keepalive: tracks Cisco IP phone keepalives (SCCP and SIP over TCP, plus ARP) and explains
//! which phones are about to unregister, and why.
//!
//! * [`cli`]: argument parsing and validation (no work).
//! * [`live`]: the live source, reading the ring buffer with tokio.
//! * [`loader`]: loads the XDP program, attaches it, reads its maps.
//! * [`record`]: decodes ring-buffer records into [`record::Record`]s and renders them as JSON.
//! * [`fixtures`]: builds Ethernet frames (every encapsulation, SCCP and SIP payloads) for tests,
//!   benchmarks and the lab.

pub mod analyze;
pub mod cli;
pub mod findings;
pub mod fixtures;
pub mod loader;
pub mod record;
pub mod report;
pub mod source;
pub mod tracker;
