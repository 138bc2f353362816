//! The bounded reader over a hook's packet (`hook.rs`): the checked `ptr_at` pattern the
//! verifier accepts.

use core::mem::size_of;

use keepalive_common::reader::{Reader, MAX_OFFSET};

/// A frame, or an inner frame at a variable offset in it: `[start, end)` of the packet.
pub struct PacketReader {
    start: usize,
    end: usize,
}

impl PacketReader {
    /// The packet's bytes from `start` (a hook's `data`, plus a bounded base for an inner
    /// frame, which keeps the verifier's range of `start` finite) to `end` (its `data_end`).
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

impl Reader for PacketReader {
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
