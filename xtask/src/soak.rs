//! Hostile traffic against the live agent (root), on the bench's veth (`crate::live`):
//! * `flood`: 1 000 000 spoofed SYNs to CUCM:2000 from distinct sources, offered at 100 000
//!   and 1 000 000 packets per second after a site of real phones: the agent's memory before,
//!   during (the largest sample, every 50 ms) and after, events shed and lost, and how the
//!   tracker's tables held;
//! * `soak` (`cargo xtask bench --soak`): a time-scaled day (a site's phones all day, docs/DOMAIN.md's
//!   two case studies in its last two hours, a background flood of SYNs and ARP replies) replayed
//!   `scale` times faster, each frame at its own deadline ([`crate::live::replay_paced`]), into
//!   an agent told the same `--time-scale --replay`, with an `--expire` of two nominal hours:
//!   RSS over the day and its slope, events lost, and whether the agent's rows and findings at
//!   the end are those `keepalive analyze` gives on the same capture.

use std::{
    fs,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use keepalive_lab::fixtures::{
    flood::{self, Target},
    scenario::{self, Timeline, Vantage, MS, S, T0},
};
use serde::Serialize;

use crate::live::{replay_at, replay_paced, settle, stats_raw, Agent, Net};

/// The server the floods are sent to (the scenarios' CUCM).
fn target() -> Target {
    let server = match scenario::cucm().ip {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(_) => unreachable!("the scenarios' CUCM is IPv4"),
    };
    Target { server, src_mac: [2, 0, 0, 0, 0, 1], dst_mac: scenario::cucm().mac }
}

/// Samples the agent's RSS (MiB) every `every` until stopped: (seconds since start, MiB).
fn sampler(
    pid: u32,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(f64, f64)>> {
    std::thread::spawn(move || {
        let t = Instant::now();
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss = s
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0);
            out.push((t.elapsed().as_secs_f64(), rss / 1024.0));
            std::thread::sleep(every);
        }
        out
    })
}

fn n(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// One flood step.
#[derive(Debug, Serialize)]
pub struct FloodStep {
    /// Packets per second asked of tcpreplay.
    pub offered_pps: u32,
    /// Packets per second tcpreplay achieved.
    pub achieved_pps: f64,
    /// SYNs sent.
    pub syns: u64,
    /// Agent VmRSS before the flood (MiB).
    pub rss_before_mib: f64,
    /// The largest VmRSS sample during the flood and its drain (MiB).
    pub rss_during_mib: f64,
    /// VmRSS once drained (MiB).
    pub rss_after_mib: f64,
    /// Events the kernel recorded, shed (ring 3/4 full, no payload) and lost (ring full).
    pub events: u64,
    /// Events shed.
    pub shed: u64,
    /// Events lost.
    pub ringbuf_full: u64,
    /// Kernel flow entries created by the flood.
    pub flows_created: u64,
    /// Phones before and after (the flood must add none).
    pub phones: (u64, u64),
    /// Candidates held after, and evicted for a full table during the step.
    pub candidates: u64,
    /// Candidates evicted.
    pub candidates_full: u64,
    /// `keepalive stats --format json` after the flood (ms) and its size (bytes).
    pub stats_ms: f64,
    /// Its size.
    pub stats_bytes: usize,
}

/// The flood part.
#[derive(Debug, Serialize)]
pub struct Flood {
    /// Real phones in the site replayed first.
    pub site_phones: u32,
    /// The steps.
    pub steps: Vec<FloodStep>,
}

/// Runs the flood part on the bench's veth.
pub fn flood(dir: &Path) -> anyhow::Result<Flood> {
    const SYNS: u32 = 1_000_000;
    let site_phones = 200;
    let site = dir.join("flood-site.pcap");
    fs::write(&site, scenario::site(site_phones, 10).to_pcap())?;
    let syn = dir.join("flood-syn.pcap");
    fs::write(&syn, flood::syn_flood(&target(), 2000, SYNS, T0, 1_000).to_pcap())?;
    let agent = Agent::start()?;
    replay_at(&site, 1, Some(100_000))?;
    let mut steps = Vec::new();
    for pps in [100_000, 1_000_000] {
        let before = settle()?;
        let (rss_before_mib, _, _) = agent.memory_mib();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = sampler(agent.pid(), Duration::from_millis(50), stop.clone());
        let (sent, secs) = replay_at(&syn, 1, Some(pps))?;
        let after = settle()?;
        stop.store(true, Ordering::Relaxed);
        let rss_during_mib = samples
            .join()
            .map_err(|_| anyhow::anyhow!("sampler"))?
            .iter()
            .map(|s| s.1)
            .fold(0.0, f64::max);
        let (rss_after_mib, _, _) = agent.memory_mib();
        let (body, took) = stats_raw(&[])?;
        let d = |path: &[&str]| n(&after, path) - n(&before, path);
        steps.push(FloodStep {
            offered_pps: pps,
            achieved_pps: sent as f64 / secs,
            syns: sent,
            rss_before_mib,
            rss_during_mib,
            rss_after_mib,
            events: d(&["kernel", "events"]),
            shed: d(&["kernel", "shed"]),
            ringbuf_full: d(&["kernel", "ringbuf_full"]),
            flows_created: d(&["kernel", "flows_created"]),
            phones: (n(&before, &["userspace", "phones"]), n(&after, &["userspace", "phones"])),
            candidates: n(&after, &["userspace", "candidates"]),
            candidates_full: d(&["userspace", "evictions", "candidates_full"]),
            stats_ms: took.as_secs_f64() * 1e3,
            stats_bytes: body.len(),
        });
    }
    drop(agent);
    let _ = fs::remove_file(&site);
    let _ = fs::remove_file(&syn);
    Ok(Flood { site_phones, steps })
}

/// The soak.
#[derive(Debug, Serialize)]
pub struct Soak {
    /// Nominal hours replayed.
    pub hours: u32,
    /// Replay speed (tcpreplay `--multiplier`, agent `--time-scale`).
    pub scale: u32,
    /// Frames in the capture, and of them flood frames.
    pub frames: u64,
    /// Flood frames.
    pub flood_frames: u64,
    /// Wall seconds of the replay.
    pub wall_s: f64,
    /// (nominal hour, VmRSS MiB), sampled through the replay.
    pub rss: Vec<(f64, f64)>,
    /// RSS slope over the second half of the day (MiB per nominal hour).
    pub slope_mib_per_hour: f64,
    /// Events recorded, shed and lost.
    pub events: u64,
    /// Events shed.
    pub shed: u64,
    /// Events lost.
    pub ringbuf_full: u64,
    /// Rows `analyze` gives, and of them the rows the agent has with the same counts and
    /// finding kinds.
    pub rows: usize,
    /// Matching rows.
    pub rows_matching: usize,
    /// Rows that differ, as `phone → server: analyze kinds / agent kinds`.
    pub differences: Vec<String>,
    /// The differing rows themselves, `[analyze, agent]`, to read what differs.
    pub different_rows: Vec<[serde_json::Value; 2]>,
    /// Evictions by reason at the end.
    pub evictions: serde_json::Value,
    /// ARP addresses held at the end, and forgotten after being idle over the day.
    pub arp: [serde_json::Value; 2],
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let k = points.len() as f64;
    if k < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / k, sy / k);
    let (num, den) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx).powi(2)));
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Nominal seconds the soak's agent keeps an idle pair or ARP address (`--expire`, divided by
/// the replay's speed): the day's spoofed sources age out as they would at a site.
const SOAK_EXPIRE_S: u32 = 2 * 3600;

/// The day's capture: `phones` site phones for `hours`, the two case studies in its last two
/// hours (so that their rows are still held when the day ends, under [`SOAK_EXPIRE_S`]), and a
/// background flood (per nominal minute 1 000 spoofed SYNs and 100 ARP replies).
fn day(hours: u32, phones: u32) -> (Timeline, u64) {
    let minutes = hours * 60;
    let mut tl = scenario::site(phones, minutes);
    let from_end = |m: u32| u64::from(minutes.saturating_sub(m)) * 60 * S;
    tl.extend(scenario::proxy_arp(Vantage::PhoneSide).shifted(from_end(110)));
    tl.extend(scenario::port_security(Vantage::PhoneSide).shifted(from_end(50)));
    let syns = minutes * 1_000;
    let arps = minutes * 100;
    let mut f = flood::syn_flood(&target(), 2000, syns, T0, 60 * S / 1_000);
    f.extend(flood::arp_flood(&target(), arps, T0 + 7 * MS, 60 * S / 100));
    let flood_frames = f.len() as u64;
    tl.extend(f);
    (tl, flood_frames)
}

fn kinds(row: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = row["findings"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["kind"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    k.sort();
    k.dedup();
    k
}

/// Runs the soak for `hours` nominal hours at `scale` times real time.
pub fn soak(dir: &Path, hours: u32, scale: u32) -> anyhow::Result<Soak> {
    let (mut tl, flood_frames) = day(hours, 40);
    let frames = tl.len() as u64;
    let pcap = dir.join("soak.pcap");
    fs::write(&pcap, tl.to_pcap())?;
    drop(tl);
    let scale_s = scale.to_string();
    let expire = format!("{}ms", u64::from(SOAK_EXPIRE_S) * 1000 / u64::from(scale));
    let agent = Agent::start_with(&["--time-scale", &scale_s, "--replay", "--expire", &expire])?;
    let stop = Arc::new(AtomicBool::new(false));
    let every = Duration::from_secs_f64((600.0 / f64::from(scale)).max(0.5));
    let samples = sampler(agent.pid(), every, stop.clone());
    let t = Instant::now();
    replay_paced(&pcap, f64::from(scale))?;
    let wall_s = t.elapsed().as_secs_f64();
    let live = stats_all()?;
    stop.store(true, Ordering::Relaxed);
    let rss: Vec<(f64, f64)> = samples
        .join()
        .map_err(|_| anyhow::anyhow!("sampler"))?
        .into_iter()
        .map(|(s, mib)| (s * f64::from(scale) / 3600.0, mib))
        .collect();
    drop(agent);
    let offline = std::process::Command::new("target/release/keepalive")
        .args(["analyze", "--format", "json"])
        .arg(&pcap)
        .output()
        .context("keepalive analyze")?;
    let offline: serde_json::Value = serde_json::from_slice(&offline.stdout)?;
    let _ = fs::remove_file(&pcap);
    let rows = offline["phones"].as_array().cloned().unwrap_or_default();
    let agent_rows = live["report"]["phones"].as_array().cloned().unwrap_or_default();
    let mut differences = Vec::new();
    let mut different_rows = Vec::new();
    for o in &rows {
        let key = |r: &serde_json::Value| {
            (r["phone"].clone(), r["server"].clone(), r["server_port"].clone())
        };
        let who = format!(
            "{} → {}",
            o["phone"].as_str().unwrap_or("?"),
            o["server"].as_str().unwrap_or("?")
        );
        match agent_rows.iter().find(|l| key(l) == key(o)) {
            None => differences.push(format!("{who}: no row in the agent")),
            Some(l) => {
                let same = ["keepalives", "acks", "role", "device"].iter().all(|f| l[f] == o[f])
                    && kinds(l) == kinds(o);
                if !same {
                    differences.push(format!(
                        "{who}: analyze {} ka {:?} / agent {} ka {:?}",
                        o["keepalives"],
                        kinds(o),
                        l["keepalives"],
                        kinds(l)
                    ));
                    different_rows.push([o.clone(), l.clone()]);
                }
            }
        }
    }
    let half: Vec<(f64, f64)> =
        rss.iter().copied().filter(|(h, _)| *h >= f64::from(hours) / 2.0).collect();
    Ok(Soak {
        hours,
        scale,
        frames,
        flood_frames,
        wall_s,
        slope_mib_per_hour: slope(&half),
        rss,
        events: n(&live, &["kernel", "events"]),
        shed: n(&live, &["kernel", "shed"]),
        ringbuf_full: n(&live, &["kernel", "ringbuf_full"]),
        rows_matching: rows.len() - differences.len(),
        rows: rows.len(),
        differences,
        different_rows,
        evictions: live["userspace"]["evictions"].clone(),
        arp: [live["userspace"]["arp_addresses"].clone(), live["userspace"]["expired_arp"].clone()],
    })
}

/// Every row of the agent (the stats page at its largest).
fn stats_all() -> anyhow::Result<serde_json::Value> {
    let (body, _) = stats_raw(&["--limit", "100000"])?;
    Ok(serde_json::from_slice(&body)?)
}

/// Runs the flood part on a fresh veth (root).
pub fn run_flood() -> anyhow::Result<Flood> {
    crate::cargo(&["build", "--release", "--quiet", "-p", "keepalive-user"])?;
    let dir = std::path::PathBuf::from("target/bench");
    fs::create_dir_all(&dir)?;
    let _net = Net::up()?;
    flood(&dir)
}

/// Runs the soak on a fresh veth (root).
pub fn run_soak(hours: u32, scale: u32) -> anyhow::Result<Soak> {
    crate::cargo(&["build", "--release", "--quiet", "-p", "keepalive-user"])?;
    let dir = std::path::PathBuf::from("target/bench");
    fs::create_dir_all(&dir)?;
    let _net = Net::up()?;
    soak(&dir, hours, scale)
}
