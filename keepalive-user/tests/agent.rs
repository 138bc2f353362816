//! Lab tests (root) for the live agent: a phone, a router and a CUCM in namespaces the test
//! creates, real kernel TCP between them, `keepalive run` on both router interfaces. The agent
//! must track the phone, answer `keepalive stats` (JSON and table, with and without root as the
//! socket mode allows), serve parseable Prometheus text, refuse a second agent, print findings
//! as JSON lines, and leave nothing behind on SIGTERM. A replayed capture must give the live
//! agent the counts and finding kinds `analyze` gives.

mod common;

use std::{
    io::{Read, Write},
    process::Command,
    time::Duration,
};

use common::{RouterLab, VethPair};
use serde_json::Value;

use common::{sccp_phone, socket_path, stats, stats_with, Agent, BIN};

/// One HTTP/1.1 exchange with 127.0.0.1:`port` in `ns`: the raw response.
fn http(ns: &str, port: u16, request: &str) -> Vec<u8> {
    common::http(ns, port, request).expect("an HTTP answer")
}

fn request(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n")
}

fn scrape(ns: &str, port: u16) -> String {
    String::from_utf8(http(ns, port, &request("GET", "/metrics", ""))).unwrap()
}

/// Head (lowercased, names and values) and body of a raw response.
fn split(raw: &[u8]) -> (String, Vec<u8>) {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    (String::from_utf8_lossy(&raw[..at]).to_lowercase(), raw[at + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

/// Checks the Prometheus/OpenMetrics text format line by line and returns the samples.
fn parse_metrics(body: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics text ends with # EOF");
    for line in lines {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ")
                    || rest.starts_with("TYPE ")
                    || rest.starts_with("UNIT ")
                    || rest == "EOF",
                "comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels: {line}");
            for label in
                series[name_end + 1..series.len() - 1].split("\",").filter(|l| !l.is_empty())
            {
                let (k, v) = label.split_once("=\"").unwrap_or_else(|| panic!("label: {line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "label name: {line}"
                );
                assert!(!v.contains('\n'), "label value: {line}");
            }
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        samples.push((series.to_owned(), v));
    }
    samples
}

#[test]
fn agent_tracks_phones_serves_stats_and_metrics_and_cleans_up() {
    if !common::have_root("agent_tracks_phones_serves_stats_and_metrics_and_cleans_up") {
        return;
    }
    let lab = RouterLab::new();
    let mut agent = lab.agent(&["--refresh", "200ms", "--metrics", "9108"]);
    assert!(
        agent.log.contains("iface=r-phone") && agent.log.contains("iface=r-cucm"),
        "{}",
        agent.log
    );

    sccp_phone(&lab, "SEP00AB00CD0031", 4, Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(600));

    let out = stats(&agent.socket, "json", false);
    assert!(out.status.success(), "stats: {}", String::from_utf8_lossy(&out.stderr));
    let snap: Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    let row = snap["report"]["phones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phone"] == lab.phone && p["server"] == lab.cucm)
        .unwrap_or_else(|| panic!("phone row: {snap:#}"));
    assert_eq!(row["protocol"], "sccp");
    assert_eq!(row["role"], "primary", "KeepAliveAcks come back through r-cucm");
    assert_eq!((row["keepalives"].as_u64(), row["acks"].as_u64()), (Some(4), Some(4)));
    assert_eq!(row["device"], "SEP00AB00CD0031");
    let k = &snap["kernel"];
    assert!(k["seen"].as_u64().unwrap() >= 12 && k["matched_tcp"].as_u64().unwrap() >= 10, "{k}");
    assert_eq!(k["ringbuf_full"], 0);
    // One connection, two directions in the flow map, counted at the same moment as
    // flows_created (refresh 200 ms): nothing evicted.
    assert_eq!(k["flows_live"], 2, "{k}");
    assert_eq!(k["flows_created"], 2, "{k}");
    assert_eq!(k["lru_evictions"], 0, "{k}");

    let table = stats(&agent.socket, "table", false);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("192.0.2.31") && table.contains("sccp"), "{table}");

    // Filters list fewer phones and keep the summary whole.
    let rows = |more: &[&str]| -> (Vec<Value>, Value) {
        let out = stats_with(&agent.socket, "json", false, more);
        assert!(out.status.success(), "stats {more:?}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
        (v["report"]["phones"].as_array().unwrap().clone(), v["report"]["summary"].clone())
    };
    let (all, summary) = rows(&[]);
    let (by_name, s) = rows(&["--phone", "sep00ab00cd0031"]);
    assert!(!by_name.is_empty() && by_name.iter().all(|p| p["phone"] == lab.phone), "{by_name:?}");
    assert_eq!(s["phones"], summary["phones"]);
    let (by_addr, _) = rows(&["--phone", lab.phone]);
    assert_eq!(by_addr.len(), by_name.len());
    assert!(rows(&["--phone", "192.0.2.250"]).0.is_empty());
    let with_findings = all.iter().filter(|p| !p["findings"].as_array().unwrap().is_empty());
    let (only, _) = rows(&["--findings"]);
    assert_eq!(only.len(), with_findings.count(), "{only:?}");
    assert!(only.iter().all(|p| !p["findings"].as_array().unwrap().is_empty()));

    let http = scrape(&lab.ns_router, 9108);
    let (head, body) = http.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let samples = parse_metrics(body);
    let value = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
    assert_eq!(value("keepalive_keepalives_total{protocol=\"sccp\"}"), Some(4.0), "{body}");
    assert_eq!(value("keepalive_acks_total{protocol=\"sccp\"}"), Some(4.0));
    assert!(value("keepalive_kernel_packets_seen_total").unwrap() >= 12.0);
    assert_eq!(value("keepalive_events_lost_total"), Some(0.0));
    assert!(samples
        .iter()
        .any(|(s, _)| s.starts_with("keepalive_phones{protocol=\"sccp\",role=\"primary\"")));
    // No per-pair series unless asked: a phone is named only by its active warning or critical
    // findings (`keepalive_finding`, what an alert names it by).
    for line in body.lines().filter(|l| l.contains("192.0.2.31")) {
        assert!(
            line.starts_with("keepalive_finding{")
                && (line.contains("severity=\"warning\"")
                    || line.contains("severity=\"critical\"")),
            "{line}"
        );
    }
    assert!(!body.contains("keepalive_phone_keepalives"), "per-phone series only when asked");
    assert!(samples
        .iter()
        .any(|(s, v)| s.starts_with("keepalive_build_info{version=") && *v == 1.0));
    assert!(samples
        .iter()
        .any(|(s, _)| s.starts_with("keepalive_interface_info{iface=\"r-phone\"")));
    // The four answers, in the ack-latency histogram (milliseconds on a veth).
    let acked = "keepalive_ack_latency_seconds_count{protocol=\"sccp\",role=\"primary\"}";
    assert_eq!(value(acked), Some(4.0), "{body}");
    let fast = samples.iter().find(|(s, _)| {
        s.starts_with("keepalive_ack_latency_seconds_bucket{")
            && s.contains("protocol=\"sccp\"")
            && s.contains("le=\"0.1\"")
    });
    assert_eq!(fast.map(|(_, v)| *v), Some(4.0), "{body}");

    // A second agent: on the same interfaces, and on the same socket.
    let second = Command::new("ip")
        .args(["netns", "exec", &lab.ns_router, BIN, "run", "--iface", lab.r_phone, "--socket"])
        .arg(socket_path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && err.contains("already attached to `r-phone`"), "{err}");
    assert!(err.contains("--hook tc"), "the refusal names the way out: {err}");
    let third = Command::new("ip")
        .args(["netns", "exec", &lab.ns_router, BIN, "run", "--iface", lab.r_phone, "--socket"])
        .arg(&agent.socket)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(!third.status.success() && err.contains("another keepalive agent is running"), "{err}");
    assert!(agent.socket.exists(), "a refused agent leaves the running one's socket alone");

    // The phone went quiet: a missed-keepalive finding arrives as a JSON line.
    std::thread::sleep(Duration::from_millis(800));
    let (out, log) = agent.stop();
    assert!(out.status.success(), "agent: {log}");
    assert!(log.contains("msg=\"stopping\" reason=terminated"), "{log}");
    let findings: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(
        findings.iter().any(|f| f["kind"] == "missed-keepalive" && f["phone"] == lab.phone),
        "{findings:#?}"
    );

    // Nothing left behind: no program on either interface, no socket, nothing pinned.
    for ifn in [lab.r_phone, lab.r_cucm] {
        let link =
            Command::new("ip").args(["-n", &lab.ns_router, "link", "show", ifn]).output().unwrap();
        assert!(
            !String::from_utf8_lossy(&link.stdout).contains("xdp"),
            "{ifn}: program still attached"
        );
    }
    assert!(!agent.socket.exists(), "socket removed");
    let pinned = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().contains("keepalive"))
        })
        .unwrap_or(false);
    assert!(!pinned, "nothing pinned under /sys/fs/bpf");
    let gone = stats(&agent.socket, "json", false);
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(!gone.status.success() && err.contains("no keepalive agent is running"), "{err}");
}

#[test]
fn stats_without_root_follows_the_socket_mode() {
    if !common::have_root("stats_without_root_follows_the_socket_mode") {
        return;
    }
    let lab = RouterLab::new();
    for (mode, allowed) in [("0666", true), ("0660", false)] {
        let mut agent = Agent::start(
            &lab.ns_router,
            &["--iface", lab.r_phone, "--json", "--socket-mode", mode],
        );
        let out = stats(&agent.socket, "json", true);
        let err = String::from_utf8_lossy(&out.stderr);
        if allowed {
            assert!(out.status.success(), "mode {mode}: {err}");
            let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(snap["kernel"]["seen"].is_u64());
        } else {
            assert!(
                !out.status.success() && err.contains("permission denied"),
                "mode {mode}: {err}"
            );
        }
        agent.stop();
    }
}

/// Without privileges the agent says which capabilities to grant, before touching anything.
#[test]
fn an_unprivileged_agent_says_what_to_grant() {
    if !common::have_root("an_unprivileged_agent_says_what_to_grant") {
        return;
    }
    let socket = socket_path();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", BIN])
        .args(["run", "--iface", "lo", "--socket"])
        .arg(&socket)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("missing capability CAP_BPF and CAP_NET_ADMIN and CAP_PERFMON: "),
        "{err}"
    );
    assert!(!socket.exists(), "nothing created");
}

/// The same capture through the live path (tcpreplay into a veth, the agent on its far end)
/// and through `analyze`: the same counts and the same finding kinds. The replay runs 40×
/// faster than the capture, and the agent is told so (`--time-scale 40 --replay`: the capture's
/// retransmissions are sped up too); `analyze` reads the capture's own timestamps.
#[test]
fn a_replayed_capture_gives_the_live_agent_what_analyze_gives() {
    use keepalive_lab::fixtures::scenario::{self, Vantage};
    if !common::have_root("a_replayed_capture_gives_the_live_agent_what_analyze_gives") {
        return;
    }
    if !common::have_tools(
        &["tcpreplay"],
        "a_replayed_capture_gives_the_live_agent_what_analyze_gives",
    ) {
        return;
    }
    let net = VethPair::new();
    let pcap = std::env::temp_dir().join(format!("keepalive-replay-{}.pcap", std::process::id()));
    std::fs::write(&pcap, scenario::proxy_arp(Vantage::PhoneSide).to_pcap()).unwrap();
    let mut agent = Agent::start(
        &net.ns_b,
        &["--iface", &net.if_b, "--json", "--time-scale", "40", "--replay"],
    );
    let replay = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.ns_a,
            "tcpreplay",
            "-q",
            "--multiplier",
            "40",
            "-i",
            &net.if_a,
        ])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(replay.status.success(), "tcpreplay: {}", String::from_utf8_lossy(&replay.stderr));
    std::thread::sleep(Duration::from_millis(500));
    let live: Value = serde_json::from_slice(&stats(&agent.socket, "json", false).stdout).unwrap();
    agent.stop();
    let offline =
        Command::new(BIN).args(["analyze", "--format", "json"]).arg(&pcap).output().unwrap();
    let _ = std::fs::remove_file(&pcap);
    let offline: Value = serde_json::from_slice(&offline.stdout).unwrap();
    let rows = |v: &Value| v.as_array().unwrap().clone();
    let (l, o) = (rows(&live["report"]["phones"]), rows(&offline["phones"]));
    assert_eq!(l.len(), o.len(), "pairs");
    for (l, o) in l.iter().zip(&o) {
        for field in ["phone", "server", "protocol", "role", "keepalives", "acks", "device"] {
            assert_eq!(l[field], o[field], "{field}");
        }
        assert_eq!(
            l["retransmissions"].as_array().unwrap().len(),
            o["retransmissions"].as_array().unwrap().len()
        );
        let kinds = |r: &Value| {
            let mut k: Vec<String> = r["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["kind"].as_str().unwrap().to_owned())
                .collect();
            k.sort();
            k
        };
        assert_eq!(kinds(l), kinds(o), "finding kinds, live vs analyze");
    }
    assert_eq!(
        live["report"]["arp"].as_array().unwrap().len(),
        offline["arp"].as_array().unwrap().len()
    );
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / hz
}

/// Out of file descriptors (EMFILE), the stats socket backs off instead of spinning on
/// `accept`, says so once in the log, and serves again once descriptors are free. The agent
/// runs under `prlimit` with a few descriptors to spare; idle clients that never send their
/// request hold them until the request timeout.
#[test]
fn out_of_file_descriptors_the_stats_socket_backs_off_and_recovers() {
    use std::os::unix::net::UnixStream;
    if !common::have_root("out_of_file_descriptors_the_stats_socket_backs_off") {
        return;
    }
    let net = VethPair::new();
    // How many descriptors the agent holds once running: maps, rings, sockets, the runtime.
    let probe = Agent::start(&net.ns_b, &["--iface", &net.if_b, "--json"]);
    let used = std::fs::read_dir(format!("/proc/{}/fd", probe.pid())).unwrap().count();
    drop(probe);
    let limit = (used + 8).to_string();
    let socket = socket_path();
    let child = Command::new("ip")
        .args(["netns", "exec", &net.ns_b, "prlimit", &format!("--nofile={limit}"), BIN, "run"])
        .args(["--iface", &net.if_b, "--json", "--socket"])
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(std::time::Instant::now() < deadline, "the agent never served stats");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The probe connection above was accepted too: give it its request timeout.
    std::thread::sleep(Duration::from_millis(2_500));
    let pid = child.id();
    // More idle clients than the agent has descriptors left: the rest wait in the backlog.
    let idle: Vec<UnixStream> = (0..32).map(|_| UnixStream::connect(&socket).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let cpu_before = cpu_s(pid);
    std::thread::sleep(Duration::from_millis(1_500));
    let spent = cpu_s(pid) - cpu_before;
    assert!(spent < 0.5, "{spent:.2} s of CPU in 1.5 s out of descriptors: accept spins");
    drop(idle);
    // Once the idle clients are gone (or timed out), stats are served again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let out = stats(&socket, "json", false);
        if out.status.success() {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "stats never recovered");
        std::thread::sleep(Duration::from_millis(200));
    };
    let snap: Value = serde_json::from_slice(&answer.stdout).unwrap();
    assert_eq!(snap["agent"]["pid"], pid);
    // SAFETY: kill on our child's pid (`ip netns exec` and prlimit exec in place).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let warned = log.matches("stats socket: accept failed").count();
    assert!((1..=2).contains(&warned), "logged once (rate-limited), not per retry: {log}");
    assert!(log.contains("Too many open files") || log.contains("os error 24"), "{log}");
}

/// Bad requests on the stats socket get one sentence, and `stats` prints it.
#[test]
fn bad_stats_requests_get_a_sentence() {
    use std::os::unix::net::UnixStream;
    if !common::have_root("bad_stats_requests_get_a_sentence") {
        return;
    }
    let net = VethPair::new();
    let agent = Agent::start(&net.ns_b, &["--iface", &net.if_b, "--json"]);
    let ask = |req: &[u8]| {
        let mut s = UnixStream::connect(&agent.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(req);
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(ask(&[b'j'; 4096]).starts_with("error: request longer than 256 bytes"));
    assert!(ask(b"json limit=0\n").starts_with("error: limit must be from 1 to"));
    assert!(ask(b"json \xff\n").starts_with("error: request is not UTF-8"));
    assert!(ask(b"json limit=1\n").contains("\"page\""));
    let out = stats_with(&agent.socket, "json", false, &["--limit", "1", "--offset", "5"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["page"]["offset"], 5);
    assert!(v["report"]["phones"].as_array().unwrap().is_empty());
}

/// `run --config`: the file gives the options, and SIGHUP re-reads it: a new grace shows in the
/// next `rto-growth` finding's `grace_s`, with every pair still held; a changed interface is
/// logged as needing a restart and not applied.
#[test]
fn sighup_rereads_the_config_file_and_changes_the_grace_in_place() {
    use keepalive_lab::fixtures::scenario::{self, Vantage};
    if !common::have_root("sighup_rereads_the_config_file_and_changes_the_grace_in_place") {
        return;
    }
    let net = VethPair::new();
    let dir = std::env::temp_dir().join(format!("keepalive-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (conf, pcap) = (dir.join("keepalive.toml"), dir.join("case2.pcap"));
    let write_conf = |grace: u32, iface: &str| {
        let text = format!(
            "iface = [\"{iface}\"]\njson = true\ntime-scale = 40\nreplay = true\ngrace = {grace}\n"
        );
        std::fs::write(&conf, text).unwrap();
    };
    write_conf(15, &net.if_b);
    std::fs::write(&pcap, scenario::port_security(Vantage::PhoneSide).to_pcap()).unwrap();
    let mut agent = Agent::start(&net.ns_b, &["--config", conf.to_str().unwrap()]);
    let replay = Command::new("ip")
        .args(["netns", "exec", &net.ns_a, "tcpreplay", "-q", "--multiplier", "40", "-i"])
        .arg(&net.if_a)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(replay.status.success(), "tcpreplay: {}", String::from_utf8_lossy(&replay.stderr));
    std::thread::sleep(Duration::from_millis(500));
    // (pairs, grace_s of the rto-growth finding)
    let look = |agent: &Agent| {
        let out = stats(&agent.socket, "json", false);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let phones = v["report"]["phones"].as_array().unwrap().clone();
        let grace = phones
            .iter()
            .flat_map(|p| p["findings"].as_array().unwrap().clone())
            .find(|f| f["kind"] == "rto-growth")
            .map(|f| f["grace_s"].as_f64().unwrap());
        (phones.len(), grace)
    };
    let (pairs, before) = look(&agent);
    assert!(pairs > 0, "the replay was tracked");
    let before = before.expect("case study 2 gives rto-growth");
    assert!((before - 15.0 / 40.0).abs() < 1e-9, "grace_s {before}");
    // A new grace, and an interface change that needs a restart.
    write_conf(30, "other0");
    // SAFETY: kill on our child's pid.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    let mut waited = 0;
    let (after_pairs, after) = loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = look(&agent);
        if now.1 != Some(before) || waited > 50 {
            break now;
        }
        waited += 1;
    };
    let (_, log) = agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(after_pairs, pairs, "no pair lost on reload");
    assert!((after.unwrap() - 30.0 / 40.0).abs() < 1e-9, "grace_s after SIGHUP: {after:?}");
    assert!(log.contains("msg=\"configuration reloaded\" applied=timers"), "{log}");
    assert!(
        log.contains("msg=\"changed options need a restart, not applied\" options=iface"),
        "{log}"
    );
}

/// The findings' lifecycle, into a syslog receiver in the router's namespace and on the JSON
/// lines: a phone goes quiet (missed-keepalive) and comes back on a new connection. Its
/// missed-keepalive gives exactly one `firing`, at most one `escalated` per severity step and
/// one `resolved` after the hold-down (60 s nominal, 3 s at ×20), as RFC 5424 messages with the
/// finding as structured data; nothing repeats while the count grows.
#[test]
fn syslog_and_json_lines_carry_one_firing_and_one_resolution_per_episode() {
    use std::net::UdpSocket;
    if !common::have_root("syslog_and_json_lines_carry_one_firing_and_one_resolution_per_episode") {
        return;
    }
    let lab = RouterLab::new();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_rx = stop.clone();
    let receiver = VethPair::in_ns(&lab.ns_router, move || {
        let s = UdpSocket::bind("127.0.0.1:5514").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 8192];
        while !stop_rx.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = s.recv(&mut buf) {
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    });
    ready_rx.recv().unwrap();
    let mut agent = lab.agent(&[
        "--refresh",
        "200ms",
        "--time-scale",
        "20",
        "--syslog",
        "udp://127.0.0.1:5514",
    ]);
    sccp_phone(&lab, "SEP00AB00CD0031", 5, Duration::from_millis(200));
    // Quiet for 3 s: grace 0.75 s at ×20, so the KeepAlives are missed.
    std::thread::sleep(Duration::from_secs(3));
    // Back, on a new connection, for longer than the hold-down.
    sccp_phone(&lab, "SEP00AB00CD0031", 30, Duration::from_millis(200));
    let pid = agent.pid().to_string();
    let (out, log) = agent.stop();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    receiver.join().unwrap();
    assert!(out.status.success(), "{log}");
    let messages: Vec<String> = rx.try_iter().collect();
    let missed: Vec<&String> =
        messages.iter().filter(|m| m.contains("kind=\"missed-keepalive\"")).collect();
    let of =
        |event: &str| missed.iter().filter(|m| m.contains(&format!("event=\"{event}\""))).count();
    assert_eq!(of("firing"), 1, "{missed:#?}");
    assert!(of("escalated") <= 1, "{missed:#?}");
    assert_eq!(of("resolved"), 1, "{missed:#?}");
    // RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG; daemon facility.
    let firing = missed.iter().find(|m| m.contains("event=\"firing\"")).unwrap();
    let fields: Vec<&str> = firing.splitn(7, ' ').collect();
    assert!(fields[0] == "<28>1" || fields[0] == "<26>1", "{firing}");
    assert!(fields[1].ends_with('Z') && fields[1].contains('T'), "{firing}");
    assert_eq!((fields[3], fields[4], fields[5]), ("keepalive", pid.as_str(), "firing"));
    assert!(fields[6].starts_with("[keepalive@32473 id=\""), "{firing}");
    assert!(
        firing.contains(" phone=\"192.0.2.31\"") && firing.contains(" device=\"SEP00AB00CD0031\"")
    );
    let resolved = missed.iter().find(|m| m.contains("event=\"resolved\"")).unwrap();
    assert!(resolved.starts_with("<29>1 "), "a resolution is a notice: {resolved}");
    let id = |m: &str| m.split("id=\"").nth(1).and_then(|r| r.split('"').next()).map(String::from);
    assert_eq!(id(firing), id(resolved), "one episode, one id");
    // The JSON lines carry the same transitions.
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|v: &Value| v["kind"] == "missed-keepalive")
        .collect();
    let events: Vec<&str> = lines.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(events.first(), Some(&"firing"), "{events:?}");
    assert_eq!(events.last(), Some(&"resolved"), "{events:?}");
    assert_eq!(events.iter().filter(|e| **e == "firing").count(), 1, "{events:?}");
    assert!(lines.iter().all(|v| v["id"] == lines[0]["id"]), "{lines:#?}");
}

/// The metrics endpoint as Prometheus and a person's curl meet it: GET, HEAD (the same headers,
/// no body), gzip when asked, 404 and 405 with a sentence, and 100 scrapes at once all answered
/// (at most 8 are served at a time; the rest wait in the backlog).
#[test]
fn the_metrics_endpoint_answers_head_gzip_404_and_100_concurrent_scrapes() {
    use std::io::Read as _;
    if !common::have_root("the_metrics_endpoint_answers_head_gzip_404_and_100_concurrent_scrapes") {
        return;
    }
    let net = VethPair::new();
    let agent = Agent::start(&net.ns_b, &["--iface", &net.if_b, "--json", "--metrics", "9108"]);
    let ns = net.ns_b.clone();
    let (head, body) = split(&http(&ns, 9108, &request("GET", "/metrics", "")));
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(header(&head, "content-length"), Some(body.len().to_string().as_str()), "{head}");
    assert!(header(&head, "content-type").unwrap().starts_with("application/openmetrics-text"));
    parse_metrics(std::str::from_utf8(&body).unwrap());

    let (head, body) = split(&http(&ns, 9108, &request("HEAD", "/metrics", "")));
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.is_empty(), "HEAD has no body");
    assert!(header(&head, "content-length").is_some_and(|n| n.parse::<usize>().unwrap() > 100));

    let (head, body) =
        split(&http(&ns, 9108, &request("GET", "/metrics", "Accept-Encoding: gzip\r\n")));
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
    parse_metrics(&text);
    let (head, _) =
        split(&http(&ns, 9108, &request("GET", "/metrics", "Accept-Encoding: gzip;q=0\r\n")));
    assert_eq!(header(&head, "content-encoding"), None, "gzip;q=0 refuses it");

    let (head, body) = split(&http(&ns, 9108, &request("GET", "/nothing", "")));
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert_eq!(body, b"keepalive serves /metrics\n");
    let (head, _) = split(&http(&ns, 9108, &request("POST", "/metrics", "Content-Length: 0\r\n")));
    assert!(
        head.starts_with("http/1.1 405") && header(&head, "allow") == Some("get, head"),
        "{head}"
    );

    let scrapers: Vec<_> = (0..100)
        .map(|_| {
            let ns = ns.clone();
            std::thread::spawn(move || scrape(&ns, 9108))
        })
        .collect();
    for s in scrapers {
        let out = s.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("# EOF\n"), "{out}");
    }
    drop(agent);
}

/// `--metrics-web-config`: the metrics over TLS with basic auth, as Prometheus' own exporters
/// serve them; curl (with the test's self-signed certificate as its CA) is the client. The
/// right password gets the metrics; a wrong one, or none, gets 401; plain HTTP gets nothing.
#[test]
fn metrics_over_tls_with_basic_auth() {
    if !common::have_root("metrics_over_tls_with_basic_auth") {
        return;
    }
    if !common::have_tools(&["openssl", "curl"], "metrics_over_tls_with_basic_auth") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("keepalive-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (crt, key) = (dir.join("metrics.crt"), dir.join("metrics.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let hash = bcrypt::hash("secret", 4).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: {hash}\n",
            crt.display(),
            key.display()
        ),
    )
    .unwrap();
    let net = VethPair::new();
    let agent = Agent::start(
        &net.ns_b,
        &[
            "--iface",
            &net.if_b,
            "--json",
            "--metrics",
            "9108",
            "--metrics-web-config",
            web.to_str().unwrap(),
        ],
    );
    let curl = |args: &[&str]| -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.ns_b,
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["--max-time", "5", "--cacert"])
            .arg(&crt)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = "https://127.0.0.1:9108/metrics";
    assert_eq!(curl(&["-u", "prometheus:secret", url]), "200");
    assert_eq!(curl(&["-u", "prometheus:wrong", url]), "401");
    assert_eq!(curl(&[url]), "401");
    // Plain HTTP on the TLS port: no HTTP answer.
    assert_eq!(curl(&["-u", "prometheus:secret", "http://127.0.0.1:9108/metrics"]), "000");
    // The body is the metrics.
    let body = Command::new("ip")
        .args(["netns", "exec", &net.ns_b, "curl", "-s", "--max-time", "5", "--cacert"])
        .arg(&crt)
        .args(["-u", "prometheus:secret", url])
        .output()
        .unwrap();
    parse_metrics(&String::from_utf8_lossy(&body.stdout));
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// CUCM's syslog reaches the live agent over UDP (`--cucm-syslog`): a phone goes quiet, its
/// missed-keepalive becomes a critical forecast, and CUCM's KeepAliveTimeout for it is a hit
/// with a positive lead in `stats` and `/metrics`, and ends the forecast's episode with a
/// `cucm-unregistered` JSON line. A restart of a phone the agent never saw is counted as
/// unseen and not scored; a malformed alarm is counted and the agent carries on.
#[test]
fn cucm_syslog_scores_the_forecast_live() {
    use std::net::UdpSocket;
    if !common::have_root("cucm_syslog_scores_the_forecast_live") {
        return;
    }
    let lab = RouterLab::new();
    let mut agent = lab.agent(&[
        "--refresh",
        "200ms",
        "--time-scale",
        "20",
        "--metrics",
        "9110",
        "--cucm-syslog",
        "udp://127.0.0.1:5515",
    ]);
    assert!(agent.log.contains("msg=\"cucm syslog\""), "{}", agent.log);
    sccp_phone(&lab, "SEP00AB00CD0031", 5, Duration::from_millis(200));
    // Quiet: grace 0.75 s at ×20; missed-keepalive turns critical, and CUCM gives up on the
    // phone a moment later.
    let critical = || {
        let out = stats(&agent.socket, "json", false);
        let snap: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        snap["report"]["phones"].as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r["findings"].as_array().is_some_and(|f| {
                    f.iter().any(|f| f["kind"] == "missed-keepalive" && f["severity"] == "critical")
                })
            })
        })
    };
    let t0 = std::time::Instant::now();
    while !critical() {
        assert!(t0.elapsed() < Duration::from_secs(5), "no critical missed-keepalive");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The refresh after the finding turned critical is when the forecast began.
    std::thread::sleep(Duration::from_millis(400));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let lines = [
        keepalive_lab::fixtures::cucm::unregistered(
            Some("cucm-pub"),
            now.as_secs_f64(),
            "SEP00AB00CD0031",
            lab.phone,
            "SCCP",
            13,
        ),
        keepalive_lab::fixtures::cucm::unregistered(
            None,
            now.as_secs_f64(),
            "SEP0000000000FF",
            "192.0.2.99",
            "SCCP",
            15,
        ),
        "<187>80: cucm-pub: %UC_CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP1][Reason"
            .into(),
    ];
    VethPair::in_ns(&lab.ns_router, move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for l in &lines {
            s.send_to(l.as_bytes(), "127.0.0.1:5515").unwrap();
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let out = stats(&agent.socket, "json", false);
    let snap: Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    let c = &snap["report"]["cucm"];
    assert_eq!(
        (c["hits"].as_u64(), c["misses"].as_u64(), c["unseen"].as_u64()),
        (Some(1), Some(0), Some(1)),
        "{c:#}"
    );
    assert_eq!(c["lines"]["malformed"], 1, "{c:#}");
    let hit = &c["unregistrations"][0];
    assert_eq!(hit["verdict"], "hit", "{c:#}");
    let lead = hit["lead_s"].as_f64().unwrap();
    assert!(lead > 0.0 && lead < 10.0, "lead {lead}");
    assert_eq!(c["forecasts"][0]["kind"], "missed-keepalive");
    let row = snap["report"]["phones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phone"] == lab.phone)
        .unwrap();
    assert_eq!(row["unregistered"]["reason"], 13, "{row:#}");
    let metrics = scrape(&lab.ns_router, 9110);
    assert!(
        metrics
            .contains("keepalive_cucm_unregistrations_total{reason=\"13\",predicted=\"true\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("keepalive_cucm_unregistrations_total{reason=\"15\",predicted=\"false\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("keepalive_forecast_lead_seconds_count 1"), "{metrics}");
    assert!(
        metrics.contains("keepalive_cucm_syslog_lines_total{kind=\"malformed\"} 1"),
        "{metrics}"
    );
    let (out, log) = agent.stop();
    assert!(out.status.success(), "{log}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let closing: Vec<&Value> = lines.iter().filter(|v| v["event"] == "cucm-unregistered").collect();
    assert_eq!(closing.len(), 1, "{lines:#?}");
    assert_eq!(closing[0]["kind"], "missed-keepalive");
    assert_eq!(closing[0]["cucm"]["verdict"], "hit");
    let fired =
        lines.iter().find(|v| v["event"] == "firing" && v["kind"] == "missed-keepalive").unwrap();
    assert_eq!(closing[0]["id"], fired["id"], "the forecast's episode ends");
    assert!(log.contains("malformed cucm alarm"), "{log}");
}
