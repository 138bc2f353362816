//! The userspace twin of the XDP program: runs the shared classifier over frames read from a
//! capture and keeps the same per-flow SCCP resume state and the same counters, so that a
//! capture yields the events the kernel would have emitted for the same bytes.
//!
//! One difference, on purpose: where the kernel copies payload (SIP, SCCP Register) the record
//! carries the whole TCP payload present in the capture, not only the first [`SIP_COPY_MAX`](keepalive_common::wire::SIP_COPY_MAX) bytes
//! a payload slot has room for (captures taken on a host often hold 64 KiB TSO segments).

use keepalive_common::{
    classify::{classify_app, fill, gate, peel, At, Decision, Outcome},
    wire::{App, Config, Counters, Event, FlowKey, PortFilter},
};

use super::capture::Frame;
use crate::record::Record;

/// Flows remembered for SCCP resumption, like the kernel's LRU map; past this the table is
/// reset (a PDU spanning segments of a forgotten flow is then read from its next aligned PDU).
const MAX_FLOWS: usize = 262_144;

#[derive(Clone, Copy, Debug, Default)]
struct Resume {
    seq: u32,
    spill: u32,
}

/// Classifies frames into [`Record`]s.
#[derive(Debug)]
pub struct HostProbe {
    config: Config,
    flows: crate::tracker::FastMap<FlowKey, Resume>,
    /// The same counters the XDP program keeps.
    pub counters: Counters,
}

impl HostProbe {
    /// A probe with the given port configuration.
    pub fn new(mut config: Config) -> Self {
        // The gate's port set is the rules' (as the loader makes it for the kernel).
        config.port_filter = PortFilter::of(&config.ports);
        Self { config, flows: Default::default(), counters: Counters::default() }
    }

    /// Classifies one frame; `None` for frames keepalive does not follow (or malformed ones,
    /// which are counted in `counters.parse_errors`).
    pub fn process(&mut self, frame: &Frame<'_>) -> Option<Record> {
        let mut rec = Record { event: Event::ZERO, payload: Vec::new() };
        self.process_into(frame, &mut rec).then_some(rec)
    }

    /// [`HostProbe::process`] into `rec`, whose payload buffer is reused from frame to frame
    /// (an allocation per SIP segment otherwise); `false` where `process` says `None`, and
    /// `rec` is then not to be read.
    pub fn process_into(&mut self, frame: &Frame<'_>, rec: &mut Record) -> bool {
        let data = frame.data;
        self.counters.seen += 1;
        // The kernel's first program: most frames of a capture leave here.
        if !gate(data, &self.config) {
            return false;
        }
        let (d, peeled) = peel(data, &self.config, &mut self.counters);
        if let Decision::Skip(o) = d {
            if o == Outcome::Malformed {
                self.counters.parse_errors += 1;
            }
            return false;
        }
        // The inner frame, where the decision's offsets point.
        let inner = At::new(data, peeled.base);
        let mut ev = Event::ZERO;
        ev.ts_ns = frame.ts_ns;
        ev.ifindex = frame.ifindex;
        let outcome = fill(&inner, &d, &mut ev);
        if matches!(outcome, Outcome::Arp | Outcome::Tcp) {
            peeled.stamp(&mut ev);
        }
        match (outcome, d) {
            (Outcome::Arp, _) => {
                self.counters.matched_arp += 1;
                self.counters.events += 1;
                rec.event = ev;
                rec.payload.clear();
                true
            }
            (Outcome::Tcp, Decision::Tcp(m)) => {
                self.counters.matched_tcp += 1;
                self.counters.events += 1;
                let key = ev.flow_key();
                // Only what may span segments needs the resume state: SCCP PDUs and TLS
                // records (SIP is reassembled by the tracker). As in the kernel's on_tcp, only
                // a segment with payload creates a flow.
                let resumes = matches!(m.app, App::Sccp | App::SccpTls | App::SipTls);
                if resumes
                    && ev.payload_len > 0
                    && self.flows.len() >= MAX_FLOWS
                    && !self.flows.contains_key(&key)
                {
                    self.flows.clear();
                }
                let flow = if !resumes {
                    None
                } else if ev.payload_len > 0 {
                    let counters = &mut self.counters;
                    Some(self.flows.entry(key).or_insert_with(|| {
                        counters.flows_created += 1;
                        Resume::default()
                    }))
                } else {
                    self.flows.get_mut(&key)
                };
                // Same rule as the kernel's on_tcp: resume only at the expected sequence.
                let skip = match &flow {
                    Some(f) if f.spill != 0 && f.seq.wrapping_sub(f.spill) == ev.seq => f.spill,
                    _ => 0,
                };
                classify_app(&inner, &m, skip, &mut ev);
                if let Some(flow) = flow.filter(|_| ev.payload_len > 0) {
                    let end = ev.seq.wrapping_add(u32::from(ev.payload_len));
                    *flow = Resume { seq: end.wrapping_add(ev.spill), spill: ev.spill };
                }
                rec.payload.clear();
                if m.app == App::Sip || ev.copy_len > 0 {
                    let start = peeled.base + m.payload_off;
                    let end = (start + m.payload_len).min(data.len());
                    rec.payload.extend_from_slice(data.get(start..end).unwrap_or_default());
                }
                rec.event = ev;
                true
            }
            _ => {
                self.counters.parse_errors += 1;
                false
            }
        }
    }
}
