//! The SIP parser and reassembler: the input is cut into segments (each `u8` length + bytes)
//! fed in sequence to one direction's assembler, and every byte string is also parsed whole
//! as a message head. Nothing may panic, and the assembler never holds more than its limit.
#![no_main]

use keepalive::tracker::{
    limits::MAX_SIP_HEAD,
    sip::{Assembler, Message},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse(data);
    let mut a = Assembler::default();
    let mut out = Vec::new();
    let (mut rest, mut seq, mut ts) = (data, 1u32, 0u64);
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (segment, tail) = tail.split_at(n);
        rest = tail;
        // Every fourth segment claims more bytes than it carries (a partial copy).
        let len = if seq % 4 == 0 { n + 1 } else { n } as u16;
        a.feed(ts, seq, len, segment, &mut out);
        seq = seq.wrapping_add(u32::from(len));
        ts += 1_000;
        assert!(a.buffered() <= 2 * 64 * 1024 + 2 * MAX_SIP_HEAD, "{}", a.buffered());
    }
});
