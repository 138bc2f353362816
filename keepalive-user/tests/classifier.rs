//! Host tests of the shared classifier on the fixture corpus: every encapsulation, protocol
//! details, truncation at every byte, and random garbage.

use keepalive_common::{
    classify::{classify, classify_app, decide, fill, gate, peel, Decision, Outcome},
    wire::{sccp_msg, App, Config, Counters, Encap, Event, PortRule, SipKind, SIP_COPY_MAX},
};
use keepalive_lab::fixtures::{self, corpus, xorshift, Expect};

fn run(frame: &[u8]) -> (Outcome, Event) {
    let mut ev = Event::ZERO;
    let o = classify(frame, &Config::DEFAULT, &mut ev);
    (o, ev)
}

fn by_name(name: &str) -> Vec<u8> {
    corpus()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
        .frame
}

fn expect_outcome(e: Expect) -> Outcome {
    match e {
        Expect::Pass => Outcome::Pass,
        Expect::Malformed => Outcome::Malformed,
        Expect::Tcp => Outcome::Tcp,
        Expect::Arp => Outcome::Arp,
    }
}

#[test]
fn every_fixture_classifies_as_expected() {
    let c = corpus();
    assert!(c.len() >= 110, "corpus shrank to {} (44 bare fixtures, 70 wrapped)", c.len());
    for f in &c {
        let (o, _) = run(&f.frame);
        assert_eq!(o, expect_outcome(f.expect), "fixture {}", f.name);
    }
}

/// A tracked frame peeled from any encapsulation gives the bare frame's event, plus the
/// layer and its segment id; the payload offset is the whole frame's (the kernel copies SIP
/// from there). GRE's IP payloads have no link layer: no MACs and no VLAN tags.
#[test]
fn peeled_frames_give_the_bare_frame_s_event_and_their_segment() {
    let c = corpus();
    let wrappers = [
        ("gre-", Encap::GreEthernet, 0),
        ("gre-keyed-", Encap::GreEthernet, 0x0001_0203),
        ("gre-ip-", Encap::GreIp, 42),
        ("erspan2-", Encap::ErspanII, 301),
        ("erspan3-", Encap::ErspanIII, 302),
        ("vxlan-", Encap::Vxlan, 5001),
    ];
    let mut compared = 0;
    for bare in c.iter().filter(|f| matches!(f.expect, Expect::Tcp | Expect::Arp)) {
        let (_, want) = run(&bare.frame);
        if want.encap != Encap::None as u8 {
            continue;
        }
        for (prefix, encap, segment) in wrappers {
            let name = format!("{prefix}{}", bare.name);
            let Some(w) = c.iter().find(|f| f.name == name) else { continue };
            let (o, got) = run(&w.frame);
            assert_eq!(o, expect_outcome(bare.expect), "{name}");
            assert_eq!((got.encap, got.segment), (encap as u8, segment), "{name}");
            let mut expected = want;
            expected.encap = encap as u8;
            expected.segment = segment;
            if encap == Encap::GreIp {
                expected.src_mac = [0; 6];
                expected.dst_mac = [0; 6];
                expected.vlans = [0; 2];
                expected.vlan_count = 0;
            }
            if got.kind == keepalive_common::wire::EventKind::Tcp as u8 {
                // The payload offset moves by what the layers add (and, for GRE's IP payload,
                // by the link layer it dropped): it must point at the same bytes.
                expected.payload_off = got.payload_off;
                let inner = &w.frame[usize::from(got.payload_off)..];
                let bare_payload = &bare.frame[usize::from(want.payload_off)..];
                assert_eq!(inner, bare_payload, "{name}: the payload at payload_off");
            }
            assert_eq!(got, expected, "{name}");
            compared += 1;
        }
    }
    assert!(compared >= 40, "only {compared} wrapped frames compared");
}

/// Each peeled layer is counted by kind; a frame three deep passes, counted as too deep.
#[test]
fn peeled_layers_are_counted() {
    let mut counters = Counters::default();
    let count = |name: &str, counters: &mut Counters| {
        let (d, peeled) = peel(by_name(name).as_slice(), &Config::DEFAULT, counters);
        (matches!(d, Decision::Tcp(_)), peeled.layers)
    };
    assert_eq!(count("vxlan-sccp-keepalive", &mut counters), (true, 1));
    assert_eq!(count("erspan2-vxlan-sccp-keepalive", &mut counters), (true, 2));
    assert_eq!(count("erspan3-sccp-keepalive", &mut counters), (true, 1));
    assert_eq!(count("gre-ip-sccp-keepalive", &mut counters), (true, 1));
    assert_eq!(count("erspan1-sccp-keepalive", &mut counters), (true, 1));
    assert_eq!(count("three-layers-sccp-keepalive", &mut counters), (false, 2));
    assert_eq!(
        (counters.encap_vxlan, counters.encap_erspan, counters.encap_gre, counters.encap_too_deep),
        (3, 4, 2, 1)
    );
    // Not a VXLAN port: the UDP datagram is not read further.
    let mut cfg = Config::DEFAULT;
    cfg.vxlan_port = 8472;
    let (d, _) = peel(by_name("vxlan-sccp-keepalive").as_slice(), &cfg, &mut counters);
    assert_eq!(d, Decision::Skip(Outcome::Pass));
    cfg.vxlan_port = 0;
    let (d, _) = peel(by_name("vxlan-sccp-keepalive").as_slice(), &cfg, &mut counters);
    assert_eq!(d, Decision::Skip(Outcome::Pass));
}

#[test]
fn sccp_keepalive_is_the_real_twelve_bytes() {
    assert_eq!(fixtures::sccp_keepalive(), [4, 0, 0, 0, 0x16, 0, 0, 0, 0, 0, 0, 0]);
    let (_, ev) = run(&by_name("sccp-keepalive"));
    assert_eq!(ev.app, App::Sccp as u8);
    assert_eq!(ev.sccp_ids(), &[sccp_msg::KEEPALIVE]);
    assert_eq!((ev.src_port, ev.dst_port, ev.payload_len), (51234, 2000, 12));
    assert_eq!(ev.seq, 0x1000_0000);
    assert_eq!(ev.tcp_flags, 0x18);
    assert_eq!(ev.src_mac, fixtures::PHONE_MAC);
    assert_eq!(ev.dst_mac, fixtures::CUCM_MAC);
    assert_eq!(keepalive::record::addr(ev.dst_addr, ev.ip_version).to_string(), "10.10.10.202");
    assert_eq!(ev.vlan_count, 0);
    let (_, ack) = run(&by_name("sccp-keepalive-ack"));
    assert_eq!(ack.sccp_ids(), &[sccp_msg::KEEPALIVE_ACK]);
}

/// Events carry 16-bit message ids: an id of more than 16 bits is `OTHER`, never the id its
/// low half would alias (0x0001_0000 is not a KeepAlive).
#[test]
fn sccp_ids_beyond_sixteen_bits_are_other_not_aliases() {
    let mut f = by_name("sccp-keepalive");
    let id_at = f.len() - 4;
    assert_eq!(f[id_at..], [0, 0, 0, 0], "the KeepAlive's id ends the frame");
    f[id_at..].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    let (_, ev) = run(&f);
    assert_eq!(ev.sccp_ids(), &[sccp_msg::OTHER]);
    assert_eq!(keepalive::record::sccp_name(ev.sccp_ids()[0]), "other");
}

#[test]
fn two_pdus_in_one_segment_are_both_reported() {
    let (_, ev) = run(&by_name("sccp-two-pdus"));
    assert_eq!(ev.sccp_ids(), &[sccp_msg::REGISTER, sccp_msg::KEEPALIVE]);
    assert_eq!(ev.spill, 0);
}

#[test]
fn a_pdu_spilling_into_the_next_segment_is_resumed() {
    let reg = fixtures::sccp_register("SEP0024142DDF24");
    let (_, ev) = run(&by_name("sccp-pdu-spills"));
    assert_eq!(ev.sccp_ids(), &[sccp_msg::KEEPALIVE, sccp_msg::REGISTER]);
    assert_eq!(ev.spill as usize, reg.len() - 20);
    // The next segment: the rest of the Register, then a KeepAlive. Without the carried skip
    // the walk starts mid-PDU and finds nothing; with it, the KeepAlive is found.
    let e = fixtures::phone_eth();
    let net =
        fixtures::Net::between("10.10.20.31".parse().unwrap(), "10.10.10.202".parse().unwrap());
    let seg2 = fixtures::tcp_frame(
        &e,
        &net,
        &fixtures::Tcp::data(51234, 2000, 0x1000_0000 + 32, 0x2000_0000),
        &[reg[20..].to_vec(), fixtures::sccp_keepalive()].concat(),
    );
    let (_, cold) = run(&seg2);
    assert_eq!(cold.sccp_ids(), &[] as &[u16]);
    let d = decide(seg2.as_slice(), &Config::DEFAULT);
    let Decision::Tcp(m) = d else { panic!("not tcp") };
    let mut ev2 = Event::ZERO;
    assert_eq!(fill(seg2.as_slice(), &d, &mut ev2), Outcome::Tcp);
    classify_app(seg2.as_slice(), &m, ev.spill, &mut ev2);
    assert_eq!(ev2.sccp_ids(), &[sccp_msg::KEEPALIVE]);
}

#[test]
fn vlan_tags_outer_first() {
    let (_, ev) = run(&by_name("sccp-dot1q"));
    assert_eq!(&ev.vlans[..ev.vlan_count as usize], &[110]);
    let (_, ev) = run(&by_name("sccp-qinq"));
    assert_eq!(&ev.vlans[..ev.vlan_count as usize], &[3001, 110]);
    assert_eq!(ev.sccp_ids(), &[sccp_msg::KEEPALIVE]);
    let (_, ev) = run(&by_name("arp-reply-dot1q"));
    assert_eq!(&ev.vlans[..ev.vlan_count as usize], &[110]);
}

#[test]
fn ip_options_tcp_options_and_ipv6_extensions_are_skipped() {
    for name in [
        "sccp-ipv4-options",
        "sccp-tcp-options",
        "sccp-ipv6",
        "sccp-ipv6-ext-headers",
        "sccp-ipv6-first-fragment",
    ] {
        let (o, ev) = run(&by_name(name));
        assert_eq!(o, Outcome::Tcp, "{name}");
        assert_eq!(ev.sccp_ids(), &[sccp_msg::KEEPALIVE], "{name}");
        assert_eq!(ev.payload_len, 12, "{name}");
    }
    let (_, ev) = run(&by_name("sccp-ipv6-ext-headers"));
    assert_eq!(ev.ip_version, 6);
    assert_eq!(keepalive::record::addr(ev.src_addr, 6).to_string(), "2001:db8:110::31");
}

#[test]
fn ethernet_padding_is_not_payload() {
    let (o, ev) = run(&by_name("sccp-ack-padded"));
    assert_eq!(o, Outcome::Tcp);
    assert_eq!(ev.payload_len, 0);
    assert_eq!(ev.pdu_count, 0);
}

#[test]
fn sip_start_lines() {
    let (_, ev) = run(&by_name("sip-register"));
    assert_eq!(ev.sip_kind, SipKind::Register as u8);
    assert_eq!(ev.copy_len, ev.payload_len);
    let (_, ev) = run(&by_name("sip-200-ok"));
    assert_eq!((ev.sip_kind, ev.sip_status), (SipKind::Response as u8, 200));
    let (_, ev) = run(&by_name("sip-invite"));
    assert_eq!(ev.sip_kind, SipKind::OtherRequest as u8);
    let (_, ev) = run(&by_name("sip-subscribe"));
    assert_eq!(ev.sip_kind, SipKind::OtherRequest as u8);
    let (_, ev) = run(&by_name("sip-crlf-keepalive"));
    assert_eq!(ev.sip_kind, SipKind::Continuation as u8);
    let (_, a) = run(&by_name("sip-register-split-1"));
    let (_, b) = run(&by_name("sip-register-split-2"));
    assert_eq!(a.sip_kind, SipKind::Register as u8);
    assert_eq!(b.sip_kind, SipKind::Continuation as u8);
    assert_eq!(a.seq + u32::from(a.payload_len), b.seq, "split halves are contiguous");
    let (_, big) = run(&by_name("sip-register-large"));
    assert!(usize::from(big.payload_len) > SIP_COPY_MAX);
    assert_eq!(usize::from(big.copy_len), SIP_COPY_MAX);
}

#[test]
fn tls_ports_record_every_record_header() {
    use keepalive_common::wire::TlsContent::{self, *};
    let records = |name: &str| -> (Vec<(TlsContent, u16)>, u32) {
        let (_, ev) = run(&by_name(name));
        (ev.tls_records().collect(), ev.spill)
    };
    // A handshake record of 0x40 bytes of which the segment holds 4: the rest spills.
    let (_, ev) = run(&by_name("sccp-tls-handshake"));
    assert_eq!(ev.app, App::SccpTls as u8);
    assert_eq!(records("sccp-tls-handshake"), (vec![(Handshake, 0x40)], 0x40 - 4));
    let (_, ev) = run(&by_name("sip-tls-appdata"));
    assert_eq!(ev.app, App::SipTls as u8);
    assert_eq!(records("sip-tls-appdata"), (vec![(ApplicationData, 0x210)], 0x210 - 2));
    // Both records of a segment, each 12 bytes of SCCP + 24 of AES-GCM.
    assert_eq!(
        records("sccp-tls-two-records"),
        (vec![(ApplicationData, 36), (ApplicationData, 36)], 0)
    );
    assert_eq!(records("sccp-tls-ccs-finished"), (vec![(ChangeCipherSpec, 1), (Handshake, 40)], 0));
    assert_eq!(records("sip-tls-spanning"), (vec![(ApplicationData, 3000)], 2000));
    assert_eq!(records("sccp-tls-not-a-record"), (vec![], 0));
    // The SCCP view of a TLS event is not read as message ids.
    let (_, ev) = run(&by_name("sccp-tls-two-records"));
    let j = serde_json::to_value(keepalive::record::EventJson::new(&ev)).unwrap();
    assert_eq!(j["tcp"]["tls"][1]["len"], 36);
    assert!(j["tcp"].get("sccp").is_none(), "{j}");
}

#[test]
fn tls_records_resume_after_a_spanning_record() {
    // A 3000-byte record over three segments, then a KeepAlive record: the walk skips the
    // record's remaining bytes and finds the KeepAlive's header in the third segment.
    let big = keepalive_lab::fixtures::tls_record(23, 3000, 9);
    let ka =
        keepalive_lab::fixtures::TlsVersion::Tls13.seal(&keepalive_lab::fixtures::sccp_keepalive());
    let stream = [big, ka].concat();
    let cuts = [0, 1400, 2800, stream.len()];
    let frames: Vec<Vec<u8>> = cuts
        .windows(2)
        .map(|w| {
            fixtures::tcp_frame(
                &fixtures::Eth::new(fixtures::PHONE_MAC, fixtures::CUCM_MAC),
                &fixtures::Net::between(
                    "10.10.20.31".parse().unwrap(),
                    "10.10.10.202".parse().unwrap(),
                ),
                &fixtures::Tcp::data(51235, 2443, 1000 + w[0] as u32, 1),
                &stream[w[0]..w[1]],
            )
        })
        .collect();
    let mut probe = keepalive::source::offline::HostProbe::new(Config::DEFAULT);
    let got: Vec<Vec<u16>> = frames
        .iter()
        .map(|f| {
            let frame = keepalive::source::capture::Frame { ts_ns: 0, ifindex: 0, data: f };
            let rec = probe.process(&frame).expect("a TLS segment");
            rec.event.tls_records().map(|t| t.1).collect()
        })
        .collect();
    assert_eq!(got, vec![vec![3000], vec![], vec![29]]);
}

#[test]
fn arp_both_hardware_addresses() {
    let (o, ev) = run(&by_name("arp-reply-asa"));
    assert_eq!(o, Outcome::Arp);
    assert_eq!(ev.arp_op, 2);
    assert_eq!(ev.arp_sha, fixtures::ASA_MAC);
    assert_eq!(ev.arp_tha, fixtures::PHONE_MAC);
    assert_eq!(keepalive::record::addr(ev.src_addr, 4).to_string(), "10.10.10.202");
}

#[test]
fn custom_ports_replace_the_defaults() {
    let mut cfg = Config::DEFAULT;
    cfg.ports[0].port = 2001;
    let mut ev = Event::ZERO;
    assert_eq!(classify(by_name("sccp-keepalive").as_slice(), &cfg, &mut ev), Outcome::Pass);
}

/// Every prefix of every fixture: no panic, and nothing claimed that the bytes do not hold.
#[test]
fn truncation_at_every_byte_is_clean() {
    for f in corpus() {
        let (_, full) = run(&f.frame);
        for cut in 0..f.frame.len() {
            let (o, ev) = run(&f.frame[..cut]);
            match o {
                Outcome::Pass | Outcome::Malformed => {}
                Outcome::Tcp | Outcome::Arp => {
                    assert_eq!(o, expect_outcome(f.expect), "{} cut at {cut}", f.name);
                    let ids = ev.sccp_ids();
                    assert!(ids.len() <= full.sccp_ids().len(), "{} cut at {cut}", f.name);
                    assert_eq!(ids, &full.sccp_ids()[..ids.len()], "{} cut at {cut}", f.name);
                    assert!(
                        ev.copy_len == 0
                            || usize::from(ev.payload_off) + usize::from(ev.copy_len) <= cut
                    );
                }
            }
        }
    }
}

/// Deterministic pseudo-random frames, and random bytes behind valid headers.
#[test]
fn random_garbage_never_panics() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|f| f.frame).collect();
    for i in 0..200_000 {
        let len = (next() % 200) as usize;
        let frame: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| next() as u8).collect()
        } else {
            // Mutate a real frame: flip a few bytes anywhere.
            let mut fr = seeds[(next() as usize) % seeds.len()].clone();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % fr.len();
                fr[at] = next() as u8;
            }
            fr
        };
        let (o, ev) = run(&frame);
        if o == Outcome::Tcp {
            assert!(usize::from(ev.pdu_count) <= ev.pdus.len());
            assert!(
                ev.copy_len == 0
                    || usize::from(ev.payload_off) + usize::from(ev.copy_len) <= frame.len()
            );
        }
    }
}

/// The gate's contract: what it turns away, the classifier passes. Checked for the default
/// ports and for custom ones, on every fixture, every truncation of one, and mutated and random
/// frames; and it does turn away the unrelated fixtures (a gate that let everything through
/// would keep the contract and be useless).
#[test]
fn the_gate_turns_away_only_what_the_classifier_passes() {
    let mut custom = Config::DEFAULT;
    custom.set_ports(&[PortRule { port: 2001, app: App::Sccp as u8, _pad: 0 }]);
    custom.vxlan_port = 0;
    let keeps = |frame: &[u8], cfg: &Config, what: &str| {
        if !gate(frame, cfg) {
            assert_eq!(decide(frame, cfg), Decision::Skip(Outcome::Pass), "{what}");
        }
    };
    let mut turned_away = 0;
    for f in corpus() {
        for cfg in [&Config::DEFAULT, &custom] {
            for cut in 0..=f.frame.len() {
                keeps(&f.frame[..cut], cfg, &format!("{} cut at {cut}", f.name));
            }
        }
        if f.expect != Expect::Pass {
            assert!(gate(f.frame.as_slice(), &Config::DEFAULT), "{} must pass the gate", f.name);
        } else if !gate(f.frame.as_slice(), &Config::DEFAULT) {
            turned_away += 1;
        }
    }
    for name in ["other-tcp-https", "other-udp-sip", "other-udp-ipv6"] {
        assert!(!gate(by_name(name).as_slice(), &Config::DEFAULT), "{name} is turned away");
    }
    // The SCCP port is not tracked under the custom rules, 2001 is.
    let mut moved = by_name("sccp-keepalive");
    assert!(!gate(moved.as_slice(), &custom));
    let at = moved.windows(2).position(|w| w == 2000u16.to_be_bytes()).unwrap();
    moved[at..at + 2].copy_from_slice(&2001u16.to_be_bytes());
    assert!(gate(moved.as_slice(), &custom));
    assert!(turned_away >= 3, "{turned_away} unrelated fixtures turned away");

    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|f| f.frame).collect();
    for i in 0..200_000 {
        let mut fr = seeds[(next() as usize) % seeds.len()].clone();
        if i % 4 == 0 {
            let len = (next() as usize) % (fr.len() + 1);
            fr.truncate(len);
        }
        for _ in 0..(1 + next() % 3) {
            if fr.is_empty() {
                break;
            }
            let at = (next() as usize) % fr.len().min(80);
            fr[at] = next() as u8;
        }
        keeps(&fr, &Config::DEFAULT, &format!("mutation {i}: {fr:02x?}"));
        keeps(&fr, &custom, &format!("mutation {i} (custom ports): {fr:02x?}"));
    }
}
