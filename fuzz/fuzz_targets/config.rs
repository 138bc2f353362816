//! The configuration file of `run --config`: any text is refused with a sentence naming the
//! file and line, or gives keys that merge into options whose derived settings are finite and
//! in range; it never panics.
#![no_main]

use std::{ffi::OsString, path::Path};

use keepalive::{config::ConfigFile, tracker::Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/etc/keepalive/keepalive.toml");
    let file = match ConfigFile::parse(path, &text) {
        Ok(f) => f,
        Err(e) => {
            assert!(e.to_string().starts_with("/etc/keepalive/keepalive.toml:"), "{e}");
            return;
        }
    };
    let cmdline: Vec<OsString> =
        ["keepalive", "run", "--config", "/etc/keepalive/keepalive.toml"].map(OsString::from).into();
    let Ok(a) = file.merge(&cmdline) else {
        return;
    };
    assert!(!a.ifaces.is_empty());
    let _ = a.config();
    let s = a.timers.settings();
    assert!(s.grace_s.is_finite() && s.delta_s.is_finite() && s.time_scale > 0.0);
    let l = Limits::for_phones(a.max_phones);
    assert!(l.phones >= 1 && l.candidates >= 1);
});
