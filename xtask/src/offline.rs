//! `cargo xtask bench` part 3: `keepalive analyze` against tshark on the same generated capture
//! (a healthy site with unrelated traffic around the phones), packets per second and peak
//! memory of each, measured in the same run. tshark is asked for the fields analyze
//! reports on (SKINNY message ids, SIP method and status, TCP retransmission analysis, ARP),
//! so both decode what matters here.

use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _};
use serde::Serialize;

/// Offline bench options.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Phones in the generated site.
    pub phones: u32,
    /// Minutes of traffic.
    pub minutes: u32,
    /// Runs of analyze (the median is reported); tshark runs once (it is the slow one).
    pub runs: usize,
}

#[derive(Debug, Serialize)]
pub struct Run {
    /// Wall time.
    pub seconds: f64,
    /// Peak resident memory.
    pub max_rss_mib: f64,
}

/// One result line.
#[derive(Debug, Serialize)]
pub struct Offline {
    /// The capture.
    pub capture: String,
    /// Packets in it.
    pub packets: u64,
    /// Its size.
    pub bytes: u64,
    /// analyze runs.
    pub analyze: Vec<Run>,
    /// The tshark run.
    pub tshark: Run,
    /// analyze, packets per second (median run).
    pub analyze_pps: f64,
    /// tshark, packets per second.
    pub tshark_pps: f64,
    /// analyze_pps / tshark_pps.
    pub ratio: f64,
}

/// Runs `cmd`, returning its wall time and peak RSS (from wait4's rusage).
fn measure(cmd: &mut Command) -> anyhow::Result<Run> {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("spawn")?;
    let mut status = 0;
    // SAFETY: zeroed rusage filled by wait4 for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our child's pid with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let seconds = start.elapsed().as_secs_f64();
    if !std::process::ExitStatus::from_raw(status).success() {
        bail!("{cmd:?} failed");
    }
    let max_rss_mib = usage.ru_maxrss as f64 / 1024.0;
    if own_peak_mib().is_some_and(|own| own >= max_rss_mib) {
        bail!(
            "{cmd:?}: its peak RSS ({max_rss_mib:.1} MiB) is not above this process's own, which \
             it inherits: the figure would be the bench's, not the program's"
        );
    }
    Ok(Run { seconds, max_rss_mib })
}

fn capture(p: Params) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(format!("target/bench/site-{}x{}.pcap", p.phones, p.minutes));
    if !path.exists() {
        fs::create_dir_all("target/bench")?;
        crate::cargo(&[
            "build",
            "--release",
            "--quiet",
            "-p",
            "keepalive-user",
            "--example",
            "site_capture",
        ])?;
        let st = Command::new("target/release/examples/site_capture")
            .args([&p.phones.to_string(), &p.minutes.to_string()])
            .arg(&path)
            .status()?;
        if !st.success() {
            bail!("generating {}", path.display());
        }
    }
    Ok(path)
}

/// The packets in the capture, as analyze counts them. The report is read as it streams in,
/// into the one field needed: a 5 000-phone report held as a `serde_json::Value` made this
/// process 46 MiB, and a child's peak RSS (`ru_maxrss`) counts the memory of the parent it
/// was forked from (the kernel carries the old address space's peak across `exec`), so every
/// analyze measured after it showed 46 MiB whatever its own peak.
fn packets(path: &Path) -> anyhow::Result<u64> {
    #[derive(serde::Deserialize)]
    struct Report {
        summary: Summary,
    }
    #[derive(serde::Deserialize)]
    struct Summary {
        packets: u64,
    }
    let mut child = Command::new("target/release/keepalive")
        .args(["analyze", "--format", "json"])
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().context("analyze's stdout")?;
    let report: Report = serde_json::from_reader(std::io::BufReader::new(out))?;
    if !child.wait()?.success() {
        bail!("analyze {} failed", path.display());
    }
    Ok(report.summary.packets)
}

/// This process's own peak RSS (VmHWM), in MiB: a child's figure below it is this process's,
/// not the child's (see [`packets`]).
fn own_peak_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the comparison.
pub fn run(p: Params) -> anyhow::Result<Offline> {
    crate::cargo(&["build", "--release", "--quiet", "-p", "keepalive-user"])?;
    let path = capture(p)?;
    let packets = packets(&path)?;
    let mut analyze = Vec::new();
    for _ in 0..p.runs {
        analyze.push(measure(
            Command::new("target/release/keepalive")
                .args(["analyze", "--format", "json"])
                .arg(&path),
        )?);
    }
    let tshark = measure(
        Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args(["-T", "fields", "-e", "frame.number", "-e", "skinny.messageId"])
            .args([
                "-e",
                "sip.Method",
                "-e",
                "sip.Status-Code",
                "-e",
                "tcp.analysis.retransmission",
            ])
            .args(["-e", "arp.opcode"]),
    )
    .context("tshark (apt install tshark)")?;
    let mut secs: Vec<f64> = analyze.iter().map(|r| r.seconds).collect();
    secs.sort_by(f64::total_cmp);
    let analyze_pps = packets as f64 / secs[secs.len() / 2];
    let tshark_pps = packets as f64 / tshark.seconds;
    Ok(Offline {
        capture: path.display().to_string(),
        packets,
        bytes: fs::metadata(&path)?.len(),
        analyze,
        tshark,
        analyze_pps,
        tshark_pps,
        ratio: analyze_pps / tshark_pps,
    })
}
