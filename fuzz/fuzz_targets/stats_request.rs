//! A stats-socket request line, as the agent reads it (at most 257 bytes of whatever a
//! client sends): refused with a sentence or parsed, never a panic, and a parsed request asks
//! for a bounded page.
#![no_main]

use keepalive::agent::socket::{parse_request, Query, MAX_LIMIT, MAX_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = &data[..data.len().min(MAX_REQUEST + 1)];
    if let Ok(q) = parse_request(line) {
        assert!((1..=MAX_LIMIT).contains(&q.limit));
        // What the client sends is read back the same.
        assert_eq!(Query::parse(&q.to_line()), Ok(q));
    }
});
