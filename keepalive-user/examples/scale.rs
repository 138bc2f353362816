//! The tracker at scale: PHONES phones (half SCCP, half SIP, one server each), each with
//! enough keepalives to fill its bounded history, fed through the host classifier into one
//! tracker. Prints the tracker's resident memory and the event rate:
//! `cargo run --release --example scale -- 100000`.

use std::time::Instant;

use keepalive::{
    report::{Report, SourceTotals},
    source::{capture::Frame, offline::HostProbe},
    tracker::{pair::HISTORY, Settings, Tracker},
};
use keepalive_common::wire::Config;
use keepalive_lab::fixtures::scenario::{self, Rng};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let phones: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let keepalives = HISTORY as u32 + 8;
    let mut tracker = Tracker::new(Settings::default(), Config::DEFAULT);
    let mut rng = Rng::new(9);
    let before = rss_kib();
    let (mut records, mut busy) = (0u64, std::time::Duration::ZERO);
    for n in 0..phones {
        let mut tl = scenario::scale_phone(n, keepalives, &mut rng);
        // A probe per phone: only the tracker's memory accumulates.
        let mut probe = HostProbe::new(Config::DEFAULT);
        let recs: Vec<_> = tl
            .frames()
            .iter()
            .filter_map(|(ts, f)| probe.process(&Frame { ts_ns: *ts, ifindex: 0, data: f }))
            .collect();
        let t = Instant::now();
        for r in &recs {
            tracker.ingest(r);
        }
        busy += t.elapsed();
        records += recs.len() as u64;
    }
    let after = rss_kib();
    let t = Instant::now();
    let report = Report::build(&tracker, &SourceTotals::default());
    let build = t.elapsed();
    // What the terminal view builds on every refresh: the first 25 rows and 10 findings.
    let t = Instant::now();
    let _ = Report::build_top(&tracker, &SourceTotals::default(), 25, 10);
    let top = t.elapsed();
    // What a live refresh holds the state for, each at once (`agent::evaluator`).
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    let mut n = 0u64;
    let walk = time(&mut || n += tracker.phones().map(|p| p.last_ns & 1).sum::<u64>());
    let census =
        time(&mut || n += tracker.phones().map(|p| p.role() as u64 + p.keepalives).sum::<u64>());
    let slice = time(&mut || n += Report::rows_at(&tracker, 0..512).len() as u64);
    let expire = time(&mut || tracker.expire(u64::MAX));
    let streams = time(&mut || tracker.expire_streams());
    let pairs = time(&mut || tracker.expire_idle(u64::MAX, 0..16_384));
    let arp = time(&mut || tracker.expire_arp_some(u64::MAX, 16_384));
    let some_streams = time(&mut || tracker.expire_streams_some(16_384));
    eprintln!(
        "refresh holds: a pass over the pairs {walk:.1} ms (with roles and counts {census:.1} ms), \
         the rows of 512 slots {slice:.1} ms; the whole expiry {expire:.1} ms and the streams' \
         {streams:.1} ms, where the live agent's slices of 16 384 take {pairs:.1} ms (pairs), \
         {arp:.1} ms (ARP) and {some_streams:.1} ms (streams) ({n})"
    );
    let mut kinds = std::collections::BTreeMap::new();
    for f in report.phones.iter().flat_map(|p| &p.findings) {
        *kinds.entry(f.kind.as_str()).or_insert(0) += 1;
    }
    eprintln!("findings by kind: {kinds:?}");
    println!(
        "{phones} phones, {} pairs, {records} records ({keepalives} keepalives each): tracker {:.0} MiB \
         ({:.2} KiB per pair), {:.2} M records/s ingested, report built in {:.0} ms ({} with findings), \
         the terminal view's top 25 in {:.0} ms",
        tracker.phone_count(),
        (after - before) as f64 / 1024.0,
        (after - before) as f64 / f64::from(phones),
        records as f64 / busy.as_secs_f64() / 1e6,
        build.as_secs_f64() * 1e3,
        report.summary.phones_with_findings,
        top.as_secs_f64() * 1e3,
    );
}
