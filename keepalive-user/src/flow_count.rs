//! Counting the live entries of a flow map with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6): one
//! syscall per few thousand entries. Walking the keys takes one `BPF_MAP_GET_NEXT_KEY` per
//! entry: 133 ms for the 200 000 flows of 100 000 phones against 58 ms in batches, time in
//! which the agent's event loop does not read the rings (it counts every 30 s). aya has no
//! batch operations, so the syscall is made here.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel's ENOTSUPP (not in libc): a map type without batch operations.
const ENOTSUPP: i32 = 524;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries of the hash map `fd` (keys of `key_size` and values of `value_size` bytes), read
/// `batch` at a time. `None` when the kernel has no batch lookup for it (before 5.6).
pub fn count(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    batch: u32,
) -> io::Result<Option<usize>> {
    let mut batch = batch.max(1);
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    // A hash map's batch position is a bucket index (kernel/bpf/hashtab.c).
    let (mut position, mut next, mut started) = (0u32, 0u32, false);
    let mut total = 0;
    loop {
        keys.resize(key_size * batch as usize, 0u8);
        values.resize(value_size * batch as usize, 0u8);
        let mut attr = BatchAttr {
            in_batch: if started { (&raw const position) as u64 } else { 0 },
            out_batch: (&raw mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: batch,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid bpf_attr prefix of its own size; the buffers it points to
        // hold `count` keys and values and outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>() as libc::c_uint,
            )
        };
        if r == 0 {
            total += attr.count as usize;
            (position, started) = (next, true);
            continue;
        }
        match io::Error::last_os_error().raw_os_error() {
            // The end: the last entries came with it.
            Some(libc::ENOENT) => return Ok(Some(total + attr.count as usize)),
            // One bucket holds more entries than a batch: the same position, a larger batch.
            Some(libc::ENOSPC) => batch *= 2,
            Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP) => return Ok(None),
            _ => return Err(io::Error::last_os_error()),
        }
    }
}
