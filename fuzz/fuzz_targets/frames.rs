//! Frames straight into the host probe and the tracker, skipping the capture framing so the
//! fuzzer spends its time on packet bytes: the input is a sequence of `u16 LE length` + frame,
//! timestamps one millisecond apart; the report is built at the end.
#![no_main]

use keepalive::{
    report::{Report, SourceTotals},
    source::{capture::Frame, offline::HostProbe},
    tracker::{Settings, Tracker},
};
use keepalive_common::wire::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut probe = HostProbe::new(Config::DEFAULT);
    let mut tracker = Tracker::new(Settings::default(), Config::DEFAULT);
    let mut rest = data;
    let mut ts = 1_700_000_000_000_000_000u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
        ts += 1_000_000;
        if let Some(rec) = probe.process(&Frame { ts_ns: ts, ifindex: 0, data: frame }) {
            tracker.ingest(&rec);
        }
    }
    let _ = Report::build(&tracker, &SourceTotals::default());
});
