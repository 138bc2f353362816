//! Shared helpers for the root-only test layers.
#![allow(dead_code)]

/// Whether this process may load BPF programs. When not, the test is skipped with a reason —
/// unless KEEPALIVE_REQUIRE_ROOT is set (CI sets it), where skipping would hide a failure.
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("KEEPALIVE_REQUIRE_ROOT").is_some() {
        panic!("{test}: KEEPALIVE_REQUIRE_ROOT is set but the tests are not running as root");
    }
    eprintln!("skipped {test}: needs root (CAP_BPF and CAP_NET_ADMIN) to load XDP programs");
    false
}
