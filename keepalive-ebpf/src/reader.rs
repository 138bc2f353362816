//! The bounded reader over `XdpContext`: the checked `ptr_at` pattern the verifier accepts.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use keepalive_common::reader::{Reader, MAX_OFFSET};

/// A frame, or an inner frame at a variable offset in it.
pub struct XdpReader {
    start: usize,
    end: usize,
}

impl XdpReader {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self { start: ctx.data(), end: ctx.data_end() }
    }

    /// The frame from `base` on: an inner frame. The caller bounds `base`, so that the
    /// verifier's range of `start` stays finite.
    #[inline(always)]
    pub fn at(ctx: &XdpContext, base: usize) -> Self {
        Self { start: ctx.data() + base, end: ctx.data_end() }
    }
}

impl Reader for XdpReader {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        // Bounding `off` first gives the verifier a finite range for `start + off`.
        if off > MAX_OFFSET {
            return None;
        }
        let p = self.start + off;
        let mut last = p + size_of::<[u8; N]>();
        if N == 1 {
            // LLVM turns `p + 1 > end` into `p >= end`, and from `p < end` the verifier learns
            // no range when `p` has no constant offset (kernel/bpf/verifier.c,
            // find_good_pkt_pointers: "off == 0 && range_right_open" gives nothing): a
            // one-byte read at a variable offset (the start of an inner frame, a SIP
            // method's ninth byte) was accepted or refused by how the compiler happened to
            // lay the code out. An empty asm statement hides `p + 1` from the optimizer at no
            // cost: the comparison stays `p + 1 > end`.
            // SAFETY: the statement is empty; it only claims to read and write `last`.
            unsafe {
                core::arch::asm!("{0} = {0}", inout(reg) last, options(pure, nomem, nostack))
            };
        }
        if last > self.end {
            return None;
        }
        // SAFETY: [p, p + N) lies inside the packet, checked against data_end just above.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }
}
