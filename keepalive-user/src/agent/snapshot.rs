//! The agent's state as one document: what `keepalive stats` prints and what the metrics are
//! computed from. Built under the state lock, then rendered without it.

use serde::Serialize;

use super::evaluator::SLICE;
use crate::{
    findings::Finding,
    loader::Attached,
    report::{Pager, PhoneRow, Report, SourceTotals},
    tracker::{Evictions, Limits, Tracker},
};

/// Kernel counters, summed over CPUs, and the flow map's occupancy.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct KernelStats {
    /// Frames the program ran on.
    pub seen: u64,
    /// TCP segments on tracked ports.
    pub matched_tcp: u64,
    /// ARP frames.
    pub matched_arp: u64,
    /// Events published in the event rings.
    pub events: u64,
    /// Events lost because a CPU's event ring was full (the agent fell behind).
    pub ringbuf_full: u64,
    /// Events shed because a CPU's event ring was three quarters full and they carried
    /// nothing a phone's state needs (SYNs and ACKs of flows with no data, ARP).
    pub shed: u64,
    /// Malformed frames of followed protocols.
    pub parse_errors: u64,
    /// Flow-map entries created, as of `flows_counted_at`.
    pub flows_created: u64,
    /// Flow-map entries live at `flows_counted_at`.
    pub flows_live: u64,
    /// Entries the LRU map evicted by `flows_counted_at` (created − live of the same count).
    pub lru_evictions: u64,
    /// When the flow maps were counted (epoch seconds): every refresh below 10 000 flows,
    /// every 30 s above (`agent::flows`).
    pub flows_counted_at: f64,
    /// Flow-map updates that failed.
    pub flow_update_errors: u64,
    /// Frames dropped after recording in mirror mode.
    pub mirror_drops: u64,
    /// Outer GRE layers peeled (Ethernet or IP inside; ERSPAN apart).
    pub encap_gre: u64,
    /// Outer ERSPAN layers (type I, II or III) peeled.
    pub encap_erspan: u64,
    /// Outer VXLAN layers peeled.
    pub encap_vxlan: u64,
    /// Frames wrapped deeper than the classifier peels (two layers), passed unread.
    pub encap_too_deep: u64,
}

/// One attached interface.
#[derive(Clone, Debug, Serialize)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// XDP mode obtained.
    pub mode: Attached,
}

/// Facts about the running agent.
#[derive(Clone, Debug, Serialize)]
pub struct AgentInfo {
    /// Process id.
    pub pid: u32,
    /// keepalive version.
    pub version: &'static str,
    /// Start time (epoch seconds).
    pub started: f64,
    /// Interfaces attached.
    pub interfaces: Vec<Interface>,
    /// The stats socket.
    pub socket: String,
    /// The metrics address, if serving.
    pub metrics: Option<String>,
}

/// Userspace counters.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct UserStats {
    /// Records read from the event rings.
    pub records: u64,
    /// Records that did not decode.
    pub bad_records: u64,
    /// Phones held (pairs that carried a keepalive).
    pub phones: usize,
    /// Candidates held (pairs that have not yet: handshakes, SYNs).
    pub candidates: usize,
    /// Connection directions tracked.
    pub streams: usize,
    /// ARP addresses held.
    pub arp_addresses: usize,
    /// Bytes of partial SIP messages held.
    pub sip_buffered: usize,
    /// Pairs forgotten after being idle.
    pub expired_pairs: u64,
    /// ARP addresses forgotten after being idle.
    pub expired_arp: u64,
    /// State forgotten to stay within the limits, by reason.
    pub evictions: Evictions,
    /// The limits in force (`--max-phones`).
    pub limits: Limits,
    /// The refreshes' evaluation of findings (`agent::evaluator`).
    pub evaluation: Evaluation,
}

/// What the refreshes' evaluation did, and how long it kept the ingest waiting.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Evaluation {
    /// Refreshes evaluated.
    pub refreshes: u64,
    /// Refreshes that came while the evaluator was still busy with an earlier one. Nothing is
    /// lost: the pairs they would have evaluated are still "changed" for the next one.
    pub skipped: u64,
    /// Pairs the latest evaluation looked at.
    pub pairs: usize,
    /// How long the latest evaluation took, start to end (µs).
    pub last_us: u64,
    /// The longest a refresh held the state at once since the agent started (µs): the expiry,
    /// or one slice of an evaluation.
    pub held_max_us: u64,
    /// What that longest hold was doing: candidates, idle pairs, arp, streams, sweep, network
    /// findings, rows or census.
    pub held_max_in: &'static str,
    /// The most CPU time the evaluator's thread spent in one hold (µs): the work of a slice.
    /// `held_max_us` is wall time and also counts the holder being descheduled, which on a
    /// machine whose CPUs are all busy (the scale bench: two CPUs for replayer, kernel, ingest
    /// and evaluator) is most of the worst case.
    pub held_cpu_max_us: u64,
    /// The longest the ingest of the event rings waited for the state since the agent started
    /// (µs), whoever held it: a refresh, a `stats` answer (built in slices too), a scrape.
    pub ingest_waited_max_us: u64,
}

/// Which rows an answer lists.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Page {
    /// Rows skipped.
    pub offset: usize,
    /// Rows asked for at most.
    pub limit: usize,
    /// Rows listed.
    pub rows: usize,
    /// Rows matching the request in all (the summary counts every pair).
    pub matching: usize,
}

/// Everything the agent knows.
#[derive(Debug)]
pub struct State {
    /// The tracker fed by the event rings.
    pub tracker: Tracker,
    /// Latest kernel counters.
    pub kernel: KernelStats,
    /// The agent.
    pub agent: AgentInfo,
    /// Records that did not decode.
    pub bad_records: u64,
    /// The refreshes' evaluation.
    pub evaluation: Evaluation,
    /// CUCM's syslog, when it is received (`--cucm-syslog`).
    pub cucm: Option<Box<super::cucm::CucmState>>,
}

/// The document `keepalive stats --format json` prints.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The agent.
    pub agent: AgentInfo,
    /// Kernel counters.
    pub kernel: KernelStats,
    /// Userspace counters.
    pub userspace: UserStats,
    /// The rows listed, when the answer is a page of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<Page>,
    /// Phones and findings, as `keepalive analyze` reports them.
    pub report: Report,
}

impl State {
    /// A snapshot of the state now.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_of(|_| true)
    }

    /// The state with only the phone rows `keep` accepts (the summary counts every pair).
    pub fn snapshot_of(&self, keep: impl Fn(&PhoneRow) -> bool) -> Snapshot {
        self.with_report(Report::build_filtered(&self.tracker, &self.totals(), keep))
    }

    /// The state with the rows `keep` accepts, from `offset` on, at most `limit` of them
    /// ([`Report::build_page`]): what the stats socket answers.
    pub fn snapshot_page(
        &self,
        keep: impl Fn(&PhoneRow) -> bool,
        offset: usize,
        limit: usize,
    ) -> Snapshot {
        let (report, matching) =
            Report::build_page(&self.tracker, &self.totals(), keep, offset, limit);
        let rows = report.phones.len();
        Snapshot { page: Some(Page { offset, limit, rows, matching }), ..self.with_report(report) }
    }

    /// [`State::snapshot_page`] of the state behind `st`, built [`SLICE`] pair slots at a time
    /// with the lock handed to a waiting ingest between slices: at 100 000 phones the page
    /// takes ~0.8 s to build, which the event rings cannot wait. Each row is as its pair was
    /// when its slice was read.
    pub fn snapshot_page_sliced(
        st: &mut parking_lot::MutexGuard<'_, State>,
        keep: impl Fn(&PhoneRow) -> bool,
        offset: usize,
        limit: usize,
    ) -> Snapshot {
        let mut pager = Pager::new(keep, offset, limit);
        let mut start = 0;
        while start < st.tracker.slot_count() {
            let end = (start + SLICE).min(st.tracker.slot_count());
            pager.add(&st.tracker, start..end);
            start = end;
            parking_lot::MutexGuard::bump(st);
        }
        let (report, matching) = pager.finish(&st.tracker, &st.totals());
        let rows = report.phones.len();
        Snapshot { page: Some(Page { offset, limit, rows, matching }), ..st.with_report(report) }
    }

    /// The state with only the first `rows` phone rows (worst first), and the `newest` most
    /// recent findings ([`Report::build_top`]): the terminal view.
    pub fn top(&self, rows: usize, newest: usize) -> (Snapshot, Vec<(String, Finding)>) {
        let (report, recent) = Report::build_top(&self.tracker, &self.totals(), rows, newest);
        (self.with_report(report), recent)
    }

    fn totals(&self) -> SourceTotals {
        SourceTotals {
            packets: self.kernel.seen,
            matched: self.kernel.matched_tcp + self.kernel.matched_arp,
            parse_errors: self.kernel.parse_errors,
            unsupported_link: 0,
            truncated: None,
        }
    }

    /// The agent's own counters, without building any report.
    pub fn user_stats(&self) -> UserStats {
        UserStats {
            records: self.tracker.stats.records,
            bad_records: self.bad_records,
            phones: self.tracker.phone_count(),
            candidates: self.tracker.candidate_count(),
            streams: self.tracker.stream_count(),
            arp_addresses: self.tracker.arp.len(),
            sip_buffered: self.tracker.sip_buffered(),
            expired_pairs: self.tracker.stats.expired_pairs,
            expired_arp: self.tracker.stats.expired_arp,
            evictions: self.tracker.evictions,
            limits: self.tracker.limits(),
            evaluation: self.evaluation,
        }
    }

    fn with_report(&self, mut report: Report) -> Snapshot {
        if let Some(c) = &self.cucm {
            c.join.annotate(&mut report.phones);
            report.cucm = Some(c.join.section_recent(super::cucm::STATS_RECENT));
        }
        Snapshot {
            agent: self.agent.clone(),
            kernel: self.kernel,
            userspace: self.user_stats(),
            page: None,
            report,
        }
    }
}
