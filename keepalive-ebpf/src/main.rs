//! The keepalive XDP program.
//!
//! Reads top to bottom: configuration, maps, the programs, then the per-packet steps. All packet
//! understanding lives in `keepalive_common::classify`, shared with userspace; this file only
//! adds what needs the kernel: the bounded reader over `XdpContext`, the flow maps, the ring
//! buffer and the counters. Nothing on the per-packet path logs: an aya-log call there costs
//! more than the whole program. `floor.rs` holds the benchmark's programs that each do one
//! piece of a matched frame's work.
#![no_std]
#![no_main]

mod floor;
mod reader;

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{LruHashMap, PerCpuArray, RingBuf},
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

/// Events for the tracker. Resized by userspace at load time (a power-of-two number of pages).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

/// Per-direction TCP flow state of IPv4 connections. LRU, so a flood of flows evicts the oldest
/// instead of failing. Resized by userspace at load time.
#[map]
static FLOWS: LruHashMap<FlowKeyV4, FlowStats> = LruHashMap::with_max_entries(262_144, 0);

/// The same for IPv6 connections, apart because every lookup hashes the whole key: a 36-byte
/// key for every IPv4 segment cost ~17 ns more than the 12-byte one.
#[map]
static FLOWS6: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(65_536, 0);

/// Per-CPU scratch space for an event that has no ring-buffer record (the ring is full): 144
/// bytes do not fit beside the classifier's state in the 512-byte BPF stack.
#[map]
static SCRATCH: PerCpuArray<Event> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU counters, one slot.
#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU time of the last forced ring-buffer wakeup (see [`submit_flags`]).
#[map]
static LAST_WAKEUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Least time between two wakeups of the ring's reader forced from one CPU, while events flow.
const WAKEUP_EVERY_NS: u64 = 4_000_000;

/// The keepalive program: record, then pass (or drop in mirror mode).
#[xdp]
pub fn keepalive(ctx: XdpContext) -> u32 {
    try_keepalive(&ctx)
}

/// An empty XDP_PASS program: the baseline `cargo xtask bench` measures against.
#[xdp]
pub fn keepalive_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Reads the EtherType and passes: the second baseline of the live benchmark. On a real
/// interface the first read of a frame's headers misses the cache (the sender's CPU wrote
/// them); any program that looks at a frame pays that, and the stack pays it after XDP_PASS
/// anyway. The empty program reads nothing, so it does not.
#[xdp]
pub fn keepalive_touch(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 14 <= end {
        // SAFETY: [start, start + 14) is inside the frame (checked against data_end above).
        unsafe { core::ptr::read_volatile((start + 12) as *const u8) };
    }
    xdp_action::XDP_PASS
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
fn config() -> &'static Config {
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

/// A matched frame: the event is built straight in its ring-buffer reservation, so the only
/// writes are the event's own (no scratch copy). A SIP segment with payload reserves room for
/// the copy after the event. When the ring is full the event is built in the per-CPU scratch
/// slot instead and counted in `ringbuf_full`: the flow is still updated, so the SCCP resume
/// state stays right for the next segment.
#[inline(always)]
fn record(ctx: &XdpContext, r: &XdpReader, d: &Decision, counters: &mut Counters) {
    let sip = matches!(d, Decision::Tcp(m) if m.app == App::Sip && m.payload_len > 0);
    let (mut small, mut large) = (None, None);
    let slot: *mut Event = if sip {
        match EVENTS.reserve::<EventWithPayload>(0) {
            // SAFETY: a projection inside the reserved record, which is ours until submit.
            Some(e) => unsafe { &raw mut (*large.insert(e).as_mut_ptr()).event },
            None => core::ptr::null_mut(),
        }
    } else {
        match EVENTS.reserve::<Event>(0) {
            Some(e) => small.insert(e).as_mut_ptr(),
            None => core::ptr::null_mut(),
        }
    };
    let slot = if slot.is_null() {
        counters.ringbuf_full += 1;
        match SCRATCH.get_ptr_mut(0) {
            Some(p) => p,
            None => return,
        }
    } else {
        slot
    };
    // SAFETY: a reserved ring record (ours until submit or discard) or this CPU's scratch slot
    // (XDP runs with preemption disabled); 8-byte aligned either way.
    let ev = unsafe { &mut *slot };
    let ok = build(ctx, r, d, ev, counters);
    let now = ev.ts_ns;
    if let Some(mut e) = large {
        if ok {
            // `ev` is not used again on this path: the record is written through `e` now.
            copy_payload(ctx, e.as_mut_ptr());
            e.submit(submit_flags(now, counters));
        } else {
            e.discard(0);
        }
    }
    if let Some(e) = small {
        if !ok {
            e.discard(0);
        } else if ev.copy_len > 0 {
            // An SCCP Register: once per registration, so a second record with the copy (the
            // device name is in its body) is cheaper than reserving room for every KeepAlive.
            emit_with_copy(ctx, ev, counters);
            e.discard(0);
        } else {
            e.submit(submit_flags(now, counters));
        }
    }
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
#[inline(always)]
fn on_tcp(r: &XdpReader, m: &TcpMatch, ev: &mut Event, counters: &mut Counters) {
    let flow = if ev.ip_version == 4 {
        flow_in(&FLOWS, &ev.flow_key_v4(), ev.ts_ns, counters)
    } else {
        flow_in(&FLOWS6, &ev.flow_key(), ev.ts_ns, counters)
    };
    let Some(flow) = flow else {
        counters.flow_update_errors += 1;
        classify_app(r, m, 0, ev);
        return;
    };
    // SAFETY: a live LRU map value; a concurrent update from another CPU can only make the
    // counters approximate, never invalid.
    let flow = unsafe { &mut *flow };
    let skip =
        if flow.sccp_spill != 0 && flow.sccp_resume_seq.wrapping_sub(flow.sccp_spill) == ev.seq {
            flow.sccp_spill
        } else {
            0
        };
    classify_app(r, m, skip, ev);
    update_flow(flow, ev);
}

/// The flow's state in `map`, created on its first segment.
#[inline(always)]
fn flow_in<K>(
    map: &LruHashMap<K, FlowStats>,
    key: &K,
    now: u64,
    counters: &mut Counters,
) -> Option<*mut FlowStats> {
    if let Some(f) = map.get_ptr_mut(key) {
        return Some(f);
    }
    let fresh = FlowStats { first_ns: now, ..FlowStats::default() };
    // BPF_NOEXIST: another CPU may have created it meanwhile; either way look it up.
    if map.insert(key, &fresh, u64::from(BPF_NOEXIST)).is_ok() {
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
        flow.sccp_spill = ev.sccp_spill;
        flow.sccp_resume_seq = end.wrapping_add(ev.sccp_spill);
    }
    match App::from_u8(ev.app) {
        App::Sccp => {
            let mut i = 0;
            while i < ev.sccp_ids.len() {
                if i < ev.sccp_count as usize {
                    match ev.sccp_ids[i] {
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

/// Copies the start of the TCP payload after the event in a reserved record: `copy_len`
/// bytes, or none (`copy_len` set to 0) when the frame does not hold them.
#[inline(always)]
fn copy_payload(ctx: &XdpContext, rec: *mut EventWithPayload) {
    // SAFETY: `rec` points at a reserved ring-buffer record that is ours until submit.
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

/// Emits `ev` in a record of its own with the payload copy after it.
#[inline(always)]
fn emit_with_copy(ctx: &XdpContext, ev: &Event, counters: &mut Counters) {
    let Some(mut entry) = EVENTS.reserve::<EventWithPayload>(0) else {
        counters.ringbuf_full += 1;
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: the reserved record is exclusively ours until submit.
    unsafe { ev.write_to(&raw mut (*rec).event) };
    copy_payload(ctx, rec);
    entry.submit(submit_flags(ev.ts_ns, counters));
}

/// Counts a submitted event and says whether to wake the reader.
///
/// The kernel's default (flags 0) wakes the reader whenever it has caught up with the ring
/// (`bpf_ringbuf_commit`: `consumer_pos == rec_pos` queues `irq_work`). An agent that keeps up,
/// the normal case, is then woken for every event, and the wakeup is an inter-processor
/// interrupt paid inside this program: 6.5 µs per event on this machine's VM against ~80 ns for
/// the rest (BENCHMARKS.md). So events are submitted with `BPF_RB_NO_WAKEUP`, and every CPU
/// forces a wakeup (`BPF_RB_FORCE_WAKEUP`) only when [`WAKEUP_EVERY_NS`] have passed since its
/// last one: at most 250 interrupts a second per CPU, and never more than 4 ms of traffic
/// waiting in the ring. The agent also drains on a short timer, for the events after the last
/// wakeup of a burst.
#[inline(always)]
fn submit_flags(now: u64, counters: &mut Counters) -> u64 {
    counters.events += 1;
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; XDP runs with preemption disabled.
    let last = unsafe { &mut *last };
    if now.wrapping_sub(*last) < WAKEUP_EVERY_NS {
        return u64::from(BPF_RB_NO_WAKEUP);
    }
    *last = now;
    counters.wakeups += 1;
    u64::from(BPF_RB_FORCE_WAKEUP)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
