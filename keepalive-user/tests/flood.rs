//! Lab test (root) for hostile traffic: two SCCP phones keep a CUCM busy over real kernel TCP
//! through a router running the agent, while the phone side's link carries a flood of spoofed
//! SYNs, spoofed ARP replies and SIP connections whose headers never end (replayed with
//! tcpreplay at top speed). The agent's memory must stay bounded, the flood must never become
//! phones, the real phones must keep their rows, counts and findings, and every eviction must
//! be accounted for.

mod common;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{stats_with, Agent, RouterLab, VethPair};
use keepalive_common::wire::sccp_msg;
use keepalive_lab::fixtures::{
    self,
    flood::{self, Target},
    scenario::Timeline,
};
use serde_json::Value;

/// The MAC of `dev` in `ns`.
fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = Command::new("ip").args(["-n", ns, "-br", "link", "show", "dev", dev]).output();
    let out = String::from_utf8(out.expect("ip link").stdout).unwrap();
    let mac = out.split_whitespace().nth(2).unwrap_or_else(|| panic!("mac of {dev}: {out}"));
    let b: Vec<u8> = mac.split(':').map(|x| u8::from_str_radix(x, 16).unwrap()).collect();
    b.try_into().unwrap_or_else(|_| panic!("mac of {dev}: {out}"))
}

/// The agent's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples the agent's RSS every 20 ms until stopped; returns the largest.
fn rss_sampler(pid: u32, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    })
}

/// The CUCM: answers a Register with a RegisterAck and every KeepAlive with a KeepAliveAck,
/// for `phones` connections.
fn cucm(lab: &RouterLab, phones: usize) -> JoinHandle<()> {
    let addr: IpAddr = lab.cucm.parse().unwrap();
    let listener = VethPair::in_ns(&lab.ns_cucm, move || TcpListener::bind((addr, 2000)).unwrap())
        .join()
        .expect("CUCM listens");
    std::thread::spawn(move || {
        let mut served = Vec::new();
        for _ in 0..phones {
            let (mut s, _) = listener.accept().unwrap();
            served.push(std::thread::spawn(move || {
                let mut head = [0u8; 8];
                s.read_exact(&mut head).unwrap();
                let mut body =
                    vec![0u8; u32::from_le_bytes(head[..4].try_into().unwrap()) as usize];
                s.read_exact(&mut body).unwrap();
                s.write_all(&fixtures::sccp_pdu(sccp_msg::REGISTER_ACK, &[0; 16])).unwrap();
                let mut ka = [0u8; 12];
                while s.read_exact(&mut ka).is_ok() {
                    if s.write_all(&fixtures::sccp_keepalive_ack()).is_err() {
                        break;
                    }
                }
            }));
        }
        for t in served {
            t.join().expect("CUCM connection");
        }
    })
}

/// What a phone's own side saw: the ground truth a warning about it is checked against.
#[derive(Debug, Clone, Copy)]
struct PhoneRun {
    /// KeepAlives answered by a KeepAliveAck.
    answered: u64,
    /// Segments its kernel retransmitted (`tcpi_total_retrans`): a first copy lost on the way.
    retransmitted: u32,
    /// The longest time between two of its KeepAlives leaving the socket.
    longest_gap: Duration,
}

/// `tcpi_total_retrans` of a connected socket (tcp(7), TCP_INFO).
fn total_retransmissions(s: &TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data, and the kernel writes at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_total_retrans
}

/// A phone at `phone` registering as `device`, then sending a KeepAlive every `gap` until
/// `stop`, each waiting for its Ack.
fn phone(
    lab: &RouterLab,
    phone: &'static str,
    device: &'static str,
    gap: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<PhoneRun> {
    let cucm: SocketAddr = (lab.cucm.parse::<IpAddr>().unwrap(), 2000).into();
    VethPair::in_ns(&lab.ns_phone, move || {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let local: SocketAddr = (phone.parse::<IpAddr>().unwrap(), 0).into();
        sock.bind(&local.into()).unwrap();
        sock.connect_timeout(&cucm.into(), Duration::from_secs(5)).unwrap();
        let mut s: TcpStream = sock.into();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&fixtures::sccp_register(device)).unwrap();
        let mut ack = [0u8; 28];
        s.read_exact(&mut ack).unwrap();
        let mut answered = 0;
        let mut ka = [0u8; 12];
        let (mut last, mut longest_gap) = (None::<Instant>, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            longest_gap = longest_gap.max(last.map_or(Duration::ZERO, |l| now - l));
            last = Some(now);
            s.write_all(&fixtures::sccp_keepalive()).unwrap();
            s.read_exact(&mut ka).expect("KeepAliveAck");
            answered += 1;
            std::thread::sleep(gap);
        }
        PhoneRun { answered, retransmitted: total_retransmissions(&s), longest_gap }
    })
}

/// Replays `tl` out of the phone namespace's link, at `pps` packets per second (`None`: as fast
/// as tcpreplay can).
fn replay(lab: &RouterLab, tl: &mut Timeline, name: &str, pps: Option<u32>) {
    let pcap = std::env::temp_dir().join(format!("keepalive-{name}-{}.pcap", std::process::id()));
    std::fs::write(&pcap, tl.to_pcap()).unwrap();
    let rate = pps.map_or_else(|| "--topspeed".to_owned(), |p| format!("--pps={p}"));
    let out = Command::new("ip")
        // The flood's generator yields the CPUs to the phones, the CUCM and the agent (two
        // CPUs here): what is under test is the agent's handling of the flood, not whether a
        // phone thread gets scheduled on time beside tcpreplay.
        .args(["netns", "exec", &lab.ns_phone, "nice", "-n", "19", "tcpreplay", "-q", &rate])
        .args(["-i", "eth0"])
        .arg(&pcap)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&pcap);
    assert!(out.status.success(), "tcpreplay {name}: {}", String::from_utf8_lossy(&out.stderr));
}

fn snapshot(agent: &Agent) -> (Value, Duration) {
    let started = Instant::now();
    let out = stats_with(&agent.socket, "json", false, &[]);
    let took = started.elapsed();
    assert!(out.status.success(), "stats: {}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).expect("stats JSON"), took)
}

fn scrape(ns: &str, port: u16) -> String {
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    String::from_utf8(common::http(ns, port, request).expect("a scrape")).unwrap()
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn a_flood_on_the_voice_vlan_stays_bounded_and_the_real_phones_keep_their_rows() {
    if !common::have_root("a_flood_on_the_voice_vlan_stays_bounded") {
        return;
    }
    if !common::have_tools(&["tcpreplay"], "a_flood_on_the_voice_vlan_stays_bounded") {
        return;
    }
    let lab = RouterLab::new();
    common::ip(&["-n", &lab.ns_phone, "addr", "add", "192.0.2.32/24", "dev", "eth0"]);
    // What the flood provokes (SYN-ACKs, RSTs to spoofed sources) ends in the router.
    let (net, len) = flood::SPOOFED_NET;
    common::ip(&["-n", &lab.ns_router, "route", "add", "blackhole", &format!("{net}/{len}")]);
    for dev in ["all", lab.r_phone] {
        let key = format!("net.ipv4.conf.{dev}.rp_filter=0");
        let ok = Command::new("ip")
            .args(["netns", "exec", &lab.ns_router, "sysctl", "-qw", &key])
            .status()
            .unwrap();
        assert!(ok.success(), "{key}");
    }
    // Small limits, so that every table fills: 2 500 candidates, 20 000 ARP addresses,
    // 1.25 MiB of partial SIP messages.
    let mut agent = lab.agent(&[
        "--refresh",
        "300ms",
        "--max-phones",
        "20000",
        "--metrics",
        "9108",
        "--metrics-per-phone",
    ]);
    let server = cucm(&lab, 2);
    let stop = Arc::new(AtomicBool::new(false));
    // A KeepAlive a second: the final snapshot, taken right after the phones stop, comes
    // within one interval of their last one, so a healthy phone shows no silence.
    let gap = Duration::from_secs(1);
    let phones = [
        phone(&lab, "192.0.2.31", "SEP00AB00CD0031", gap, stop.clone()),
        phone(&lab, "192.0.2.32", "SEP00AB00CD0032", gap, stop.clone()),
    ];
    std::thread::sleep(Duration::from_millis(1_500));
    let (before, _) = snapshot(&agent);
    let rss_before = rss_kib(agent.pid());
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = rss_sampler(agent.pid(), sampling.clone());

    let target = Target {
        server: lab.cucm.parse().unwrap(),
        src_mac: mac_of(&lab.ns_phone, "eth0"),
        dst_mac: mac_of(&lab.ns_router, lab.r_phone),
    };
    const SYNS: u32 = 200_000;
    // 100 000 a second, as the flood that took the agent to 615 MiB. (At tcpreplay's top
    // speed the veth itself drops the phones' frames, and the rings lose events: counted.)
    replay(&lab, &mut flood::syn_flood(&target, 2000, SYNS, 0, 1_000), "syn", Some(100_000));
    std::thread::sleep(Duration::from_millis(1_000));
    let (after_syn, _) = snapshot(&agent);
    replay(&lab, &mut flood::arp_flood(&target, 60_000, 0, 1_000), "arp", Some(100_000));
    // 20 000 segments a second: each a payload slot, which the agent keeps up with, so that
    // the reassembly (not the rings) is what the headers that never end test.
    let mut sip = flood::endless_sip_headers(&target, 5060, 2_000, 12, 0, 1_000);
    replay(&lab, &mut sip, "sip", Some(20_000));
    std::thread::sleep(Duration::from_millis(1_000));

    stop.store(true, Ordering::Relaxed);
    let runs: Vec<PhoneRun> = phones.into_iter().map(|p| p.join().expect("phone")).collect();
    let answered: Vec<u64> = runs.iter().map(|r| r.answered).collect();
    // The last Acks are in the rings; the agent drains them every 10 ms, but after a flood it
    // may still be working through the backlog: wait (at most 3 s) until the rows hold every
    // answer the phones got, then read. A lost event would never arrive, and fail below.
    let acked = |snap: &Value| {
        let rows = snap["report"]["phones"].as_array().cloned().unwrap_or_default();
        let acks: u64 = rows.iter().filter_map(|r| r["acks"].as_u64()).sum();
        acks >= answered.iter().sum::<u64>()
    };
    let mut read = snapshot(&agent);
    for _ in 0..30 {
        if acked(&read.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        read = snapshot(&agent);
    }
    let (snap, took) = read;
    server.join().expect("CUCM");
    sampling.store(true, Ordering::Relaxed);
    let rss_max = sampler.join().unwrap();
    let metrics = scrape(&lab.ns_router, 9108);
    let (_, log) = agent.stop();

    let k = &snap["kernel"];
    let u = &snap["userspace"];
    let e = &u["evictions"];
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("a count: {v}"));
    let context = format!("kernel {k}\nuserspace {u}\nlog {log}");

    // Memory: bounded by the limits, whatever the flood.
    let grown_mib = rss_max.saturating_sub(rss_before) as f64 / 1024.0;
    assert!(grown_mib < 64.0, "RSS grew by {grown_mib:.1} MiB ({rss_before} KiB before)");
    eprintln!("RSS {rss_before} KiB before, {rss_max} KiB at most: +{grown_mib:.1} MiB");

    // The flood reached the tracker: it was seen, and it filled every table.
    assert!(n(&k["matched_tcp"]) >= u64::from(SYNS), "{context}");
    assert!(n(&e["candidates_full"]) > 100_000, "{context}");
    assert!(n(&e["arp_full"]) > 0 && n(&u["arp_addresses"]) <= 20_000, "{context}");
    // 2 000 connections of 16 KiB of headers would hold 32 MB: the budget was reached and
    // held. (Candidates made by the CUCM's SYN-ACK retransmissions evict some of the SIP
    // connections meanwhile, so not every one meets the budget.)
    assert!(n(&e["sip_budget"]) > 0, "{context}");
    assert!(n(&u["sip_buffered"]) <= n(&u["limits"]["sip_buffer_bytes"]), "{context}");
    // Every candidate is accounted for: promoted, evicted, timed out, or still held.
    assert_eq!(
        n(&e["candidates_created"]),
        n(&e["promoted"])
            + n(&e["candidates_full"])
            + n(&e["candidate_timeout"])
            + n(&u["candidates"]),
        "{context}"
    );
    assert!(n(&u["candidates"]) <= 2_500, "{context}");
    // Bare SYNs create no kernel flow: the flood left the flow maps as they were.
    assert_eq!(
        after_syn["kernel"]["flows_created"], before["kernel"]["flows_created"],
        "{context}"
    );
    assert!(log.contains("tracker limits reached"), "the evictions are logged: {log}");

    // Only the real phones are phones, with every KeepAlive and Ack, and nothing to warn of.
    assert_eq!((n(&u["phones"]), n(&e["promoted"])), (2, 2), "{context}");
    assert!(took < Duration::from_secs(1), "stats took {took:?}");
    let rows = snap["report"]["phones"].as_array().unwrap();
    assert_eq!(snap["report"]["summary"]["phones"], 2);
    assert!(rows.iter().all(|r| !flood::is_spoofed(r["phone"].as_str().unwrap())));
    for (addr, device, run) in
        [("192.0.2.31", "SEP00AB00CD0031", runs[0]), ("192.0.2.32", "SEP00AB00CD0032", runs[1])]
    {
        let answered = run.answered;
        let row = rows
            .iter()
            .find(|r| r["phone"] == addr)
            .unwrap_or_else(|| panic!("{addr} kept its row: {rows:?}"));
        assert!(answered >= 5, "{addr} answered {answered}");
        // Every KeepAlive and Ack, unless an event ring overflowed (counted): at 100 000
        // frames a second on this machine's two CPUs that is rare, and then each lost event
        // is one count short, and may leave a silence or an unanswered KeepAlive behind.
        let lost = n(&k["ringbuf_full"]);
        let counts = (n(&row["keepalives"]), n(&row["acks"]));
        if lost == 0 {
            assert_eq!(counts, (answered, answered), "{row}\n{context}");
        } else {
            eprintln!("{addr}: {lost} events lost to a full ring (counted): {counts:?}");
            assert!(counts.0 <= answered && counts.1 <= answered, "{row}\n{context}");
            assert!(counts.0 + counts.1 + lost >= 2 * answered, "{row}\n{context}");
        }
        assert_eq!((&row["device"], &row["role"]), (&Value::from(device), &Value::from("primary")));
        let warnings: Vec<&Value> = row["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] != "info")
            .collect();
        // Nothing to warn of, unless the lab really lost the phone's first copies: the veth
        // that carries the flood also carries the phone, and its ring (256 frames, see
        // drivers/net/veth.c VETH_RING_SIZE) overflows when the router's CPU falls behind
        // the replay. Then the phone's kernel retransmitted, or the phone itself was late,
        // and a loss finding is the truth; a phone that waited seconds for its Ack has
        // missed KeepAlives; an event lost to a full ring leaves a silence or an unanswered
        // KeepAlive in the agent. Any other warning is a false alarm.
        // (The phone's own lateness is judged against the agent's lateness floor, 80 ms,
        // less what a starved router adds when it timestamps the frame.)
        let late = run.longest_gap > gap + Duration::from_millis(50);
        let explained = |kind: &str| match kind {
            "first-transmission-loss" | "intermittent-loss" => true,
            "missed-keepalive" => lost > 0 || run.longest_gap > gap * 2,
            "unanswered-keepalive" => lost > 0,
            _ => false,
        };
        if run.retransmitted == 0 && !late && lost == 0 {
            assert!(warnings.is_empty(), "{addr} lost nothing ({run:?}): {warnings:?}");
        } else {
            eprintln!("{addr}: the lab lost or delayed its KeepAlives ({run:?}): {warnings:?}");
            for w in &warnings {
                let kind = w["kind"].as_str().unwrap_or_default();
                assert!(explained(kind), "{addr} ({run:?}, {lost} events lost): {w}");
            }
        }
    }

    // Metrics: per-phone series name the real phones only; evictions by reason as in stats.
    assert!(metrics.contains("phone=\"192.0.2.31\""), "{metrics}");
    assert!(!metrics.contains("phone=\"198.18.") && !metrics.contains("phone=\"198.19."));
    assert_eq!(
        metric(&metrics, "keepalive_tracker_evictions_total{reason=\"candidates-full\"}"),
        Some(n(&e["candidates_full"]) as f64),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "keepalive_tracker_phones"), Some(2.0));
}
