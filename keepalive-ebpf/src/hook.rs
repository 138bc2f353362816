//! The two places the program runs, XDP and tc (tcx or clsact ingress), behind one trait: the
//! program logic is the same, only how a hook reaches the packet's bytes, names its interface,
//! copies payload, tail-calls the next step and says its verdict differs.
//!
//! The XDP hook sees a frame before the kernel has an skb for it, and may own the interface
//! alone (one program per interface unless the owner chains them). The tc hook runs on the skb
//! after the driver, beside programs already attached: under tcx (Linux 6.6) every program of
//! the chain runs in order while each returns `TCX_NEXT`, which is what keepalive returns.

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::{bpf_skb_load_bytes, bpf_skb_pull_data, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
    EbpfContext as _,
};

use super::reader::PacketReader;

/// Bytes at the start of an skb the tc hook makes linear before reading: the headers of the
/// deepest frame followed (two tunnel layers, then Ethernet, VLANs, IPv6 with extension
/// headers, TCP with options) and the start of its payload.
const TC_LINEAR: u32 = 256;

/// What the program needs from its hook.
pub(crate) trait Hook {
    /// The packet from byte `base` on (0: the whole frame).
    fn packet(&self, base: usize) -> PacketReader;
    /// The interface the packet arrived on.
    fn ingress_ifindex_of(&self) -> u32;
    /// Copies `len` bytes at `off` of the packet to `dst` (payload beyond what `packet`
    /// reaches, in frags or pages); 0 on success.
    ///
    /// # Safety
    /// `dst` must be valid for `len` bytes of writes.
    unsafe fn load_bytes(&self, off: u32, dst: *mut u8, len: u32) -> i64;
    /// Tail-calls the program at `index` of this hook's program array; returns only when
    /// there is none.
    fn tail_call(&self, index: u32);
}

impl Hook for XdpContext {
    #[inline(always)]
    fn packet(&self, base: usize) -> PacketReader {
        PacketReader::new(self.data() + base, self.data_end())
    }

    #[inline(always)]
    fn ingress_ifindex_of(&self) -> u32 {
        self.ingress_ifindex() as u32
    }

    #[inline(always)]
    unsafe fn load_bytes(&self, off: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: the caller's contract for `dst`; bpf_xdp_load_bytes (Linux 5.18) reads frags.
        unsafe { bpf_xdp_load_bytes(self.ctx, off, dst.cast(), len) }
    }

    #[inline(always)]
    fn tail_call(&self, index: u32) {
        // SAFETY: a tail call with this program's own context.
        unsafe { super::PROGS.tail_call(self, index) }
    }
}

impl Hook for TcContext {
    #[inline(always)]
    fn packet(&self, base: usize) -> PacketReader {
        PacketReader::new(self.data() + base, self.data_end())
    }

    #[inline(always)]
    fn ingress_ifindex_of(&self) -> u32 {
        // SAFETY: reading a field of the program's own __sk_buff.
        unsafe { (*self.skb.skb).ingress_ifindex }
    }

    #[inline(always)]
    unsafe fn load_bytes(&self, off: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: the caller's contract for `dst`; bpf_skb_load_bytes reads non-linear data.
        unsafe { bpf_skb_load_bytes(self.as_ptr(), off, dst.cast(), len) }
    }

    #[inline(always)]
    fn tail_call(&self, index: u32) {
        // SAFETY: a tail call with this program's own context.
        unsafe { super::PROGS_TC.tail_call(self, index) }
    }
}

/// Whether the skb's first `want` bytes (or all of it, when shorter) can be read directly.
#[inline(always)]
pub(crate) fn tc_linear(ctx: &TcContext, want: u32) -> bool {
    (ctx.data_end() - ctx.data()) as u32 >= ctx.len().min(want)
}

/// Makes the first [`TC_LINEAR`] bytes of the skb readable by direct access (a GRO'd or
/// paged skb may hold its headers in frags), when they are not already: only then does the
/// helper run. Direct packet pointers taken before are invalid after it.
#[inline(always)]
pub(crate) fn tc_linearize(ctx: &TcContext) {
    if !tc_linear(ctx, TC_LINEAR) {
        let want = ctx.len().min(TC_LINEAR);
        // SAFETY: the program's own skb; a failure leaves it as it was (the frame is then read
        // as far as it is linear).
        unsafe { bpf_skb_pull_data(ctx.as_ptr().cast(), want) };
    }
}

/// XDP's verdict: drop after recording in mirror mode, pass otherwise.
#[inline(always)]
pub(crate) const fn xdp_verdict(drop: bool) -> u32 {
    if drop {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// tc's: `TC_ACT_UNSPEC` is tcx's `TCX_NEXT`, so the programs after keepalive still run (and
/// the packet passes when none is left).
// The bindings give TC_ACT_SHOT as u32 on some architectures and i32 on others.
#[allow(clippy::unnecessary_cast)]
#[inline(always)]
pub(crate) const fn tc_verdict(drop: bool) -> i32 {
    if drop {
        TC_ACT_SHOT as i32
    } else {
        TC_ACT_UNSPEC
    }
}
