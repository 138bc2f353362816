//! `keepalive analyze`: a capture file through the host classifier and the tracker into a
//! [`Report`]. The same tracker and findings the live agent uses; only the source differs.

use std::{io::IsTerminal, path::Path, sync::atomic::Ordering};

use keepalive_common::wire::Config;

use crate::{
    report::{Report, SourceTotals},
    source::{
        capture::{Capture, CaptureError},
        offline::HostProbe,
    },
    tracker::{Settings, Tracker},
};

/// Captures smaller than this never show a progress bar.
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

/// Options of one analysis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Ports and their protocols.
    pub config: Config,
    /// Tracker settings.
    pub settings: Settings,
    /// Show a progress bar on stderr when it is a terminal and the capture is large.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { config: Config::DEFAULT, settings: Settings::default(), progress: false }
    }
}

/// Analyses the capture at `path`.
pub fn file(path: &Path, opts: &Options) -> Result<Report, CaptureError> {
    capture(Capture::open(path)?, opts)
}

/// Analyses capture bytes held in memory (tests and the fuzz target).
pub fn bytes(data: &[u8], opts: &Options) -> Result<Report, CaptureError> {
    let len = data.len() as u64;
    let reader = Box::new(std::io::Cursor::new(data.to_vec()));
    capture(Capture::from_reader(Path::new("<memory>"), reader, len)?, opts)
}

/// Analyses an opened capture.
pub fn capture(mut cap: Capture, opts: &Options) -> Result<Report, CaptureError> {
    let mut probe = HostProbe::new(opts.config);
    let mut tracker = Tracker::new(opts.settings, opts.config);
    let bar = (opts.progress && cap.len() >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal())
        .then(|| {
            let bar = indicatif::ProgressBar::new(cap.len());
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {wide_bar} {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
    let pos = cap.position();
    let mut n: u64 = 0;
    let stats = cap
        .for_each_frame(|frame| {
            if let Some(rec) = probe.process(&frame) {
                tracker.ingest(&rec);
            }
            n += 1;
            if n.is_multiple_of(65_536) {
                if let Some(bar) = &bar {
                    bar.set_position(pos.load(Ordering::Relaxed));
                }
            }
        })
        .clone();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let totals = SourceTotals {
        packets: stats.frames,
        matched: probe.counters.matched_tcp + probe.counters.matched_arp,
        parse_errors: probe.counters.parse_errors,
        unsupported_link: stats.unsupported_link,
        truncated: stats.truncated,
    };
    Ok(Report::build(&tracker, &totals))
}
