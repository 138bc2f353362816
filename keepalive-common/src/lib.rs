//! The contract between the XDP program and userspace, and the one packet classifier both use.
//!
//! * [`reader`]: the bounded-reader trait the classifier reads packets through. The XDP program
//!   implements it over `XdpContext` (every load checked against `data_end`, as the verifier
//!   demands); userspace implements it over `&[u8]` (here).
//! * [`wire`]: `#[repr(C)]` types that cross the kernel/user boundary: [`wire::Event`] (one
//!   event-ring record), the per-CPU rings' positions, the flow map's key and value, the
//!   per-CPU counters and the load-time configuration.
//! * [`classify`]: Ethernet → 802.1Q/802.1ad → IPv4/IPv6 → TCP → SCCP / SIP / TLS, and ARP.
//!
//! Everything here is `no_std`, allocation-free and loop-bounded so that it compiles for
//! `bpfel-unknown-none` and passes the kernel verifier.
#![no_std]

pub mod classify;
pub mod reader;
pub mod wire;

#[cfg(test)]
extern crate std;
