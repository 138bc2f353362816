//! CUCM's remote syslog as the lab's CUCMs send it: the SCCP simulator ([`super::sccp::Cucm`])
//! and the SIP registrar's watcher ([`super::sip::Registrar`]) both send `EndPointUnregistered`
//! (the lines of [`crate::fixtures::cucm`]) over UDP, best effort as CUCM's is, from their own
//! namespace to the agent's `--cucm-syslog`.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

/// Where the lab's CUCM sends its syslog, and when it gives up on a silent phone.
#[derive(Clone, Copy, Debug)]
pub struct Syslog {
    /// Where to send it (the agent's `--cucm-syslog`).
    pub to: SocketAddr,
    /// A registered phone not heard from for this long is unregistered, Reason 13
    /// (KeepAliveTimeout): for SCCP CUCM's keepalive interval plus its grace, for SIP the
    /// refresh point (granted − delta) plus the grace, as CUCM waits (docs/DOMAIN.md).
    pub keepalive_timeout: Duration,
}

/// The Reason codes the lab sends (`keepalive::cucm::reason` has the whole table and its
/// source).
pub mod reason {
    /// The phone's connection broke (a reset or close without an Unregister).
    pub const CONNECTIVITY_ERROR: u32 = 6;
    /// The registration was deleted at the server (CUCM Administration's reset).
    pub const CALLMANAGER_RESET: u32 = 9;
    /// The phone unregistered itself.
    pub const DEVICE_UNREGISTERED: u32 = 10;
    /// No KeepAlive, or no SIP refresh, within the timeout.
    pub const KEEPALIVE_TIMEOUT: u32 = 13;
    /// The CUCM restarted.
    pub const CALLMANAGER_RESTART: u32 = 15;
}

/// One phone's unregistration, as the alarm names it.
#[derive(Clone, Debug)]
pub struct Unregistered<'a> {
    /// The node that sends it (its host-name prefix).
    pub node: &'a str,
    /// The phone's device name.
    pub device: &'a str,
    /// The phone's address.
    pub ip: IpAddr,
    /// `SCCP` or `SIP`.
    pub protocol: &'a str,
    /// The Reason code.
    pub reason: u32,
}

impl Syslog {
    /// Sends `EndPointUnregistered` for `u`, stamped now, from the calling thread's namespace;
    /// returns the line sent (a lab keeps it for an offline replay).
    pub fn send(&self, u: &Unregistered<'_>) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let line = crate::fixtures::cucm::unregistered(
            Some(u.node),
            now,
            u.device,
            &u.ip.to_string(),
            u.protocol,
            u.reason,
        );
        let any: SocketAddr = match self.to {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        if let Ok(s) = UdpSocket::bind(any) {
            let _ = s.send_to(line.as_bytes(), self.to);
        }
        line
    }
}
