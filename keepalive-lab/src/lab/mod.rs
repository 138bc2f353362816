//! The lab: network namespaces that reproduce a campus voice segment on one machine, for the
//! demo and the lab tests. Only addresses inside the namespaces it creates are used
//! (TEST-NET-1, 192.0.2.0/24); everything is removed on drop, even after a panic.
//!
//! ```text
//!  p0, p1 … ─┐                                one L2 voice segment, as in docs/DOMAIN.md's
//!  cucm1 ────┤ br0 in the "switch" namespace  first case study; keepalive runs in the
//!  cucm2 ────┤ (XDP on every port: each frame switch on its ports, so every frame is seen
//!  asa ──────┘  is seen once, on ingress)     once, with the MACs it really carries
//! ```
//!
//! * [`sccp`]: the SCCP phone and CUCM simulators (real kernel TCP), in clear or over TLS.
//! * [`tls`]: the certificate and TLS configurations of secure phones (rustls, rcgen).
//! * [`sip`]: kamailio as the registrar and sipp as SIP phones (real peers).
//! * [`syslog`]: CUCM's `EndPointUnregistered` syslog, as the lab's CUCMs send it.
//! * [`fault`]: faults staged with kernel mechanisms (nftables, proxy ARP, route RTO).
//! * [`mirror`]: the switch mirrored to a collector in a real ERSPAN or VXLAN tunnel.

pub mod fault;
pub mod mirror;
pub mod sccp;
pub mod sip;
pub mod syslog;
pub mod tls;

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Stdio},
};

/// Why a lab step failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it said.
        stderr: String,
    },
    /// A command could not be started.
    #[error(
        "cannot run `{cmd}` ({error}): is iproute2/nftables installed? (scripts/bootstrap.sh)"
    )]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        error: std::io::Error,
    },
    /// Setting up TLS for secure phones failed.
    #[error("lab TLS: {0}")]
    Tls(String),
}

/// Runs a command, failing with its stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<String, LabError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| LabError::Spawn { cmd: cmd.clone(), error })?;
    if !out.status.success() {
        return Err(LabError::Command { cmd, stderr: String::from_utf8_lossy(&out.stderr).into() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip args…`.
pub fn ip(args: &[&str]) -> Result<String, LabError> {
    sh("ip", args)
}

/// Runs `args` inside namespace `ns` (`ip netns exec`).
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    sh("ip", &all)
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets it opens live there.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on this thread only; the fd is valid for the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A raw `AF_PACKET` socket (packet(7)) in the namespace of the thread that opens it: the
/// lab's userspace senders of frames the kernel would not make (the ASA's late ARP answers,
/// ERSPAN on a kernel without GRE).
pub(crate) struct PacketSocket(socket2::Socket);

impl PacketSocket {
    /// Receives frames of EtherType `proto` (`ETH_P_ALL`: every frame) on every interface;
    /// a receive gives up after `timeout`, so a loop sees its stop flag.
    pub(crate) fn open(proto: u16, timeout: std::time::Duration) -> std::io::Result<Self> {
        let protocol = socket2::Protocol::from(i32::from(proto.to_be()));
        let s = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, Some(protocol))?;
        s.set_read_timeout(Some(timeout))?;
        Ok(Self(s))
    }

    /// The next frame into `buf`: its length and where it came from (`None` at the timeout).
    pub(crate) fn recv(&self, buf: &mut [u8]) -> Option<(usize, libc::sockaddr_ll)> {
        // SAFETY: an all-zero sockaddr_ll is valid.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: recvfrom into our buffer and address, with their sizes.
        let n = unsafe {
            libc::recvfrom(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&raw mut from).cast(),
                &mut len,
            )
        };
        usize::try_from(n).ok().map(|n| (n, from))
    }

    /// Sends `frame` to `to` (an interface and the destination's hardware address).
    pub(crate) fn send(&self, frame: &[u8], to: &libc::sockaddr_ll) {
        // SAFETY: sendto from our buffer, with the address's size.
        unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(to).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            );
        }
    }

    /// The address that sends a frame out of interface `ifindex` to `mac`.
    pub(crate) fn to(ifindex: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
        // SAFETY: an all-zero sockaddr_ll is valid; the fields set are the ones sendto reads.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&mac);
        to
    }

    /// The socket's descriptor (for ioctls on it).
    pub(crate) fn fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

/// Addresses of the lab.
pub mod addr {
    /// The primary CUCM.
    pub const CUCM1: &str = "192.0.2.202";
    /// The backup CUCM.
    pub const CUCM2: &str = "192.0.2.203";
    /// The ASA's own address.
    pub const ASA: &str = "192.0.2.254";
    /// The switch's management address (on its bridge): where keepalive, running in the
    /// switch, receives the CUCMs' syslog.
    pub const SWITCH: &str = "192.0.2.250";
    /// Phone `i` (0-based): 192.0.2.31 + i.
    pub fn phone(i: usize) -> String {
        format!("192.0.2.{}", 31 + i)
    }
}

/// The lab's namespaces and the switch ports keepalive attaches to.
#[derive(Debug)]
pub struct Lab {
    /// Prefix of every namespace name.
    pub prefix: String,
    /// Number of phone addresses.
    pub phones: usize,
}

impl Lab {
    /// Namespace of a role: `p0`, `p1`, … (one per phone, each with its own MAC), `switch`,
    /// `cucm1`, `cucm2`, `asa`.
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Namespace of phone `i`.
    pub fn phone_ns(&self, i: usize) -> String {
        self.ns(&format!("p{i}"))
    }

    /// The switch port of a role (`p0`, `cucm1`, …).
    pub fn port(role: &str) -> String {
        format!("sw-{role}")
    }

    fn roles(&self) -> Vec<String> {
        let mut r: Vec<String> = (0..self.phones).map(|i| format!("p{i}")).collect();
        r.extend(["cucm1", "cucm2", "asa"].map(String::from));
        r
    }

    /// Every switch port (where keepalive attaches).
    pub fn ports(&self) -> Vec<String> {
        self.roles().iter().map(|r| Self::port(r)).collect()
    }

    /// Builds the lab with `phones` phones; namespaces are named `{prefix}-…` and any left over
    /// from an earlier run with the same prefix are removed first. `prefix` must be at most 11
    /// characters (it names temporary interfaces).
    pub fn up(prefix: &str, phones: usize) -> Result<Self, LabError> {
        let lab = Self { prefix: prefix.to_owned(), phones };
        lab.teardown();
        let sw = lab.ns("switch");
        for role in lab.roles().iter().map(String::as_str).chain(["switch"]) {
            ip(&["netns", "add", &lab.ns(role)])?;
            // The lab is IPv4 only. Without this, each interface's IPv6 router solicitations
            // (RFC 4861 §6.3.7; Linux keeps sending them with exponential back-off, 4 s to an
            // hour, since 5.x's rtr_solicits = -1) are frames from the phone's MAC that
            // port-security learns, at times no phone would send them: one landed 0.8 s
            // before a REGISTER and let its first copy through, resetting the RTO growth.
            // An interface moved into the namespace takes its IPv6 settings from `default`.
            for kv in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
                in_ns(&lab.ns(role), &["sysctl", "-qw", kv])?;
            }
            ip(&["-n", &lab.ns(role), "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for (i, role) in lab.roles().iter().enumerate() {
            // Temporary names while both ends are in this namespace (IFNAMSIZ: 15).
            let (a, b) = (format!("{prefix}{i}a"), format!("{prefix}{i}b"));
            let port = Self::port(role);
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", &lab.ns(role), "name", "eth0"])?;
            ip(&["link", "set", &b, "netns", &sw, "name", &port])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
            ip(&["-n", &lab.ns(role), "link", "set", "eth0", "up"])?;
        }
        for i in 0..phones {
            let ns = lab.phone_ns(i);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", addr::phone(i)), "dev", "eth0"])?;
            // A phone's embedded TCP stack is a classic RFC 6298 one:
            // * no timestamps (RFC 7323): an ACK for a retransmitted segment is then no RTT
            //   sample, and the backed-off RTO is kept until a segment gets through first time
            //   (Karn's algorithm; Linux's tcp_ack_update_rtt resets icsk_backoff only on a
            //   valid sample). With timestamps Linux measures the RTT from TSecr and resets
            //   its RTO after every ACK;
            // * no tail loss probe (RFC 8985): with only one segment in flight Linux would
            //   re-send it after a PTO of ~200 ms (TCP_DELACK_MAX) before the RTO fires, and
            //   a probe does not back off.
            // Without both, port-security aging could not show the case study's growth.
            for kv in ["net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_early_retrans=0"] {
                in_ns(&ns, &["sysctl", "-qw", kv])?;
            }
        }
        let cucm1 = format!("{}/24", addr::CUCM1);
        let cucm2 = format!("{}/24", addr::CUCM2);
        let asa = format!("{}/24", addr::ASA);
        ip(&["-n", &lab.ns("cucm1"), "addr", "add", &cucm1, "dev", "eth0"])?;
        ip(&["-n", &lab.ns("cucm2"), "addr", "add", &cucm2, "dev", "eth0"])?;
        ip(&["-n", &lab.ns("asa"), "addr", "add", &asa, "dev", "eth0"])?;
        ip(&["-n", &sw, "addr", "add", &format!("{}/24", addr::SWITCH), "dev", "br0"])?;
        Ok(lab)
    }

    /// Removes every namespace of the lab (deleting a namespace destroys its veth ends).
    pub fn teardown(&self) {
        for role in self.roles().iter().map(String::as_str).chain(["switch"]) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}
