//! Secure phones (SCCP over TLS on 2443, SIP over TLS on 5061): keepalives inferred from record
//! sizes, timing and answers (`tracker::tls`), on captures built here from both vantage
//! points, TLS 1.2 and 1.3, with tshark as the oracle for the record headers.

use std::{collections::BTreeMap, process::Command};

use keepalive::{
    findings::Severity,
    report::PhoneRow,
    source::{capture::Frame, offline::HostProbe},
};
use keepalive_common::wire::Config;
use keepalive_lab::fixtures::{
    scenario::{self, Timeline, Vantage},
    TlsVersion,
};

mod common;
use common::report::{finding, kinds, only_row, run, warnings};

const VERSIONS: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

/// The keepalive record's length: 12 bytes of SCCP plus the cipher's overhead.
fn sccp_record(v: TlsVersion) -> u64 {
    12 + v.overhead() as u64
}

#[test]
fn secure_sccp_keepalives_losing_their_first_copy_are_rto_growth_from_either_side() {
    for v in VERSIONS {
        for (vantage, evidence) in
            [(Vantage::PhoneSide, "retransmission"), (Vantage::ServerSide, "lateness")]
        {
            let what = format!("{v:?} {vantage:?}");
            let r = run(&mut scenario::sccp_tls_port_security(vantage, v));
            let p = only_row(&r);
            assert_eq!((p.protocol, p.role, p.keepalives, p.acks), ("sccp-tls", "primary", 8, 8));
            let tls = p.tls.as_ref().expect("a TLS row has its inference");
            assert_eq!(tls.state, "learned", "{what}");
            assert_eq!(tls.keepalive_record_bytes.map(u64::from), Some(sccp_record(v)), "{what}");
            assert_eq!(tls.answer_record_bytes.map(u64::from), Some(sccp_record(v)), "{what}");
            let period = tls.learned_period_s.unwrap();
            assert!((29.9..30.3).contains(&period), "{what}: period {period}");
            let g = finding(p, "rto-growth");
            assert_eq!(g.fields["evidence"], evidence, "{what}");
            let factor = g.fields["factor"].as_f64().unwrap();
            assert!((1.9..=2.1).contains(&factor), "{what}: factor {factor}");
            assert_eq!(g.fields["cycles_to_unregister"], 3, "{what}");
            assert_eq!(g.fields["inferred_from"], "tls-record-timing");
            assert!(g.message.contains("inferred from record timing"), "{}", g.message);
            assert_eq!(finding(p, "first-transmission-loss").fields["evidence"], evidence);
            assert!(!kinds(p).contains(&"unanswered-keepalive"), "{what}: all were answered");
            let interval = p.interval_s.unwrap();
            assert!((29.9..30.1).contains(&interval.min), "{what}: {interval:?}");
        }
    }
}

#[test]
fn secure_sip_refreshes_with_case_study_2_are_rto_growth_without_expires() {
    for v in VERSIONS {
        for (vantage, evidence) in
            [(Vantage::PhoneSide, "retransmission"), (Vantage::ServerSide, "lateness")]
        {
            let what = format!("{v:?} {vantage:?}");
            let r = run(&mut scenario::sip_tls_port_security(vantage, v));
            let p = only_row(&r);
            assert_eq!((p.protocol, p.role, p.keepalives, p.acks), ("sip-tls", "primary", 8, 8));
            assert_eq!((p.expires_requested, p.expires_granted), (None, None), "{what}");
            let tls = p.tls.as_ref().unwrap();
            assert_eq!(tls.state, "learned", "{what}");
            let period = tls.learned_period_s.unwrap();
            assert!((115.0..115.1).contains(&period), "{what}: period {period}");
            let g = finding(p, "rto-growth");
            assert_eq!(g.fields["evidence"], evidence, "{what}");
            let factor = g.fields["factor"].as_f64().unwrap();
            assert!((1.9..=2.1).contains(&factor), "{what}: factor {factor}");
            // 6.72 → 13.44 (< 15 s grace) → 26.88: two more refreshes, as in the clear.
            assert_eq!(g.fields["cycles_to_unregister"], 2, "{what}");
            assert_eq!(g.severity, Severity::Critical);
            assert!(g.message.contains("REGISTER"), "{}", g.message);
        }
    }
}

#[test]
fn secure_proxy_arp_is_an_unanswered_keepalive_to_the_wrong_mac() {
    for v in VERSIONS {
        let r = run(&mut scenario::sccp_tls_proxy_arp(Vantage::PhoneSide, v));
        let p = only_row(&r);
        assert_eq!((p.protocol, p.role, p.keepalives, p.acks), ("sccp-tls", "primary", 15, 14));
        let un = finding(p, "unanswered-keepalive");
        assert_eq!(un.severity, Severity::Critical);
        assert_eq!(un.fields["copies"], 4, "the KeepAlive and 3 retransmissions");
        assert!(un.message.contains("proxy ARP"), "{}", un.message);
        assert_eq!(finding(p, "next-hop-mac-change").fields["to"], "f4:0f:1b:1e:26:a9");
        finding(p, "reconnect");
        finding(p, "arp-multiple-responders");
    }
}

#[test]
fn healthy_secure_phones_and_their_backups_stay_clean_through_calls() {
    for v in VERSIONS {
        let r = run(&mut scenario::sccp_tls_primary_backup(10, v));
        assert_eq!(warnings(&r), Vec::<String>::new(), "{v:?}");
        let by_server = |s: &str| r.phones.iter().find(|p| p.server == s).unwrap();
        let (p, b) = (by_server("10.10.10.202"), by_server("10.10.10.203"));
        assert_eq!((p.role, p.keepalives, p.acks), ("primary", 20, 20), "{v:?}");
        assert_eq!((b.role, b.keepalives, b.acks), ("backup", 10, 0), "{v:?}");
        let interval = b.interval_s.unwrap();
        assert!((59.9..60.1).contains(&interval.median), "{interval:?}");
        // The calls' records (one of them a KeepAlive's size) are not keepalives.
        let tls = p.tls.as_ref().unwrap();
        assert!(tls.other_records >= 3 * 6, "{tls:?}");
        assert!(p.findings.is_empty() && b.findings.is_empty());

        let r = run(&mut scenario::sip_tls_primary_backup(6, v));
        assert_eq!(warnings(&r), Vec::<String>::new(), "{v:?}");
        for p in &r.phones {
            assert_eq!((p.protocol, p.keepalives, p.acks), ("sip-tls", 6, 6), "{v:?}");
            assert!(p.findings.is_empty(), "{:?}", p.findings);
        }
    }
}

#[test]
fn a_secure_phone_is_learning_until_three_regular_records() {
    let mut tl = scenario::sccp_tls_port_security(Vantage::PhoneSide, TlsVersion::Tls12);
    // The handshake, the Register and two KeepAlives 30 s apart: no period yet.
    let end = scenario::T0 + 61 * scenario::S;
    let frames: Vec<(u64, Vec<u8>)> =
        tl.frames().iter().filter(|(t, _)| *t < end).cloned().collect();
    let mut cut = Timeline::default();
    for (t, f) in frames {
        cut.push(t, f);
    }
    let r = run(&mut cut);
    let p = only_row(&r);
    assert_eq!(p.tls.as_ref().unwrap().state, "learning");
    assert_eq!((p.keepalives, p.acks, p.role), (0, 0, "unknown"));
    assert!(p.findings.is_empty());
    let mut table = Vec::new();
    keepalive::report::table::write(&r, &mut table).unwrap();
    assert!(String::from_utf8_lossy(&table).contains("learning"));
    // The JSON carries the state; clear-text rows carry no `tls`.
    let j = serde_json::to_value(&r.phones).unwrap();
    assert_eq!(j[0]["tls"]["state"], "learning");
    let clear = run(&mut scenario::sccp_port_security(Vantage::PhoneSide));
    assert!(serde_json::to_value(&clear.phones).unwrap()[0].get("tls").is_none());
}

#[test]
fn a_healthy_site_with_secure_phones_raises_no_warning() {
    let r = run(&mut scenario::site_mixed(300, 10, 3));
    let tls: Vec<&PhoneRow> = r.phones.iter().filter(|p| p.protocol.ends_with("-tls")).collect();
    assert!(tls.len() >= 70, "{} TLS rows", tls.len());
    assert!(tls.iter().all(|p| p.tls.as_ref().unwrap().state == "learned"));
    assert!(tls.iter().all(|p| p.keepalives >= 5), "every TLS phone has keepalives");
    assert_eq!(warnings(&r), Vec::<String>::new());
}

/// tshark's TLS dissector reads the same record headers, frame by frame, as the classifier
/// (content types and lengths), on every built TLS capture. A retransmitted segment is not
/// dissected again by tshark, so only first copies are compared.
#[test]
fn tls_record_headers_agree_with_tshark() {
    if Command::new("tshark").arg("-v").output().is_err() {
        assert!(
            std::env::var_os("KEEPALIVE_REQUIRE_ROOT").is_none(),
            "tshark is required in CI (scripts/bootstrap.sh installs it)"
        );
        eprintln!("skipped: tshark not installed (apt install tshark)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("keepalive-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for v in VERSIONS {
        let all = [
            ("sccp-port-security-phone", scenario::sccp_tls_port_security(Vantage::PhoneSide, v)),
            ("sip-port-security-server", scenario::sip_tls_port_security(Vantage::ServerSide, v)),
            ("sccp-primary-backup", scenario::sccp_tls_primary_backup(5, v)),
            ("sip-primary-backup", scenario::sip_tls_primary_backup(3, v)),
        ];
        for (name, mut tl) in all {
            let path = dir.join(format!("{name}-{v:?}.pcap"));
            std::fs::write(&path, tl.to_pcap()).unwrap();
            let out = Command::new("tshark")
                .args(["-n", "-r"])
                .arg(&path)
                .args(["-d", "tcp.port==2443,tls", "-d", "tcp.port==5061,tls"])
                .args(["-Y", "tls && !tcp.analysis.retransmission", "-T", "fields"])
                .args(["-e", "frame.number", "-e", "tls.record.content_type"])
                .args(["-e", "tls.record.length", "-E", "aggregator=;"])
                .output()
                .expect("run tshark");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let theirs: BTreeMap<usize, Vec<(u8, u16)>> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    let types = f[1].split(';').map(|t| t.parse().unwrap());
                    let lens = f[2].split(';').map(|t| t.parse().unwrap());
                    (f[0].parse().unwrap(), types.zip(lens).collect())
                })
                .collect();
            let mut probe = HostProbe::new(Config::DEFAULT);
            let mut ours = BTreeMap::new();
            for (i, (ts, data)) in tl.frames().iter().enumerate() {
                let Some(rec) = probe.process(&Frame { ts_ns: *ts, ifindex: 0, data }) else {
                    continue;
                };
                let records: Vec<(u8, u16)> =
                    rec.event.tls_records().map(|(c, len)| (c as u8 + 20, len)).collect();
                if theirs.contains_key(&(i + 1)) {
                    ours.insert(i + 1, records);
                }
            }
            assert!(theirs.len() >= 15, "{name} {v:?}: {} frames", theirs.len());
            assert_eq!(ours, theirs, "{name} {v:?}");
            let data = theirs.values().flatten().filter(|r| r.0 == 23).count();
            assert!(data > 10, "{name} {v:?}: {data} application-data records");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A secure SCCP phone on a connection of its own, built keepalive by keepalive.
fn phone_on(port: u16, v: TlsVersion, isn: u32) -> scenario::Conn {
    let phone = scenario::Host { mac: scenario::phone_mac(7), ip: "10.20.0.7".parse().unwrap() };
    let mut c = scenario::Conn::new(phone, scenario::cucm(), port, 2443, isn);
    c.tls = Some(v);
    c
}

#[test]
fn a_new_tls_session_with_another_cipher_is_learned_again() {
    use keepalive_lab::fixtures::{sccp_keepalive, sccp_keepalive_ack};
    use scenario::{MS, S, T0};
    let mut tl = Timeline::default();
    let mut now = T0;
    for (k, (port, v)) in
        [(49_007, TlsVersion::Tls12), (49_008, TlsVersion::Tls13)].into_iter().enumerate()
    {
        let mut c = phone_on(port, v, 7 + k as u32);
        c.open(&mut tl, now);
        for _ in 0..6 {
            now += 30 * S;
            c.phone_send(&mut tl, now, &sccp_keepalive(), &[], false);
            c.server_send(&mut tl, now + 2 * MS, &sccp_keepalive_ack());
        }
        c.phone_reset(&mut tl, now + S);
        now += 2 * S;
    }
    let r = run(&mut tl);
    let p = only_row(&r);
    let tls = p.tls.as_ref().unwrap();
    assert_eq!(tls.keepalive_record_bytes.map(u64::from), Some(sccp_record(TlsVersion::Tls13)));
    // The first session's six, and the second's once learned again (three regular records
    // after three periods without the old size).
    assert!((9..=12).contains(&p.keepalives), "{} keepalives", p.keepalives);
    assert_eq!(p.acks, p.keepalives);
    assert!(!kinds(p).contains(&"unanswered-keepalive"), "{:?}", p.findings);
}

#[test]
fn a_burst_of_same_size_records_is_not_a_period() {
    use keepalive_lab::fixtures::sccp_keepalive;
    use scenario::{MS, T0};
    let mut tl = Timeline::default();
    let mut c = phone_on(49_009, TlsVersion::Tls12, 9);
    c.open(&mut tl, T0);
    // Twelve records of a KeepAlive's size, 250 ms apart, each acknowledged: signalling, not
    // a timer (a period is at least 5 s).
    for i in 0..12 {
        let t = T0 + 10 * MS + i * 250 * MS;
        c.phone_send(&mut tl, t, &sccp_keepalive(), &[], false);
        c.server_ack(&mut tl, t + MS);
    }
    let r = run(&mut tl);
    let p = only_row(&r);
    assert_eq!(p.tls.as_ref().unwrap().state, "learning");
    assert_eq!(p.keepalives, 0);
}

/// A TLS 1.3 backup whose session ticket arrives just after the first KeepAlive (a phone that
/// completes the handshake with its first write, as rustls and OpenSSL clients do): the lone
/// record of another size answers nothing, and the row stays a backup.
#[test]
fn a_session_ticket_after_the_first_keepalive_does_not_make_a_backup_primary() {
    use keepalive_lab::fixtures::{sccp_keepalive, tls_content, tls_record};
    use scenario::{MS, S, T0};
    let mut tl = Timeline::default();
    let mut c = phone_on(49_010, TlsVersion::Tls13, 10);
    c.open(&mut tl, T0);
    let mut now = T0;
    for k in 0..6 {
        now += 60 * S;
        c.phone_send(&mut tl, now, &sccp_keepalive(), &[], false);
        if k == 0 {
            // Not through `Conn::server_send`, which would seal it as a message.
            let ticket = tls_record(tls_content::APPLICATION_DATA, 233, 77);
            c.server_raw(&mut tl, now + 2 * MS, &ticket);
        } else {
            c.server_ack(&mut tl, now + MS);
        }
    }
    let r = run(&mut tl);
    let p = only_row(&r);
    assert_eq!((p.role, p.keepalives, p.acks), ("backup", 6, 0), "{:?}", p.tls);
    assert!(p.findings.is_empty(), "{:?}", p.findings);
}

/// A CUCM that sends what it had queued before each of the first KeepAliveAcks (the answers to
/// the phone's requests, call signalling): the ack still answers its KeepAlive while the pair
/// learns, and a row whose every KeepAlive was acknowledged gets no finding.
#[test]
fn queued_server_records_before_the_ack_do_not_hide_it_while_learning() {
    use keepalive_lab::fixtures::{sccp_keepalive, sccp_keepalive_ack, sccp_pdu};
    use scenario::{MS, S, T0};
    for v in VERSIONS {
        let mut tl = Timeline::default();
        let mut c = phone_on(49_011, v, 11);
        c.open(&mut tl, T0);
        let mut now = T0;
        for k in 0..6u64 {
            now += 30 * S;
            c.phone_send(&mut tl, now, &sccp_keepalive(), &[], false);
            if k < 3 {
                // Three queued records of other sizes, then the ack; the third KeepAlive gets
                // the same three as the first, so two of the three learned share them too.
                let q = if k == 2 { 0 } else { k as usize * 8 };
                for (i, len) in [256 + q, 784 + q, 88 + q].into_iter().enumerate() {
                    c.server_send(
                        &mut tl,
                        now + (i as u64 + 1) * MS / 4,
                        &sccp_pdu(0x0108, &vec![0; len]),
                    );
                }
            }
            c.server_send(&mut tl, now + MS, &sccp_keepalive_ack());
            c.phone_ack(&mut tl, now + 2 * MS);
        }
        let r = run(&mut tl);
        let p = only_row(&r);
        assert_eq!((p.role, p.keepalives, p.acks), ("primary", 6, 6), "{v:?}: {:?}", p.tls);
        assert_eq!(
            p.tls.as_ref().unwrap().answer_record_bytes.map(u64::from),
            Some(sccp_record(v))
        );
        assert!(p.findings.is_empty(), "{v:?}: {:?}", p.findings);
    }
}
