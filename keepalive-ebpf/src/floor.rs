//! The benchmark's floor: programs that each do one piece of what the keepalive program does
//! for a matched frame, so `cargo xtask bench` can show what the pieces cost on their own
//! against the empty program in the same run. Part of the bench object only (`bench.rs`).

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::RingBuf,
    programs::XdpContext,
};
use keepalive_common::wire::{Event, FlowKeyV4, FlowStats};

use crate::product::{ring, FLOWS};

/// The kernel's BPF ring buffer, for the comparison the event rings were chosen by (records
/// are discarded, so one page-sized ring never fills; 64 KiB is a page on every Linux).
#[map]
static FLOOR_RINGBUF: RingBuf = RingBuf::with_byte_size(64 << 10, 0);

/// The clock read every event needs.
#[xdp]
pub fn floor_clock(_ctx: XdpContext) -> u32 {
    // SAFETY: helper without arguments; the call is opaque to LLVM, so it is not removed.
    unsafe { bpf_ktime_get_ns() };
    xdp_action::XDP_PASS
}

/// An [`Event`] written into a record of the kernel's BPF ring buffer (reserve, write,
/// discard: the lock, the header and the commit's atomic exchange, as a submit has them).
#[xdp]
pub fn floor_ringbuf(_ctx: XdpContext) -> u32 {
    if let Some(mut e) = FLOOR_RINGBUF.reserve::<Event>(0) {
        zero(e.as_mut_ptr());
        e.discard(0);
    }
    xdp_action::XDP_PASS
}

/// An [`Event`] written into a slot of this CPU's event ring and published (what the program
/// does).
#[xdp]
pub fn floor_slot(_ctx: XdpContext) -> u32 {
    if let Some(s) = ring::reserve_event() {
        zero(s.event());
        s.publish();
    }
    xdp_action::XDP_PASS
}

/// One IPv4 flow-map lookup and counter update (the entry created on the first run), by
/// reference as the program does it.
#[allow(clippy::needless_borrows_for_generic_args)]
#[xdp]
pub fn floor_flow(_ctx: XdpContext) -> u32 {
    // Opaque, so the key is not one constant that LLVM, allowed misaligned accesses
    // (build.rs), writes as an 8-byte word at a 4-aligned stack slot: the verifier requires
    // natural alignment on the stack ("misaligned stack access").
    let key = core::hint::black_box(FlowKeyV4 {
        src_addr: [192, 0, 2, 1],
        dst_addr: [192, 0, 2, 2],
        src_port: 1,
        dst_port: 2,
    });
    match FLOWS.get_ptr_mut(&key) {
        // SAFETY: a live map value; only this benchmark touches this key.
        Some(f) => unsafe { (*f).packets += 1 },
        None => {
            let _ = FLOWS.insert(&key, &FlowStats::default(), 0);
        }
    }
    xdp_action::XDP_PASS
}

/// Writes zeros over `*p` eight bytes at a time, volatile so none is left out.
#[inline(always)]
fn zero<T>(p: *mut T) {
    let p = p.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: inside the caller's reserved record or slot; 8-byte aligned.
        unsafe { core::ptr::write_volatile(p.add(i), 0) };
        i += 1;
    }
}
