//! The bounded reader: the only way the classifier touches packet bytes.
//!
//! Every access names an offset and a constant width and returns `None` when the packet is too
//! short, so a truncated frame is a clean "not matched", never a fault. In the kernel the same
//! check is what lets the verifier accept the load (`data + off + N <= data_end`).

/// Largest offset the classifier ever reads at. Bounding offsets keeps the verifier's range
/// tracking of `data + off` finite (packet pointer arithmetic must stay below `MAX_PACKET_OFF`).
pub const MAX_OFFSET: usize = 0x3fff;

/// Read-only, bounds-checked access to one packet.
pub trait Reader {
    /// `N` bytes starting at `off`, or `None` when they are not all inside the packet.
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]>;

    /// Total length of the packet in bytes.
    fn len(&self) -> usize;

    /// Whether the packet is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One byte.
    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        self.bytes::<1>(off).map(|b| b[0])
    }

    /// A big-endian (network order) `u16`.
    #[inline(always)]
    fn be16(&self, off: usize) -> Option<u16> {
        self.bytes::<2>(off).map(u16::from_be_bytes)
    }

    /// A big-endian (network order) `u32`.
    #[inline(always)]
    fn be32(&self, off: usize) -> Option<u32> {
        self.bytes::<4>(off).map(u32::from_be_bytes)
    }

    /// A little-endian `u32` (SCCP's byte order).
    #[inline(always)]
    fn le32(&self, off: usize) -> Option<u32> {
        self.bytes::<4>(off).map(u32::from_le_bytes)
    }
}

impl Reader for [u8] {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off > MAX_OFFSET {
            return None;
        }
        let end = off.checked_add(N)?;
        let s = self.get(off..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }

    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Reader;

    #[test]
    fn loads_are_bounded() {
        let p: &[u8] = &[1, 2, 3, 4, 5];
        assert_eq!(p.be16(0), Some(0x0102));
        assert_eq!(p.be32(1), Some(0x0203_0405));
        assert_eq!(p.le32(1), Some(0x0504_0302));
        assert_eq!(p.be32(2), None);
        assert_eq!(p.u8_at(5), None);
        assert_eq!(p.u8_at(usize::MAX), None);
        assert_eq!(p.bytes::<2>(usize::MAX - 1), None);
    }
}
