//! The command line: the input is split on NUL bytes into arguments after `keepalive`.
//! Parsing refuses with a message or yields options whose derived settings and limits are
//! finite and in range; it never panics (`--expire 9999999999999999h` once did).
#![no_main]

use clap::Parser as _;
use keepalive::{
    cli::{Cli, Command},
    tracker::Limits,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args = std::iter::once("keepalive".to_owned())
        .chain(data.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()));
    let Ok(cli) = Cli::try_parse_from(args) else {
        return;
    };
    match cli.command {
        Command::Run(a) => {
            let _ = a.config();
            let s = a.timers.settings();
            assert!(s.grace_s.is_finite() && s.delta_s.is_finite() && s.time_scale > 0.0);
            let l = Limits::for_phones(a.max_phones);
            assert!(l.phones >= 1 && l.candidates >= 1);
            let _ = (a.expire.as_nanos(), a.refresh.as_nanos());
        }
        Command::Analyze(a) => {
            let _ = a.config();
            let _ = a.timers.settings();
        }
        Command::Stats(_) | Command::CheckConfig(_) => {}
    }
});
