//! CUCM's syslog: every line of the input (lossily UTF-8) through the parser, at a reference
//! time from its first bytes, and every alarm read through the scorer against a forecast for
//! its phone. Nothing may panic, and the scorer's totals stay consistent.
#![no_main]

use keepalive::cucm::{
    score::{Forecast, Outcome, Scorer},
    syslog,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reference = data.iter().take(8).fold(0u64, |a, &b| a << 8 | u64::from(b));
    let text = String::from_utf8_lossy(data);
    let mut scorer = Scorer::default();
    for line in text.lines() {
        let Ok(ev) = syslog::parse(line, reference) else { continue };
        if let Some(phone) = ev.ip {
            scorer.forecast(Forecast {
                id: String::new(),
                kind: "rto-growth",
                phone,
                server: phone,
                device: ev.device.clone(),
                since_ns: ev.time_ns.saturating_sub(1_000_000_000),
                since: 0.0,
                horizon_s: 60.0,
                outcome: Outcome::Pending,
            });
        }
        scorer.unregistered(ev, true);
        let t = scorer.totals();
        assert!(t.hits + t.misses <= t.unregistrations);
    }
});
