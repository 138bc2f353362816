//! Kernel tests (root): the real XDP object under BPF_PROG_TEST_RUN. The program must emit
//! exactly the event the host classifier computes for the same bytes — for every fixture and
//! every truncation of it — return the right verdict in both modes, and move its counters.

mod common;

use keepalive::{
    loader::{Hook, LoadOptions, Probe, PROGRAM, TAIL_PROGRAMS, TC_PROGRAM, TC_TAIL_PROGRAMS},
    record::Record,
    source::rings::EventRings,
};
use keepalive_common::{
    classify::{classify, gate, Outcome},
    wire::{sccp_msg, App, Config, Event},
};
use keepalive_lab::fixtures::{self, corpus, Expect};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// BPF_PROG_TEST_RUN rejects XDP input shorter than an Ethernet header.
const MIN_TEST_RUN_LEN: usize = 14;

fn load(config: Config) -> (Probe, EventRings) {
    load_with(LoadOptions { config, flow_capacity: 1024, flow_capacity_v6: 1024, ..small_rings() })
}

/// Rings of 1 024 events and 64 payloads per CPU.
fn small_rings() -> LoadOptions {
    LoadOptions { event_slots_log2: 10, payload_slots_log2: 6, ..LoadOptions::default() }
}

fn load_with(opts: LoadOptions) -> (Probe, EventRings) {
    let probe = Probe::load(&opts).expect("load the XDP object");
    let rings = probe.rings().expect("map the event rings");
    (probe, rings)
}

fn drain(rings: &mut EventRings) -> Vec<Record> {
    let mut out = Vec::new();
    rings.drain(&mut out, usize::MAX);
    assert_eq!(rings.bad_records, 0, "well-formed records");
    out
}

fn host(frame: &[u8]) -> (Outcome, Event) {
    let mut ev = Event::ZERO;
    let o = classify(frame, &Config::DEFAULT, &mut ev);
    (o, ev)
}

/// Runs `frame` once in the kernel; returns the verdict and the records it emitted, with the
/// run-specific fields (time, interface) zeroed.
fn kernel(probe: &mut Probe, ring: &mut EventRings, frame: &[u8]) -> (u32, Vec<Record>) {
    kernel_on(PROGRAM, probe, ring, frame)
}

/// [`kernel`] with program `program` (the XDP one or the tc one).
fn kernel_on(
    program: &'static str,
    probe: &mut Probe,
    ring: &mut EventRings,
    frame: &[u8],
) -> (u32, Vec<Record>) {
    probe.clear_flows().expect("clear flows");
    let (verdict, _) = probe
        .test_run(program, frame, 1)
        .unwrap_or_else(|e| panic!("test run of {program} on {} bytes: {e}", frame.len()));
    let mut recs = drain(ring);
    for r in &mut recs {
        assert!(r.event.ts_ns > 0, "the kernel stamps events");
        r.event.ts_ns = 0;
        r.event.ifindex = 0;
    }
    (verdict, recs)
}

fn assert_same(name: &str, frame: &[u8], probe: &mut Probe, ring: &mut EventRings) {
    assert_same_on((PROGRAM, XDP_PASS), name, frame, probe, ring);
}

/// Whether BPF_PROG_TEST_RUN refuses `frame` for a tc program: bpf_prog_test_run_skb wants
/// the whole IPv4 or IPv6 header behind an Ethernet header of that type (EINVAL otherwise).
/// Those cuts are the XDP test's; a real skb at tc ingress has its IP header.
fn tc_test_run_refuses(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => frame.len() < 14 + 20,
        Some([0x86, 0xdd]) => frame.len() < 14 + 40,
        _ => frame.len() < 14,
    }
}

/// tc's verdict for "go on": `TC_ACT_UNSPEC` (−1), tcx's `TCX_NEXT`.
const TC_NEXT: u32 = u32::MAX;

/// [`assert_same`] for `program` and its pass verdict.
fn assert_same_on(
    (program, pass): (&'static str, u32),
    name: &str,
    frame: &[u8],
    probe: &mut Probe,
    ring: &mut EventRings,
) {
    let (o, ev) = host(frame);
    let (verdict, recs) = kernel_on(program, probe, ring, frame);
    assert_eq!(verdict, pass, "{name}: verdict");
    match o {
        Outcome::Tcp | Outcome::Arp => {
            assert_eq!(recs.len(), 1, "{name}: one event for a match");
            assert_eq!(recs[0].event, ev, "{name}: kernel event differs from host classifier");
            let off = usize::from(ev.payload_off);
            let want = &frame[off.min(frame.len())..][..usize::from(ev.copy_len)];
            assert_eq!(recs[0].payload, want, "{name}: copied SIP payload");
        }
        Outcome::Pass | Outcome::Malformed => {
            assert!(recs.is_empty(), "{name}: no event for {o:?}, got {recs:?}")
        }
    }
}

#[test]
fn kernel_events_equal_host_classifier_for_every_fixture_and_truncation() {
    if !common::have_root("kernel_events_equal_host_classifier") {
        return;
    }
    let (mut probe, mut ring) = load(Config::DEFAULT);
    let mut runs = 0;
    for f in corpus() {
        assert_same(f.name, &f.frame, &mut probe, &mut ring);
        for cut in MIN_TEST_RUN_LEN..f.frame.len() {
            assert_same(
                &format!("{} cut at {cut}", f.name),
                &f.frame[..cut],
                &mut probe,
                &mut ring,
            );
            runs += 1;
        }
    }
    assert!(runs > 3000, "only {runs} truncations ran");
}

/// The tc hook's program (`--hook tc`) is the same logic on an skb: the same events as the host
/// classifier (and so as the XDP program) on every fixture, tunnels included, and every
/// truncation, with tcx's "next" as its verdict.
#[test]
fn tc_hook_events_equal_host_classifier_for_every_fixture_and_truncation() {
    if !common::have_root("tc_hook_events_equal_host_classifier") {
        return;
    }
    let (mut probe, mut ring) = load_with(LoadOptions {
        flow_capacity: 1024,
        flow_capacity_v6: 1024,
        hook: Hook::Tc,
        ..small_rings()
    });
    let mut runs = 0;
    for f in corpus() {
        let on = (TC_PROGRAM, TC_NEXT);
        assert_same_on(on, f.name, &f.frame, &mut probe, &mut ring);
        for cut in MIN_TEST_RUN_LEN..f.frame.len() {
            if tc_test_run_refuses(&f.frame[..cut]) {
                continue;
            }
            let name = format!("{} cut at {cut}", f.name);
            assert_same_on(on, &name, &f.frame[..cut], &mut probe, &mut ring);
            runs += 1;
        }
    }
    assert!(runs > 3000, "only {runs} truncations ran");
    // Mirror mode drops at tc too (TC_ACT_SHOT).
    let mut cfg = Config::DEFAULT;
    cfg.flags |= Config::FLAG_MIRROR;
    let (mut probe, mut ring) =
        load_with(LoadOptions { config: cfg, hook: Hook::Tc, ..small_rings() });
    let f = corpus().into_iter().find(|f| f.name == "sccp-keepalive").unwrap();
    let (verdict, recs) = kernel_on(TC_PROGRAM, &mut probe, &mut ring, &f.frame);
    assert_eq!((verdict, recs.len()), (2, 1), "TC_ACT_SHOT after recording");
}

/// Fixtures the gate lets through to the classifier, by the host's gate.
fn through_gate(c: &[fixtures::Fixture]) -> u64 {
    c.iter().filter(|f| gate(f.frame.as_slice(), &Config::DEFAULT)).count() as u64
}

#[test]
fn mirror_mode_drops_everything_after_recording() {
    if !common::have_root("mirror_mode_drops_everything_after_recording") {
        return;
    }
    let mut cfg = Config::DEFAULT;
    cfg.flags |= Config::FLAG_MIRROR;
    let (mut probe, mut ring) = load(cfg);
    for f in corpus() {
        let (verdict, recs) = kernel(&mut probe, &mut ring, &f.frame);
        assert_eq!(verdict, XDP_DROP, "{}", f.name);
        let want = usize::from(matches!(f.expect, Expect::Tcp | Expect::Arp));
        assert_eq!(recs.len(), want, "{}: recorded before the drop", f.name);
    }
    let c = probe.counters().unwrap();
    assert_eq!(c.mirror_drops, through_gate(&corpus()));
}

#[test]
fn counters_account_for_every_frame() {
    if !common::have_root("counters_account_for_every_frame") {
        return;
    }
    let (mut probe, mut ring) = load(Config::DEFAULT);
    let c = corpus();
    for f in &c {
        kernel(&mut probe, &mut ring, &f.frame);
    }
    let n = |e: Expect| c.iter().filter(|f| f.expect == e).count() as u64;
    let k = probe.counters().unwrap();
    // The gate counts nothing: `seen` is what it let through, and it turned the unrelated
    // fixtures away.
    assert_eq!(k.seen, through_gate(&c));
    assert!(k.seen < c.len() as u64);
    assert_eq!(k.matched_tcp, n(Expect::Tcp));
    assert_eq!(k.matched_arp, n(Expect::Arp));
    assert_eq!(k.parse_errors, n(Expect::Malformed));
    assert_eq!(k.events, n(Expect::Tcp) + n(Expect::Arp));
    assert_eq!(k.ringbuf_full, 0);
    // Flows are cleared before each fixture, and only a segment with payload creates one.
    let with_payload =
        c.iter().filter(|f| f.expect == Expect::Tcp && host(&f.frame).1.payload_len > 0).count();
    assert!(with_payload > 0 && (with_payload as u64) < n(Expect::Tcp));
    assert_eq!(k.flows_created, with_payload as u64);
}

/// A SYN flood from spoofed sources leaves the flow maps alone: a bare SYN creates no flow
/// entry, so a phone's flow (with its SCCP resume state) is never evicted by one; and when the
/// agent falls behind, the flood's events are shed before the ring is full, so the phone's
/// KeepAlive still gets in.
#[test]
fn a_syn_flood_creates_no_flows_and_evicts_no_phone() {
    if !common::have_root("a_syn_flood_creates_no_flows_and_evicts_no_phone") {
        return;
    }
    // A map of 1 024 flows (each CPU's LRU list holds a share), against 20 000 SYNs.
    let (mut probe, _rings) = load(Config::DEFAULT);
    new_flow(&mut probe, 40_000);
    let phone = corpus().into_iter().find(|f| f.name == "sccp-keepalive").unwrap().frame;
    let key = host(&phone).1.flow_key();
    let key = keepalive_common::wire::FlowKey { src_port: 40_000, ..key };
    assert!(probe.flow(&key).unwrap().is_some(), "the phone's flow");
    let syn = corpus().into_iter().find(|f| f.name == "sccp-syn").unwrap().frame;
    let (_, ev) = host(&syn);
    assert_eq!((ev.payload_len, &syn[26..30]), (0, &ev.src_addr[12..]), "fixture layout");
    let before = probe.counters().unwrap();
    for n in 0..20_000u32 {
        let mut f = syn.clone();
        // Ethernet, IPv4 without options: the source address is at 26.
        f[26..30].copy_from_slice(&(0x0a80_0000 + n).to_be_bytes());
        probe.test_run(PROGRAM, &f, 1).unwrap();
    }
    let after = probe.counters().unwrap();
    assert_eq!(after.matched_tcp - before.matched_tcp, 20_000, "every SYN was matched");
    assert_eq!(after.flows_created, before.flows_created, "no flow for a bare SYN");
    assert_eq!(after.flow_update_errors, before.flow_update_errors);
    assert_eq!(probe.flow_count().unwrap(), 1);
    assert!(probe.flow(&key).unwrap().is_some(), "the phone's flow survived the flood");
    // Nobody read the ring: it filled to three quarters, and the rest of the flood was shed
    // (counted), so the phone's next KeepAlive still has a slot.
    let shed = after.shed - before.shed;
    let published = after.events - before.events;
    assert!(shed > 0 && published > 0, "shed {shed}, published {published}");
    assert_eq!(published + shed + after.ringbuf_full - before.ringbuf_full, 20_000);
    assert_eq!(after.ringbuf_full, before.ringbuf_full, "the ring never filled");
    let mut ka = phone.clone();
    ka[34..36].copy_from_slice(&40_000u16.to_be_bytes());
    probe.test_run(PROGRAM, &ka, 1).unwrap();
    let last = probe.counters().unwrap();
    assert_eq!((last.events, last.shed), (after.events + 1, after.shed), "the KeepAlive got in");
}

#[test]
fn flow_state_resumes_sccp_and_counts_retransmissions() {
    if !common::have_root("flow_state_resumes_sccp_and_counts_retransmissions") {
        return;
    }
    let (mut probe, mut ring) = load(Config::DEFAULT);
    let e = fixtures::phone_eth();
    let net =
        fixtures::Net::between("10.10.20.31".parse().unwrap(), "10.10.10.202".parse().unwrap());
    let reg = fixtures::sccp_register("SEP0024142DDF24");
    let seq = 0x1000_0000u32;
    let seg1 = fixtures::tcp_frame(
        &e,
        &net,
        &fixtures::Tcp::data(51234, 2000, seq, 1),
        &[fixtures::sccp_keepalive(), reg[..20].to_vec()].concat(),
    );
    let seg2 = fixtures::tcp_frame(
        &e,
        &net,
        &fixtures::Tcp::data(51234, 2000, seq + 32, 1),
        &[reg[20..].to_vec(), fixtures::sccp_keepalive()].concat(),
    );
    for f in [&seg1, &seg2, &seg2] {
        probe.test_run(PROGRAM, f, 1).unwrap();
    }
    let recs = drain(&mut ring);
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].event.sccp_ids(), &[sccp_msg::KEEPALIVE, sccp_msg::REGISTER]);
    assert_eq!(recs[1].event.sccp_ids(), &[sccp_msg::KEEPALIVE], "resumed after the spilled PDU");
    let flow = probe.flow(&recs[0].event.flow_key()).unwrap().expect("flow entry");
    assert_eq!(flow.packets, 3);
    assert_eq!(flow.retransmits, 1, "the repeated second segment is a retransmission");
    assert!(flow.keepalives >= 2);
    assert_eq!(probe.flow_count().unwrap(), 1);
    // A pure ACK of the same direction is an event, and leaves the flow as it was (see on_tcp).
    let ack = fixtures::tcp_frame(
        &e,
        &net,
        &fixtures::Tcp { flags: 0x10, ..fixtures::Tcp::data(51234, 2000, seq + 64, 1) },
        &[],
    );
    probe.test_run(PROGRAM, &ack, 1).unwrap();
    let recs = drain(&mut ring);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].event.payload_len, recs[0].event.tcp_flags), (0, 0x10));
    assert_eq!(probe.flow(&recs[0].event.flow_key()).unwrap(), Some(flow), "untouched");
}

#[test]
fn a_full_ring_refuses_events_counts_them_and_takes_them_again_once_read() {
    if !common::have_root("a_full_ring_refuses_events") {
        return;
    }
    // Two slots per CPU in each ring: the test run stays on one CPU, so two events fit.
    let (mut probe, mut rings) = load_with(LoadOptions {
        flow_capacity: 64,
        flow_capacity_v6: 64,
        event_slots_log2: 1,
        payload_slots_log2: 1,
        ..LoadOptions::default()
    });
    let frame = |name| corpus().into_iter().find(|f| f.name == name).unwrap().frame;
    let (reg, ka) = (frame("sip-register"), frame("sccp-keepalive"));
    probe.test_run(PROGRAM, &reg, 100).unwrap();
    probe.test_run(PROGRAM, &ka, 100).unwrap();
    let c = probe.counters().unwrap();
    assert_eq!(c.matched_tcp, 200);
    assert_eq!((c.events, c.ringbuf_full), (4, 196), "lost events are counted: {c:?}");
    // Events without a slot are still built (in the scratch slot), so the flow state the next
    // segment depends on (SCCP resume, retransmissions) stays right.
    let (_, ev) = host(&reg);
    let flow = probe.flow(&ev.flow_key()).unwrap().expect("flow entry");
    assert_eq!(flow.packets, 100, "every segment updated its flow: {flow:?}");
    assert_eq!(flow.keepalives, 100);

    // The first two of each are in the rings; reading them hands the slots back.
    let got = drain(&mut rings);
    let apps: Vec<_> = got.iter().map(|r| r.event.app).collect();
    assert_eq!(apps, [App::Sip as u8, App::Sip as u8, App::Sccp as u8, App::Sccp as u8]);
    assert!(got.iter().take(2).all(|r| r.payload.len() == usize::from(r.event.copy_len)));
    assert!(drain(&mut rings).is_empty(), "each event is read once");
    probe.test_run(PROGRAM, &ka, 3).unwrap();
    assert_eq!(drain(&mut rings).len(), 2);
    assert_eq!(probe.counters().unwrap().ringbuf_full, 197);
}

/// The rings wrap: many times their size goes through them in order, in pieces, each event
/// once; events of the two rings (payload and not) come out in time order.
#[test]
fn the_rings_wrap_and_events_of_both_rings_come_out_in_time_order() {
    if !common::have_root("the_rings_wrap") {
        return;
    }
    let (mut probe, mut rings) = load(Config::DEFAULT);
    let frame = |name| corpus().into_iter().find(|f| f.name == name).unwrap().frame;
    let (reg, ka) = (frame("sip-register"), frame("sccp-keepalive"));
    let mut total = 0;
    for _ in 0..10 {
        // 1 000 of the 1 024 event slots, then 50 of the 64 payload slots, and read.
        probe.test_run(PROGRAM, &ka, 1000).unwrap();
        probe.test_run(PROGRAM, &reg, 50).unwrap();
        let got = drain(&mut rings);
        assert_eq!(got.len(), 1050);
        assert!(got.windows(2).all(|w| w[0].event.ts_ns <= w[1].event.ts_ns), "time order");
        assert!(got[..1000].iter().all(|r| r.event.app == App::Sccp as u8));
        assert!(got[1000..].iter().all(|r| r.event.app == App::Sip as u8 && r.event.copy_len > 0));
        total += got.len();
    }
    assert_eq!(total, 10_500);
    let c = probe.counters().unwrap();
    assert_eq!((c.events, c.ringbuf_full), (10_500, 0));
    // Alternating rings, one event at a time: still in the order they were recorded.
    for f in [&reg, &ka, &reg, &ka] {
        probe.test_run(PROGRAM, f, 1).unwrap();
    }
    let apps: Vec<_> = drain(&mut rings).iter().map(|r| r.event.app).collect();
    let (sip, sccp) = (App::Sip as u8, App::Sccp as u8);
    assert_eq!(apps, [sip, sccp, sip, sccp]);
}

#[test]
fn every_tracked_segment_has_its_flow_in_the_map_of_its_ip_version() {
    if !common::have_root("every_tracked_segment_has_its_flow") {
        return;
    }
    let (mut probe, mut ring) = load(Config::DEFAULT);
    let (mut v6, mut empty) = (0, 0);
    for f in corpus().iter().filter(|f| f.expect == Expect::Tcp) {
        let (_, recs) = kernel(&mut probe, &mut ring, &f.frame);
        let ev = &recs[0].event;
        v6 += usize::from(ev.ip_version == 6);
        let flow = probe.flow(&ev.flow_key()).unwrap();
        if ev.payload_len == 0 {
            // A segment without payload (SYN, pure ACK) creates no flow (see on_tcp).
            empty += 1;
            assert_eq!(flow.map(|f| f.packets), None, "{}: no flow", f.name);
            assert_eq!(probe.flow_count().unwrap(), 0, "{}", f.name);
            continue;
        }
        assert_eq!(flow.map(|f| f.packets), Some(1), "{}: its flow (IPv{})", f.name, ev.ip_version);
        assert_eq!(probe.flow_count().unwrap(), 1, "{}", f.name);
    }
    assert!(v6 >= 3 && empty >= 2, "IPv6 fixtures ran: {v6}; without payload: {empty}");
}

/// Whole scenario captures, frame by frame in time order with the flow map kept between frames:
/// the kernel's records equal the host probe's (which `analyze` uses), and a tracker fed with the
/// kernel's records reports the same phones and findings as `analyze` on the capture. So the
/// live agent and the offline analysis see the same traffic the same way.
#[test]
fn kernel_records_of_whole_scenarios_give_the_same_report_as_analyze() {
    use keepalive::{
        analyze,
        report::{Report, SourceTotals},
        source::{capture::Frame, offline::HostProbe},
        tracker::{Settings, Tracker},
    };
    use keepalive_lab::fixtures::{
        scenario::{self, Vantage},
        TlsVersion,
    };
    if !common::have_root("kernel_records_of_whole_scenarios") {
        return;
    }
    let scenarios = [
        ("proxy-arp", scenario::proxy_arp(Vantage::PhoneSide)),
        ("port-security", scenario::port_security(Vantage::PhoneSide)),
        ("sccp-primary-backup", scenario::sccp_primary_backup(3)),
        ("sip-primary-backup", scenario::sip_primary_backup(3)),
        ("site", scenario::site(12, 3)),
        (
            "sccp-tls-port-security",
            scenario::sccp_tls_port_security(Vantage::PhoneSide, TlsVersion::Tls12),
        ),
        ("sccp-tls-primary-backup", scenario::sccp_tls_primary_backup(5, TlsVersion::Tls13)),
        (
            "sip-tls-port-security",
            scenario::sip_tls_port_security(Vantage::ServerSide, TlsVersion::Tls13),
        ),
        ("site-mixed", scenario::site_mixed(16, 3, 2)),
    ];
    for (name, mut tl) in scenarios {
        let (mut probe, mut ring) = load(Config::DEFAULT);
        let mut host = HostProbe::new(Config::DEFAULT);
        let mut tracker = Tracker::new(Settings::default(), Config::DEFAULT);
        for (i, (ts, frame)) in tl.frames().iter().enumerate() {
            let (_, _) = probe.test_run(PROGRAM, frame, 1).expect("test run");
            let mut got = drain(&mut ring);
            let want = host.process(&Frame { ts_ns: *ts, ifindex: 0, data: frame });
            assert_eq!(got.len(), usize::from(want.is_some()), "{name} frame {i}");
            let (Some(mut rec), Some(want)) = (got.pop(), want) else { continue };
            rec.event.ts_ns = *ts;
            rec.event.ifindex = 0;
            assert_eq!(rec.event, want.event, "{name} frame {i}: event");
            assert_eq!(rec.payload[..], want.payload[..rec.payload.len()], "{name} frame {i}");
            tracker.ingest(&rec);
        }
        let live = Report::build(&tracker, &SourceTotals::default());
        let offline = analyze::bytes(&tl.to_pcap(), &analyze::Options::default()).unwrap();
        let view = |r: &Report| serde_json::to_value(&r.phones).unwrap();
        assert_eq!(view(&live), view(&offline), "{name}: phones and findings");
        assert_eq!(
            serde_json::to_value(&live.arp).unwrap(),
            serde_json::to_value(&offline.arp).unwrap()
        );
    }
}

/// The rings never wake the agent; its reader polls them. An event recorded while the reader
/// waits arrives within a few polls, and a backlog comes in batches.
#[test]
fn the_live_source_polls_the_rings_and_takes_a_backlog_in_batches() {
    use keepalive::source::live::{LiveSource, MAX_BATCH, POLL_EVERY};
    if !common::have_root("the_live_source_polls_the_rings") {
        return;
    }
    let (mut probe, rings) = load_with(LoadOptions { event_slots_log2: 14, ..small_rings() });
    let ka = corpus().into_iter().find(|f| f.name == "sccp-keepalive").unwrap().frame;
    probe.test_run(PROGRAM, &ka, 10_000).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut source = LiveSource::new(rings);
        let mut batch = Vec::new();
        let mut sizes = Vec::new();
        while batch.len() < 10_000 {
            sizes.push(source.next_batch(&mut batch).await);
        }
        assert_eq!(sizes, [MAX_BATCH, MAX_BATCH, 10_000 - 2 * MAX_BATCH]);
        // Wall-clock times: the kernel's monotonic time plus the boot's offset.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let age = now.as_nanos() as i128 - i128::from(batch[0].event.ts_ns);
        assert!((0..60_000_000_000).contains(&age), "event time is wall-clock time: {age} ns ago");

        // One event while the reader waits: the next poll brings it.
        let waiting = tokio::spawn(async move {
            let mut one = Vec::new();
            let n = source.next_batch(&mut one).await;
            (n, one)
        });
        tokio::time::sleep(POLL_EVERY * 3).await;
        assert!(!waiting.is_finished(), "nothing to read yet");
        probe.test_run(PROGRAM, &ka, 1).unwrap();
        let (n, one) = tokio::time::timeout(POLL_EVERY * 20, waiting).await.unwrap().unwrap();
        assert_eq!((n, one.len()), (1, 1));
    });
}

/// The verifier walks every path of the program and gives up after a million instructions. A
/// change that makes two paths' states differ (a second scratch map, once) can multiply the
/// walk without changing what the program does; this keeps the margin in view, for the first
/// program and for each program a tunnelled frame is handed to.
///
/// The first program's guard was 750 000 until tunnels: finding UDP to the VXLAN port after
/// the IPv6 walk alone costs 64 000 (measured: 723 000 without it, 788 000 with it).
#[test]
fn the_verifier_accepts_the_program_with_room_to_spare() {
    if !common::have_root("the_verifier_accepts_the_program_with_room_to_spare") {
        return;
    }
    let (mut probe, _rings) = load(Config::DEFAULT);
    let walked = probe.verified_instructions(PROGRAM).unwrap();
    assert!(walked > 0, "the kernel reports the verifier's count");
    eprintln!("{PROGRAM}: the verifier walked {walked}");
    assert!(walked < 850_000, "the verifier walked {walked} of its 1 000 000 instructions");
    for (name, _) in TAIL_PROGRAMS {
        let walked = probe.verified_instructions(name).unwrap();
        eprintln!("{name}: the verifier walked {walked}");
        assert!(walked < 850_000, "{name}: the verifier walked {walked} of 1 000 000");
    }
    let (mut probe, _rings) = load_with(LoadOptions { hook: Hook::Tc, ..small_rings() });
    for name in [TC_PROGRAM].into_iter().chain(TC_TAIL_PROGRAMS.iter().map(|(n, _)| *n)) {
        let walked = probe.verified_instructions(name).unwrap();
        eprintln!("{name}: the verifier walked {walked}");
        assert!(walked < 850_000, "{name}: the verifier walked {walked} of 1 000 000");
    }
}

/// Runs an SCCP KeepAlive from phone port `port`: a flow of its own.
fn new_flow(probe: &mut Probe, port: u16) {
    let mut f = corpus().into_iter().find(|f| f.name == "sccp-keepalive").unwrap().frame;
    // Ethernet, IPv4 without options: the TCP source port is at 34.
    assert_eq!(u16::from_be_bytes([f[34], f[35]]), host(&f).1.src_port, "fixture layout");
    f[34..36].copy_from_slice(&port.to_be_bytes());
    probe.test_run(PROGRAM, &f, 1).unwrap();
}

/// The flow count the agent reports reads the maps in batches; it must count what walking the
/// keys counts, whatever the batch size (a bucket larger than a batch is retried larger).
#[test]
fn flow_maps_are_counted_in_batches_as_walking_their_keys_counts_them() {
    if !common::have_root("flow_maps_are_counted_in_batches") {
        return;
    }
    let (mut probe, _rings) = load(Config::DEFAULT);
    for port in 0..300u16 {
        new_flow(&mut probe, 20_000 + port);
    }
    assert_eq!(probe.flow_count_by_keys().unwrap(), 300);
    for batch in [1, 7, 64, 8192] {
        assert_eq!(probe.flow_count_by(batch).unwrap(), Some(300), "batch of {batch}");
    }
    assert_eq!(probe.flow_count().unwrap(), 300);
}

/// The agent counts flows on a thread of its own and reads the latest count: it follows new
/// flows at the refresh rate while the maps are small, and counts once more when finishing.
#[test]
fn the_flow_count_thread_follows_new_flows() {
    use keepalive::agent::flows::FlowCounter;
    use std::time::{Duration, Instant};
    if !common::have_root("the_flow_count_thread_follows_new_flows") {
        return;
    }
    let (mut probe, _rings) = load(Config::DEFAULT);
    for port in 1..=3 {
        new_flow(&mut probe, port);
    }
    let counter =
        FlowCounter::start(probe.flow_maps().unwrap(), Duration::from_millis(20)).unwrap();
    let (first, error) = counter.get();
    assert_eq!((first.live, first.evicted(), error), (3, 0, None), "counted at start");
    new_flow(&mut probe, 4);
    let deadline = Instant::now() + Duration::from_secs(5);
    let later = loop {
        let (c, _) = counter.get();
        if c.live == 4 {
            break c;
        }
        assert!(Instant::now() < deadline, "the thread never counted the new flow");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Live and created come from the same count, stamped with its time.
    assert_eq!((later.created, later.evicted()), (4, 0));
    assert!(later.at_ns > first.at_ns, "{later:?} after {first:?}");
    new_flow(&mut probe, 5);
    let last = counter.finish().unwrap();
    assert_eq!((last.live, last.created), (5, 5), "a last count when finishing");
}

#[test]
fn an_oversized_ring_is_refused_with_its_size() {
    // Refused before anything reaches the kernel, so no root is needed.
    let opts = LoadOptions { event_slots_log2: 30, ..LoadOptions::default() };
    let err = Probe::load(&opts).unwrap_err().to_string();
    assert!(err.contains("2^30 slots per CPU: at most 2^24"), "{err}");
}
