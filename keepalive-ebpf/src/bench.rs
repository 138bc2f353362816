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
