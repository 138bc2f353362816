//! Where events come from. Everything downstream (the tracker, the findings, the reports) sees
//! [`Record`](crate::record::Record)s and does not know which source produced them.
//!
//! * [`capture`]: pcap/pcapng files, normalised to Ethernet frames.
//! * [`offline`]: the userspace twin of the XDP program, classifying those frames.
//! * [`live`]: the XDP program's ring buffer, read with tokio.

pub mod capture;
pub mod live;
pub mod offline;
