//! Where events come from. Everything downstream (the tracker, the findings, the reports) sees
//! [`Record`](crate::record::Record)s and does not know which source produced them.
//!
//! * [`capture`]: pcap/pcapng files, normalised to Ethernet frames.
//! * [`offline`]: the userspace twin of the XDP program, classifying those frames.
//! * [`rings`]: the XDP program's per-CPU event rings, mapped into this process.
//! * [`live`]: those rings polled on a tokio timer, times converted to wall-clock time.

pub mod capture;
pub mod live;
pub mod offline;
pub mod rings;
