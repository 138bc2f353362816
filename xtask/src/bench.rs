//! `cargo xtask bench`: the XDP program's cost per packet class, measured with
//! BPF_PROG_TEST_RUN (the kernel's own per-run average) against an empty XDP_PASS program built
//! in the same object and run in the same loop, trials interleaved so drift hits both alike.

use std::{fs, path::PathBuf};

use anyhow::Context as _;
use keepalive::{
    fixtures::corpus,
    loader::{LoadOptions, Probe, EMPTY_PROGRAM, PROGRAM},
};
use keepalive_common::wire::Config;
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
    /// Minutes of traffic in that capture (2 500 phones × 40 min ≈ 1.1 M packets).
    #[arg(long, default_value_t = 40)]
    pub offline_minutes: u32,
    /// Run only the offline comparison (no root needed).
    #[arg(long)]
    pub offline_only: bool,
    /// Skip the offline comparison.
    #[arg(long, conflicts_with = "offline_only")]
    pub no_offline: bool,
}

const RING_BYTES: u32 = 1 << 31;

/// Packet classes and the corpus fixture that stands for each.
const CLASSES: &[(&str, &str, bool)] = &[
    ("non-matching TCP (HTTPS)", "other-tcp-https", false),
    ("UDP", "other-udp-sip", false),
    ("IPv6 UDP", "other-udp-ipv6", false),
    ("SCCP KeepAlive", "sccp-keepalive", true),
    ("SIP REGISTER (copy ~1 KB)", "sip-register", true),
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

#[derive(Debug, Serialize)]
struct Report {
    kernel: String,
    repeat: u32,
    trials: usize,
    method: &'static str,
    results: Vec<ClassResult>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the offline comparison, prints it and writes `target/bench/offline.json`.
fn offline(a: &Args) -> anyhow::Result<()> {
    let params =
        crate::offline::Params { phones: a.offline_phones, minutes: a.offline_minutes, runs: 3 };
    let o = crate::offline::run(params)?;
    println!(
        "offline, {} packets ({} MB): keepalive analyze {:.2} M packets/s, tshark {:.3} M packets/s: {:.0}x \
         (peak RSS {:.0} MiB vs {:.0} MiB)",
        o.packets,
        o.bytes / 1_000_000,
        o.analyze_pps / 1e6,
        o.tshark_pps / 1e6,
        o.ratio,
        o.analyze.iter().map(|r| r.max_rss_mib).fold(0.0, f64::max),
        o.tshark.max_rss_mib,
    );
    fs::create_dir_all("target/bench")?;
    fs::write("target/bench/offline.json", serde_json::to_string_pretty(&o)?)?;
    println!("written to target/bench/offline.json");
    Ok(())
}

/// Runs the benchmarks and prints/writes them.
pub fn run(a: &Args) -> anyhow::Result<()> {
    // Offline first: a child's peak RSS (wait4) counts what it inherited at fork, and the XDP
    // part maps a 2 GiB ring buffer into this process.
    if !a.no_offline {
        offline(a)?;
    }
    if a.offline_only {
        return Ok(());
    }
    xdp(a)
}

/// XDP cost per packet class; prints it and writes `--out`.
fn xdp(a: &Args) -> anyhow::Result<()> {
    // One trial of the largest record (event + 1536 bytes, 8-byte header) must fit the ring.
    anyhow::ensure!(
        u64::from(a.repeat) * 1700 < u64::from(RING_BYTES),
        "--repeat too large for the ring"
    );
    // A ring large enough for one trial of the largest record (SIP: event + 1536 bytes), so
    // every matched run pays for a real reserve + write + submit; drained between trials.
    let mut probe = Probe::load(&LoadOptions {
        config: Config::DEFAULT,
        ringbuf_bytes: RING_BYTES,
        ..LoadOptions::default()
    })
    .context("loading the XDP object (run as root)")?;
    let mut ring = probe.take_ring()?;
    let fixtures = corpus();
    let mut results = Vec::new();
    for &(class, name, matched) in CLASSES {
        let frame = &fixtures.iter().find(|f| f.name == name).context("fixture")?.frame;
        let (mut ka, mut empty) = (Vec::new(), Vec::new());
        for _ in 0..a.trials {
            let (_, d) = probe.test_run(EMPTY_PROGRAM, frame, a.repeat)?;
            empty.push(d.as_nanos() as f64);
            let (_, d) = probe.test_run(PROGRAM, frame, a.repeat)?;
            ka.push(d.as_nanos() as f64);
            while ring.next().is_some() {}
        }
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
    let c = probe.counters()?;
    anyhow::ensure!(c.ringbuf_full == 0, "ring buffer filled during the bench: {c:?}");
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
    let report = Report {
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        repeat: a.repeat,
        trials: a.trials,
        method: "BPF_PROG_TEST_RUN average ns per run; a 2 GiB ring buffer drained between \
                 trials, so every matched run reserves, writes and submits a real record",
        results,
    };
    if let Some(dir) = a.out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&a.out, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive::fixtures::Expect;

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
