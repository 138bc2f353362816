//! The keepalive XDP program.
//!
//! Reads top to bottom: configuration, maps, the programs, then the per-packet steps. All packet
//! understanding lives in `keepalive_common::classify`, shared with userspace; this file only
//! adds what needs the kernel: the bounded reader over `XdpContext`, the flow maps, the event
//! rings (`ring.rs`) and the counters. Nothing on the per-packet path logs: an aya-log call
//! there costs more than the whole program.
//!
//! The program attached, `keepalive`, is the gate and nothing else (`classify::gate`: the
//! EtherType, the IP protocol, the ports against a bit set of the tracked ones). The frames it
//! lets through are tail-called into `keepalive_classify`, which runs the classifier. On a
//! router nearly every frame is unrelated, and cold between frames: what it pays is the gate's
//! few instructions, not the classifier's size.
//!
//! An encapsulated frame (GRE, ERSPAN, VXLAN) is handed on by more tail calls, a program for
//! each step: `keepalive_tunnel` reads the GRE or VXLAN header the classifier found, then
//! `keepalive_inner_eth` or `keepalive_inner_ip` runs the same classifier on the inner frame,
//! with the reader based where the outer layers end. The classifier's program stays as small
//! as it was for bare frames: one program holding the outer and the inner walks ran past the
//! verifier's million instructions, and so did one inner program for every link layer.
//!
//! This is the object `keepalive run` loads, and all it holds. The benchmark's baselines live in
//! a second object, `bench.rs`, which includes this file as a module (so its `keepalive` program
//! is this one) and adds them; it is embedded only in test and benchmark builds.
#![no_std]
#![no_main]
// The reader's empty asm statement (reader.rs) on the BPF target.
#![feature(asm_experimental_arch)]

mod hook;
mod reader;
pub(crate) mod ring;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map, xdp},
    maps::{LruHashMap, PerCpuArray, ProgramArray},
    programs::{TcContext, XdpContext},
};
use hook::{tc_linear, tc_linearize, tc_verdict, xdp_verdict, Hook};
use keepalive_common::{
    classify::{
        classify_app, count_encap, decide, decide_link, fill, gate, Decision, Inner, Link, Outcome,
        Peeled, TcpMatch, MAX_ENCAP,
    },
    wire::{
        sccp_msg, App, Config, Counters, Encap, Event, EventWithPayload, FlowKey, FlowKeyV4,
        FlowStats, SipKind, SIP_COPY_MAX,
    },
};
use reader::PacketReader;

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

/// The programs the first one hands a frame to by tail call: the classifier's
/// (`keepalive_classify`, at [`CLASSIFY`]) for what passes the gate, and for a tunnelled
/// frame those indexed by what starts at the inner offset ([`link_index`]):
/// `keepalive_inner_eth`, `keepalive_inner_ip`, and `keepalive_tunnel` at both 2 (GRE) and 3
/// (VXLAN). Userspace fills it after loading.
#[map]
pub(crate) static PROGS: ProgramArray = ProgramArray::with_max_entries(5, 0);

/// The same for the tc hook's programs (`keepalive_tc_inner_eth`, …): a program array holds
/// programs of one type.
#[map]
pub(crate) static PROGS_TC: ProgramArray = ProgramArray::with_max_entries(5, 0);

/// Index in [`PROGS`] of the classifier's program.
const CLASSIFY: u32 = 4;

/// What the outer layers said, handed from one program to the next through a tail call (the
/// context cannot carry it). Per CPU: a tail call runs on the CPU of its caller, with
/// preemption still disabled, so no other frame writes the slot in between.
#[map]
static TUNNEL: PerCpuArray<Tunnel> = PerCpuArray::with_max_entries(1, 0);

/// One frame's peeled layers, as [`TUNNEL`] holds them: plain integers, as map memory is.
#[repr(C)]
#[derive(Clone, Copy)]
struct Tunnel {
    /// Offset of the inner frame (or tunnel header) in the frame.
    base: u32,
    /// The innermost segment id (VNI, ERSPAN session, GRE key).
    segment: u32,
    /// Layers peeled so far.
    layers: u8,
    /// [`Encap`] of the innermost layer.
    encap: u8,
    /// What starts at `base`: [`link_index`] of a [`Link`].
    link: u8,
    _pad: u8,
}

/// Index in [`PROGS`] of the program for what starts at an inner offset.
#[inline(always)]
const fn link_index(link: Link) -> u32 {
    match link {
        Link::Ethernet => 0,
        Link::Ip => 1,
        Link::Gre => 2,
        Link::Vxlan => 3,
    }
}

/// Largest inner-frame offset followed: two layers of IPv6, GRE with every option and
/// ERSPAN III with its platform subheader need 190 bytes. Bounding it keeps the verifier's
/// range of `data + base + off` finite.
const MAX_TUNNEL_BASE: u32 = 512;

/// The keepalive program: the gate, alone. A frame that may be ARP, TCP on a tracked port or a
/// tunnel goes on to [`keepalive_classify`] by tail call; every other frame leaves after a
/// handful of loads from the cache lines the stack reads next anyway, with no map lookup, no
/// clock read and no write. Kept this small so that it stays in the instruction cache between
/// frames on a router, where the whole classifier did not.
// `#[xdp]` and `#[classifier]` programs take their context by value.
#[allow(clippy::needless_pass_by_value)]
#[xdp]
pub fn keepalive(ctx: XdpContext) -> u32 {
    let cfg = config();
    if gate(&ctx.packet(0), cfg) {
        // Returns only if the slot is empty, which a loaded probe never leaves it (the loader
        // fails the load when it cannot fill `PROGS`).
        ctx.tail_call(CLASSIFY);
    }
    xdp_verdict(cfg.mirror())
}

/// The same program at tc ingress (`keepalive run --hook tc`), beside other programs. An skb
/// whose headers are not all in its linear part goes to the classifier, which makes them so.
#[allow(clippy::needless_pass_by_value)]
#[classifier]
pub fn keepalive_tc(ctx: TcContext) -> i32 {
    let cfg = config();
    if !tc_linear(&ctx, GATE_BYTES) || gate(&ctx.packet(0), cfg) {
        ctx.tail_call(CLASSIFY);
    }
    tc_verdict(cfg.mirror())
}

/// The most the gate reads: two VLAN tags, an IPv6 header and the ports.
const GATE_BYTES: u32 = 14 + 8 + 40 + 4;

/// The classifier's program: records what the frame holds, then passes it (or drops it in
/// mirror mode).
#[allow(clippy::needless_pass_by_value)]
#[xdp]
pub fn keepalive_classify(ctx: XdpContext) -> u32 {
    xdp_verdict(try_keepalive(&ctx))
}

/// [`keepalive_classify`] at tc ingress.
#[allow(clippy::needless_pass_by_value)]
#[classifier]
pub fn keepalive_tc_classify(ctx: TcContext) -> i32 {
    tc_linearize(&ctx);
    tc_verdict(try_keepalive(&ctx))
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

/// Records what the frame holds; returns whether to drop it (mirror mode).
#[inline(always)]
fn try_keepalive<H: Hook>(ctx: &H) -> bool {
    let cfg = config();
    let verdict = cfg.mirror();
    let Some(counters) = COUNTERS.get_ptr_mut(0) else {
        return verdict;
    };
    // SAFETY: a per-CPU array slot; XDP and tc programs run in softirq context (or with bottom
    // halves off), one at a time per CPU, so this CPU owns it.
    let counters = unsafe { &mut *counters };
    counters.seen += 1;
    if cfg.mirror() {
        counters.mirror_drops += 1;
    }

    let r = ctx.packet(0);
    let d = decide(&r, cfg);
    match d {
        // What the gate let through and is not ours after all: a port that only shares its
        // low bits with a tracked one, a later fragment, an extension header leading nowhere.
        Decision::Skip(Outcome::Pass) => {}
        Decision::Skip(_) => counters.parse_errors += 1,
        // The first step only finds a tunnel header (GRE, or UDP to the VXLAN port): no layer
        // is peeled or counted yet, so the hand-over is the slot's write and the tail call.
        Decision::Tunnel(inner) => {
            hand_on(ctx, &Peeled { base: inner.off, ..Peeled::default() }, inner.link);
        }
        Decision::Arp(_) | Decision::Tcp(_) => record(ctx, &r, &d, &Peeled::default(), counters),
    }
    verdict
}

/// The inner frame of a tunnel, when it starts with Ethernet.
#[allow(clippy::needless_pass_by_value)]
#[xdp]
pub fn keepalive_inner_eth(ctx: XdpContext) -> u32 {
    xdp_verdict(try_inner(&ctx, Link::Ethernet))
}

/// The inner frame of a tunnel, when it is an IP packet.
#[allow(clippy::needless_pass_by_value)]
#[xdp]
pub fn keepalive_inner_ip(ctx: XdpContext) -> u32 {
    xdp_verdict(try_inner(&ctx, Link::Ip))
}

/// A GRE or VXLAN header found by the program before: where its inner frame starts.
#[allow(clippy::needless_pass_by_value)]
#[xdp]
pub fn keepalive_tunnel(ctx: XdpContext) -> u32 {
    xdp_verdict(try_inner(&ctx, Link::Gre))
}

/// [`keepalive_inner_eth`] at tc ingress (the skb was made linear by `keepalive_tc`).
#[allow(clippy::needless_pass_by_value)]
#[classifier]
pub fn keepalive_tc_inner_eth(ctx: TcContext) -> i32 {
    tc_verdict(try_inner(&ctx, Link::Ethernet))
}

/// [`keepalive_inner_ip`] at tc ingress.
#[allow(clippy::needless_pass_by_value)]
#[classifier]
pub fn keepalive_tc_inner_ip(ctx: TcContext) -> i32 {
    tc_verdict(try_inner(&ctx, Link::Ip))
}

/// [`keepalive_tunnel`] at tc ingress.
#[allow(clippy::needless_pass_by_value)]
#[classifier]
pub fn keepalive_tc_tunnel(ctx: TcContext) -> i32 {
    tc_verdict(try_inner(&ctx, Link::Gre))
}

/// One step of a tunnelled frame, `link` at the offset [`TUNNEL`] holds (`Link::Gre` stands
/// for both tunnel headers: the slot says which). `seen` was counted by the classifier's
/// program.
#[inline(always)]
fn try_inner<H: Hook>(ctx: &H, link: Link) -> bool {
    let cfg = config();
    let verdict = cfg.mirror();
    let (Some(counters), Some(t)) = (COUNTERS.get_ptr_mut(0), TUNNEL.get_ptr(0)) else {
        return verdict;
    };
    // SAFETY: per-CPU array slots, this CPU's (see `try_keepalive`); `TUNNEL`'s was written by
    // the program that tail-called this one, on this CPU.
    let (counters, t) = unsafe { (&mut *counters, *t) };
    if t.base > MAX_TUNNEL_BASE {
        return verdict;
    }
    let peeled = Peeled {
        base: t.base as usize,
        layers: t.layers,
        encap: Encap::from_u8(t.encap),
        segment: t.segment,
    };
    let r = ctx.packet(peeled.base);
    // Each arm is inlined with its link constant, so each program holds one walk.
    let d = match link {
        Link::Gre | Link::Vxlan if t.link == link_index(Link::Vxlan) as u8 => {
            decide_link(&r, cfg, Link::Vxlan)
        }
        Link::Gre | Link::Vxlan => decide_link(&r, cfg, Link::Gre),
        Link::Ethernet => decide_link(&r, cfg, Link::Ethernet),
        Link::Ip => decide_link(&r, cfg, Link::Ip),
    };
    match d {
        Decision::Skip(Outcome::Pass) => {}
        Decision::Skip(_) => counters.parse_errors += 1,
        Decision::Tunnel(inner) => enter(ctx, &inner, &peeled, counters),
        // A tunnel header is followed by a frame, never a match of its own.
        Decision::Arp(_) | Decision::Tcp(_) if matches!(link, Link::Gre | Link::Vxlan) => {}
        Decision::Arp(_) | Decision::Tcp(_) => record(ctx, &r, &d, &peeled, counters),
    }
    verdict
}

/// One more step into a tunnel: a layer is counted, then the frame goes to the program for
/// what starts at the new offset (up to [`MAX_ENCAP`] layers).
#[inline(always)]
fn enter<H: Hook>(ctx: &H, inner: &Inner, outer: &Peeled, counters: &mut Counters) {
    count_encap(counters, inner.encap);
    if inner.encap != Encap::None && usize::from(outer.layers) >= MAX_ENCAP {
        counters.encap_too_deep += 1;
        return;
    }
    let mut peeled = *outer;
    peeled.push(inner);
    hand_on(ctx, &peeled, inner.link);
}

/// Tail-calls the program for `link` at `peeled.base`, with `peeled` in [`TUNNEL`].
#[inline(always)]
fn hand_on<H: Hook>(ctx: &H, peeled: &Peeled, link: Link) {
    let Some(t) = TUNNEL.get_ptr_mut(0) else {
        return;
    };
    let index = link_index(link);
    // SAFETY: this CPU's slot (see `try_keepalive`).
    unsafe {
        *t = Tunnel {
            base: peeled.base as u32,
            segment: peeled.segment,
            layers: peeled.layers,
            encap: peeled.encap as u8,
            link: index as u8,
            _pad: 0,
        };
        // Does not return when it succeeds; when it fails (no program at the index) the
        // frame passes unread, as it did before tunnels were followed.
        ctx.tail_call(index);
    }
}

/// A matched frame: the event is built straight in a slot of this CPU's event ring, so the only
/// writes are the event's own (no copy). A SIP segment with payload takes a slot of the payload
/// ring instead, with room for the copy after the event. When the ring is full the event is
/// built in the ring's spare slot and counted in `ringbuf_full`, not published: the flow is
/// still updated, so the SCCP resume state stays right for the next segment.
#[inline(always)]
fn record<H: Hook>(
    ctx: &H,
    r: &PacketReader,
    d: &Decision,
    peeled: &Peeled,
    counters: &mut Counters,
) {
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
    // aligned (XDP and tc programs run with bottom halves off, one at a time per CPU).
    let ev = unsafe { &mut *slot.event() };
    // A slot that is not published is simply reused by the next reservation.
    if !build(ctx, r, d, peeled, ev, counters) || slot.full() {
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
fn build<H: Hook>(
    ctx: &H,
    r: &PacketReader,
    d: &Decision,
    peeled: &Peeled,
    ev: &mut Event,
    counters: &mut Counters,
) -> bool {
    // Ring memory is not zeroed by the reservation; `fill` writes only what a frame has.
    ev.clear();
    let outcome = fill(r, d, ev);
    // Known false (and gone) in the first program.
    if peeled.layers != 0 {
        peeled.stamp(ev);
    }
    match (outcome, d) {
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
fn stamp<H: Hook>(ctx: &H, ev: &mut Event) {
    ev.ifindex = ctx.ingress_ifindex_of();
    // SAFETY: helper without arguments.
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
}

/// A tracked TCP segment with payload: update its flow and finish classification with the
/// flow's SCCP (or TLS) resume state.
///
/// A segment without payload does not touch the map at all. What the tracker needs of it (a
/// backup's TCP ACK answering a KeepAlive, the ACKs and SYNs of retransmission and reconnect
/// analysis) is all in its event: seq, ack, flags and time. The map's entry exists for the
/// resume state and the per-flow counters of data, and the lookup was a third of a pure ACK's
/// cost. So only payload creates an entry, and a SYN flood from spoofed sources (every
/// segment a new flow) leaves no trace in it.
#[inline(always)]
fn on_tcp(r: &PacketReader, m: &TcpMatch, ev: &mut Event, counters: &mut Counters) {
    if ev.payload_len == 0 {
        return;
    }
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
    let skip = if flow.spill != 0 && flow.resume_seq.wrapping_sub(flow.spill) == ev.seq {
        flow.spill
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

/// A segment with payload in its flow's state.
#[inline(always)]
fn update_flow(flow: &mut FlowStats, ev: &Event) {
    flow.packets += 1;
    flow.bytes += u64::from(ev.payload_len);
    flow.last_ns = ev.ts_ns;
    let end = ev.seq.wrapping_add(u32::from(ev.payload_len));
    // Sequence comparison modulo 2^32 (RFC 793 §3.3): a segment that does not reach past what
    // was already seen is a retransmission.
    if flow.next_seq != 0 && (end.wrapping_sub(flow.next_seq) as i32) <= 0 {
        flow.retransmits += 1;
    } else {
        flow.next_seq = end;
    }
    flow.spill = ev.spill;
    flow.resume_seq = end.wrapping_add(ev.spill);
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
fn copy_payload<H: Hook>(ctx: &H, rec: *mut EventWithPayload) {
    // SAFETY: `rec` points at a reserved payload slot that is ours until published.
    unsafe {
        // The hook's load_bytes helper copies from the frame, frags and pages included; the
        // verifier needs the length provably in 1..=SIP_COPY_MAX. The length is loaded
        // volatile and range-tested once, with no `min`: otherwise LLVM derives the argument
        // in a second register (from the word `write_to` copied, or a clamped copy) and tests
        // the first, which the verifier cannot connect.
        let len = u32::from(core::ptr::read_volatile(&raw const (*rec).event.copy_len));
        if len == 0
            || len > SIP_COPY_MAX as u32
            || ctx.load_bytes(
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
fn emit_with_copy<H: Hook>(ctx: &H, ev: &Event, counters: &mut Counters) {
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
