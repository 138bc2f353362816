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

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair, removed on drop (even when a test panics).
/// Addresses come from TEST-NET-1 (192.0.2.0/24) and exist only inside these namespaces.
#[derive(Debug)]
pub struct VethPair {
    /// Namespace of side A (the phone).
    pub ns_a: String,
    /// Namespace of side B (the server, where keepalive runs).
    pub ns_b: String,
    /// Interface in A.
    pub if_a: String,
    /// Interface in B.
    pub if_b: String,
    /// Address of A.
    pub addr_a: &'static str,
    /// Address of B.
    pub addr_b: &'static str,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl VethPair {
    /// Creates the namespaces, the pair, addresses, and brings everything up.
    pub fn new() -> Self {
        let id = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let p = Self {
            ns_a: format!("ka-a-{id}"),
            ns_b: format!("ka-b-{id}"),
            if_a: "ka-phone".into(),
            if_b: "ka-cucm".into(),
            addr_a: "192.0.2.31",
            addr_b: "192.0.2.202",
        };
        ip(&["netns", "add", &p.ns_a]);
        ip(&["netns", "add", &p.ns_b]);
        ip(&["link", "add", "ka-tmp-a", "type", "veth", "peer", "name", "ka-tmp-b"]);
        ip(&["link", "set", "ka-tmp-a", "netns", &p.ns_a, "name", &p.if_a]);
        ip(&["link", "set", "ka-tmp-b", "netns", &p.ns_b, "name", &p.if_b]);
        for (ns, ifn, addr) in [(&p.ns_a, &p.if_a, p.addr_a), (&p.ns_b, &p.if_b, p.addr_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", ifn]);
            ip(&["-n", ns, "link", "set", ifn, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Runs `f` on a thread that has entered namespace `ns`; sockets it creates live there.
    pub fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            // SAFETY: setns on this thread only; the fd is valid for the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth end, and with it the pair.
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
