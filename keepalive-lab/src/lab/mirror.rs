//! A remote mirror of the lab's switch, as a campus hands traffic to a collector: every frame
//! a switch port receives is copied, at the port's ingress (before the bridge and its
//! port-security filter), into a tunnel whose underlay is a veth to a `coll` namespace.
//! keepalive runs in the collector on the underlay interface, where the phones exist only
//! inside the tunnel; the collector has no tunnel device of its own.
//!
//! ```text
//!  phones, CUCMs ── br0 (switch) ──mirror──▶ mir0 (vxlan) or the ERSPAN sender ══ ul0 ── eth0 (coll)
//!                                                              198.51.100.1/30   .2: keepalive
//! ```
//!
//! - VXLAN: a real kernel `vxlan` device, fed by tc `mirred` on every port (from a `u32`
//!   filter that matches everything: this kernel has no `matchall`).
//! - ERSPAN: this machine's kernel has no GRE (`CONFIG_NET_IPGRE_DEMUX` is not set, so `ip link
//!   add … type erspan` is an unknown device type). A thread in the switch reads every frame
//!   the ports receive from an `AF_PACKET` socket and sends it on the underlay wrapped as a
//!   Catalyst does ([`crate::fixtures::encap`]): the phones' real kernel TCP, in ERSPAN built
//!   here. Where `erspan` devices exist, `ip link add mir0 type erspan seq key SESSION
//!   erspan_ver 1 local … remote …` fed by the same `mirred` does the same.

use std::{
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use super::{in_ns, ip, spawn_in, Lab, LabError};
use crate::fixtures::{
    encap::{self, wrap},
    Eth, Net,
};

/// The switch's end of the underlay.
pub const SWITCH_UNDERLAY: &str = "198.51.100.1";
/// The collector's end, where keepalive runs.
pub const COLLECTOR: &str = "198.51.100.2";
/// The collector's underlay interface.
pub const COLLECTOR_IFACE: &str = "eth0";
/// The underlay's MTU: room for a whole 1 500-byte frame and the tunnel's headers (Linux's
/// erspan device truncates a longer frame and sets the T bit; its vxlan device drops one), and
/// small enough for native XDP on a veth.
const UNDERLAY_MTU: &str = "3000";

/// The tunnel the mirror sends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// ERSPAN type II (sent by the lab's ERSPAN sender).
    ErspanII {
        /// The session id (10 bits).
        session: u16,
    },
    /// ERSPAN type III (sent by the lab's ERSPAN sender).
    ErspanIII {
        /// The session id (10 bits).
        session: u16,
    },
    /// VXLAN to `port`, from a kernel `vxlan` device.
    Vxlan {
        /// The VNI.
        vni: u32,
        /// The UDP destination port.
        port: u16,
    },
}

/// The collector namespace and the mirror into it; removed on drop.
#[derive(Debug)]
pub struct Mirror {
    ns: String,
    /// The ERSPAN sender's stop flag and thread.
    sender: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Mirror {
    /// Mirrors every port of `lab`'s switch into `tunnel` towards a new collector namespace.
    pub fn up(lab: &Lab, tunnel: Tunnel) -> Result<Self, LabError> {
        let ns = lab.ns("coll");
        let mut m = Self { ns, sender: None };
        m.teardown();
        ip(&["netns", "add", &m.ns])?;
        for kv in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
            in_ns(&m.ns, &["sysctl", "-qw", kv])?;
        }
        ip(&["-n", &m.ns, "link", "set", "lo", "up"])?;
        let sw = lab.ns("switch");
        let (a, b) = (format!("{}ua", lab.prefix), format!("{}ub", lab.prefix));
        ip(&["link", "add", &a, "mtu", UNDERLAY_MTU, "type", "veth", "peer", "name", &b])?;
        ip(&["link", "set", &a, "netns", &m.ns, "name", COLLECTOR_IFACE])?;
        ip(&["link", "set", &b, "netns", &sw, "name", "ul0"])?;
        ip(&["-n", &m.ns, "addr", "add", &format!("{COLLECTOR}/30"), "dev", COLLECTOR_IFACE])?;
        ip(&["-n", &sw, "addr", "add", &format!("{SWITCH_UNDERLAY}/30"), "dev", "ul0"])?;
        ip(&["-n", &m.ns, "link", "set", COLLECTOR_IFACE, "up"])?;
        ip(&["-n", &sw, "link", "set", "ul0", "up"])?;
        // The collector runs keepalive with --mirror, which drops every frame after reading it,
        // ARP requests for its address too: the switch knows its MAC instead of asking.
        let mac = super::fault::mac_of(&m.ns)?;
        ip(&[
            "-n",
            &sw,
            "neigh",
            "replace",
            COLLECTOR,
            "lladdr",
            &mac,
            "dev",
            "ul0",
            "nud",
            "permanent",
        ])?;
        let session = match tunnel {
            Tunnel::Vxlan { vni, port } => {
                let (v, p) = (vni.to_string(), port.to_string());
                ip(&[
                    "-n",
                    &sw,
                    "link",
                    "add",
                    "mir0",
                    "type",
                    "vxlan",
                    "id",
                    &v,
                    "dstport",
                    &p,
                    "local",
                    SWITCH_UNDERLAY,
                    "remote",
                    COLLECTOR,
                ])?;
                ip(&["-n", &sw, "link", "set", "mir0", "mtu", "1600", "up"])?;
                for port in lab.ports() {
                    tc(&sw, &["qdisc", "add", "dev", &port, "clsact"])?;
                    tc(
                        &sw,
                        &[
                            "filter", "add", "dev", &port, "ingress", "protocol", "all", "u32",
                            "match", "u32", "0", "0", "action", "mirred", "egress", "mirror",
                            "dev", "mir0",
                        ],
                    )?;
                }
                return Ok(m);
            }
            Tunnel::ErspanII { session } => encap::Encap::ErspanII { session, seq: 0, vlan: 0 },
            Tunnel::ErspanIII { session } => {
                encap::Encap::ErspanIII { session, seq: 0, vlan: 0, timestamp: 0 }
            }
        };
        let ports: Vec<u32> =
            lab.ports().iter().map(|p| ifindex(&sw, p)).collect::<Result<_, _>>()?;
        let underlay = ifindex(&sw, "ul0")?;
        let outer = Eth::new(parse_mac(&super::fault::mac_of_dev(&sw, "ul0")?), parse_mac(&mac));
        let net = Net::between(SWITCH_UNDERLAY.parse().unwrap(), COLLECTOR.parse().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = spawn_in(&sw, move || {
            if let Err(e) = erspan_sender(&ports, underlay, &outer, &net, session, &flag) {
                eprintln!("lab ERSPAN sender: {e}");
            }
        });
        m.sender = Some((stop, thread));
        Ok(m)
    }

    /// The collector's namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    fn teardown(&self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).stderr(Stdio::null()).status();
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.sender.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
        self.teardown();
    }
}

/// Reads every frame received on `ports` and sends it on `underlay` in ERSPAN (`encap`, its
/// sequence number counting up), until `stop`.
fn erspan_sender(
    ports: &[u32],
    underlay: u32,
    outer: &Eth,
    net: &Net,
    mut encap: encap::Encap,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    // Wake up every 100 ms to see `stop`.
    let sock =
        super::PacketSocket::open(libc::ETH_P_ALL as u16, std::time::Duration::from_millis(100))?;
    let mut buf = vec![0u8; 65_536];
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let Some((n, from)) = sock.recv(&mut buf) else {
            continue;
        };
        // A port's ingress only: not the bridge's copies of the frame, nor what leaves.
        let ingress = from.sll_pkttype != libc::PACKET_OUTGOING;
        if !ingress || !ports.contains(&(from.sll_ifindex as u32)) {
            continue;
        }
        seq = seq.wrapping_add(1);
        match &mut encap {
            encap::Encap::ErspanII { seq: s, .. } | encap::Encap::ErspanIII { seq: s, .. } => {
                *s = seq;
            }
            _ => {}
        }
        let frame = wrap(outer, net, &encap, &buf[..n]);
        let mac: [u8; 6] = frame[..6].try_into().expect("an Ethernet header");
        sock.send(&frame, &super::PacketSocket::to(underlay as i32, mac));
    }
    Ok(())
}

/// The index of interface `dev` in namespace `ns`.
fn ifindex(ns: &str, dev: &str) -> Result<u32, LabError> {
    let out = in_ns(ns, &["cat", &format!("/sys/class/net/{dev}/ifindex")])?;
    out.trim().parse().map_err(|_| LabError::Command {
        cmd: format!("cat /sys/class/net/{dev}/ifindex in {ns}"),
        stderr: format!("not an index: `{out}`"),
    })
}

fn parse_mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, b) in s.split(':').take(6).enumerate() {
        m[i] = u8::from_str_radix(b, 16).unwrap_or(0);
    }
    m
}

fn tc(ns: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    super::sh("tc", &all)
}
