//! Faults staged with real kernel mechanisms, never simulated in the analysis:
//!
//! * port-security aging: an nftables bridge table in the switch drops the first frame from a
//!   phone MAC that has been idle longer than the aging time (a dynamic set with a timeout,
//!   refreshed by every frame the MAC sends), as a switch port whose port-security forgot the
//!   MAC does. The phones' TCP runs without timestamps and tail loss probes (see
//!   [`Lab::up`]), so every first copy lost keeps the RTO backed off and it doubles from one
//!   KeepAlive to the next, as in case study 2;
//! * plain loss: nftables drops a share of the phones' frames, at random or every `n`th;
//! * a CUCM restart: the simulator resets every connection (SO_LINGER 0) and stops listening
//!   for a while ([`super::sccp::Cucm::stop`]);
//! * proxy ARP: the ASA namespace answers ARP for the CUCM's address (`proxy_arp` with a route
//!   to it through another interface, `proxy_delay` 0), and the CUCM's replies come 20 ms later
//!   (its kernel stops answering and a userspace responder answers late), so the phone's next
//!   ARP for the CUCM takes the ASA's MAC — the first answer wins (Linux ignores later ones
//!   within `locktime`).

use std::time::Duration;

use super::{addr, in_ns, ip, Lab, LabError};

/// A fault the lab can stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultKind {
    /// No fault.
    None,
    /// Port-security aging shorter than the keepalive interval.
    PortSecurity,
    /// 10 % random loss on the phones' frames.
    Loss,
    /// An ASA answering ARP for the CUCM.
    ProxyArp,
    /// The primary CUCM resets every connection and is down for three KeepAlive intervals.
    CucmRestart,
}

fn nft(lab: &Lab, script: &str) -> Result<(), LabError> {
    let path = std::env::temp_dir().join(format!("{}-nft-{}.conf", lab.prefix, std::process::id()));
    std::fs::write(&path, script)
        .map_err(|error| LabError::Spawn { cmd: "write nft script".into(), error })?;
    let r = in_ns(&lab.ns("switch"), &["nft", "-f", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    r.map(|_| ())
}

/// The MAC of `eth0` in namespace `ns`.
pub(crate) fn mac_of(ns: &str) -> Result<String, LabError> {
    mac_of_dev(ns, "eth0")
}

/// The MAC of `dev` in namespace `ns`.
pub(crate) fn mac_of_dev(ns: &str, dev: &str) -> Result<String, LabError> {
    let out = ip(&["-n", ns, "-br", "link", "show", dev])?;
    out.split_whitespace().nth(2).map(str::to_owned).ok_or_else(|| LabError::Command {
        cmd: format!("ip -n {ns} -br link show {dev}"),
        stderr: format!("no MAC in `{out}`"),
    })
}

/// Port-security aging of `aging` on phone `i`'s port. The phone and the CUCMs get permanent
/// ARP entries for each other first: a real phone's ARP cache outlives its keepalive interval,
/// while the lab's scaled-down timers would otherwise let ARP refresh the MAC between
/// keepalives.
pub fn port_security(lab: &Lab, i: usize, aging: Duration) -> Result<(), LabError> {
    let phone_ns = lab.phone_ns(i);
    let phone_mac = mac_of(&phone_ns)?;
    let phone_ip = addr::phone(i);
    for (role, ip_addr) in [("cucm1", addr::CUCM1), ("cucm2", addr::CUCM2)] {
        let server_mac = mac_of(&lab.ns(role))?;
        let pin = |ns: &str, who: &str, mac: &str| {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                who,
                "lladdr",
                mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])
        };
        pin(&phone_ns, ip_addr, &server_mac)?;
        pin(&lab.ns(role), &phone_ip, &phone_mac)?;
    }
    let ms = aging.as_millis();
    nft(
        lab,
        &format!(
            "table bridge keepalive_lab_ps {{
  set seen {{ type ether_addr; flags dynamic,timeout; timeout {ms}ms; }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname \"{port}\" ether saddr @seen update @seen {{ ether saddr timeout {ms}ms }} accept
    iifname \"{port}\" update @seen {{ ether saddr timeout {ms}ms }} drop
  }}
}}
",
            port = Lab::port(&format!("p{i}"))
        ),
    )
}

/// Which of a phone's frames plain loss drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `percent` % of them at random (nftables `numgen random`), as a noisy link does.
    Random(u8),
    /// Every `n`th one (nftables `numgen inc`): the same kind of loss, deterministic enough for
    /// a test to know what to expect. With a phone's KeepAlive, ACK pairs and `n` = 4 it drops
    /// every other KeepAlive's first copy and the ACK between, whatever the phase: never two
    /// KeepAlives in a row.
    Every(u32),
}

/// Plain loss of phone `i`'s frames at the switch.
pub fn loss(lab: &Lab, i: usize, loss: Loss) -> Result<(), LabError> {
    let rule = match loss {
        Loss::Random(percent) => format!("numgen random mod 100 < {percent} drop"),
        Loss::Every(n) => format!("numgen inc mod {} == 0 drop", n.max(1)),
    };
    nft(
        lab,
        &format!(
            "table bridge keepalive_lab_loss {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname \"{port}\" {rule}
  }}
}}
",
            port = Lab::port(&format!("p{i}"))
        ),
    )
}

/// The ASA starts answering ARP for the primary CUCM, ahead of the CUCM; phone `i` forgets its
/// ARP entries so its next KeepAlive asks again (the others keep the CUCM's MAC).
pub fn proxy_arp(lab: &Lab, i: usize) -> Result<ProxyArp, LabError> {
    let asa = lab.ns("asa");
    for kv in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.eth0.proxy_arp=1",
        "net.ipv4.neigh.eth0.proxy_delay=0",
    ] {
        in_ns(&asa, &["sysctl", "-qw", kv])?;
    }
    // The "inside" interface the CUCM's address is routed to (a veth pair: no dummy module
    // is needed).
    ip(&["-n", &asa, "link", "add", "inside0", "type", "veth", "peer", "name", "inside1"])?;
    ip(&["-n", &asa, "link", "set", "inside0", "up"])?;
    ip(&["-n", &asa, "link", "set", "inside1", "up"])?;
    ip(&["-n", &asa, "route", "add", &format!("{}/32", addr::CUCM1), "dev", "inside0"])?;
    // The CUCM's kernel stops answering ARP; a responder answers 20 ms late instead.
    for kv in ["net.ipv4.conf.eth0.arp_ignore=8", "net.ipv4.conf.all.arp_ignore=8"] {
        in_ns(&lab.ns("cucm1"), &["sysctl", "-qw", kv])?;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cucm: std::net::Ipv4Addr = addr::CUCM1.parse().expect("literal address");
    let responder = super::sccp::delayed_arp_responder(
        &lab.ns("cucm1"),
        cucm,
        Duration::from_millis(20),
        stop.clone(),
    );
    ip(&["-n", &lab.phone_ns(i), "neigh", "flush", "dev", "eth0"])?;
    Ok(ProxyArp { stop, responder: Some(responder) })
}

/// The staged proxy ARP; dropping it stops the CUCM's delayed ARP responder.
#[derive(Debug)]
pub struct ProxyArp {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    responder: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ProxyArp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.responder.take() {
            let _ = h.join();
        }
    }
}
