//! The benchmark's object: the keepalive program exactly as `keepalive run` loads it (main.rs,
//! included as the `product` module, with its maps), plus the baselines `cargo xtask bench`
//! measures it against in the same run. Only the tests and the bench embed this object
//! (keepalive-user's `testing` feature); the shipped binary holds main.rs's object alone.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

// main.rs is this object's program as it is the product's; its crate-level attributes
// (`#![no_std]`, `#![no_main]`) are this file's too, so they are unused where it is a module.
#[allow(unused_attributes)]
#[path = "main.rs"]
mod product;

mod floor;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// An empty XDP_PASS program: the baseline `cargo xtask bench` measures against.
#[xdp]
pub fn keepalive_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Reads the EtherType and passes: the second baseline of the live benchmark. On a real
/// interface the first read of a frame's headers misses the cache (the sender's CPU wrote
/// them); any program that looks at a frame pays that, and the stack pays it after XDP_PASS
/// anyway. The empty program reads nothing, so it does not.
// `#[xdp]` programs take their context by value.
#[allow(clippy::needless_pass_by_value)]
#[xdp]
pub fn keepalive_touch(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 14 <= end {
        // SAFETY: [start, start + 14) is inside the frame (checked against data_end above).
        unsafe { core::ptr::read_volatile((start + 12) as *const u8) };
    }
    xdp_action::XDP_PASS
}

/// Reads the EtherType and the last byte of the transport ports the gate reads (byte 57: an
/// IPv6 header's ports; an IPv4 one's end at 37) and passes: the live benchmark's third
/// baseline. It pays for every cache line of the frame the gate touches and decides nothing,
/// so the gate's cost over it is its code and the configuration, and the read's cost under it
/// is the frame's second line where the headers cross one.
// `#[xdp]` programs take their context by value.
#[allow(clippy::needless_pass_by_value)]
#[xdp]
pub fn keepalive_ports(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 58 <= end {
        // SAFETY: [start, start + 58) is inside the frame (checked against data_end above).
        unsafe {
            core::ptr::read_volatile((start + 12) as *const u8);
            core::ptr::read_volatile((start + 57) as *const u8);
        }
    } else if start + 14 <= end {
        // SAFETY: as above, for [start, start + 14).
        unsafe { core::ptr::read_volatile((start + 12) as *const u8) };
    }
    xdp_action::XDP_PASS
}
