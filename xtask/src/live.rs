//! `cargo xtask bench` parts 2, 4 and 5: the program attached to a real interface, with real
//! traffic, and the agent behind it.
//!
//! Two namespaces joined by a veth pair (`kbench-a` → `kbench-b`, addresses only there);
//! tcpreplay (the generator: this kernel has no pktgen module) sends from `a`, the agent runs
//! on `b`'s end, as the live agent runs on a router's interface.
//! * live cost: the realistic mix (999 of 1 000 frames unrelated: HTTPS, UDP, IPv6; 1 SCCP
//!   KeepAlive) at tcpreplay's top speed, the receiving end's packets per second detached vs
//!   attached, and the kernel's own run time per packet (`BPF_ENABLE_STATS`, `run_time_ns` /
//!   `run_cnt` of the attached program) over the same traffic;
//! * scale: a capture of `--scale-phones` phones (half SCCP, half SIP, each with a full
//!   keepalive history) replayed into the agent: its resident memory (VmRSS, VmHWM), the
//!   events per second it took in without loss, and `keepalive stats` latency over the socket;
//! * event rings: the agent stopped (SIGSTOP) while more events arrive than a ring holds:
//!   every event is either delivered or counted in `ringbuf_full`, none vanishes.

use std::{
    fs,
    io::BufWriter,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use keepalive::{
    loader::{ring_sizes, EMPTY_PROGRAM, PROGRAM, TC_PROGRAM, TOUCH_PORTS_PROGRAM, TOUCH_PROGRAM},
    tracker::pair::HISTORY,
};
use keepalive_common::wire::{Event, EventWithPayload, RingPos};
use keepalive_lab::{
    fixtures::{
        corpus,
        scenario::{self, Rng},
    },
    lab::ip,
};
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    DataLink,
};
use serde::Serialize;

const NS_A: &str = "kbench-a";
const NS_B: &str = "kbench-b";
const IF_A: &str = "kbva";
const IF_B: &str = "kbvb";
const SOCKET: &str = "/run/keepalive/bench.sock";
const BIN: &str = "target/release/keepalive";

/// The two namespaces; removed on drop (deleting a namespace destroys its veth end).
pub(crate) struct Net;

impl Net {
    pub(crate) fn up() -> anyhow::Result<Self> {
        Self::down();
        let net = Net;
        ip(&["netns", "add", NS_A])?;
        ip(&["netns", "add", NS_B])?;
        ip(&["link", "add", "kbtmpa", "type", "veth", "peer", "name", "kbtmpb"])?;
        ip(&["link", "set", "kbtmpa", "netns", NS_A, "name", IF_A])?;
        ip(&["link", "set", "kbtmpb", "netns", NS_B, "name", IF_B])?;
        for (ns, ifn) in [(NS_A, IF_A), (NS_B, IF_B)] {
            ip(&["-n", ns, "link", "set", ifn, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn down() {
        for ns in [NS_A, NS_B] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        Self::down();
    }
}

/// The agent on `kbench-b`; SIGTERM on drop.
pub(crate) struct Agent(Child);

impl Agent {
    pub(crate) fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// The agent with more `run` options.
    pub(crate) fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let _ = fs::remove_file(SOCKET);
        let child = Command::new("ip")
            .args(["netns", "exec", NS_B, BIN, "run", "--iface", IF_B, "--json"])
            .args(["--socket", SOCKET, "--refresh", "1s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the agent")?;
        let agent = Agent(child);
        let t = Instant::now();
        while !Path::new(SOCKET).exists() {
            if t.elapsed() > Duration::from_secs(20) {
                bail!("the agent did not come up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(agent)
    }

    /// The agent process's pid (the child is `ip netns exec`, which execs the agent).
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// `(VmRSS, VmHWM, RssAnon)` in MiB.
    pub(crate) fn memory_mib(&self) -> (f64, f64, f64) {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"), field("RssAnon:"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let _ = self.0.wait();
    }
}

/// `keepalive stats --format json`: the answer's bytes, and how long it took.
pub(crate) fn stats_raw(more: &[&str]) -> anyhow::Result<(Vec<u8>, Duration)> {
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(["stats", "--format", "json", "--socket", SOCKET])
        .args(more)
        .output()?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!("keepalive stats: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((out.stdout, took))
}

/// `keepalive stats --format json`, parsed.
pub(crate) fn stats() -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_slice(&stats_raw(&[])?.0)?)
}

fn counter(v: &serde_json::Value, name: &str) -> u64 {
    v["kernel"][name].as_u64().unwrap_or(0)
}

/// Waits until the agent's event count stops moving (it has drained the ring).
pub(crate) fn settle() -> anyhow::Result<serde_json::Value> {
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let v = stats()?;
        let now = v["userspace"]["records"].as_u64().unwrap_or(0);
        if now == last {
            return Ok(v);
        }
        last = now;
    }
}

/// Packets received on `kbvb` so far.
fn rx_packets() -> anyhow::Result<u64> {
    let out = ip(&["-n", NS_B, "-s", "-j", "link", "show", IF_B])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    v[0]["stats64"]["rx"]["packets"].as_u64().context("rx packets")
}

/// Replays `pcap` from `kbench-a` at top speed `loops` times; returns (packets, seconds).
fn replay(pcap: &Path, loops: u32) -> anyhow::Result<(u64, f64)> {
    replay_at(pcap, loops, None)
}

/// [`replay`] at `pps` packets per second (`None`: top speed).
pub(crate) fn replay_at(pcap: &Path, loops: u32, pps: Option<u32>) -> anyhow::Result<(u64, f64)> {
    let speed = pps.map_or_else(|| "--topspeed".to_owned(), |p| format!("--pps={p}"));
    replay_with(pcap, &[&speed, &format!("--loop={loops}")])
}

/// Replays `pcap` from `kbench-a` with tcpreplay options `speed`; returns (packets, seconds).
fn replay_with(pcap: &Path, speed: &[&str]) -> anyhow::Result<(u64, f64)> {
    let before = rx_packets()?;
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", NS_A, "tcpreplay", "-q"])
        .args(speed)
        .args(["-i", IF_A])
        .arg(pcap)
        .output()
        .context("tcpreplay (scripts/bootstrap.sh installs it)")?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("tcpreplay: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((rx_packets()? - before, secs))
}

fn writer(path: &Path) -> anyhow::Result<PcapWriter<BufWriter<fs::File>>> {
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        snaplen: 65_535,
        ..PcapHeader::default()
    };
    Ok(PcapWriter::with_header(BufWriter::new(fs::File::create(path)?), header)?)
}

/// 10 000 frames: per 1 000, 999 unrelated (HTTPS, UDP, IPv6 UDP in turn) and one SCCP
/// KeepAlive.
fn mix_capture(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("mix.pcap");
    let c = corpus();
    let frame = |name: &str| {
        c.iter().find(|f| f.name == name).map(|f| f.frame.clone()).context("corpus fixture")
    };
    let unrelated = [frame("other-tcp-https")?, frame("other-udp-sip")?, frame("other-udp-ipv6")?];
    let keepalive = frame("sccp-keepalive")?;
    let mut w = writer(&path)?;
    for i in 0..10_000u64 {
        let f = if i % 1000 == 999 { &keepalive } else { &unrelated[(i % 3) as usize] };
        w.write_packet(&PcapPacket::new(Duration::from_micros(i), f.len() as u32, f))?;
    }
    Ok(path)
}

/// `phones` phones, half SCCP and half SIP, one after the other, each with a full history.
fn scale_capture(dir: &Path, phones: u32) -> anyhow::Result<(PathBuf, u64)> {
    let path = dir.join(format!("scale-{phones}.pcap"));
    let mut w = writer(&path)?;
    let mut rng = Rng::new(9);
    let keepalives = HISTORY as u32 + 1;
    let mut frames = 0u64;
    for n in 0..phones {
        let mut tl = scenario::scale_phone(n, keepalives, &mut rng);
        for (ts, f) in tl.frames() {
            w.write_packet(&PcapPacket::new(Duration::from_nanos(*ts), f.len() as u32, f))?;
            frames += 1;
        }
    }
    Ok((path, frames))
}

/// The loaded program `name`'s kernel-measured (run time, run count).
fn program_stats(name: &str) -> anyhow::Result<(u64, u64)> {
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info.name_as_str() == Some(name) {
            return Ok((info.run_time().as_nanos() as u64, info.run_count()));
        }
    }
    bail!("no program {name} is loaded")
}

/// Runs `f` with the baseline program `name` (the empty one, or the one that only reads the
/// EtherType) attached to `kbvb` natively, as the agent attaches.
fn with_baseline<T>(
    name: &'static str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use keepalive::loader::{LoadOptions, Mode, Probe};
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let holder = keepalive_lab::lab::spawn_in(NS_B, move || {
        let probe = Probe::load_bench(&LoadOptions::default()).and_then(|mut p| {
            p.attach_program(IF_B, name, Mode::Native)?;
            Ok(p)
        });
        match probe {
            Ok(p) => {
                let _ = ready_tx.send(Ok(()));
                let _ = stop_rx.recv();
                drop(p);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
            }
        }
    });
    let ready = ready_rx.recv().context("the empty program's thread")?;
    let out = ready.map_err(anyhow::Error::msg).and_then(|()| f());
    let _ = stop_tx.send(());
    let _ = holder.join();
    out
}

/// Packets per second and kernel run time per packet of `program` on the mix: one pass for
/// the rate, one with BPF_ENABLE_STATS (it adds two clock reads per run, so the rate is
/// measured without it).
fn attached_pass(mix: &Path, loops: u32, program: &str) -> anyhow::Result<(f64, f64, u64)> {
    replay(mix, 20)?;
    let (packets, secs) = replay(mix, loops)?;
    let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let (t0, c0) = program_stats(program)?;
    replay(mix, loops)?;
    let (t1, c1) = program_stats(program)?;
    drop(fd);
    let runs = c1 - c0;
    Ok((packets as f64 / secs, (t1 - t0) as f64 / runs.max(1) as f64, runs))
}

/// Live packet rate and kernel run time.
#[derive(Debug, Serialize)]
pub struct LiveCost {
    /// Frames in each pass.
    pub packets: u64,
    /// Share of frames the program matches.
    pub matched_share: f64,
    /// Receiving end's packets per second, no program.
    pub detached_pps: f64,
    /// The same, the empty XDP_PASS program attached (the baseline).
    pub empty_pps: f64,
    /// The same, keepalive attached (agent running).
    pub attached_pps: f64,
    /// Kernel's own run time per packet of the empty program (ns, BPF_ENABLE_STATS).
    pub empty_run_ns: f64,
    /// The same, a program that only reads the EtherType (the first touch of the frame).
    pub touch_run_ns: f64,
    /// Its packets per second.
    pub touch_pps: f64,
    /// The same, a program that reads the EtherType and the ports' bytes (every line of the
    /// frame the gate reads, no decision).
    pub touch_ports_run_ns: f64,
    /// Kernel's own run time per packet of keepalive (ns, BPF_ENABLE_STATS).
    pub run_ns: f64,
    /// Runs the kernel counted in keepalive's stats pass.
    pub run_count: u64,
    /// The same program at tc ingress (`--hook tc`, tcx) instead of XDP: packets per second.
    pub tc_pps: f64,
    /// Its kernel run time per packet (ns).
    pub tc_run_ns: f64,
}

/// The agent at scale.
#[derive(Debug, Serialize)]
pub struct Scale {
    /// Phones in the capture.
    pub phones: u32,
    /// Frames replayed.
    pub frames: u64,
    /// Pairs the agent tracks afterwards.
    pub pairs: u64,
    /// Events the agent took in.
    pub events: u64,
    /// Events lost to a full ring.
    pub ringbuf_full: u64,
    /// Events per second over the replay.
    pub events_per_s: f64,
    /// The replay's rate (frames per second).
    pub replay_pps: u32,
    /// Agent VmRSS after the replay (MiB), with the event rings' pages the agent has read.
    pub rss_mib: f64,
    /// Agent's private memory (RssAnon) after the replay (MiB): what grows with phones.
    pub anon_mib: f64,
    /// VmRSS after the stats requests (freed memory is given back).
    pub after_stats_rss_mib: f64,
    /// Agent VmHWM, peak RSS including the stats requests (MiB).
    pub peak_rss_mib: f64,
    /// `keepalive stats --format json --limit 100000` (the largest page) wall time, median of
    /// 5 (ms).
    pub stats_ms: f64,
    /// Size of that answer (bytes).
    pub stats_bytes: usize,
    /// `keepalive stats --format json` (the default page, 1 000 rows), median of 5 (ms).
    pub stats_default_ms: f64,
    /// Size of that answer (bytes).
    pub stats_default_bytes: usize,
    /// `keepalive stats --format json --phone ADDR` (one phone's pairs), median of 5 (ms).
    pub stats_phone_ms: f64,
    /// Size of that answer (bytes).
    pub stats_phone_bytes: usize,
    /// `/metrics` scrapes (every 200 ms) while the replay is ingested: how many, the median
    /// and the longest (ms). A scrape holds the agent's state for at most its own duration, so
    /// the longest is also a bound on how long it held ingest.
    pub scrapes: usize,
    /// Median scrape while ingesting (ms).
    pub scrape_ms: f64,
    /// Longest scrape while ingesting (ms).
    pub scrape_max_ms: f64,
    /// Size of a scrape (bytes).
    pub scrape_bytes: usize,
    /// The agent's refreshes over the run (`userspace.evaluation` in its stats): evaluated,
    /// and skipped because the evaluator was still busy.
    pub refreshes: u64,
    /// Refreshes skipped.
    pub refreshes_skipped: u64,
    /// The longest a refresh held the agent's state at once (ms), and doing what.
    pub refresh_held_max_ms: f64,
    /// What that hold was doing.
    pub refresh_held_in: String,
    /// The most CPU time the evaluator spent in one hold (ms): the wall-clock figure above
    /// less the time the holder was descheduled.
    pub refresh_held_cpu_max_ms: f64,
    /// The longest the agent's ingest waited for its state (ms), during the replay (the stats
    /// requests after it are not counted).
    pub ingest_waited_max_ms: f64,
}

/// One `/metrics` scrape of the bench agent (127.0.0.1:9108 in its namespace): (bytes, time).
fn scrape_once() -> Option<(usize, Duration)> {
    use std::io::{Read as _, Write as _};
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    out.starts_with(b"HTTP/1.1 200").then(|| (out.len(), t.elapsed()))
}

/// The bench agent's metrics port (in its namespace).
const METRICS_PORT: u16 = 9108;

/// Ring-buffer overflow, counted.
#[derive(Debug, Serialize)]
pub struct RingLoss {
    /// Matched frames while the agent was stopped.
    pub matched: u64,
    /// Events delivered.
    pub events: u64,
    /// Events refused by the full ring.
    pub ringbuf_full: u64,
    /// The event rings' size over all CPUs, event and payload slots (bytes).
    pub ring_bytes: u64,
    /// Event slots per CPU.
    pub event_slots_per_cpu: u64,
    /// With the agent running: (offered events per second, share lost) per step.
    pub ladder: Vec<(f64, f64)>,
}

/// Everything this part measures.
#[derive(Debug, Serialize)]
pub struct Live {
    /// Live cost on the realistic mix.
    pub cost: LiveCost,
    /// The agent at scale.
    pub scale: Scale,
    /// Ring-buffer overflow.
    pub ring: RingLoss,
}

fn live_cost(dir: &Path) -> anyhow::Result<LiveCost> {
    let mix = mix_capture(dir)?;
    let loops = 300;
    replay(&mix, 20)?;
    let (packets, secs) = replay(&mix, loops)?;
    let detached_pps = packets as f64 / secs;
    let (empty_pps, empty_run_ns, _) =
        with_baseline(EMPTY_PROGRAM, || attached_pass(&mix, loops, EMPTY_PROGRAM))?;
    let (touch_pps, touch_run_ns, _) =
        with_baseline(TOUCH_PROGRAM, || attached_pass(&mix, loops, TOUCH_PROGRAM))?;
    let (_, touch_ports_run_ns, _) =
        with_baseline(TOUCH_PORTS_PROGRAM, || attached_pass(&mix, loops, TOUCH_PORTS_PROGRAM))?;
    let agent = Agent::start()?;
    let (attached_pps, run_ns, run_count) = attached_pass(&mix, loops, PROGRAM)?;
    drop(agent);
    let agent = Agent::start_with(&["--hook", "tc"])?;
    let (tc_pps, tc_run_ns, _) = attached_pass(&mix, loops, TC_PROGRAM)?;
    drop(agent);
    Ok(LiveCost {
        packets,
        matched_share: 0.001,
        detached_pps,
        empty_pps,
        attached_pps,
        empty_run_ns,
        touch_run_ns,
        touch_pps,
        touch_ports_run_ns,
        run_ns,
        run_count,
        tc_pps,
        tc_run_ns,
    })
}

fn scale(dir: &Path, phones: u32, pps: u32) -> anyhow::Result<Scale> {
    let (pcap, frames) = scale_capture(dir, phones)?;
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let agent = Agent::start_with(&["--metrics", &metrics])?;
    // A scraper every 200 ms while the replay is ingested, in the agent's namespace.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = stop.clone();
        keepalive_lab::lab::spawn_in(NS_B, move || {
            let mut got = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(s) = scrape_once() {
                    got.push(s);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            got
        })
    };
    let t = Instant::now();
    replay_at(&pcap, 1, Some(pps))?;
    stop.store(true, Ordering::Relaxed);
    let scraped = scraper.join().unwrap_or_default();
    let mut scrape_times: Vec<f64> = scraped.iter().map(|(_, d)| d.as_secs_f64() * 1e3).collect();
    let scrape_max_ms = scrape_times.iter().copied().fold(0.0, f64::max);
    let scrape_bytes = scraped.last().map_or(0, |(n, _)| *n);
    let scrapes = scrape_times.len();
    let scrape_ms = if scrape_times.is_empty() { 0.0 } else { crate::median(&mut scrape_times) };
    let v = settle()?;
    // The ingest time: the replay plus the drain, less the idle wait `settle` ends with.
    let secs = t.elapsed().as_secs_f64() - 1.5;
    let (rss_mib, _, anon_mib) = agent.memory_mib();
    // Median of 5 of each: the whole state, then one phone's pairs (`--phone`). (`--findings`
    // lists every phone here: the replay squeezes each phone's history into milliseconds, so
    // by the end every phone is long overdue.)
    let timed = |more: &[&str]| -> anyhow::Result<(f64, usize)> {
        let (mut times, mut bytes) = (Vec::new(), 0);
        for _ in 0..5 {
            let (body, took) = stats_raw(more)?;
            times.push(took.as_secs_f64() * 1e3);
            bytes = body.len();
        }
        Ok((crate::median(&mut times), bytes))
    };
    // The whole state (the largest page), then the default page of 1 000 rows.
    let (stats_ms, stats_bytes) = timed(&["--limit", "100000"])?;
    let (stats_default_ms, stats_default_bytes) = timed(&[])?;
    let one = v["report"]["phones"][0]["phone"].as_str().unwrap_or("0.0.0.0").to_string();
    let (stats_phone_ms, stats_phone_bytes) = timed(&["--phone", &one])?;
    let (after_stats_rss_mib, peak_rss_mib, _) = agent.memory_mib();
    let events = counter(&v, "events");
    let _ = fs::remove_file(&pcap);
    drop(agent);
    Ok(Scale {
        phones,
        frames,
        pairs: v["report"]["summary"]["phones"].as_u64().unwrap_or(0),
        events,
        ringbuf_full: counter(&v, "ringbuf_full"),
        events_per_s: events as f64 / secs,
        replay_pps: pps,
        rss_mib,
        anon_mib,
        after_stats_rss_mib,
        peak_rss_mib,
        stats_ms,
        stats_bytes,
        stats_default_ms,
        stats_default_bytes,
        stats_phone_ms,
        stats_phone_bytes,
        scrapes,
        scrape_ms,
        scrape_max_ms,
        scrape_bytes,
        refreshes: v["userspace"]["evaluation"]["refreshes"].as_u64().unwrap_or(0),
        refreshes_skipped: v["userspace"]["evaluation"]["skipped"].as_u64().unwrap_or(0),
        refresh_held_max_ms: v["userspace"]["evaluation"]["held_max_us"].as_f64().unwrap_or(0.0)
            / 1e3,
        refresh_held_in: v["userspace"]["evaluation"]["held_max_in"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        refresh_held_cpu_max_ms: v["userspace"]["evaluation"]["held_cpu_max_us"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e3,
        ingest_waited_max_ms: v["userspace"]["evaluation"]["ingest_waited_max_us"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e3,
    })
}

fn ring_loss(dir: &Path) -> anyhow::Result<RingLoss> {
    // SCCP KeepAlives only (one event each): 400 000 events in the stopped case, far more than
    // a CPU's event ring holds.
    let path = dir.join("keepalives.pcap");
    let c = corpus();
    let ka = c.iter().find(|f| f.name == "sccp-keepalive").context("corpus fixture")?;
    let mut w = writer(&path)?;
    for i in 0..10_000u64 {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(i),
            ka.frame.len() as u32,
            &ka.frame,
        ))?;
    }
    drop(w);
    let agent = Agent::start()?;
    // The rate where loss starts: steps of 400 000 events, the agent draining as it runs.
    let mut ladder = Vec::new();
    for pps in [Some(100_000), Some(200_000), Some(400_000), None] {
        let before = stats()?;
        let (n, secs) = replay_at(&path, 40, pps)?;
        let after = settle()?;
        let lost = counter(&after, "ringbuf_full") - counter(&before, "ringbuf_full");
        ladder.push((n as f64 / secs, lost as f64 / n.max(1) as f64));
    }
    let before = stats()?;
    agent.signal(libc::SIGSTOP);
    replay(&path, 40)?;
    agent.signal(libc::SIGCONT);
    let after = settle()?;
    let d = |name: &str| counter(&after, name) - counter(&before, name);
    let _ = fs::remove_file(&path);
    Ok(RingLoss {
        matched: d("matched_tcp") + d("matched_arp"),
        events: d("events"),
        ringbuf_full: d("ringbuf_full"),
        ring_bytes: ring_bytes()?,
        event_slots_per_cpu: 1 << ring_sizes(cpus()?).0,
        ladder,
    })
}

fn cpus() -> anyhow::Result<u32> {
    Ok(aya::util::nr_cpus().map_err(|(p, e)| anyhow::anyhow!("{p}: {e}"))? as u32)
}

/// The agent's event rings over all CPUs, at the loader's default sizes (bytes).
pub fn ring_bytes() -> anyhow::Result<u64> {
    let cpus = cpus()?;
    let (e, p) = ring_sizes(cpus);
    let map = |log2: u8, each: usize| u64::from(RingPos::map_entries(cpus, log2)) * each as u64;
    Ok(map(e, size_of::<Event>()) + map(p, size_of::<EventWithPayload>()))
}

/// Runs only the agent at scale (root): `cargo xtask bench --scale-only`.
pub fn run_scale(phones: u32, pps: u32) -> anyhow::Result<Scale> {
    crate::cargo(&["build", "--release", "--quiet", "-p", "keepalive-user"])?;
    let dir = PathBuf::from("target/bench");
    fs::create_dir_all(&dir)?;
    let _net = Net::up()?;
    scale(&dir, phones, pps)
}

/// Runs only the live cost on the veth, XDP and tc (root): `cargo xtask bench --live-cost-only`.
pub fn run_cost() -> anyhow::Result<LiveCost> {
    crate::cargo(&["build", "--release", "--quiet", "-p", "keepalive-user"])?;
    let dir = PathBuf::from("target/bench");
    fs::create_dir_all(&dir)?;
    let _net = Net::up()?;
    live_cost(&dir)
}

/// Runs the live part (root).
pub fn run(scale_phones: u32, scale_pps: u32) -> anyhow::Result<Live> {
    crate::cargo(&["build", "--release", "--quiet", "-p", "keepalive-user"])?;
    let dir = PathBuf::from("target/bench");
    fs::create_dir_all(&dir)?;
    let _net = Net::up()?;
    let cost = live_cost(&dir)?;
    let scale = scale(&dir, scale_phones, scale_pps)?;
    let ring = ring_loss(&dir)?;
    Ok(Live { cost, scale, ring })
}

/// Replays `pcap` from `kbench-a` `scale` times faster than it was captured, each frame sent at
/// its own deadline (`start + (ts − ts₀) / scale`); returns (packets, seconds).
///
/// tcpreplay's `--multiplier` sleeps from one frame to the next, so its oversleeps add up: on
/// this machine 90 000 frames at ×288 took 3–6 % longer than they should, which a time-scaled
/// agent reads as every keepalive arriving late. Absolute deadlines keep the error per frame
/// (the scheduler's oversleep, tens of microseconds) from accumulating.
pub(crate) fn replay_paced(pcap: &Path, scale: f64) -> anyhow::Result<(u64, f64)> {
    let before = rx_packets()?;
    let frames = read_frames(pcap)?;
    let t = Instant::now();
    keepalive_lab::lab::spawn_in(NS_A, move || send_paced(&frames, scale))
        .join()
        .map_err(|_| anyhow::anyhow!("the paced replayer panicked"))??;
    let secs = t.elapsed().as_secs_f64();
    Ok((rx_packets()? - before, secs))
}

fn read_frames(pcap: &Path) -> anyhow::Result<Vec<(Duration, Vec<u8>)>> {
    let file = fs::File::open(pcap).with_context(|| format!("open {}", pcap.display()))?;
    let mut reader = pcap_file::pcap::PcapReader::new(std::io::BufReader::new(file))?;
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p?;
        out.push((p.timestamp, p.data.into_owned()));
    }
    Ok(out)
}

/// Sends `frames` on `IF_A` (the calling thread is in `kbench-a`) through an `AF_PACKET` raw
/// socket: the frames go out as they are, like tcpreplay's.
fn send_paced(frames: &[(Duration, Vec<u8>)], scale: f64) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(IF_A)?;
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("{IF_A}: {}", std::io::Error::last_os_error());
    }
    // Protocol 0: a socket that only sends (packet(7): no frames are queued to it).
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned here.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    let Some(t0) = frames.first().map(|f| f.0) else { return Ok(()) };
    let start = Instant::now();
    for (ts, data) in frames {
        let due = start + ts.saturating_sub(t0).div_f64(scale);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if data.len() >= 6 {
            sll.sll_addr[..6].copy_from_slice(&data[..6]);
        }
        // SAFETY: data and sll outlive the call; the lengths are theirs.
        let n = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                data.as_ptr().cast(),
                data.len(),
                0,
                std::ptr::addr_of!(sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            bail!("send on {IF_A}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_one_keepalive_per_thousand_frames() {
        let dir = std::env::temp_dir().join(format!("kbench-mix-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = mix_capture(&dir).unwrap();
        let mut r = pcap_file::pcap::PcapReader::new(fs::File::open(&path).unwrap()).unwrap();
        let ka = corpus().into_iter().find(|f| f.name == "sccp-keepalive").unwrap().frame;
        let (mut n, mut k) = (0, 0);
        while let Some(p) = r.next_packet() {
            n += 1;
            k += usize::from(p.unwrap().data.as_ref() == ka.as_slice());
        }
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!((n, k), (10_000, 10));
    }
}
