//! Whole capture files: reader (pcap/pcapng framing, link types), classifier, tracker, findings
//! and report. Seed the corpus with `cargo run --example scenario -- fuzz/corpus/analyze`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keepalive::analyze::bytes(data, &keepalive::analyze::Options::default());
});
