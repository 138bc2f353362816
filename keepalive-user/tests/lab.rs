//! Lab tests (root): the lab of `keepalive_lab::lab` (phones, a switch running keepalive on its
//! ports, a primary and a backup CUCM, an ASA), SCCP phones over real kernel TCP, faults staged
//! with kernel mechanisms. The agent must report the staged fault on the faulted phone and no
//! warning on the healthy one. Timers run 20× faster (30 s KeepAlives every 1.5 s), and the
//! agent is told so.

mod common;

use std::{process::Stdio, time::Duration};

use common::{stats, Agent};

use keepalive_lab::{
    fixtures::TlsVersion,
    lab::{
        addr, fault,
        mirror::{self, Mirror, Tunnel},
        sccp::{Cucm, Hook, Phone, Timers},
        syslog::Syslog,
        tls::LabTls,
        Lab,
    },
};
use serde_json::Value;

const SCALE: f64 = 20.0;

/// The lab tests run one at a time: they measure timing (scaled timers, RTOs), and two labs
/// competing for two cores blur it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn agent(lab: &Lab) -> Agent {
    agent_scaled(lab, SCALE)
}

/// Where the agent (in the switch) receives the CUCMs' syslog.
const CUCM_SYSLOG: &str = "192.0.2.250:5514";
/// Where it serves its metrics (loopback of the switch namespace).
const METRICS_PORT: u16 = 9108;

/// The agent of the staged tests in `ns` on `ifaces`, its timers scaled by `scale`, with
/// `extra` options.
fn agent_in(ns: &str, scale: f64, ifaces: &[&str], extra: &[&str]) -> Agent {
    let scale = scale.to_string();
    let mut args = vec!["--json", "--refresh", "300ms", "--time-scale", &scale];
    for i in ifaces {
        args.extend(["--iface", i]);
    }
    args.extend(extra);
    Agent::start_with(ns, &args, Stdio::null())
}

/// The agent on the switch's ports, with CUCM's syslog and metrics.
fn agent_scaled(lab: &Lab, scale: f64) -> Agent {
    let syslog = format!("udp://{CUCM_SYSLOG}");
    let metrics = METRICS_PORT.to_string();
    let ports = lab.ports();
    let ifaces: Vec<&str> = ports.iter().map(String::as_str).collect();
    agent_in(&lab.ns("switch"), scale, &ifaces, &["--cucm-syslog", &syslog, "--metrics", &metrics])
}

/// The CUCMs' syslog to the agent: a phone not heard from for a KeepAlive interval plus the
/// grace (the agent's default 15 s, scaled) is unregistered.
fn cucm_syslog(t: Timers, scale: f64) -> Option<Syslog> {
    Some(Syslog {
        to: CUCM_SYSLOG.parse().unwrap(),
        keepalive_timeout: t.primary + Duration::from_secs_f64(15.0 / scale),
    })
}

fn snapshot(a: &Agent) -> Value {
    let out = stats(&a.socket, "json", false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(snap: &'a Value, phone: &str, server: &str) -> &'a Value {
    snap["report"]["phones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phone"] == phone && p["server"] == server)
        .unwrap_or_else(|| panic!("no row {phone} → {server}: {snap:#}"))
}

fn kinds(row: &Value) -> Vec<String> {
    row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn warnings(row: &Value) -> Vec<String> {
    row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| format!("{}: {}", f["kind"], f["message"]))
        .collect()
}

/// Runs two phones (phone 0 gets the fault after a healthy start) and returns the agent's view,
/// with the lab prefix and time scale given, phone 0's backup connection optional
/// (its KeepAlives to the backup would refresh the MAC a port-security fault ages out), and
/// every phone and CUCM secure (SCCP over TLS on 2443) when `tls` is given. Phone 1, the
/// healthy one, makes a call after every other KeepAlive.
#[allow(clippy::too_many_arguments)]
fn stage_with<G>(
    prefix: &str,
    fault_at: Duration,
    total: Duration,
    fault: impl FnOnce(&Lab) -> G,
    hook: Option<Hook>,
    backup0: bool,
    scale: f64,
    tls: Option<TlsVersion>,
) -> Value {
    stage_watched(prefix, fault_at, total, fault, hook, backup0, scale, tls, Watch::Switch)
}

/// Where the agent watches from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// In the switch, XDP on its ports.
    Switch,
    /// In a collector that receives the switch's ports mirrored in this tunnel (without CUCM's
    /// syslog: the collector is not on the voice segment).
    Mirror(Tunnel),
    /// In the switch at tc ingress (`--hook tc`), beside a second agent attached first in XDP
    /// on the same ports, whose snapshot is the returned one's `_xdp`.
    TcBesideXdp,
}

/// [`stage_with`], watched from `watch`.
#[allow(clippy::too_many_arguments)]
fn stage_watched<G>(
    prefix: &str,
    fault_at: Duration,
    total: Duration,
    fault: impl FnOnce(&Lab) -> G,
    hook: Option<Hook>,
    backup0: bool,
    scale: f64,
    tls: Option<TlsVersion>,
    watch: Watch,
) -> Value {
    let lab = Lab::up(prefix, 2).expect("lab up");
    let mirror = match watch {
        Watch::Mirror(t) => Some(Mirror::up(&lab, t).expect("mirror up")),
        _ => None,
    };
    // The XDP agent first, then the tc one beside it.
    let first = (watch == Watch::TcBesideXdp).then(|| agent_scaled(&lab, scale));
    let (a, agent_ns) = match &mirror {
        None if first.is_some() => {
            let ports = lab.ports();
            let ifaces: Vec<&str> = ports.iter().map(String::as_str).collect();
            let a = agent_in(&lab.ns("switch"), scale, &ifaces, &["--hook", "tc"]);
            (a, String::new())
        }
        None => (agent_scaled(&lab, scale), lab.ns("switch")),
        Some(m) => {
            let metrics = METRICS_PORT.to_string();
            let extra = ["--metrics", &metrics, "--mirror"];
            let a = agent_in(m.ns(), scale, &[mirror::COLLECTOR_IFACE], &extra);
            (a, m.ns().to_owned())
        }
    };
    let tls = tls.map(|v| LabTls::new(v).expect("lab TLS"));
    let t = Timers::scaled(scale);
    let syslog = if mirror.is_none() { cucm_syslog(t, scale) } else { None };
    let syslog = if watch == Watch::TcBesideXdp { None } else { syslog };
    let _c1 =
        Cucm::start_with(&lab.ns("cucm1"), addr::CUCM1.parse().unwrap(), true, tls.clone(), syslog);
    let _c2 = Cucm::start_on(&lab.ns("cucm2"), addr::CUCM2.parse().unwrap(), false, tls.clone());
    std::thread::sleep(Duration::from_millis(200));
    let b = Some(addr::CUCM2.parse().unwrap());
    let p0 = addr::phone(0).parse().unwrap();
    let p1 = addr::phone(1).parse().unwrap();
    let _ph0 = Phone::start_on(
        &lab.phone_ns(0),
        p0,
        "SEP0000000000A0",
        addr::CUCM1.parse().unwrap(),
        if backup0 { b } else { None },
        t,
        hook,
        tls.clone(),
    );
    let _ph1 = Phone::start_on(
        &lab.phone_ns(1),
        p1,
        "SEP0000000000A1",
        addr::CUCM1.parse().unwrap(),
        b,
        // The healthy phone makes a call after every other KeepAlive, across the next one.
        t.with_calls(2),
        None,
        tls,
    );
    std::thread::sleep(fault_at);
    let _staged = fault(&lab);
    std::thread::sleep(total.saturating_sub(fault_at));
    let mut snap = snapshot(&a);
    // The agent's metrics at the same moment, beside its stats.
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if let Some(x) = &first {
        snap["_xdp"] = snapshot(x);
        return snap;
    }
    let metrics = common::http(&agent_ns, METRICS_PORT, request).expect("metrics");
    snap["_metrics"] = Value::String(String::from_utf8_lossy(&metrics).into_owned());
    snap
}

#[test]
fn proxy_arp_is_reported_on_the_phone_that_took_the_asa_mac() {
    if !common::have_root("proxy_arp_is_reported_on_the_phone_that_took_the_asa_mac") {
        return;
    }
    proxy_arp("a", None);
}

/// The same with secure phones (SCCP over TLS 1.3 on 2443): the KeepAlives are inferred from
/// the records, and the findings say so.
#[test]
fn proxy_arp_on_secure_phones_is_reported_from_record_timing() {
    if !common::have_root("proxy_arp_on_secure_phones_is_reported_from_record_timing") {
        return;
    }
    let snap = proxy_arp("d", Some(TlsVersion::Tls13));
    let bad = row(&snap, &addr::phone(0), addr::CUCM1);
    assert_eq!(bad["protocol"], "sccp-tls");
    let un =
        bad["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "unanswered-keepalive");
    assert_eq!(un.unwrap()["inferred_from"], "tls-record-timing", "{bad:#}");
    // TLS 1.3 AES-GCM: 12 bytes of KeepAlive, 1 of inner type, 16 of tag.
    assert_eq!(bad["tls"]["keepalive_record_bytes"], 29, "{bad:#}");
}

fn proxy_arp(name: &str, tls: Option<TlsVersion>) -> Value {
    let _serial = serial();
    // Secure phones learn their keepalive from three regular records first.
    let (fault_at, total) = if tls.is_some() { (6, 15) } else { (5, 12) };
    let snap = stage_with(
        &format!("kl{}{name}", std::process::id() % 1000),
        Duration::from_secs(fault_at),
        Duration::from_secs(total),
        |lab| fault::proxy_arp(lab, 0).expect("stage proxy ARP"),
        None,
        true,
        SCALE,
        tls,
    );
    let bad = row(&snap, &addr::phone(0), addr::CUCM1);
    let k = kinds(bad);
    for want in ["arp-multiple-responders", "next-hop-mac-change", "unanswered-keepalive"] {
        assert!(
            k.iter().any(|x| x == want),
            "{want} missing on the faulted phone: {:#}",
            bad["findings"]
        );
    }
    let good = row(&snap, &addr::phone(1), addr::CUCM1);
    assert!(warnings(good).is_empty(), "healthy phone: {:#?} in {good:#}", warnings(good));
    assert_eq!(row(&snap, &addr::phone(1), addr::CUCM2)["role"], "backup");
    assert_eq!(good["role"], "primary");
    assert_calls_were_not_keepalives(good, tls.is_some());
    // The lab's CUCM timed the faulted phone out (its KeepAlives went to the ASA), and only
    // that phone.
    let c = &snap["report"]["cucm"];
    let unregs = c["unregistrations"].as_array().unwrap();
    let ips: Vec<&str> = unregs.iter().filter_map(|u| u["ip"].as_str()).collect();
    assert!(ips.contains(&addr::phone(0).as_str()), "{c:#}");
    assert!(!ips.contains(&addr::phone(1).as_str()), "{c:#}");
    snap
}

/// The healthy phone's calls (see `stage_with`) were seen and none was taken for a keepalive:
/// on TLS its call records are counted apart, and every keepalive it sent was answered.
fn assert_calls_were_not_keepalives(good: &Value, tls: bool) {
    if tls {
        // Each call is 6 records from the phone; at least two calls happened.
        let other = good["tls"]["other_records"].as_u64().unwrap_or(0);
        assert!(other >= 12, "the calls' records: {good:#}");
    }
    // The latest KeepAlive's ack may still be on its way when the agent is read.
    let (kas, acks) = (good["keepalives"].as_u64().unwrap(), good["acks"].as_u64().unwrap());
    assert!(kas >= 3 && acks + 1 >= kas, "{good:#}");
}

/// Port-security aging shorter than the KeepAlive interval: nftables in the switch drops the
/// first frame after each idle period, and the phone's kernel TCP retransmits it. The phone
/// sends no TCP timestamps (see `Lab::up`), so no retransmitted KeepAlive yields an RTT sample
/// and the RTO doubles from one KeepAlive to the next: 0.2, 0.4, 0.8, 1.6 s — case study 2 with
/// real kernel TCP. Timers run 10× faster here (KeepAlives every 3 s, grace 1.5 s, aging
/// 0.9 s) so that four doublings fit between KeepAlives and all four first copies age out.
#[test]
fn port_security_aging_is_rto_growth_and_first_transmission_loss() {
    if !common::have_root("port_security_aging_is_rto_growth_and_first_transmission_loss") {
        return;
    }
    port_security("b", None);
}

/// The same with secure phones (SCCP over TLS 1.2 on 2443): the retransmitted records give
/// the same findings, inferred from record timing.
#[test]
fn port_security_on_secure_phones_is_rto_growth_from_record_timing() {
    if !common::have_root("port_security_on_secure_phones_is_rto_growth_from_record_timing") {
        return;
    }
    let bad = port_security("e", Some(TlsVersion::Tls12));
    assert_eq!(bad["protocol"], "sccp-tls");
    assert_eq!(bad["tls"]["state"], "learned");
    for f in bad["findings"].as_array().unwrap() {
        assert_eq!(f["inferred_from"], "tls-record-timing", "{f:#}");
    }
}

fn port_security(name: &str, tls: Option<TlsVersion>) -> Value {
    port_security_watched(name, tls, Watch::Switch)
}

/// `--hook tc` beside an XDP program attached first to the same ports (a second agent, in
/// XDP): both see every frame, and both report the staged port security.
#[test]
fn the_tc_hook_runs_beside_an_xdp_program_and_both_see_the_traffic() {
    if !common::have_root("the_tc_hook_runs_beside_an_xdp_program_and_both_see_the_traffic") {
        return;
    }
    let snap = port_security_snapshot("t", None, Watch::TcBesideXdp);
    let xdp = &snap["_xdp"];
    for (who, s) in [("tc", &snap), ("xdp", xdp)] {
        let bad = row(s, &addr::phone(0), addr::CUCM1);
        let k = kinds(bad);
        assert!(k.iter().any(|k| k == "rto-growth"), "{who}: {k:?}");
        let good = row(s, &addr::phone(1), addr::CUCM1);
        assert!(warnings(good).is_empty(), "{who}: {:#?}", warnings(good));
        assert!(s["kernel"]["matched_tcp"].as_u64().unwrap() > 0, "{who}");
    }
    let modes: Vec<&str> = snap["agent"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["mode"].as_str().unwrap())
        .collect();
    assert!(!modes.is_empty() && modes.iter().all(|m| *m == "tc"), "{modes:?}");
    // The two saw the same phone traffic: the same keepalives on the faulted row.
    let ka = |s: &Value| row(s, &addr::phone(1), addr::CUCM1)["keepalives"].as_u64().unwrap();
    assert!(ka(&snap).abs_diff(ka(xdp)) <= 1, "{} and {}", ka(&snap), ka(xdp));
}

/// Port security as above, watched from a collector that receives the switch's ports in a real
/// kernel ERSPAN (type II, type III) or VXLAN tunnel: the agent on the underlay interface peels
/// the tunnel in XDP and reports the same findings, on a row that names its segment.
#[test]
fn port_security_seen_through_erspan_and_vxlan_mirrors() {
    if !common::have_root("port_security_seen_through_erspan_and_vxlan_mirrors") {
        return;
    }
    let cases = [
        ("m", Tunnel::ErspanII { session: 301 }, "erspan-ii", 301),
        ("n", Tunnel::ErspanIII { session: 302 }, "erspan-iii", 302),
        ("o", Tunnel::Vxlan { vni: 5010, port: 4789 }, "vxlan", 5010),
    ];
    for (name, tunnel, encap, id) in cases {
        let bad = port_security_watched(name, None, Watch::Mirror(tunnel));
        assert_eq!(bad["segment"]["encap"], encap, "{bad:#}");
        assert_eq!(bad["segment"]["id"], id, "{bad:#}");
        assert_eq!(bad["mac"].as_str().map(str::len), Some(17), "the inner frame's MACs: {bad:#}");
    }
}

fn port_security_watched(name: &str, tls: Option<TlsVersion>, watch: Watch) -> Value {
    let snap = port_security_snapshot(name, tls, watch);
    row(&snap, &addr::phone(0), addr::CUCM1).clone()
}

/// The agent's snapshot of the port-security stage, after its checks of both phones' rows.
fn port_security_snapshot(name: &str, tls: Option<TlsVersion>, watch: Watch) -> Value {
    let _serial = serial();
    const PS_SCALE: f64 = 10.0;
    let prefix = format!("kl{}{name}", std::process::id() % 1000);
    let interval = Timers::scaled(PS_SCALE).primary;
    let fault_at = interval.mul_f64(3.3);
    // Read the agent after the fourth faulted KeepAlive's retransmission (at most 1.6 s
    // late) and before the fifth.
    let snap = stage_watched(
        &prefix,
        fault_at,
        fault_at + interval.mul_f64(4.5),
        |lab| fault::port_security(lab, 0, interval.mul_f64(0.3)).expect("stage port security"),
        None,
        false,
        PS_SCALE,
        tls,
        watch,
    );
    if let Watch::Mirror(_) = watch {
        // The peeled layers, counted in the kernel.
        let k = &snap["kernel"];
        let layers =
            ["encap_erspan", "encap_vxlan"].iter().map(|f| k[f].as_u64().unwrap()).sum::<u64>();
        assert!(layers > 0, "{k:#}");
        assert!(snap["_metrics"].as_str().unwrap().contains("keepalive_kernel_encap_layers_total"));
    }
    let bad = row(&snap, &addr::phone(0), addr::CUCM1);
    let find = |kind: &str| {
        let f = bad["findings"].as_array().unwrap().iter().find(|f| f["kind"] == kind);
        f.unwrap_or_else(|| panic!("no {kind}: {bad:#}")).clone()
    };
    let ftl = find("first-transmission-loss");
    assert_eq!(ftl["evidence"], "retransmission");
    let growth = find("rto-growth");
    assert_eq!(growth["evidence"], "retransmission", "{growth:#}");
    let factor = growth["factor"].as_f64().unwrap();
    assert!((1.7..=2.3).contains(&factor), "Linux doubles its RTO: {growth:#}");
    let delays: Vec<f64> =
        growth["delays_s"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect();
    assert!(delays.len() >= 3, "{growth:#}");
    // The first doubling starts from Linux's minimum RTO (200 ms).
    assert!(delays[0] >= 0.15 && delays[0] <= 0.5, "{delays:?}");
    // Every retransmission is the phone's.
    let retx = bad["retransmissions"].as_array().unwrap();
    assert!(retx.iter().all(|r| r["from"] == "phone"), "{bad:#}");
    let good = row(&snap, &addr::phone(1), addr::CUCM1);
    assert!(warnings(good).is_empty(), "healthy phone: {:#?} in {good:#}", warnings(good));
    assert_calls_were_not_keepalives(good, tls.is_some());
    snap
}

/// The loop with CUCM closed: with port security staged as above and the run a little longer,
/// the lab's CUCM times the phone out (no KeepAlive within its interval plus the grace, as the
/// RTO passes the grace) and sends `EndPointUnregistered` Reason 13 to the agent's
/// `--cucm-syslog`. The rto-growth forecast came first: a hit with a positive lead in `stats`
/// and `/metrics`; the healthy phone is not named.
#[test]
fn port_security_s_forecast_comes_before_cucm_s_unregistration() {
    if !common::have_root("port_security_s_forecast_comes_before_cucm_s_unregistration") {
        return;
    }
    let _serial = serial();
    const PS_SCALE: f64 = 10.0;
    let interval = Timers::scaled(PS_SCALE).primary;
    let fault_at = interval.mul_f64(3.3);
    let snap = stage_with(
        &format!("kl{}u", std::process::id() % 1000),
        fault_at,
        fault_at + interval.mul_f64(7.5),
        |lab| fault::port_security(lab, 0, interval.mul_f64(0.3)).expect("stage port security"),
        None,
        false,
        PS_SCALE,
        None,
    );
    let c = &snap["report"]["cucm"];
    let phone0 = addr::phone(0);
    let unregs = c["unregistrations"].as_array().unwrap();
    let first = unregs.iter().find(|u| u["ip"] == phone0.as_str());
    let first = first.unwrap_or_else(|| panic!("no unregistration of the faulted phone: {c:#}"));
    assert_eq!(
        (first["reason"].as_u64(), first["verdict"].as_str()),
        (Some(13), Some("hit")),
        "{c:#}"
    );
    let lead = first["lead_s"].as_f64().unwrap();
    assert!(lead > 0.0, "the forecast came first: {c:#}");
    let forecast = c["forecasts"].as_array().unwrap().iter().find(|f| f["id"] == first["forecast"]);
    assert_eq!(forecast.unwrap()["kind"], "rto-growth", "{c:#}");
    assert!(unregs.iter().all(|u| u["ip"] != addr::phone(1).as_str()), "{c:#}");
    assert_eq!(c["misses"], 0, "{c:#}");
    let bad = row(&snap, &phone0, addr::CUCM1);
    assert_eq!(bad["unregistered"]["verdict"], "hit", "{bad:#}");
    let metrics = snap["_metrics"].as_str().unwrap();
    assert!(
        metrics
            .contains("keepalive_cucm_unregistrations_total{reason=\"13\",predicted=\"true\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("keepalive_forecast_lead_seconds_count 1"), "{metrics}");
}

/// Plain loss: the switch drops every 4th frame from phone 0, which loses the first copy of
/// every other KeepAlive (and the ACK between). The phone's kernel TCP retransmits each after
/// its minimum RTO, and the agent calls it loss on the path: not MAC aging, not RTO growth.
#[test]
fn plain_loss_is_intermittent_loss_and_not_mac_aging() {
    if !common::have_root("plain_loss_is_intermittent_loss_and_not_mac_aging") {
        return;
    }
    let _serial = serial();
    let interval = Timers::scaled(SCALE).primary;
    let fault_at = interval.mul_f64(3.3);
    let snap = stage_with(
        &format!("kl{}l", std::process::id() % 1000),
        fault_at,
        fault_at + interval.mul_f64(9.5),
        |lab| fault::loss(lab, 0, fault::Loss::Every(4)).expect("stage loss"),
        None,
        false,
        SCALE,
        None,
    );
    let bad = row(&snap, &addr::phone(0), addr::CUCM1);
    let k = kinds(bad);
    assert!(
        !k.iter().any(|k| ["first-transmission-loss", "rto-growth", "unanswered-keepalive"]
            .contains(&k.as_str())),
        "{bad:#}"
    );
    let f = bad["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "intermittent-loss");
    let f = f.unwrap_or_else(|| panic!("no intermittent-loss: {bad:#}"));
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["evidence"], "retransmission");
    let lost = f["lost"].as_u64().unwrap();
    assert!((3..=6).contains(&lost), "every other KeepAlive of ~9: {f:#}");
    // Each loss is followed by a KeepAlive that got through first time, so the RTO is not
    // backed off: every retransmission is at about Linux's minimum RTO.
    for d in f["delays_s"].as_array().unwrap() {
        assert!((0.15..0.35).contains(&d.as_f64().unwrap()), "{f:#}");
    }
    let good = row(&snap, &addr::phone(1), addr::CUCM1);
    assert!(warnings(good).is_empty(), "healthy phone: {:#?} in {good:#}", warnings(good));
}

/// A CUCM restart: the primary resets every connection and is down for three KeepAlive
/// intervals; both phones reconnect once it is back. Each phone's row shows the reconnect
/// (closed by the server) and the gap; the backups are untouched.
#[test]
fn a_cucm_restart_is_reconnect_and_missed_keepalive_on_every_phone() {
    if !common::have_root("a_cucm_restart_is_reconnect_and_missed_keepalive_on_every_phone") {
        return;
    }
    cucm_restart("c", None);
}

/// The same with secure phones (SCCP over TLS 1.2 on 2443; each reconnect is a new TLS
/// session).
#[test]
fn a_cucm_restart_is_reconnect_on_secure_phones() {
    if !common::have_root("a_cucm_restart_is_reconnect_on_secure_phones") {
        return;
    }
    cucm_restart("f", Some(TlsVersion::Tls12));
}

fn cucm_restart(name: &str, tls: Option<TlsVersion>) {
    let _serial = serial();
    let lab = Lab::up(&format!("kl{}{name}", std::process::id() % 1000), 2).expect("lab up");
    let a = agent(&lab);
    let tls = tls.map(|v| LabTls::new(v).expect("lab TLS"));
    let cucm1: std::net::IpAddr = addr::CUCM1.parse().unwrap();
    let t = Timers::scaled(SCALE);
    let syslog = cucm_syslog(t, SCALE);
    let mut c1 = Cucm::start_with(&lab.ns("cucm1"), cucm1, true, tls.clone(), syslog);
    let _c2 = Cucm::start_on(&lab.ns("cucm2"), addr::CUCM2.parse().unwrap(), false, tls.clone());
    std::thread::sleep(Duration::from_millis(200));
    let b = Some(addr::CUCM2.parse().unwrap());
    let phones: Vec<Phone> = (0..2)
        .map(|i| {
            let dev = ["SEP0000000000C0", "SEP0000000000C1"][i];
            let ip = addr::phone(i).parse().unwrap();
            Phone::start_on(&lab.phone_ns(i), ip, dev, cucm1, b, t, None, tls.clone())
        })
        .collect();
    std::thread::sleep(t.primary.mul_f64(3.5));
    c1.stop();
    std::thread::sleep(t.primary.mul_f64(3.0));
    let _c1 = Cucm::start_with(&lab.ns("cucm1"), cucm1, true, tls, syslog);
    std::thread::sleep(t.primary.mul_f64(3.5));
    let snap = snapshot(&a);
    drop(phones);
    for i in 0..2 {
        let r = row(&snap, &addr::phone(i), addr::CUCM1);
        let re = r["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "reconnect");
        let re = re.unwrap_or_else(|| panic!("phone {i}: no reconnect: {:#}", r["findings"]));
        assert_eq!(re["closed_by"], "server", "the CUCM reset the connection");
        assert!(kinds(r).iter().any(|k| k == "missed-keepalive"), "phone {i}: {:#}", r["findings"]);
        assert_eq!(r["role"], "primary");
        let backup = row(&snap, &addr::phone(i), addr::CUCM2);
        assert!(warnings(backup).is_empty(), "backup of phone {i}: {:#?}", warnings(backup));
    }
    // The CUCM said CallManagerRestart for both phones: not scored, and it excuses the
    // missed-keepalive forecasts the outage raised; nothing is a miss or a false alarm.
    let c = &snap["report"]["cucm"];
    let restarts = c["unregistrations"].as_array().unwrap().iter().filter(|u| u["reason"] == 15);
    let restarted: Vec<&Value> = restarts.collect();
    assert_eq!(restarted.len(), 2, "{c:#}");
    assert!(restarted.iter().all(|u| u["verdict"] == "not-scored" && u["class"] == "server"));
    assert_eq!((c["misses"].as_u64(), c["false_alarms"].as_u64()), (Some(0), Some(0)), "{c:#}");
}

/// SIP with real peers: kamailio registrars (granting 120 s, like CUCM) and a sipp phone over
/// TCP, timers 40× faster: it registers to the primary and keeps the backup alive with
/// `Expires: 0`. (Port-security aging on a sipp phone showed first-transmission-loss in most
/// runs but not under CI load, where something else from the phone refreshed its MAC; the SCCP
/// lab test covers that fault.)
#[test]
fn sip_phones_with_kamailio_and_sipp() {
    use keepalive_lab::lab::sip::{Registrar, SipPhone};
    if !common::have_root("sip_phones_with_kamailio_and_sipp") {
        return;
    }
    let _serial = serial();
    const SIP_SCALE: f64 = 40.0;
    let lab = Lab::up(&format!("kl{}s", std::process::id() % 1000), 2).expect("lab up");
    let a = agent_scaled(&lab, SIP_SCALE);
    let (c1, c2): (std::net::IpAddr, std::net::IpAddr) =
        (addr::CUCM1.parse().unwrap(), addr::CUCM2.parse().unwrap());
    let _r1 = Registrar::start(&lab.ns("cucm1"), c1, 120).expect("kamailio (primary)");
    let _r2 = Registrar::start(&lab.ns("cucm2"), c2, 120).expect("kamailio (backup)");
    // The phone refreshes at granted − delta: (120 − 5) s, 40× faster.
    let refresh = Duration::from_secs_f64(115.0 / SIP_SCALE);
    let p0 = addr::phone(0).parse().unwrap();
    let mut phones = [
        SipPhone::start(&lab.phone_ns(0), p0, c1, "SEP0024142DDF24", refresh, false).unwrap(),
        SipPhone::start(&lab.phone_ns(0), p0, c2, "SEP0024142DDF24", refresh, true).unwrap(),
    ];
    // Read the agent between two refreshes (no REGISTER is in flight), once both phones have
    // refreshed three times.
    std::thread::sleep(refresh.mul_f64(3.5));
    let mut snap = snapshot(&a);
    for _ in 0..3 {
        let ka =
            |server: &str| {
                snap["report"]["phones"].as_array().unwrap().iter().any(|p| {
                    p["server"] == server && p["keepalives"].as_u64().is_some_and(|k| k >= 3)
                })
            };
        if ka(addr::CUCM1) && ka(addr::CUCM2) {
            break;
        }
        std::thread::sleep(refresh);
        snap = snapshot(&a);
    }
    let sipp: Vec<String> = phones.iter_mut().map(SipPhone::status).collect();
    drop(phones);
    let all: Vec<String> = snap["report"]["phones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} → {} {} ka {} acks {} retx {} {:?}",
                p["phone"],
                p["server"],
                p["role"],
                p["keepalives"],
                p["acks"],
                p["retransmissions"].as_array().unwrap().len(),
                kinds(p)
            )
        })
        .collect();
    eprintln!("{all:#?}\n{sipp:#?}\nkernel: {}", snap["kernel"]);
    let primary = row(&snap, &addr::phone(0), addr::CUCM1);
    assert_eq!(primary["protocol"], "sip");
    assert_eq!(primary["role"], "primary");
    assert_eq!(primary["expires_requested"], 3600);
    // kamailio grants what is left of the 120 s it allows: 120, or 119 a second later.
    let granted = primary["expires_granted"].as_u64().unwrap();
    assert!((119..=120).contains(&granted), "granted {granted}");
    assert_eq!(primary["device"], "SEP0024142DDF24");
    assert!(primary["keepalives"].as_u64().unwrap() >= 3, "{all:#?}");
    assert_eq!(primary["acks"], primary["keepalives"]);
    assert!(warnings(primary).is_empty(), "healthy primary: {:#?}", warnings(primary));
    let backup = row(&snap, &addr::phone(0), addr::CUCM2);
    assert_eq!(backup["role"], "backup", "{all:#?} {sipp:#?}");
    assert!(warnings(backup).is_empty(), "healthy backup: {:#?}", warnings(backup));
}

/// Secure SIP phones: kamailio with its `tls` module (the lab's certificate) as the registrar
/// on 5061, and our rustls phone (Debian's sipp has no TLS) registering over TLS 1.2 to the
/// primary and keeping the backup alive with `Expires: 0`. The agent learns each connection's
/// REGISTER from its records: keepalives, answers, the period; Expires stay unknown; no warning.
#[test]
fn secure_sip_phones_with_kamailio_over_tls() {
    use keepalive_lab::lab::sip::{Registrar, TlsSipPhone};
    if !common::have_root("secure_sip_phones_with_kamailio_over_tls") {
        return;
    }
    let _serial = serial();
    const SIP_SCALE: f64 = 40.0;
    let lab = Lab::up(&format!("kl{}t", std::process::id() % 1000), 2).expect("lab up");
    let a = agent_scaled(&lab, SIP_SCALE);
    let tls = LabTls::new(TlsVersion::Tls12).expect("lab TLS");
    let (c1, c2): (std::net::IpAddr, std::net::IpAddr) =
        (addr::CUCM1.parse().unwrap(), addr::CUCM2.parse().unwrap());
    let _r1 = Registrar::start_on(&lab.ns("cucm1"), c1, 120, Some(&tls)).expect("kamailio tls");
    let _r2 = Registrar::start_on(&lab.ns("cucm2"), c2, 120, Some(&tls)).expect("kamailio tls");
    let refresh = Duration::from_secs_f64(115.0 / SIP_SCALE);
    let p0 = addr::phone(0).parse().unwrap();
    let dev = "SEP0024142DDF25";
    let phones = [
        TlsSipPhone::start(&lab.phone_ns(0), p0, c1, dev, refresh, false, tls.clone()),
        TlsSipPhone::start(&lab.phone_ns(0), p0, c2, dev, refresh, true, tls),
    ];
    // Three regular REGISTERs to learn from, then two more; read between two refreshes.
    std::thread::sleep(refresh.mul_f64(5.5));
    let snap = snapshot(&a);
    drop(phones);
    for server in [addr::CUCM1, addr::CUCM2] {
        let r = row(&snap, &addr::phone(0), server);
        assert_eq!(r["protocol"], "sip-tls", "{r:#}");
        assert_eq!(r["tls"]["state"], "learned", "{r:#}");
        let ka = r["keepalives"].as_u64().unwrap();
        assert!(ka >= 4, "{server}: {r:#}");
        assert_eq!(r["acks"], r["keepalives"], "{server}: every REGISTER got its 200 OK: {r:#}");
        assert!(r["expires_granted"].is_null() && r["expires_requested"].is_null(), "{r:#}");
        let period = r["tls"]["learned_period_s"].as_f64().unwrap();
        assert!((refresh.as_secs_f64()..refresh.as_secs_f64() * 1.1).contains(&period), "{r:#}");
        assert!(warnings(r).is_empty(), "{server}: {:#?}", warnings(r));
    }
}

/// A capture of the switch's ports (dumpcap in its namespace), stopped on drop: the frames the
/// agent saw, for `analyze`.
struct Dumpcap {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl Dumpcap {
    fn start(lab: &Lab, ports: &[&str], name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{name}-{}.pcapng", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &lab.ns("switch"), "dumpcap", "-q", "-w"]).arg(&path);
        for p in ports {
            cmd.args(["-i", &Lab::port(p)]);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = child.spawn().expect("dumpcap (scripts/bootstrap.sh installs tshark)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(path.exists(), "dumpcap did not start writing {}", path.display());
        Self { child, path }
    }

    /// Stops the capture (SIGTERM: dumpcap finishes the file) and returns its path.
    fn stop(&mut self) -> std::path::PathBuf {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        self.path.clone()
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The frames of a failed run are the evidence: keep them for Wireshark.
            eprintln!("capture of the failed run kept: {}", self.path.display());
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One unregistration's score: the phone's address, the reason, the verdict and the kind of
/// the forecast that named it.
type Score = (String, u64, String, String);

/// The scores of a `cucm` section: each phone's unregistration and the totals (hits, misses,
/// false alarms, unseen).
fn scores(c: &Value) -> (Vec<Score>, [u64; 4]) {
    let forecasts = c["forecasts"].as_array().unwrap();
    let mut unregs: Vec<_> = c["unregistrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let kind = forecasts.iter().find(|f| f["id"] == u["forecast"]);
            (
                u["ip"].as_str().unwrap_or("?").to_owned(),
                u["reason"].as_u64().unwrap_or(0),
                u["verdict"].as_str().unwrap_or("?").to_owned(),
                kind.map_or(String::new(), |f| f["kind"].as_str().unwrap_or("?").to_owned()),
            )
        })
        .collect();
    unregs.sort();
    let n = |k: &str| c[k].as_u64().unwrap_or(u64::MAX);
    (unregs, [n("hits"), n("misses"), n("false_alarms"), n("unseen")])
}

/// The lead time of `ip`'s unregistration in a `cucm` section.
fn lead_of(c: &Value, ip: &str) -> Option<f64> {
    let unregs = c["unregistrations"].as_array()?;
    unregs.iter().find(|u| u["ip"] == ip).and_then(|u| u["lead_s"].as_f64())
}

/// Case study 2 with CUCM's word on it, on SIP: sipp phones registered with kamailio, whose
/// registration watcher sends CUCM's syslog (`keepalive_lab::lab::sip`). Port security ages
/// phone 0's MAC out between its REGISTERs (it has no backup registration to refresh it), so
/// each refresh's first copy is lost and the retransmission delay doubles from one to the
/// next. The agent forecasts the unregistration (rto-growth), then the watcher unregisters the
/// phone, Reason 13: a hit with a positive lead, in `stats` and `/metrics`. Phone 1 is healthy
/// and deleted at the registrar on purpose (Reason 9): not scored, no miss, no false alarm.
/// Then `analyze` on a capture of the same ports, with the syslog the watcher sent written to a
/// file, gives the same scores.
#[test]
fn sip_forecast_is_scored_against_the_registrar_s_unregistration_live_and_offline() {
    use keepalive_lab::lab::sip::{extension, Registrar, SipPhone};
    if !common::have_root("sip_forecast_is_scored_against_the_registrar_s_unregistration")
        || !common::have_tools(&["dumpcap", "kamcmd", "sipp"], "sip_forecast_is_scored")
    {
        return;
    }
    let _serial = serial();
    // The kernel's retransmission delays are not scaled: 0.2, 0.4, 0.8, 1.6 s. At 12.5× CUCM's
    // 15 s grace is 1.2 s, 0.4 s from both 0.8 and 1.6, so the third late REGISTER is in time
    // and the fourth is not, whatever the jitter of sipp, kamailio and the watcher's 100 ms
    // poll. (At 10× the grace was 1.5 s, 0.1 s short of 1.6: within that jitter.)
    const S: f64 = 12.5;
    let lab = Lab::up(&format!("kl{}r", std::process::id() % 1000), 2).expect("lab up");
    let mut cap = Dumpcap::start(&lab, &["p0", "p1"], "keepalive-lab-sip-cucm");
    let a = agent_scaled(&lab, S);
    let c1: std::net::IpAddr = addr::CUCM1.parse().unwrap();
    // CUCM gives up on a phone 15 s past its refresh point, granted − delta (docs/DOMAIN.md).
    let syslog = Syslog {
        to: CUCM_SYSLOG.parse().unwrap(),
        keepalive_timeout: Duration::from_secs_f64((115.0 + 15.0) / S),
    };
    let r1 = Registrar::start_with(&lab.ns("cucm1"), c1, 120, None, Some(syslog))
        .expect("kamailio (primary)");
    let refresh = Duration::from_secs_f64(115.0 / S);
    let (p0, p1) = (addr::phone(0).parse().unwrap(), addr::phone(1).parse().unwrap());
    let mut phones = [
        SipPhone::start(&lab.phone_ns(0), p0, c1, "SEP0024142DDF24", refresh, false).unwrap(),
        SipPhone::start(&lab.phone_ns(1), p1, c1, "SEP0024142DDF26", refresh, false).unwrap(),
    ];
    let fault_at = refresh.mul_f64(3.3);
    std::thread::sleep(fault_at);
    fault::port_security(&lab, 0, refresh.mul_f64(0.3)).expect("stage port security");
    std::thread::sleep(refresh.mul_f64(1.2));
    r1.delete(&extension(p1)).expect("kamcmd ul.rm");
    // CUCM's timeout passes at the fourth late REGISTER (0.2, 0.4, 0.8, then 1.6 s > 1.2 s
    // past the refresh point); wait for it, a few refreshes more at most.
    let deadline = std::time::Instant::now() + refresh.mul_f64(7.0);
    let unregistered = |snap: &Value| {
        snap["report"]["cucm"]["unregistrations"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["ip"] == addr::phone(0).as_str()))
    };
    let mut snap = snapshot(&a);
    while !unregistered(&snap) && std::time::Instant::now() < deadline {
        std::thread::sleep(refresh / 4);
        snap = snapshot(&a);
    }
    // Past the next refresh evaluation, so both phones' rows and scores have settled.
    std::thread::sleep(Duration::from_secs(1));
    snap = snapshot(&a);
    let metrics = String::from_utf8_lossy(
        &common::http(
            &lab.ns("switch"),
            METRICS_PORT,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .expect("metrics"),
    )
    .into_owned();
    let sipp: Vec<String> = phones.iter_mut().map(SipPhone::status).collect();
    let sent = r1.syslog_sent();
    drop(phones);
    let pcap = cap.stop();
    let c = &snap["report"]["cucm"];
    eprintln!("{sipp:#?}\nsyslog sent: {sent:#?}\n{c:#}");
    let (live, totals) = scores(c);
    let faulted = live.iter().find(|u| u.0 == addr::phone(0));
    let faulted = faulted.unwrap_or_else(|| panic!("phone 0 not unregistered: {c:#}"));
    assert_eq!(
        (faulted.1, faulted.2.as_str(), faulted.3.as_str()),
        (13, "hit", "rto-growth"),
        "{c:#}"
    );
    let lead = lead_of(c, &addr::phone(0)).unwrap_or_else(|| panic!("no lead: {c:#}"));
    assert!(lead > 0.0, "the forecast came first: {c:#}");
    let deleted = live.iter().find(|u| u.0 == addr::phone(1));
    let deleted = deleted.unwrap_or_else(|| panic!("phone 1's deletion not in syslog: {c:#}"));
    assert_eq!((deleted.1, deleted.2.as_str()), (9, "not-scored"), "{c:#}");
    assert_eq!((totals[1], totals[2]), (0, 0), "no miss, no false alarm: {c:#}");
    let healthy = row(&snap, &addr::phone(1), addr::CUCM1);
    assert!(warnings(healthy).is_empty(), "healthy phone 1: {:#?}", warnings(healthy));
    assert!(
        metrics
            .contains("keepalive_cucm_unregistrations_total{reason=\"13\",predicted=\"true\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("keepalive_forecast_lead_seconds_count 1"), "{metrics}");
    // Offline: the same frames and CUCM's lines, as an engineer would bring them.
    let log = pcap.with_extension("log");
    std::fs::write(&log, sent.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keepalive"))
        .arg("analyze")
        .arg(&pcap)
        .args(["--format", "json", "--time-scale", &S.to_string(), "--cucm-syslog"])
        .arg(&log)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let oc = &offline["cucm"];
    assert_eq!(scores(oc), (live.clone(), totals), "offline {oc:#}\nlive {c:#}");
    let offline_lead = lead_of(oc, &addr::phone(0)).unwrap_or_else(|| panic!("{oc:#}"));
    // The agent says a forecast at its next evaluation (300 ms); the replay steps 1 nominal s.
    assert!((offline_lead - lead).abs() < 1.0, "lead live {lead} s, offline {offline_lead} s");
}
