//! Frames straight into the host probe and the tracker, skipping the capture framing so the
//! fuzzer spends its time on packet bytes: the input is a sequence of `u16 LE length` + frame,
//! timestamps one millisecond apart; the report is built at the end. The first two bytes set
//! `--max-phones` (1 to 512), so the candidate, phone, ARP and SIP-buffer limits are reached
//! and their evictions run; expiry runs every 256 frames. Every frame also checks the gate's
//! contract: what the kernel's first program turns away, the classifier passes.
#![no_main]

use keepalive::{
    report::{Report, SourceTotals},
    source::{capture::Frame, offline::HostProbe},
    tracker::{Limits, Settings, Tracker},
};
use keepalive_common::{
    classify::{decide, gate, Decision, Outcome},
    wire::Config,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut probe = HostProbe::new(Config::DEFAULT);
    let Some((head, mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limits = Limits::for_phones(1 + usize::from(u16::from_le_bytes(*head) % 512));
    let mut tracker = Tracker::with_limits(Settings::default(), Config::DEFAULT, limits);
    let mut n = 0u32;
    let mut ts = 1_700_000_000_000_000_000u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
        ts += 1_000_000;
        if !gate(frame, &Config::DEFAULT) {
            assert_eq!(decide(frame, &Config::DEFAULT), Decision::Skip(Outcome::Pass));
        }
        if let Some(rec) = probe.process(&Frame { ts_ns: ts, ifindex: 0, data: frame }) {
            tracker.ingest(&rec);
        }
        n += 1;
        if n % 256 == 0 {
            tracker.expire(60_000_000_000);
            tracker.expire_streams();
        }
        assert!(tracker.phone_count() <= limits.phones);
        assert!(tracker.candidate_count() <= limits.candidates);
        assert!(tracker.sip_buffered() <= limits.sip_buffer_bytes);
    }
    let _ = Report::build(&tracker, &SourceTotals::default());
});
