//! The keepalive XDP program.
//!
//! Reads top to bottom: configuration, maps, the programs, then the per-packet steps. All packet
//! understanding lives in `keepalive_common::classify`, shared with userspace; this file only
//! adds what needs the kernel: the bounded reader over `XdpContext`, the flow map, the ring
//! buffer and the counters. Nothing on the per-packet path logs: an aya-log call there costs
//! more than the whole program.
#![no_std]
#![no_main]

mod reader;

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use keepalive_common::{
    classify::{classify_app, decide, fill, Decision, Outcome, TcpMatch},
    wire::{
        sccp_msg, App, Config, Counters, Event, EventWithPayload, FlowKey, FlowStats, SipKind,
        SIP_COPY_MAX,
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

/// Per-direction TCP flow state. LRU, so a flood of flows evicts the oldest instead of failing.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(262_144, 0);

/// Per-CPU scratch space for the event being built: 144 bytes do not fit beside the
/// classifier's state in the 512-byte BPF stack. Touched only for matched frames.
#[map]
static SCRATCH: PerCpuArray<Event> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU counters, one slot.
#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

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
        Decision::Arp(_) | Decision::Tcp(_) => {
            let Some(ev) = SCRATCH.get_ptr_mut(0) else {
                return verdict;
            };
            // SAFETY: this CPU's scratch slot, owned for the duration of this run.
            let ev = unsafe { &mut *ev };
            ev.clear();
            match (fill(&r, &d, ev), d) {
                (Outcome::Arp, _) => {
                    counters.matched_arp += 1;
                    stamp(ctx, ev);
                    emit(ev, counters);
                }
                (Outcome::Tcp, Decision::Tcp(m)) => {
                    counters.matched_tcp += 1;
                    stamp(ctx, ev);
                    on_tcp(ctx, &r, &m, ev, counters);
                }
                _ => counters.parse_errors += 1,
            }
        }
    }
    verdict
}

#[inline(always)]
fn stamp(ctx: &XdpContext, ev: &mut Event) {
    ev.ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: helper without arguments.
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
}

/// A tracked TCP segment: update its flow, finish classification with the flow's SCCP resume
/// state, and emit the event (with the SIP payload when there is one).
#[inline(always)]
fn on_tcp(ctx: &XdpContext, r: &XdpReader, m: &TcpMatch, ev: &mut Event, counters: &mut Counters) {
    let key = ev.flow_key();
    let flow = match FLOWS.get_ptr_mut(&key) {
        Some(f) => Some(f),
        None => {
            let fresh = FlowStats { first_ns: ev.ts_ns, ..FlowStats::default() };
            // BPF_NOEXIST: another CPU may have created it meanwhile; either way look it up.
            if FLOWS.insert(&key, &fresh, u64::from(BPF_NOEXIST)).is_ok() {
                counters.flows_created += 1;
            }
            FLOWS.get_ptr_mut(&key)
        }
    };
    let Some(flow) = flow else {
        counters.flow_update_errors += 1;
        classify_app(r, m, 0, ev);
        emit_tcp(ctx, ev, counters);
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
    emit_tcp(ctx, ev, counters);
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

#[inline(always)]
fn emit_tcp(ctx: &XdpContext, ev: &Event, counters: &mut Counters) {
    if ev.copy_len == 0 {
        emit(ev, counters);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<EventWithPayload>(0) else {
        counters.ringbuf_full += 1;
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points at a reserved ring-buffer slot that is ours until submit.
    unsafe {
        ev.write_to(&raw mut (*rec).event);
        // bpf_xdp_load_bytes (Linux 5.18) copies from the frame, including multi-buffer frags;
        // the verifier needs the length provably in 1..=SIP_COPY_MAX.
        let len = u32::from(ev.copy_len).min(SIP_COPY_MAX as u32);
        if len == 0
            || bpf_xdp_load_bytes(
                ctx.ctx,
                u32::from(ev.payload_off),
                (&raw mut (*rec).payload).cast(),
                len,
            ) != 0
        {
            (*rec).event.copy_len = 0;
        }
    }
    entry.submit(0);
    counters.events += 1;
}

#[inline(always)]
fn emit(ev: &Event, counters: &mut Counters) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            // SAFETY: the reserved slot is exclusively ours until submit.
            unsafe { ev.write_to(entry.as_mut_ptr()) };
            entry.submit(0);
            counters.events += 1;
        }
        None => counters.ringbuf_full += 1,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
