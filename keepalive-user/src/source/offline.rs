//! The userspace twin of the XDP program: runs the shared classifier over frames read from a
//! capture and keeps the same per-flow SCCP resume state and the same counters, so that a
//! capture yields the events the kernel would have emitted for the same bytes.
//!
//! One difference, on purpose: where the kernel copies payload (SIP, SCCP Register) the record
//! carries the whole TCP payload present in the capture, not only the first [`SIP_COPY_MAX`](keepalive_common::wire::SIP_COPY_MAX) bytes
//! a payload slot has room for (captures taken on a host often hold 64 KiB TSO segments).

use keepalive_common::{
    classify::{classify_app, fill, gate, peel, At, Decision, Outcome, TcpMatch},
    wire::{App, Config, Counters, Event, FlowKey},
};

use super::capture::Frame;
use crate::record::Record;

/// Flows remembered for resumption (the kernel's LRU map holds as many); past this the table
/// is reset (a PDU spanning segments of a forgotten flow is then read from its next aligned
/// PDU).
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
    /// The flows whose last segment left a PDU or record spilling into the next: the only
    /// state the resume rule reads. The kernel keeps an entry for every flow (its counters
    /// need one); kept here, they made a lookup that missed the cache on every segment.
    flows: crate::tracker::FastMap<FlowKey, Resume>,
    /// The same counters the XDP program keeps, for what happens here too: `seen`,
    /// `matched_tcp`, `matched_arp`, `events`, `parse_errors` and the `encap_*` layers. The
    /// kernel's map and ring counters (`flows_created`, `flow_update_errors`, `ringbuf_full`,
    /// `shed`, `mirror_drops`) have nothing to count offline and stay 0.
    pub counters: Counters,
}

impl HostProbe {
    /// A probe with the given port configuration.
    pub fn new(mut config: Config) -> Self {
        // The gate's port set is the rules' (as the loader makes it for the kernel).
        config.sync_port_filter();
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
                // Only what may span segments needs the resume state: SCCP PDUs and TLS
                // records (SIP is reassembled by the tracker).
                if matches!(m.app, App::Sccp | App::SccpTls | App::SipTls) {
                    self.resume(&inner, &m, &mut ev);
                } else {
                    classify_app(&inner, &m, 0, &mut ev);
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

    /// Stage 3 of a segment that may continue a PDU or record begun in the one before, with
    /// the kernel's rule (`on_tcp`): resume only at the sequence number expected.
    fn resume<R: keepalive_common::reader::Reader + ?Sized>(
        &mut self,
        r: &R,
        m: &TcpMatch,
        ev: &mut Event,
    ) {
        // The match's length, not the event's 16-bit one (a captured TSO segment may hold
        // more than 65 535 bytes).
        if m.payload_len == 0 {
            return;
        }
        let key = ev.flow_key();
        let skip = match self.flows.get(&key) {
            Some(f) if f.seq.wrapping_sub(f.spill) == ev.seq => f.spill,
            _ => 0,
        };
        classify_app(r, m, skip, ev);
        if ev.spill == 0 {
            self.flows.remove(&key);
            return;
        }
        if self.flows.len() >= MAX_FLOWS && !self.flows.contains_key(&key) {
            self.flows.clear();
        }
        // Sequence numbers count modulo 2^32, so the match's length truncated to 32 bits is
        // the exact step (the event's 16-bit one is not, for the same TSO segment).
        let end = ev.seq.wrapping_add(m.payload_len as u32);
        self.flows.insert(key, Resume { seq: end.wrapping_add(ev.spill), spill: ev.spill });
    }
}
