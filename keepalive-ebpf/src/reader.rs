//! The bounded reader over `XdpContext`: the checked `ptr_at` pattern the verifier accepts.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use keepalive_common::reader::{Reader, MAX_OFFSET};

pub struct XdpReader {
    start: usize,
    end: usize,
}

impl XdpReader {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self { start: ctx.data(), end: ctx.data_end() }
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
        if p + size_of::<[u8; N]>() > self.end {
            return None;
        }
        // SAFETY: [p, p + N) lies inside the packet, checked against data_end just above.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.end - self.start
    }
}
