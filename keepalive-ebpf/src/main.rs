//! The keepalive XDP program.
//!
//! Reads top to bottom: configuration, maps, the programs, then the per-packet steps. All packet
//! understanding lives in `keepalive_common::classify`, shared with userspace; this file only
//! adds what needs the kernel: the bounded reader over `XdpContext`, the flow maps, the event
//! rings (`ring.rs`) and the counters. Nothing on the per-packet path logs: an aya-log call
//! there costs more than the whole program.
//!
//! This is the object `keepalive run` loads, and all it holds. The benchmark's baselines live in
//! a second object, `bench.rs`, which includes this file as a module (so its `keepalive` program
//! is this one) and adds them; it is embedded only in test and benchmark builds.
#![no_std]
#![no_main]

mod reader;
pub(crate) mod ring;

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use keepalive_common::{
    classify::{classify_app, decide, fill, Decision, Outcome, TcpMatch},
    wire::{
        sccp_msg, App, Config, Counters, Event, EventWithPayload, FlowKey, FlowKeyV4, FlowStats,
        SipKind, SIP_COPY_MAX,
    },
};
use reader::XdpReader;

/// Load-time configuration. Userspace rewrites it with `EbpfLoader::override_global` before
/// load; the kernel freezes `.rodata`, so the verifier sees constants and prunes unused rules.
#[no_mangle]
static KEEPALIVE_CONFIG: Config = Config::DEFAULT;

/// Per-direction TCP flow state of IPv4 connections. LRU, so a flood of flows evicts the oldest
/// instead of failing. Resized by userspace at load time.
#[map]
pub(crate) static FLOWS: LruHashMap<FlowKeyV4, FlowStats> =
    LruHashMap::with_max_entries(262_144, 0);

/// The same for IPv6 connections, apart because every lookup hashes the whole key: a 36-byte
/// key for every IPv4 segment cost ~17 ns more than the 12-byte one.
#[map]
static FLOWS6: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(65_536, 0);

/// Per-CPU counters, one slot.
#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// The keepalive program: record, then pass (or drop in mirror mode).
// `#[xdp]` programs take their context by value.
#[allow(clippy::needless_pass_by_value)]
#[xdp]
pub fn keepalive(ctx: XdpContext) -> u32 {
    try_keepalive(&ctx)
}

/// The configuration, read field by field where the classifier uses it.
///
/// Only the *address* is read volatile, so the compiler can neither fold the compile-time
/// default into the code (userspace replaces the value before load) nor copy all 40 bytes
/// up front (a volatile read of the whole struct cost ~40 loads and 14 stack spills on every
/// packet). The verifier tracks the address through its stack slot as a pointer into the
/// frozen `.rodata` map, so each field loaded from it is a known constant (kernel 5.2+:
/// loads from read-only maps are scalars of known value) and branches on it are pruned.
#[inline(always)]
pub(crate) fn config() -> &'static Config {
    // SAFETY: reading a local holding the static's address; the static lives forever.
    unsafe { &*core::ptr::read_volatile(&(&raw const KEEPALIVE_CONFIG)) }
}

#[inline(always)]
fn try_keepalive(ctx: &XdpContext) -> u32 {
    let cfg = config();
    let verdict = if cfg.mirror() { xdp_action::XDP_DROP } else { xdp_action::XDP_PASS };
    let Some(counters) = COUNTERS.get_ptr_mut(0) else {
        return verdict;
    };
    // SAFETY: a per-CPU array slot; XDP runs with preemption disabled, so this CPU owns it.
    let counters = unsafe { &mut *counters };
    counters.seen += 1;
    if cfg.mirror() {
        counters.mirror_drops += 1;
    }

    let r = XdpReader::new(ctx);
    let d = decide(&r, cfg);
    match d {
        // The fast path: everything unrelated leaves here.
        Decision::Skip(Outcome::Pass) => {}
        Decision::Skip(_) => counters.parse_errors += 1,
        Decision::Arp(_) | Decision::Tcp(_) => record(ctx, &r, &d, counters),
    }
    verdict
}

/// A matched frame: the event is built straight in a slot of this CPU's event ring, so the only
/// writes are the event's own (no copy). A SIP segment with payload takes a slot of the payload
/// ring instead, with room for the copy after the event. When the ring is full the event is
/// built in the ring's spare slot and counted in `ringbuf_full`, not published: the flow is
/// still updated, so the SCCP resume state stays right for the next segment.
#[inline(always)]
fn record(ctx: &XdpContext, r: &XdpReader, d: &Decision, counters: &mut Counters) {
    let sip = matches!(d, Decision::Tcp(m) if m.app == App::Sip && m.payload_len > 0);
    // One reservation of one type whichever the ring: with a reservation of each kind alive
    // through `build`, the verifier's states of the two paths never matched.
    let Some(slot) = (if sip { ring::reserve_payload() } else { ring::reserve_event() }) else {
        return;
    };
    // Under a flood (spoofed SYNs, ARP replies from random addresses) the agent may fall
    // behind. The last quarter of a ring is kept for what phones' state needs, segments with
    // payload (KeepAlives, their Acks, REGISTERs): a frame without payload is shed instead,
    // before anything is built, so a flood loses its own events first. (Deciding after
    // `build`, on whether the flow holds data, cost the verifier 200 000 more instructions.)
    let bare = match d {
        Decision::Tcp(m) => m.payload_len == 0,
        _ => true,
    };
    if bare && slot.crowded() {
        match d {
            Decision::Tcp(_) => counters.matched_tcp += 1,
            _ => counters.matched_arp += 1,
        }
        counters.shed += 1;
        return;
    }
    if slot.full() {
        counters.ringbuf_full += 1;
    }
    // SAFETY: a reserved ring slot, or this CPU's spare one: ours until published, 8-byte
    // aligned (XDP runs with preemption disabled, and one program at a time per CPU).
    let ev = unsafe { &mut *slot.event() };
    // A slot that is not published is simply reused by the next reservation.
    if !build(ctx, r, d, ev, counters) || slot.full() {
        return;
    }
    if sip {
        // `ev` is not used again on this path: the slot is written through its payload view.
        copy_payload(ctx, slot.payload());
    } else if ev.copy_len > 0 {
        // An SCCP Register: once per registration, so a payload slot with the copy (the
        // device name is in its body) is cheaper than copying for every KeepAlive.
        emit_with_copy(ctx, ev, counters);
        return;
    }
    counters.events += 1;
    slot.publish();
}

/// Fills a reserved event for a matched frame; `false` when the frame turned out malformed.
#[inline(always)]
fn build(
    ctx: &XdpContext,
    r: &XdpReader,
    d: &Decision,
    ev: &mut Event,
    counters: &mut Counters,
) -> bool {
    // Ring memory is not zeroed by the reservation; `fill` writes only what a frame has.
    ev.clear();
    match (fill(r, d, ev), d) {
        (Outcome::Arp, _) => {
            counters.matched_arp += 1;
            stamp(ctx, ev);
            true
        }
        (Outcome::Tcp, Decision::Tcp(m)) => {
            counters.matched_tcp += 1;
            stamp(ctx, ev);
            on_tcp(r, m, ev, counters);
            true
        }
        _ => {
            counters.parse_errors += 1;
            false
        }
    }
}

#[inline(always)]
fn stamp(ctx: &XdpContext, ev: &mut Event) {
    ev.ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: helper without arguments.
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
}

/// A tracked TCP segment: update its flow and finish classification with the flow's SCCP
/// resume state.
///
/// Only a segment that carries payload creates a flow entry: the entry exists for the SCCP
/// resume state and the per-flow counters of data. A SYN flood from spoofed sources (every
/// segment a new flow) would otherwise fill the LRU map and evict the flows of real phones;
/// segments without payload update a flow that exists and leave no trace otherwise.
#[inline(always)]
fn on_tcp(r: &XdpReader, m: &TcpMatch, ev: &mut Event, counters: &mut Counters) {
    let create = ev.payload_len > 0;
    let flow = if ev.ip_version == 4 {
        flow_in(&FLOWS, &ev.flow_key_v4(), ev.ts_ns, create, counters)
    } else {
        flow_in(&FLOWS6, &ev.flow_key(), ev.ts_ns, create, counters)
    };
    let Some(flow) = flow else {
        if create {
            counters.flow_update_errors += 1;
        }
        classify_app(r, m, 0, ev);
        return;
    };
    // SAFETY: a live LRU map value; a concurrent update from another CPU can only make the
    // counters approximate, never invalid.
    let flow = unsafe { &mut *flow };
    let skip = if flow.spill != 0 && flow.resume_seq.wrapping_sub(flow.spill) == ev.seq {
        flow.spill
    } else {
        0
    };
    classify_app(r, m, skip, ev);
    update_flow(flow, ev);
}

/// The flow's state in `map`, created on its first segment when `create`.
#[inline(always)]
fn flow_in<K>(
    map: &LruHashMap<K, FlowStats>,
    key: &K,
    now: u64,
    create: bool,
    counters: &mut Counters,
) -> Option<*mut FlowStats> {
    if let Some(f) = map.get_ptr_mut(key) {
        return Some(f);
    }
    if !create {
        return None;
    }
    let fresh = FlowStats { first_ns: now, ..FlowStats::default() };
    // BPF_NOEXIST: another CPU may have created it meanwhile; either way look it up. The value
    // goes to the helper by pointer from this frame (by value it would be copied into the
    // callee's, on a 512-byte stack).
    #[allow(clippy::needless_borrows_for_generic_args)]
    let inserted = map.insert(key, &fresh, u64::from(BPF_NOEXIST)).is_ok();
    if inserted {
        counters.flows_created += 1;
    }
    map.get_ptr_mut(key)
}

#[inline(always)]
fn update_flow(flow: &mut FlowStats, ev: &Event) {
    flow.packets += 1;
    flow.bytes += u64::from(ev.payload_len);
    flow.last_ns = ev.ts_ns;
    if ev.payload_len > 0 {
        let end = ev.seq.wrapping_add(u32::from(ev.payload_len));
        // Sequence comparison modulo 2^32 (RFC 793 §3.3): a segment that does not reach past
        // what was already seen is a retransmission.
        if flow.next_seq != 0 && (end.wrapping_sub(flow.next_seq) as i32) <= 0 {
            flow.retransmits += 1;
        } else {
            flow.next_seq = end;
        }
        flow.spill = ev.spill;
        flow.resume_seq = end.wrapping_add(ev.spill);
    }
    match App::from_u8(ev.app) {
        App::Sccp => {
            let mut i = 0;
            while i < ev.pdus.len() {
                if i < ev.pdu_count as usize {
                    match ev.pdus[i] {
                        sccp_msg::KEEPALIVE => flow.keepalives += 1,
                        sccp_msg::KEEPALIVE_ACK => flow.acks += 1,
                        _ => {}
                    }
                }
                i += 1;
            }
        }
        App::Sip if ev.sip_kind == SipKind::Register as u8 => flow.keepalives += 1,
        App::Sip if ev.sip_kind == SipKind::Response as u8 => flow.acks += 1,
        _ => {}
    }
}

/// Copies the start of the TCP payload after the event in a reserved slot: `copy_len`
/// bytes, or none (`copy_len` set to 0) when the frame does not hold them.
#[inline(always)]
fn copy_payload(ctx: &XdpContext, rec: *mut EventWithPayload) {
    // SAFETY: `rec` points at a reserved payload slot that is ours until published.
    unsafe {
        // bpf_xdp_load_bytes (Linux 5.18) copies from the frame, including multi-buffer frags;
        // the verifier needs the length provably in 1..=SIP_COPY_MAX. The length is loaded
        // volatile and range-tested once, with no `min`: otherwise LLVM derives the argument
        // in a second register (from the word `write_to` copied, or a clamped copy) and tests
        // the first, which the verifier cannot connect.
        let len = u32::from(core::ptr::read_volatile(&raw const (*rec).event.copy_len));
        if len == 0
            || len > SIP_COPY_MAX as u32
            || bpf_xdp_load_bytes(
                ctx.ctx,
                u32::from((*rec).event.payload_off),
                (&raw mut (*rec).payload).cast(),
                len,
            ) != 0
        {
            (*rec).event.copy_len = 0;
        }
    }
}

/// Emits `ev` in a payload slot of its own with the payload copy after it.
#[inline(always)]
fn emit_with_copy(ctx: &XdpContext, ev: &Event, counters: &mut Counters) {
    let Some(slot) = ring::reserve_payload() else {
        return;
    };
    if slot.full() {
        counters.ringbuf_full += 1;
        return;
    }
    let rec = slot.payload();
    // SAFETY: the reserved slot is exclusively ours until published.
    unsafe { ev.write_to(&raw mut (*rec).event) };
    copy_payload(ctx, rec);
    counters.events += 1;
    slot.publish();
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
