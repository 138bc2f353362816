//! The benchmark's floor: programs that each do one piece of what the keepalive program does
//! for a matched frame, so `cargo xtask bench` can show what the pieces cost on their own
//! against the empty program in the same run. Never attached; loaded only by the bench.

use aya_ebpf::{
    bindings::{xdp_action, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
    macros::xdp,
    programs::XdpContext,
};
use keepalive_common::wire::{Event, FlowKeyV4, FlowStats};

use crate::{EVENTS, FLOWS};

/// The clock read every event needs.
#[xdp]
pub fn floor_clock(_ctx: XdpContext) -> u32 {
    // SAFETY: helper without arguments; the call is opaque to LLVM, so it is not removed.
    unsafe { bpf_ktime_get_ns() };
    xdp_action::XDP_PASS
}

/// A ring record of one cache line (56 bytes and the 8-byte header), written and submitted.
#[xdp]
pub fn floor_record_line(_ctx: XdpContext) -> u32 {
    record::<[u64; 7]>();
    xdp_action::XDP_PASS
}

/// A ring record of an [`Event`]'s size, written and submitted.
#[xdp]
pub fn floor_record_event(_ctx: XdpContext) -> u32 {
    record::<Event>();
    xdp_action::XDP_PASS
}

/// One IPv4 flow-map lookup and counter update (the entry created on the first run).
#[xdp]
pub fn floor_flow(_ctx: XdpContext) -> u32 {
    let key =
        FlowKeyV4 { src_addr: [192, 0, 2, 1], dst_addr: [192, 0, 2, 2], src_port: 1, dst_port: 2 };
    match FLOWS.get_ptr_mut(&key) {
        // SAFETY: a live map value; only this benchmark touches this key.
        Some(f) => unsafe { (*f).packets += 1 },
        None => {
            let _ = FLOWS.insert(&key, &FlowStats::default(), 0);
        }
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn record<T: 'static>() {
    if let Some(mut e) = EVENTS.reserve::<T>(0) {
        let p = e.as_mut_ptr().cast::<u64>();
        let mut i = 0;
        while i < size_of::<T>() / 8 {
            // SAFETY: inside the reserved record, which is ours until submit; 8-byte aligned.
            unsafe { core::ptr::write_volatile(p.add(i), 0) };
            i += 1;
        }
        e.submit(u64::from(BPF_RB_NO_WAKEUP));
    }
}
