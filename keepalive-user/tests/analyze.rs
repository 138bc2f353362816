//! Capture tests: `keepalive analyze` on captures built here (docs/DOMAIN.md's case studies from
//! both vantage points, primary/backup phones, every encapsulation, a healthy site) and on real
//! captures recorded by others (../shared/captures), with tshark as an independent oracle for
//! what is in each capture.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use keepalive::{
    analyze::{self, Options},
    cli::parse_port_rule,
    findings::Severity,
    report::{PhoneRow, Report},
};
use keepalive_lab::fixtures::scenario::{self, Timeline, Vantage};
use serde_json::Value;

mod common;
use common::report::{finding, kinds, only_row, run, warnings};

// ---------------------------------------------------------------- case study 1 (proxy ARP)

#[test]
fn proxy_arp_seen_from_the_phone_side_explains_itself() {
    let r = run(&mut scenario::proxy_arp(Vantage::PhoneSide));
    let p = only_row(&r);
    assert_eq!((p.protocol, p.role, p.keepalives, p.acks), ("sccp", "primary", 15, 14));
    let un = finding(p, "unanswered-keepalive");
    assert_eq!(un.severity, Severity::Critical);
    assert_eq!(un.fields["copies"], 4, "the KeepAlive and 3 retransmissions");
    let related: Vec<&str> =
        un.fields["related"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(related.contains(&"arp-multiple-responders"), "{related:?}");
    assert!(un.message.contains("f4:0f:1b:1e:26:a9"), "{}", un.message);
    assert!(un.message.contains("proxy ARP"), "{}", un.message);
    let nh = finding(p, "next-hop-mac-change");
    assert_eq!(nh.fields["from"], "00:0c:29:90:10:cf");
    assert_eq!(nh.fields["to"], "f4:0f:1b:1e:26:a9");
    let arp = finding(p, "arp-multiple-responders");
    assert_eq!(arp.fields["macs"], serde_json::json!(["f4:0f:1b:1e:26:a9", "00:0c:29:90:10:cf"]));
    finding(p, "reconnect");
    // The retransmissions of the unanswered KeepAlive: 0.2, 0.62 and 1.46 s after the first.
    let delays: Vec<f64> = p.retransmissions.iter().filter_map(|r| r.delay_s).collect();
    assert_eq!(delays, [0.2, 0.62, 1.46]);
    assert_eq!(r.arp.len(), 1);
    assert_eq!((r.arp[0].kind, r.arp[0].ip.as_str()), ("multiple-responders", "10.10.10.202"));
    assert!(r.findings.is_empty(), "the ARP anomaly belongs to the phone's row");
    // Not a case of growth across keepalives: one KeepAlive was retransmitted, not each.
    assert!(!kinds(p).contains(&"rto-growth") && !kinds(p).contains(&"first-transmission-loss"));
}

#[test]
fn proxy_arp_seen_next_to_the_cucm_shows_the_gap_and_the_reconnect() {
    let r = run(&mut scenario::proxy_arp(Vantage::ServerSide));
    let p = only_row(&r);
    // The KeepAlive to the ASA and the ASA's ARP reply never reach the CUCM.
    assert_eq!((p.keepalives, p.acks), (14, 14));
    let k = kinds(p);
    assert!(k.contains(&"reconnect") && k.contains(&"missed-keepalive"), "{k:?}");
    assert!(!k.contains(&"arp-multiple-responders") && !k.contains(&"unanswered-keepalive"));
    assert!(r.arp.is_empty());
}

// ----------------------------------------------------------- case study 2 (port security)

#[test]
fn port_security_seen_on_the_phone_side_is_rto_growth_from_retransmissions() {
    let r = run(&mut scenario::port_security(Vantage::PhoneSide));
    let p = only_row(&r);
    assert_eq!((p.protocol, p.role, p.vlan.as_slice()), ("sip", "primary", &[110][..]));
    assert_eq!((p.expires_requested, p.expires_granted), (Some(3600), Some(120)));
    assert_eq!(p.device.as_deref(), Some("SEP0024142DDF24"));
    let g = finding(p, "rto-growth");
    assert_eq!(g.fields["evidence"], "retransmission");
    let factor = g.fields["factor"].as_f64().unwrap();
    assert!((1.9..=2.1).contains(&factor), "factor {factor}");
    // 6.72 → 13.44 (< 15 s grace) → 26.88: two more refreshes.
    assert_eq!(g.fields["cycles_to_unregister"], 2);
    assert_eq!(g.severity, Severity::Critical);
    assert!(g.message.contains("port-security"), "{}", g.message);
    assert_eq!(finding(p, "first-transmission-loss").fields["evidence"], "retransmission");
    let delays: Vec<f64> = p.retransmissions.iter().filter_map(|r| r.delay_s).collect();
    assert_eq!(delays, [0.42, 0.84, 1.68, 3.36, 6.72]);
    let interval = p.interval_s.unwrap();
    assert!((115.0..117.0).contains(&interval.min), "{interval:?}");
}

#[test]
fn port_security_seen_upstream_of_the_loss_is_rto_growth_from_lateness() {
    let r = run(&mut scenario::port_security(Vantage::ServerSide));
    let p = only_row(&r);
    assert!(p.retransmissions.is_empty(), "the lost copies never reach this vantage point");
    let g = finding(p, "rto-growth");
    assert_eq!(g.fields["evidence"], "lateness");
    let factor = g.fields["factor"].as_f64().unwrap();
    assert!((1.9..=2.1).contains(&factor), "factor {factor}");
    assert_eq!(g.fields["cycles_to_unregister"], 2);
    assert_eq!(finding(p, "first-transmission-loss").fields["evidence"], "lateness");
}

#[test]
fn sccp_keepalives_losing_their_first_copy_are_rto_growth_from_either_side() {
    for (vantage, evidence) in
        [(Vantage::PhoneSide, "retransmission"), (Vantage::ServerSide, "lateness")]
    {
        let r = run(&mut scenario::sccp_port_security(vantage));
        let p = only_row(&r);
        assert_eq!((p.protocol, p.role, p.keepalives, p.acks), ("sccp", "primary", 8, 8));
        let g = finding(p, "rto-growth");
        assert_eq!(g.fields["evidence"], evidence, "{vantage:?}");
        let factor = g.fields["factor"].as_f64().unwrap();
        assert!((1.9..=2.1).contains(&factor), "{vantage:?}: factor {factor}");
        // 3.2 → 6.4 → 12.8 (< 15 s) → 25.6: three more KeepAlives.
        assert_eq!(g.fields["cycles_to_unregister"], 3, "{vantage:?}");
        let ftl = finding(p, "first-transmission-loss");
        assert_eq!(ftl.fields["evidence"], evidence);
        assert!(!kinds(p).contains(&"unanswered-keepalive"), "every KeepAlive was acknowledged");
    }
}

/// Plain loss: three scattered KeepAlives of sixteen lose their first copy (two of them in the
/// last twelve, which the tracker keeps). That is loss on the
/// path, reported as such from either vantage point, and not blamed on MAC aging, whether the
/// phone's timer runs from the send or restarts at the ack (seen from the phone's side: next
/// to the server the two cannot be told apart, and the send time is assumed).
#[test]
fn scattered_first_copy_losses_are_intermittent_loss_not_mac_aging() {
    for (vantage, evidence, from_ack) in [
        (Vantage::PhoneSide, "retransmission", false),
        (Vantage::PhoneSide, "retransmission", true),
        (Vantage::ServerSide, "lateness", false),
    ] {
        let r = run(&mut scenario::sccp_intermittent_loss(vantage, from_ack));
        let p = only_row(&r);
        assert_eq!((p.keepalives, p.acks), (16, 16), "{vantage:?}");
        let k = kinds(p);
        assert_eq!(k, ["intermittent-loss"], "{vantage:?}");
        let f = finding(p, "intermittent-loss");
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.fields["evidence"], evidence, "{vantage:?}");
        // The window is the history: the last 12, which hold the 9th and the 13th.
        assert_eq!((f.fields["lost"].as_u64(), f.fields["of"].as_u64()), (Some(2), Some(12)));
        for d in f.fields["delays_s"].as_array().unwrap() {
            assert!((0.19..0.21).contains(&d.as_f64().unwrap()), "{vantage:?}: {d}");
        }
        assert!(f.message.contains("duplex"), "{}", f.message);
    }
}

/// One SCCP phone sending 16 KeepAlives, each answered 2 ms later; the one after KeepAlive `i`
/// goes `gap(i)` later.
fn sccp_phone(gap: impl Fn(u64) -> u64) -> Report {
    use keepalive_lab::fixtures::{
        sccp_keepalive, sccp_keepalive_ack,
        scenario::{Conn, Host, MS, T0},
    };
    let mut tl = Timeline::default();
    let phone = Host { mac: scenario::phone_mac(5), ip: "10.20.0.5".parse().unwrap() };
    let mut c = Conn::new(phone, scenario::cucm(), 49_005, 2000, 5);
    c.open(&mut tl, T0);
    let mut t = T0 + 5 * MS;
    for i in 0..16 {
        c.phone_send(&mut tl, t, &sccp_keepalive(), &[], false);
        c.server_send(&mut tl, t + 2 * MS, &sccp_keepalive_ack());
        t += gap(i);
    }
    run(&mut tl)
}

/// A phone whose timer restarts after it has handled the ack drifts a few ms per cycle: not a
/// loss, however long the drift accumulates (the demo's phone does this and once raised a
/// false `first-transmission-loss`).
#[test]
fn a_drifting_timer_is_not_loss() {
    use keepalive_lab::fixtures::scenario::{MS, S};
    for drift_ms in [3, 20, 60] {
        let r = sccp_phone(|_| 30 * S + drift_ms * MS);
        assert!(warnings(&r).is_empty(), "drift {drift_ms} ms: {:#?}", warnings(&r));
    }
}

/// A timer that slips once (a busy phone, or a busy router timestamping the frame late) and
/// keeps its interval from there has a new schedule: every keepalive after the slip arrives
/// that much after the old one, which is not a lost first copy each time (the flood lab once
/// raised `first-transmission-loss` from a 54 ms slip). A shift of a whole minimum RTO (the
/// phones' 100 ms) that stays is: the first copy of each keepalive is lost from there on.
#[test]
fn a_timer_that_slips_once_is_not_loss() {
    use keepalive_lab::fixtures::scenario::{MS, S};
    for slip_ms in [20, 54, 75] {
        let r = sccp_phone(|i| S + if i == 8 { slip_ms * MS } else { 0 });
        assert!(warnings(&r).is_empty(), "slip {slip_ms} ms: {:#?}", warnings(&r));
    }
    let r = sccp_phone(|i| S + if i == 8 { 100 * MS } else { 0 });
    assert_eq!(finding(only_row(&r), "first-transmission-loss").fields["evidence"], "lateness");
}

#[test]
fn a_longer_grace_leaves_more_refreshes() {
    let opts = Options {
        settings: keepalive::tracker::Settings { grace_s: 60.0, ..Default::default() },
        ..Options::default()
    };
    let r = analyze::bytes(&scenario::port_security(Vantage::PhoneSide).to_pcap(), &opts).unwrap();
    // 6.72 × 2^3 = 53.8 < 60 < 107.5: four more refreshes, and no longer critical.
    let g = finding(only_row(&r), "rto-growth");
    assert_eq!(g.fields["cycles_to_unregister"], 4);
    assert_eq!(g.severity, Severity::Warning);
}

// --------------------------------------------------------------- healthy configurations

#[test]
fn sccp_primary_and_backup_are_told_apart_and_healthy() {
    let r = run(&mut scenario::sccp_primary_backup(10));
    assert_eq!(r.phones.len(), 2);
    let by_server = |s: &str| r.phones.iter().find(|p| p.server == s).unwrap();
    let (p, b) = (by_server("10.10.10.202"), by_server("10.10.10.203"));
    assert_eq!((p.role, p.keepalives, p.acks), ("primary", 20, 20));
    assert_eq!((b.role, b.keepalives, b.acks), ("backup", 10, 0));
    // From the Register's DeviceName (the kernel copies Register segments, as for SIP).
    assert_eq!(p.device.as_deref(), Some("SEP002414000041"));
    assert!((p.interval_s.unwrap().median - 30.0).abs() < 0.1);
    assert!((b.interval_s.unwrap().median - 60.0).abs() < 0.1);
    assert!(warnings(&r).is_empty(), "{:#?}", warnings(&r));
}

#[test]
fn sip_primary_and_backup_are_told_apart_and_healthy() {
    let r = run(&mut scenario::sip_primary_backup(6));
    let by_server = |s: &str| r.phones.iter().find(|p| p.server == s).unwrap();
    let (p, b) = (by_server("10.10.10.202"), by_server("10.10.10.203"));
    assert_eq!(
        (p.role, p.expires_requested, p.expires_granted),
        ("primary", Some(3600), Some(120))
    );
    assert_eq!((b.role, b.keepalives), ("backup", 6));
    assert_eq!(b.expires_granted, None, "Expires: 0 keeps no binding");
    assert!(warnings(&r).is_empty(), "{:#?}", warnings(&r));
}

#[test]
fn a_healthy_site_of_300_phones_raises_no_warning() {
    let r = run(&mut scenario::site(300, 10));
    assert_eq!(r.summary.phone_addresses, 300);
    // 150 SCCP phones with a backup each, 150 SIP phones.
    assert_eq!(r.summary.phones, 450);
    assert!(warnings(&r).is_empty(), "{:#?}", warnings(&r));
    assert!(r.summary.packets > 2 * r.summary.matched - 1, "half the traffic is unrelated");
    let vlans: BTreeSet<Vec<u16>> = r.phones.iter().map(|p| p.vlan.clone()).collect();
    assert_eq!(vlans, BTreeSet::from([vec![], vec![110], vec![200, 110]]));
    for proto in ["sccp", "sip"] {
        let v6 = r.phones.iter().filter(|p| p.protocol == proto && p.phone.contains(':')).count();
        assert!(v6 >= 37, "a quarter of the {proto} phones are IPv6: {v6}");
    }
    for p in &r.phones {
        let primary = p.role == "primary";
        assert!(primary || p.role == "backup", "{} → {} role {}", p.phone, p.server, p.role);
        assert!(p.keepalives >= 5 && (!primary || p.acks == p.keepalives));
    }
}

// ------------------------------------------------------------------ capture file handling

#[test]
fn json_has_the_contract_fields() {
    let r = run(&mut scenario::port_security(Vantage::PhoneSide));
    let v: Value = serde_json::to_value(&r).unwrap();
    for key in ["summary", "phones", "arp", "findings"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    for key in ["packets", "matched", "phones"] {
        assert!(v["summary"][key].is_u64(), "summary.{key}");
    }
    let p = &v["phones"][0];
    for key in [
        "phone",
        "phone_port",
        "server",
        "server_port",
        "protocol",
        "vlan",
        "role",
        "device",
        "keepalives",
        "acks",
        "interval_s",
        "expires_requested",
        "expires_granted",
        "retransmissions",
        "findings",
    ] {
        assert!(p.get(key).is_some(), "phones[].{key} missing");
    }
    for key in ["median", "min", "max"] {
        assert!(p["interval_s"][key].is_f64());
    }
    assert!(
        p["retransmissions"][0]["time"].is_f64() && p["retransmissions"][0]["delay_s"].is_f64()
    );
    let f = &p["findings"][0];
    for key in ["kind", "severity", "message"] {
        assert!(f[key].is_string(), "findings[].{key}");
    }
}

#[test]
fn a_capture_cut_mid_record_is_analysed_up_to_the_cut() {
    let bytes = scenario::port_security(Vantage::PhoneSide).to_pcap();
    let cut = &bytes[..bytes.len() - 100];
    let r = analyze::bytes(cut, &Options::default()).unwrap();
    assert!(r.summary.truncated.as_deref().unwrap().contains("ends in the middle"));
    assert!(r.summary.packets > 20);
    assert_eq!(only_row(&r).expires_granted, Some(120));
}

#[test]
fn not_a_capture_is_a_clear_error() {
    let e = analyze::bytes(b"GET / HTTP/1.1\r\n", &Options::default()).unwrap_err();
    assert!(e.to_string().contains("not a pcap or pcapng"), "{e}");
    let e = analyze::bytes(&[], &Options::default()).unwrap_err();
    assert!(e.to_string().contains("not a pcap or pcapng"), "{e}");
    // A pcap header announcing a link type keepalive cannot read (802.11 = 105).
    let mut wifi = scenario::port_security(Vantage::PhoneSide).to_pcap()[..24].to_vec();
    wifi[20..24].copy_from_slice(&105u32.to_le_bytes());
    let e = analyze::bytes(&wifi, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("link type"), "{e}");
}

/// The same frames as Linux cooked capture (SLL, `tcpdump -i any`) and as pcapng with
/// nanosecond timestamps give the same phones and findings (SLL carries no destination MAC).
#[test]
fn cooked_and_pcapng_captures_read_like_ethernet() {
    use pcap_file::{
        pcap::{PcapHeader, PcapPacket, PcapWriter},
        DataLink,
    };
    let mut tl = scenario::port_security(Vantage::PhoneSide);
    let eth = run(&mut tl);
    let frames = tl.frames().to_vec();

    let header = PcapHeader {
        datalink: DataLink::LINUX_SLL,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (ts, f) in &frames {
        let mut sll = vec![0, 0, 0, 1, 0, 6];
        sll.extend_from_slice(&f[6..12]);
        sll.extend_from_slice(&[0, 0]);
        sll.extend_from_slice(&f[12..]);
        let d = std::time::Duration::from_nanos(*ts);
        w.write_packet(&PcapPacket::new(d, sll.len() as u32, &sll)).unwrap();
    }
    let sll = analyze::bytes(&w.into_writer(), &Options::default()).unwrap();

    let ng = analyze::bytes(&tl.to_pcapng(), &Options::default()).unwrap();

    for other in [&sll, &ng] {
        let (a, b) = (only_row(&eth), only_row(other));
        assert_eq!((a.keepalives, a.acks, a.vlan.clone()), (b.keepalives, b.acks, b.vlan.clone()));
        assert_eq!(kinds(a), kinds(b));
        assert_eq!(a.retransmissions.len(), b.retransmissions.len());
        assert_eq!(a.interval_s, b.interval_s, "timestamps scaled the same");
    }
}

/// Capture clocks can step backwards (NTP, merged files): time running backwards through a
/// whole capture must not break any rule's arithmetic (the fuzzer found one that did).
#[test]
fn time_running_backwards_is_survived() {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    for mut tl in
        [scenario::proxy_arp(Vantage::PhoneSide), scenario::port_security(Vantage::PhoneSide)]
    {
        let frames = tl.frames().to_vec();
        let end = frames.last().unwrap().0;
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        for (ts, f) in &frames {
            let back = std::time::Duration::from_nanos(2 * scenario::T0 - end + (end - ts));
            let back =
                back.saturating_sub(std::time::Duration::from_nanos(2 * (ts - scenario::T0)));
            w.write_packet(&PcapPacket::new(back, f.len() as u32, f)).unwrap();
        }
        let r = analyze::bytes(&w.into_writer(), &Options::default()).unwrap();
        assert_eq!(r.summary.packets as usize, frames.len());
    }
}

// ------------------------------------------------------------------------ fuzzing, bounded

/// The fuzz target's body: no bytes may make the reader, classifier, tracker or findings
/// panic. Mutations of real scenario captures reach deep (valid headers, damaged frames).
#[test]
fn mutated_captures_never_panic() {
    let seeds = [
        scenario::proxy_arp(Vantage::PhoneSide).to_pcap(),
        scenario::port_security(Vantage::ServerSide).to_pcap(),
        scenario::sip_primary_backup(2).to_pcap(),
    ];
    let mut rng = scenario::Rng::new(42);
    for i in 0..3000 {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..=rng.below(16) {
            let at = 24 + rng.below(b.len() as u64 - 24) as usize;
            match rng.below(4) {
                0 => b[at] = rng.next_u64() as u8,
                1 => b[at] ^= 1 << rng.below(8),
                2 => b.truncate(at),
                _ => b.insert(at, rng.next_u64() as u8),
            }
            if b.len() <= 24 {
                break;
            }
        }
        let _ = analyze::bytes(&b, &Options::default());
    }
}

// ------------------------------------------------------------------- tshark as an oracle

fn captures_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("KEEPALIVE_CAPTURES").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures")),
        Some(PathBuf::from("/work/shared/captures")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.join("README.md").exists());
    if found.is_none() {
        if std::env::var_os("KEEPALIVE_REQUIRE_ROOT").is_some() {
            panic!("../shared/captures not found (set KEEPALIVE_CAPTURES)");
        }
        eprintln!("skipped: ../shared/captures not found (set KEEPALIVE_CAPTURES)");
    }
    found
}

fn have_tshark(test: &str) -> bool {
    if Command::new("tshark").arg("-v").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    if std::env::var_os("KEEPALIVE_REQUIRE_ROOT").is_some() {
        panic!("{test}: tshark is required in CI (scripts/bootstrap.sh installs it)");
    }
    eprintln!("skipped {test}: tshark not installed (apt install tshark)");
    false
}

/// The `fields` of the frames of `path` matching `filter` (`extra`: more tshark arguments).
fn tshark_fields(path: &Path, filter: &str, fields: &[&str], extra: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path).args(extra).args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark {filter}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// What tshark and analyze must agree on for one capture.
fn agree_with_tshark(path: &Path, opts: &Options, ports: &str, extra: &[&str]) -> Report {
    let r = analyze::file(path, opts).unwrap();
    let sum = |proto: &str, f: fn(&PhoneRow) -> u64| -> usize {
        r.phones.iter().filter(|p| p.protocol == proto).map(|p| f(p) as usize).sum()
    };
    let name = path.display();
    let count = |filter: &str| tshark_fields(path, filter, &["frame.number"], extra).len();
    // tshark dissects only the first copy of a retransmitted segment, as analyze counts.
    type Field = fn(&PhoneRow) -> u64;
    let checks: [(&str, Field, &str); 4] = [
        ("sccp", |p| p.keepalives, "skinny.messageId == 0x0000"),
        ("sccp", |p| p.acks, "skinny.messageId == 0x0100"),
        ("sip", |p| p.keepalives, "tcp && sip.Method == \"REGISTER\""),
        (
            "sip",
            |p| p.acks,
            "tcp && sip.CSeq.method == \"REGISTER\" && sip.Status-Code >= 200 && sip.Status-Code < 300",
        ),
    ];
    for (proto, field, filter) in checks {
        assert_eq!(sum(proto, field), count(filter), "{name}: {filter}");
    }
    let retx: usize = r.phones.iter().map(|p| p.retransmissions.len()).sum();
    assert_eq!(
        retx,
        count(&format!("tcp.analysis.retransmission && tcp.port in {{{ports}}}")),
        "{name}: TCP retransmissions"
    );
    // Device names: SKINNY Register DeviceName and SIP Contact +u.sip!devicename.
    let names = tshark_fields(path, "skinny.DeviceName", &["skinny.DeviceName"], extra);
    let tshark_names: BTreeSet<&str> = names.iter().map(|n| n[0].as_str()).collect();
    let our_names: BTreeSet<&str> = r
        .phones
        .iter()
        .filter(|p| p.protocol == "sccp")
        .filter_map(|p| p.device.as_deref())
        .collect();
    assert_eq!(tshark_names, our_names, "{name}: SCCP device names");
    // ARP: the addresses tshark flags as duplicate are the ones analyze reports, with the MACs.
    let dups = tshark_fields(
        path,
        "arp.duplicate-address-detected",
        &["arp.src.proto_ipv4", "arp.src.hw_mac"],
        extra,
    );
    let tshark_ips: BTreeSet<&str> = dups.iter().map(|d| d[0].as_str()).collect();
    let ours: BTreeSet<&str> = r.arp.iter().map(|a| a.ip.as_str()).collect();
    assert_eq!(tshark_ips, ours, "{name}: addresses with several MACs");
    for d in &dups {
        let row = r.arp.iter().find(|a| a.ip == d[0]).unwrap();
        assert!(row.macs.contains(&d[1]), "{name}: {} answered for {}", d[1], d[0]);
    }
    r
}

#[test]
fn built_captures_agree_with_tshark() {
    if !have_tshark("built_captures_agree_with_tshark") {
        return;
    }
    let dir = tempdir();
    let all = [
        ("proxy-arp-phone", scenario::proxy_arp(Vantage::PhoneSide)),
        ("proxy-arp-server", scenario::proxy_arp(Vantage::ServerSide)),
        ("port-security-phone", scenario::port_security(Vantage::PhoneSide)),
        ("port-security-server", scenario::port_security(Vantage::ServerSide)),
        ("sccp-port-security-phone", scenario::sccp_port_security(Vantage::PhoneSide)),
        ("sccp-port-security-server", scenario::sccp_port_security(Vantage::ServerSide)),
        ("sccp-primary-backup", scenario::sccp_primary_backup(5)),
        ("sip-primary-backup", scenario::sip_primary_backup(4)),
        ("site", scenario::site(40, 5)),
    ];
    for (name, mut tl) in all {
        let path = dir.0.join(format!("{name}.pcap"));
        std::fs::write(&path, tl.to_pcap()).unwrap();
        agree_with_tshark(&path, &Options::default(), "2000, 2443, 5060, 5061", &[]);
    }
}

#[test]
fn real_captures_agree_with_tshark() {
    let Some(dir) = captures_dir() else { return };
    if !have_tshark("real_captures_agree_with_tshark") {
        return;
    }
    // MicroSIP registering over TCP: REGISTER (300) → 401 → REGISTER → 200 OK granting 60;
    // the proxy's 200 OK is retransmitted once (frame 38).
    let r = agree_with_tshark(
        &dir.join("sip_ipv4_tcp_retrans.pcap"),
        &Options::default(),
        "2000, 2443, 5060, 5061",
        &[],
    );
    let p = only_row(&r);
    assert_eq!(
        (p.phone.as_str(), p.phone_port, p.server.as_str()),
        ("172.168.0.252", 52795, "172.168.0.228")
    );
    assert_eq!((p.keepalives, p.acks), (2, 1));
    assert_eq!((p.expires_requested, p.expires_granted), (Some(300), Some(60)));
    assert_eq!(p.user_agent.as_deref(), Some("MicroSIP/3.14.5"));
    assert_eq!(p.retransmissions.len(), 1);
    assert_eq!(p.retransmissions[0].from, "server");
    assert!((p.retransmissions[0].delay_s.unwrap() - 0.2013).abs() < 0.001);
    assert!(warnings(&r).is_empty(), "{:#?}", warnings(&r));

    // A call, no registration: the connection never carried a keepalive, so it stays a
    // candidate (tracker::limits) and is no phone row, with nothing to say about it.
    let r = agree_with_tshark(&dir.join("sip_ipv4_tcp.pcap"), &Options::default(), "5060", &[]);
    assert!(r.phones.is_empty(), "{:?}", r.phones.iter().map(|p| &p.phone).collect::<Vec<_>>());
    assert!(r.summary.matched > 0 && warnings(&r).is_empty());

    // ~400 SIP messages on port 6060, many split across segments.
    let opts = Options {
        config: keepalive::cli::ports_config(&[parse_port_rule("sip:6060").unwrap()]).unwrap(),
        ..Options::default()
    };
    let r = agree_with_tshark(
        &dir.join("sip_ipv4_tcp_fragmented.pcap"),
        &opts,
        "6060",
        &["-d", "tcp.port==6060,sip"],
    );
    assert!(r.summary.matched > 1000);
    assert!(warnings(&r).is_empty(), "{:#?}", warnings(&r));
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A directory of its own for each caller: tests run in parallel threads of one process, and
/// one's drop must not remove another's files.
fn tempdir() -> TempDir {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("keepalive-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

/// The encapsulation builder's frames are what a mirror or a fabric sends: tshark peels case
/// study 2 wrapped in GRE, ERSPAN II, ERSPAN III and VXLAN to the same inner REGISTERs, 200 OKs
/// and retransmissions as the bare capture, and reads the session id or VNI off each frame.
#[test]
fn wrapped_captures_decode_to_the_bare_capture_s_frames_in_tshark() {
    use keepalive_lab::fixtures::{
        encap::{wrap, Encap, VXLAN_PORT},
        Eth, Net,
    };
    if !have_tshark("wrapped_captures_decode_to_the_bare_capture_s_frames_in_tshark") {
        return;
    }
    let dir = tempdir();
    let bare = dir.0.join("cs2.pcap");
    std::fs::write(&bare, scenario::port_security(Vantage::PhoneSide).to_pcap()).unwrap();
    let inner = |path: &Path| {
        let fields = ["frame.number", "tcp.seq", "tcp.analysis.retransmission", "sip.Method"];
        let rows = tshark_fields(
            path,
            "tcp.port == 5060",
            &fields,
            &["-o", "tcp.relative_sequence_numbers:FALSE"],
        );
        rows.into_iter().map(|r| r[1..].to_vec()).collect::<Vec<_>>()
    };
    let want = inner(&bare);
    assert!(want.iter().any(|r| r[2] == "REGISTER") && want.iter().any(|r| r[1] == "1"));
    let eth = Eth::new([0x02, 0, 0, 0, 0xe0, 1], [0x02, 0, 0, 0, 0xe0, 2]);
    let net = Net::between("198.51.100.1".parse().unwrap(), "198.51.100.2".parse().unwrap());
    let cases = [
        ("gre", Encap::GreEthernet { key: Some(42), seq: Some(1) }, "gre.key == 42"),
        ("gre-ip", Encap::GreIp { key: None, seq: None }, "gre.proto == 0x0800"),
        ("erspan2", Encap::ErspanII { session: 7, seq: 1, vlan: 0 }, "erspan.spanid == 7"),
        (
            "erspan3",
            Encap::ErspanIII { session: 300, seq: 1, vlan: 0, timestamp: 1 },
            "erspan.spanid == 300 && erspan.version == 2",
        ),
        ("vxlan", Encap::Vxlan { vni: 5010, port: VXLAN_PORT }, "vxlan.vni == 5010"),
    ];
    for (name, encap, outer) in cases {
        let path = dir.0.join(format!("cs2-{name}.pcap"));
        let mut tl =
            scenario::port_security(Vantage::PhoneSide).mapped(|f| wrap(&eth, &net, &encap, f));
        std::fs::write(&path, tl.to_pcap()).unwrap();
        assert_eq!(inner(&path), want, "{name}: the inner frames");
        let all = tshark_fields(&path, "frame", &["frame.number"], &[]).len();
        let tagged = tshark_fields(&path, outer, &["frame.number"], &[]).len();
        assert_eq!((tagged, all), (tl.len(), tl.len()), "{name}: {outer} on every frame");
    }
}

/// Both case studies wrapped as a remote mirror or a fabric hands them over give the bare
/// capture's rows and findings, each row naming its segment. GRE's IP payload carries no link
/// layer: its rows have no MACs, and the proxy-ARP case's ARP is not in it at all.
#[test]
fn wrapped_captures_give_the_bare_capture_s_findings() {
    use keepalive_lab::fixtures::{
        encap::{wrap, Encap, VXLAN_PORT},
        Eth, Net,
    };
    let eth = Eth::new([0x02, 0, 0, 0, 0xe0, 1], [0x02, 0, 0, 0, 0xe0, 2]);
    let net = Net::between("198.51.100.1".parse().unwrap(), "198.51.100.2".parse().unwrap());
    let cases = [
        ("gre", Encap::GreEthernet { key: Some(42), seq: Some(1) }, "gre", Some(42)),
        ("gre-ip", Encap::GreIp { key: None, seq: None }, "gre-ip", None),
        ("erspan2", Encap::ErspanII { session: 7, seq: 1, vlan: 0 }, "erspan-ii", Some(7)),
        (
            "erspan3",
            Encap::ErspanIII { session: 300, seq: 1, vlan: 0, timestamp: 1 },
            "erspan-iii",
            Some(300),
        ),
        ("vxlan", Encap::Vxlan { vni: 5010, port: VXLAN_PORT }, "vxlan", Some(5010)),
    ];
    // What a row says, less what the link layer carries.
    let gist = |p: &PhoneRow, link: bool| {
        let findings: Vec<(String, String)> = p
            .findings
            .iter()
            .filter(|f| {
                link || !matches!(
                    f.kind.as_str(),
                    "arp-multiple-responders" | "next-hop-mac-change"
                )
            })
            .map(|f| (f.kind.as_str().to_owned(), f.severity.as_str().to_owned()))
            .collect();
        let mac = if link { (p.mac.clone(), p.next_hop.clone()) } else { Default::default() };
        (p.phone.clone(), p.server.clone(), p.protocol, p.role, p.keepalives, p.acks, mac, findings)
    };
    type Study = fn() -> Timeline;
    let studies: [(&str, Study); 3] = [
        ("port security, phone side", || scenario::port_security(Vantage::PhoneSide)),
        ("port security, CUCM side", || scenario::port_security(Vantage::ServerSide)),
        ("proxy ARP, phone side", || scenario::proxy_arp(Vantage::PhoneSide)),
    ];
    for (study, timeline) in studies {
        let bare = run(&mut timeline());
        assert!(
            !bare.phones.is_empty() && !warnings(&bare).is_empty(),
            "{study}: the bare capture"
        );
        for (name, encap, encap_name, id) in cases {
            let link = name != "gre-ip";
            let got = run(&mut timeline().mapped(|f| wrap(&eth, &net, &encap, f)));
            assert_eq!(got.phones.len(), bare.phones.len(), "{study} in {name}");
            for (g, b) in got.phones.iter().zip(&bare.phones) {
                assert_eq!(gist(g, link), gist(b, link), "{study} in {name}");
                let seg = g.segment.expect("a wrapped row names its segment");
                assert_eq!((seg.encap, seg.id), (encap_name, id), "{study} in {name}");
                assert!(b.segment.is_none());
                // The findings' words are the bare capture's, apart from what the MACs said.
                if link {
                    let msgs = |p: &PhoneRow| {
                        p.findings.iter().map(|f| f.message.clone()).collect::<Vec<_>>()
                    };
                    assert_eq!(msgs(g), msgs(b), "{study} in {name}");
                }
            }
            if link {
                assert_eq!(got.arp.len(), bare.arp.len(), "{study} in {name}: ARP");
            } else {
                assert!(got.arp.is_empty(), "{study} in {name}: no ARP rides GRE's IP payload");
            }
        }
    }
}

/// The same addresses in two VXLAN segments are two phones (two tenants' address plans, or
/// the same phone seen by two ERSPAN sessions).
#[test]
fn the_same_phone_in_two_vnis_is_two_rows() {
    use keepalive_lab::fixtures::{
        encap::{wrap, Encap, VXLAN_PORT},
        Eth, Net,
    };
    let eth = Eth::new([0x02, 0, 0, 0, 0xe0, 1], [0x02, 0, 0, 0, 0xe0, 2]);
    let net = Net::between("198.51.100.1".parse().unwrap(), "198.51.100.2".parse().unwrap());
    let mut tl = scenario::port_security(Vantage::PhoneSide)
        .mapped(|f| wrap(&eth, &net, &Encap::Vxlan { vni: 5010, port: VXLAN_PORT }, f));
    tl.extend(
        scenario::port_security(Vantage::PhoneSide)
            .mapped(|f| wrap(&eth, &net, &Encap::Vxlan { vni: 5020, port: VXLAN_PORT }, f)),
    );
    let r = run(&mut tl);
    let mut vnis: Vec<Option<u32>> =
        r.phones.iter().map(|p| p.segment.and_then(|s| s.id)).collect();
    vnis.sort();
    assert_eq!(vnis, [Some(5010), Some(5020)]);
    assert_eq!(r.phones[0].phone, r.phones[1].phone);
    for p in &r.phones {
        assert!(kinds(p).contains(&"rto-growth"), "{:?}", kinds(p));
    }
    // And the table says which.
    let table = keepalive::report::table::phones_table(&r, 10).to_string();
    assert!(table.contains("vni 5010") && table.contains("vni 5020"), "{table}");
}
