//! `cargo xtask bench` (parts 3, 1, then 2, 4 and 5 in [`crate::live`]): the XDP program's
//! cost per packet class, measured with
//! BPF_PROG_TEST_RUN (the kernel's own per-run average) against an empty XDP_PASS program built
//! in the same object and run in the same loop, trials interleaved so drift hits both alike.

use std::{
    fs,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::median;
use anyhow::Context as _;
use keepalive::{
    loader::{LoadOptions, Probe, EMPTY_PROGRAM, FLOOR_PROGRAMS, PROGRAM},
    source::{live::LiveSource, rings::EventRings},
};
use keepalive_common::wire::{Config, Event, EventWithPayload};
use keepalive_lab::fixtures::corpus;
use serde::Serialize;

/// Bench options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// BPF_PROG_TEST_RUN repeat count per trial.
    #[arg(long, default_value_t = 1_000_000)]
    pub repeat: u32,
    /// Interleaved trials per class (the median is reported).
    #[arg(long, default_value_t = 7)]
    pub trials: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/xdp.json")]
    pub out: PathBuf,
    /// Phones in the generated capture of the offline comparison (analyze vs tshark).
    #[arg(long, default_value_t = 2500)]
    pub offline_phones: u32,
    /// Minutes of traffic in that capture (2 500 phones × 40 min ≈ 1.0 M packets).
    #[arg(long, default_value_t = 40)]
    pub offline_minutes: u32,
    /// Phones in the second, phone-heavy capture: 2 500 SCCP and 2 500 SIP phones, half the
    /// frames unrelated traffic.
    #[arg(long, default_value_t = 5000)]
    pub offline_heavy_phones: u32,
    /// Minutes of traffic in that capture (5 000 phones × 30 min ≈ 1.6 M packets).
    #[arg(long, default_value_t = 30)]
    pub offline_heavy_minutes: u32,
    /// Run only the offline comparison (no root needed).
    #[arg(long)]
    pub offline_only: bool,
    /// Skip the offline comparison.
    #[arg(long, conflicts_with = "offline_only")]
    pub no_offline: bool,
    /// Skip the live part (veth, agent at scale, event rings).
    #[arg(long)]
    pub no_live: bool,
    /// Phones replayed into the agent in the scale part.
    #[arg(long, default_value_t = 100_000)]
    pub scale_phones: u32,
    /// Replay rate of the scale part (frames per second), below the agent's drain rate so the
    /// memory figure is of every phone.
    #[arg(long, default_value_t = 150_000)]
    pub scale_pps: u32,
    /// Run only the soak: a time-scaled day of a site, the case studies and a background
    /// flood replayed into the agent (writes target/bench/soak.json).
    #[arg(long, conflicts_with = "flood")]
    pub soak: bool,
    /// Run only the flood part (also run after the live part).
    #[arg(long)]
    pub flood: bool,
    /// Run only the live cost on the veth: the program in XDP and at tc ingress against the
    /// empty and EtherType-reading baselines.
    #[arg(long, conflicts_with_all = ["soak", "flood", "scale_only"])]
    pub live_cost_only: bool,
    /// Run only the agent at scale (`--scale-phones`), e.g. at the `--max-phones` limit.
    #[arg(long, conflicts_with_all = ["soak", "flood"])]
    pub scale_only: bool,
    /// Nominal hours the soak replays.
    #[arg(long, default_value_t = 24)]
    pub soak_hours: u32,
    /// How many times faster than real time the soak runs (24 h at 288: 5 minutes).
    #[arg(long, default_value_t = 288)]
    pub soak_scale: u32,
}

/// Memory for the event rings of the class table, over all CPUs: each trial's runs take fresh
/// slots (a real reservation and write each), as many as fit.
const RING_BUDGET: u64 = 2 << 30;

/// Packet classes and the corpus fixture that stands for each.
const CLASSES: &[(&str, &str, bool)] = &[
    ("non-matching TCP (HTTPS)", "other-tcp-https", false),
    ("UDP", "other-udp-sip", false),
    ("IPv6 UDP", "other-udp-ipv6", false),
    ("SCCP KeepAlive", "sccp-keepalive", true),
    ("TCP ACK on 2000 (no payload)", "sccp-ack-padded", true),
    ("SIP REGISTER (copy ~1 KB)", "sip-register", true),
    ("SCCP/TLS, two records", "sccp-tls-two-records", true),
    ("ARP reply", "arp-reply-asa", true),
];

#[derive(Debug, Serialize)]
struct ClassResult {
    class: &'static str,
    fixture: &'static str,
    matched: bool,
    frame_bytes: usize,
    empty_ns: f64,
    keepalive_ns: f64,
    overhead_ns: f64,
    ratio: f64,
    trials_keepalive_ns: Vec<f64>,
    trials_empty_ns: Vec<f64>,
}

/// One piece of a matched frame's work on its own (keepalive-ebpf `floor.rs`).
#[derive(Debug, Serialize)]
struct FloorResult {
    program: &'static str,
    piece: &'static str,
    empty_ns: f64,
    piece_ns: f64,
    overhead_ns: f64,
}

/// What each floor program does.
const FLOOR: [&str; 4] = [
    "bpf_ktime_get_ns (the event's time)",
    "event in a BPF ring buffer record",
    "event in an event-ring slot (used)",
    "IPv4 flow lookup + update",
];

/// A matched class with the agent's reader draining the ring while the program runs.
#[derive(Debug, Serialize)]
struct ReaderResult {
    class: &'static str,
    fixture: &'static str,
    runs_per_call: u32,
    empty_ns: f64,
    keepalive_ns: f64,
    overhead_ns: f64,
    events: u64,
    ringbuf_full: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    kernel: String,
    repeat: u32,
    trials: usize,
    method: &'static str,
    /// Instructions the verifier walked to accept each program of the object (its limit for
    /// each: 1 000 000): the gate, then the programs it tail-calls.
    verified_instructions: Vec<(&'static str, u32)>,
    results: Vec<ClassResult>,
    floor: Vec<FloorResult>,
    with_reader_method: &'static str,
    with_reader: Vec<ReaderResult>,
}

/// Runs the offline comparison on both captures, prints it and writes
/// `target/bench/offline.json`.
fn offline(a: &Args) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for (phones, minutes) in
        [(a.offline_phones, a.offline_minutes), (a.offline_heavy_phones, a.offline_heavy_minutes)]
    {
        let o = crate::offline::run(crate::offline::Params { phones, minutes, runs: 5 })?;
        println!(
            "offline, {} ({} packets, {} MB): keepalive analyze {:.2} M packets/s on one core \
             (target 5), tshark {:.3} M packets/s: {:.0}x (peak RSS {:.0} MiB vs {:.0} MiB)",
            o.capture,
            o.packets,
            o.bytes / 1_000_000,
            o.analyze_pps / 1e6,
            o.tshark_pps / 1e6,
            o.ratio,
            o.analyze.iter().map(|r| r.max_rss_mib).fold(0.0, f64::max),
            o.tshark.max_rss_mib,
        );
        all.push(o);
    }
    fs::create_dir_all("target/bench")?;
    fs::write("target/bench/offline.json", serde_json::to_string_pretty(&all)?)?;
    println!("written to target/bench/offline.json");
    Ok(())
}

/// Runs the benchmarks and prints/writes them.
pub fn run(a: &Args) -> anyhow::Result<()> {
    if a.soak {
        return soak(a);
    }
    if a.flood {
        return flood();
    }
    if a.live_cost_only {
        let c = crate::live::run_cost()?;
        print_cost(&c);
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(());
    }
    if a.scale_only {
        let s = crate::live::run_scale(a.scale_phones, a.scale_pps)?;
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    // Offline first: a child's peak RSS (wait4) counts what it inherited at fork, and the XDP
    // part maps up to 2 GiB of event rings into this process.
    if !a.no_offline {
        offline(a)?;
    }
    if a.offline_only {
        return Ok(());
    }
    xdp(a)?;
    if !a.no_live {
        live(a)?;
        flood()?;
    }
    Ok(())
}

/// The flood part; prints it and writes `target/bench/flood.json`.
fn flood() -> anyhow::Result<()> {
    let f = crate::soak::run_flood()?;
    println!("flood: 1 000 000 spoofed SYNs after {} real phones:", f.site_phones);
    for s in &f.steps {
        println!(
            "  offered {:.0} k/s (achieved {:.0} k/s): RSS {:.1} → {:.1} (largest) → {:.1} MiB; \
             events {} shed {} lost {}; flows created {}; phones {} → {}; candidates {} ({} \
             evicted); stats {:.0} ms ({} bytes)",
            f64::from(s.offered_pps) / 1e3,
            s.achieved_pps / 1e3,
            s.rss_before_mib,
            s.rss_during_mib,
            s.rss_after_mib,
            s.events,
            s.shed,
            s.ringbuf_full,
            s.flows_created,
            s.phones.0,
            s.phones.1,
            s.candidates,
            s.candidates_full,
            s.stats_ms,
            s.stats_bytes,
        );
    }
    fs::create_dir_all("target/bench")?;
    fs::write("target/bench/flood.json", serde_json::to_string_pretty(&f)?)?;
    println!("written to target/bench/flood.json");
    Ok(())
}

/// The soak; prints it and writes `target/bench/soak.json`.
fn soak(a: &Args) -> anyhow::Result<()> {
    let s = crate::soak::run_soak(a.soak_hours, a.soak_scale)?;
    println!(
        "soak: {} h at ×{} in {:.0} s, {} frames ({} of them flood): RSS {:.1} → {:.1} MiB, slope \
         over the second half {:+.2} MiB/h; events {} (shed {}, lost {}); rows {} of {} as \
         analyze gives them",
        s.hours,
        s.scale,
        s.wall_s,
        s.frames,
        s.flood_frames,
        s.rss.first().map_or(0.0, |r| r.1),
        s.rss.last().map_or(0.0, |r| r.1),
        s.slope_mib_per_hour,
        s.events,
        s.shed,
        s.ringbuf_full,
        s.rows_matching,
        s.rows,
    );
    for d in &s.differences {
        println!("  differs: {d}");
    }
    fs::create_dir_all("target/bench")?;
    fs::write("target/bench/soak.json", serde_json::to_string_pretty(&s)?)?;
    println!("written to target/bench/soak.json");
    Ok(())
}

/// The live part; prints it and writes `target/bench/live.json`.
fn live(a: &Args) -> anyhow::Result<()> {
    let l = crate::live::run(a.scale_phones, a.scale_pps)?;
    print_cost(&l.cost);
    print_scale(&l)
}

/// The live cost's lines.
fn print_cost(c: &crate::live::LiveCost) {
    println!(
        "live veth, realistic mix (0.1 % SCCP), {} packets at tcpreplay's top speed:",
        c.packets
    );
    println!(
        "  packets/s: detached {:.0} k, empty program {:.0} k, EtherType read {:.0} k, keepalive \
         {:.0} k ({:+.1} % vs empty, {:+.1} % vs the read; target within -3 % of the read)",
        c.detached_pps / 1e3,
        c.empty_pps / 1e3,
        c.touch_pps / 1e3,
        c.attached_pps / 1e3,
        (c.attached_pps / c.empty_pps - 1.0) * 100.0,
        (c.attached_pps / c.touch_pps - 1.0) * 100.0,
    );
    println!(
        "  kernel run time per packet (BPF_ENABLE_STATS, {} runs): empty {:.1} ns, EtherType read \
         {:.1} ns, keepalive {:.1} ns: {:+.1} over the read (target +5), {:+.1} over empty",
        c.run_count,
        c.empty_run_ns,
        c.touch_run_ns,
        c.run_ns,
        c.run_ns - c.touch_run_ns,
        c.run_ns - c.empty_run_ns,
    );
    println!(
        "  a program reading the EtherType and the ports' bytes (the frame's lines the gate \
         reads, no decision): {:.1} ns, {:+.1} over the EtherType read; keepalive {:+.1} over it",
        c.touch_ports_run_ns,
        c.touch_ports_run_ns - c.touch_run_ns,
        c.run_ns - c.touch_ports_run_ns,
    );
    println!(
        "  the same program at tc ingress (--hook tc, tcx): {:.0} k packets/s ({:+.1} % vs XDP), \
         {:.1} ns per packet ({:+.1} vs XDP)",
        c.tc_pps / 1e3,
        (c.tc_pps / c.attached_pps - 1.0) * 100.0,
        c.tc_run_ns,
        c.tc_run_ns - c.run_ns,
    );
}

/// The scale and ring lines of the live part.
fn print_scale(l: &crate::live::Live) -> anyhow::Result<()> {
    let s = &l.scale;
    println!(
        "agent at scale: {} phones ({} frames replayed at {} k/s): {} pairs, {} events at {:.0} k events/s, \
         ringbuf_full {}; agent private memory {:.0} MiB + the {:.1} MiB event rings (VmRSS {:.0} \
         MiB); peak {:.0} MiB while answering stats, {:.0} MiB after; \
         `keepalive stats --format json --limit 100000` {:.0} ms for {:.1} MB, the default page \
         {:.0} ms for {:.1} MB, one phone (--phone) {:.0} ms for {:.1} kB; {} /metrics scrapes while \
         ingesting: median {:.1} ms, longest {:.1} ms, {:.1} kB; {} refreshes ({} skipped while \
         the evaluator was busy), the state held by a refresh {:.1} ms at most ({}; {:.1} ms of CPU at most), the ingest \
         kept waiting {:.1} ms at most",
        s.phones,
        s.frames,
        s.replay_pps / 1000,
        s.pairs,
        s.events,
        s.events_per_s / 1e3,
        s.ringbuf_full,
        s.anon_mib,
        l.ring.ring_bytes as f64 / f64::from(1 << 20),
        s.rss_mib,
        s.peak_rss_mib,
        s.after_stats_rss_mib,
        s.stats_ms,
        s.stats_bytes as f64 / 1e6,
        s.stats_default_ms,
        s.stats_default_bytes as f64 / 1e6,
        s.stats_phone_ms,
        s.stats_phone_bytes as f64 / 1e3,
        s.scrapes,
        s.scrape_ms,
        s.scrape_max_ms,
        s.scrape_bytes as f64 / 1e3,
        s.refreshes,
        s.refreshes_skipped,
        s.refresh_held_max_ms,
        s.refresh_held_in,
        s.refresh_held_cpu_max_ms,
        s.ingest_waited_max_ms,
    );
    let r = &l.ring;
    println!(
        "event rings ({} events per CPU), agent stopped: {} matched = {} delivered + {} counted in \
         ringbuf_full{}",
        r.event_slots_per_cpu,
        r.matched,
        r.events,
        r.ringbuf_full,
        if r.events + r.ringbuf_full == r.matched { "" } else { "  (MISMATCH)" },
    );
    for (rate, lost) in &r.ladder {
        println!(
            "  agent running, {:.0} k events/s offered: {:.2} % lost (counted)",
            rate / 1e3,
            lost * 100.0
        );
    }
    fs::write("target/bench/live.json", serde_json::to_string_pretty(&l)?)?;
    println!("written to target/bench/live.json");
    Ok(())
}

/// XDP cost per packet class; prints it and writes `--out`.
fn xdp(a: &Args) -> anyhow::Result<()> {
    // Rings as large as the budget allows, so a trial's runs each take a fresh slot; a trial
    // runs at most as many times as its ring has slots, and the rings are read between trials.
    let cpus = aya::util::nr_cpus().map_err(|(p, e)| anyhow::anyhow!("{p}: {e}"))? as u64;
    let log2 = |share: u64, each: usize, max: u8| {
        ((RING_BUDGET / 2 * share / 4 / cpus / each as u64).max(1).ilog2() as u8).min(max)
    };
    let (event_log2, payload_log2) =
        (log2(3, size_of::<Event>(), 20), log2(1, size_of::<EventWithPayload>(), 18));
    let mut probe = Probe::load_bench(&LoadOptions {
        config: Config::DEFAULT,
        event_slots_log2: event_log2,
        payload_slots_log2: payload_log2,
        ..LoadOptions::default()
    })
    .context("loading the XDP object (run as root)")?;
    let mut ring = probe.rings()?;
    let runs = |name: &str| {
        let slots = 1u32 << if payload_ring(name) { payload_log2 } else { event_log2 };
        a.repeat.min(slots)
    };
    let fixtures = corpus();
    let mut results = Vec::new();
    for &(class, name, matched) in CLASSES {
        let frame = &fixtures.iter().find(|f| f.name == name).context("fixture")?.frame;
        let (mut ka, mut empty) = trials(a, &mut probe, &mut ring, PROGRAM, frame, runs(name))?;
        let (tk, te) = (ka.clone(), empty.clone());
        let (k, e) = (median(&mut ka), median(&mut empty));
        results.push(ClassResult {
            class,
            fixture: name,
            matched,
            frame_bytes: frame.len(),
            empty_ns: e,
            keepalive_ns: k,
            overhead_ns: k - e,
            ratio: k / e.max(1.0),
            trials_keepalive_ns: tk,
            trials_empty_ns: te,
        });
    }
    // The floor: the pieces of a matched frame's work, each alone, on the SCCP frame.
    let frame = &fixtures.iter().find(|f| f.name == "sccp-keepalive").context("fixture")?.frame;
    let mut floor = Vec::new();
    for (program, piece) in FLOOR_PROGRAMS.into_iter().zip(FLOOR) {
        probe.load_program(program)?;
        let (mut p, mut empty) =
            trials(a, &mut probe, &mut ring, program, frame, runs("sccp-keepalive"))?;
        let (p, e) = (median(&mut p), median(&mut empty));
        floor.push(FloorResult { program, piece, empty_ns: e, piece_ns: p, overhead_ns: p - e });
    }
    let c = probe.counters()?;
    anyhow::ensure!(c.ringbuf_full == 0, "an event ring filled during the bench: {c:?}");
    let mut verified_instructions = vec![(PROGRAM, probe.verified_instructions(PROGRAM)?)];
    for (name, _) in keepalive::loader::TAIL_PROGRAMS {
        verified_instructions.push((name, probe.verified_instructions(name)?));
    }
    drop((ring, probe));
    println!(
        "XDP cost per packet, BPF_PROG_TEST_RUN, repeat {} x {} interleaved trials (median)",
        a.repeat, a.trials
    );
    println!(
        "{:<28} {:>8} {:>10} {:>10} {:>10} {:>7}",
        "class", "bytes", "empty ns", "keepalive", "overhead", "ratio"
    );
    for r in &results {
        println!(
            "{:<28} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>7.2}",
            r.class, r.frame_bytes, r.empty_ns, r.keepalive_ns, r.overhead_ns, r.ratio
        );
    }
    // The realistic mix (99.9 % unrelated: the three unmatched classes in equal shares, one
    // SCCP KeepAlive per thousand), weighted from the rows above; the live part replays the
    // same mix through a veth.
    let by = |name: &str| results.iter().find(|r| r.fixture == name);
    if let (Some(k), [a, b, c]) = (
        by("sccp-keepalive"),
        [by("other-tcp-https"), by("other-udp-sip"), by("other-udp-ipv6")].map(Option::unwrap),
    ) {
        let mix = |f: fn(&ClassResult) -> f64| 0.999 * (f(a) + f(b) + f(c)) / 3.0 + 0.001 * f(k);
        let (mk, me) = (mix(|r| r.keepalive_ns), mix(|r| r.empty_ns));
        println!(
            "{:<28} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>7.2}",
            "realistic mix (weighted)",
            "",
            me,
            mk,
            mk - me,
            mk / me.max(1.0)
        );
    }
    println!("the floor of a matched frame: each piece alone, on the SCCP KeepAlive frame");
    println!("{:<36} {:>10} {:>10} {:>10}", "piece", "empty ns", "piece ns", "overhead");
    for f in &floor {
        println!(
            "{:<36} {:>10.1} {:>10.1} {:>10.1}",
            f.piece, f.empty_ns, f.piece_ns, f.overhead_ns
        );
    }
    let report = Report {
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        repeat: a.repeat,
        trials: a.trials,
        method: "BPF_PROG_TEST_RUN average ns per run; event rings of up to 2 GiB read \
                 between trials, so every matched run writes and publishes a fresh slot (runs \
                 per call: --repeat, or the ring's slots per CPU when fewer)",
        verified_instructions,
        results,
        floor,
        with_reader_method: "the matched classes again, on rings of 65 536 events and 8 192 \
                             payloads per CPU read concurrently by the agent's own reader \
                             (LiveSource, polling every 10 ms) on another thread; each \
                             BPF_PROG_TEST_RUN call fills at most half a ring, and the next \
                             starts once the reader has taken every event",
        with_reader: with_reader(a)?,
    };
    if let Some(dir) = a.out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&a.out, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", a.out.display());
    Ok(())
}

/// Whether the class's fixture takes payload slots (SIP with payload) rather than event slots.
fn payload_ring(fixture: &str) -> bool {
    fixture.starts_with("sip") && !fixture.contains("tls")
}

/// `--trials` calls of `repeat` runs of `program` and of the empty program on `frame`,
/// interleaved so that drift hits both alike, the rings read after each pair: the kernel's
/// average ns per run, each.
fn trials(
    a: &Args,
    probe: &mut Probe,
    rings: &mut EventRings,
    program: &'static str,
    frame: &[u8],
    repeat: u32,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut p, mut empty) = (Vec::new(), Vec::new());
    let mut taken = Vec::new();
    for _ in 0..a.trials {
        empty.push(probe.test_run(EMPTY_PROGRAM, frame, repeat)?.1.as_nanos() as f64);
        p.push(probe.test_run(program, frame, repeat)?.1.as_nanos() as f64);
        while rings.drain(&mut taken, 1 << 16) > 0 {
            taken.clear();
        }
    }
    Ok((p, empty))
}

/// The matched classes with the rings read as the agent reads them, while the program runs:
/// the slots are reused rather than fresh, and their cache lines go back and forth between the
/// program's CPU and the reader's.
fn with_reader(a: &Args) -> anyhow::Result<Vec<ReaderResult>> {
    let opts =
        LoadOptions { event_slots_log2: 16, payload_slots_log2: 13, ..LoadOptions::default() };
    let mut probe = Probe::load_bench(&opts).context("loading the XDP object")?;
    let ring = probe.rings()?;
    let (stop, read) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (stop, read) = (stop.clone(), read.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let mut source = LiveSource::new(ring);
                let mut batch = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let next = source.next_batch(&mut batch);
                    if let Ok(n) = tokio::time::timeout(Duration::from_millis(100), next).await {
                        read.fetch_add(n as u64, Ordering::Relaxed);
                        batch.clear();
                    }
                }
                Ok(())
            })
        })
    };
    // Waits until the reader has taken every event written so far.
    let caught_up = |probe: &Probe| -> anyhow::Result<()> {
        let want = probe.counters()?.events;
        let deadline = Instant::now() + Duration::from_secs(10);
        while read.load(Ordering::Relaxed) < want {
            anyhow::ensure!(Instant::now() < deadline, "the reader fell behind");
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    };
    let fixtures = corpus();
    let mut out = Vec::new();
    for &(class, name, matched) in CLASSES {
        if !matched {
            continue;
        }
        let frame = &fixtures.iter().find(|f| f.name == name).context("fixture")?.frame;
        let log2 = if payload_ring(name) { opts.payload_slots_log2 } else { opts.event_slots_log2 };
        let runs = (1u32 << (log2 - 1)).min(a.repeat);
        let calls = a.repeat.div_ceil(runs);
        let before = probe.counters()?;
        let (mut ka, mut empty) = (Vec::new(), Vec::new());
        for _ in 0..a.trials {
            let (mut k, mut e) = (0.0, 0.0);
            for _ in 0..calls {
                e += probe.test_run(EMPTY_PROGRAM, frame, runs)?.1.as_nanos() as f64;
                k += probe.test_run(PROGRAM, frame, runs)?.1.as_nanos() as f64;
                caught_up(&probe)?;
            }
            ka.push(k / f64::from(calls));
            empty.push(e / f64::from(calls));
        }
        let after = probe.counters()?;
        let (k, e) = (median(&mut ka), median(&mut empty));
        out.push(ReaderResult {
            class,
            fixture: name,
            runs_per_call: runs,
            empty_ns: e,
            keepalive_ns: k,
            overhead_ns: k - e,
            events: after.events - before.events,
            ringbuf_full: after.ringbuf_full - before.ringbuf_full,
        });
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    let total_read = read.load(Ordering::Relaxed);
    println!(
        "matched, with the agent's reader draining the rings concurrently (median of {})",
        a.trials
    );
    println!(
        "{:<28} {:>8} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "class", "runs", "empty ns", "keepalive", "overhead", "events", "lost"
    );
    for r in &out {
        println!(
            "{:<28} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10} {:>6}",
            r.class,
            r.runs_per_call,
            r.empty_ns,
            r.keepalive_ns,
            r.overhead_ns,
            r.events,
            r.ringbuf_full
        );
    }
    let events: u64 = out.iter().map(|r| r.events).sum();
    anyhow::ensure!(total_read == events, "the reader took {total_read} of {events} events");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_lab::fixtures::Expect;

    #[test]
    fn every_class_names_a_fixture_of_the_right_kind() {
        let c = corpus();
        for &(class, name, matched) in CLASSES {
            let f = c
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("{class}: no fixture {name}"));
            assert_eq!(matches!(f.expect, Expect::Tcp | Expect::Arp), matched, "{class}");
        }
    }

    #[test]
    fn median_of_odd_and_even_trials() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
    }
}
