//! The agent's side of the XDP program's per-CPU event rings (keepalive-ebpf `ring.rs`): the
//! three array maps mapped into this process, read in place, and the records taken in time
//! order.
//!
//! The protocol is [`RingPos`]'s: the program writes a slot and then advances `head` with
//! release ordering; this reader loads `head` with acquire ordering, copies the slots up to it,
//! and then advances `tail` with release ordering, which hands the slots back. A ring the
//! reader leaves full refuses new events, and the program counts them (`ringbuf_full`).
//!
//! Records of different CPUs are sorted by time within a drain. One connection's two
//! directions can arrive on two CPUs (RSS hashes each direction on its own), so a KeepAliveAck
//! may be in another ring than its KeepAlive; both have been published by the time the reader
//! sees the Ack, because the Ack was sent after the KeepAlive was seen.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use keepalive_common::wire::{
    Event, EventWithPayload, RingPos, RINGS_PER_CPU, RING_EVENTS, RING_PAYLOAD,
};

use crate::record::Record;

/// Map names in the object.
pub const EVENT_SLOTS: &str = "EVENT_SLOTS";
/// See [`EVENT_SLOTS`].
pub const PAYLOAD_SLOTS: &str = "PAYLOAD_SLOTS";
/// See [`EVENT_SLOTS`].
pub const RING_POS: &str = "RING_POS";

/// Errors of mapping the rings.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// mmap(2) of a ring map failed.
    #[error("could not map {map} into memory: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The rings of every CPU, mapped.
pub struct EventRings {
    events: Mapping,
    payloads: Mapping,
    pos: Mapping,
    cpus: u32,
    event_log2: u8,
    payload_log2: u8,
    /// Where the next drain starts, so a flooded ring cannot starve the others.
    next_ring: u32,
    /// Records that did not decode (counted, never fatal).
    pub bad_records: u64,
}

impl std::fmt::Debug for EventRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRings")
            .field("cpus", &self.cpus)
            .field("event_slots_log2", &self.event_log2)
            .field("payload_slots_log2", &self.payload_log2)
            .finish_non_exhaustive()
    }
}

// SAFETY: the mappings are plain shared memory owned by this value; every access to them goes
// through `&mut self` or atomics.
unsafe impl Send for EventRings {}

impl EventRings {
    /// Maps the three ring maps of a loaded object: `cpus` CPUs, each with `1 << event_log2`
    /// event slots and `1 << payload_log2` payload slots (the sizes the loader gave them).
    pub fn new(
        maps: [&MapData; 3],
        cpus: u32,
        event_log2: u8,
        payload_log2: u8,
    ) -> Result<Self, RingError> {
        let [events, payloads, pos] = maps;
        let entries = |log2| u64::from(RingPos::map_entries(cpus, log2));
        Ok(Self {
            events: Mapping::new(
                events,
                EVENT_SLOTS,
                entries(event_log2) * elem::<Event>(),
                false,
            )?,
            payloads: Mapping::new(
                payloads,
                PAYLOAD_SLOTS,
                entries(payload_log2) * elem::<EventWithPayload>(),
                false,
            )?,
            pos: Mapping::new(
                pos,
                RING_POS,
                u64::from(cpus * RINGS_PER_CPU) * elem::<RingPos>(),
                true,
            )?,
            cpus,
            event_log2,
            payload_log2,
            next_ring: 0,
            bad_records: 0,
        })
    }

    /// Takes up to `max` records from the rings, appends them to `out` in time order and
    /// returns how many. Records left behind (more than `max` were waiting) are taken next time.
    pub fn drain(&mut self, out: &mut Vec<Record>, max: usize) -> usize {
        let start = out.len();
        let rings = self.cpus * RINGS_PER_CPU;
        for i in 0..rings {
            let ring = (self.next_ring + i) % rings;
            let room = max - (out.len() - start);
            if room == 0 {
                break;
            }
            self.drain_ring(ring, out, room);
        }
        self.next_ring = (self.next_ring + 1) % rings;
        out[start..].sort_by_key(|r| r.event.ts_ns);
        out.len() - start
    }

    fn drain_ring(&mut self, ring: u32, out: &mut Vec<Record>, room: usize) {
        let (cpu, kind) = (ring / RINGS_PER_CPU, ring % RINGS_PER_CPU);
        let pos = self.pos.at::<RingPos>(u64::from(ring));
        // SAFETY: `pos` points into the mapped position map (checked by `at`); the fields are
        // 8-byte aligned u64s, written by the kernel (head) and by this reader only (tail).
        let (head, tail) = unsafe {
            (
                AtomicU64::from_ptr(&raw mut (*pos.as_ptr()).head).load(Ordering::Acquire),
                AtomicU64::from_ptr(&raw mut (*pos.as_ptr()).tail).load(Ordering::Relaxed),
            )
        };
        let log2 = if kind == RING_EVENTS { self.event_log2 } else { self.payload_log2 };
        // A head more than a ring ahead cannot come from the program; take what the ring holds.
        let waiting = head.wrapping_sub(tail).min(1 << log2);
        let take = waiting.min(room as u64);
        for seq in tail..tail.wrapping_add(take) {
            let index = u64::from(RingPos::slot_index(cpu, log2, seq));
            let bytes = if kind == RING_PAYLOAD {
                self.payloads.bytes::<EventWithPayload>(index)
            } else {
                self.events.bytes::<Event>(index)
            };
            match Record::decode(bytes) {
                Ok(rec) => out.push(rec),
                Err(_) => self.bad_records += 1,
            }
        }
        // SAFETY: as above; the Release store hands the slots just copied back to the program
        // only after the copies.
        unsafe {
            AtomicU64::from_ptr(&raw mut (*pos.as_ptr()).tail)
                .store(tail.wrapping_add(take), Ordering::Release);
        }
    }
}

/// Bytes one element of `T` takes in an array map (the kernel rounds values up to 8 bytes).
const fn elem<T>() -> u64 {
    (size_of::<T>() as u64).div_ceil(8) * 8
}

/// One array map mapped into this process (`BPF_F_MMAPABLE`, Linux 5.5): element `i` is at
/// `i * elem` from the start of the mapping.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(map: &MapData, name: &'static str, bytes: u64, write: bool) -> Result<Self, RingError> {
        let page = page_size();
        let len = usize::try_from(bytes.div_ceil(page) * page).map_err(|_| RingError::Map {
            map: name,
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        })?;
        let prot = if write { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh shared mapping of the map's fd at offset 0, no wider than the map's
        // values (the kernel refuses a longer one); nothing else in this process aliases it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(RingError::Map { map: name, source: std::io::Error::last_os_error() });
        }
        let base = NonNull::new(p.cast()).ok_or(RingError::Map {
            map: name,
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        Ok(Self { base, len })
    }

    /// Element `index` of type `T`.
    fn at<T>(&self, index: u64) -> NonNull<T> {
        let off = usize::try_from(index * elem::<T>()).expect("index inside the mapping");
        assert!(off + size_of::<T>() <= self.len, "element {index} outside the mapping");
        // SAFETY: in bounds (checked above); the mapping is page-aligned and elements are
        // multiples of 8 bytes, so the pointer is aligned for the 8-byte-aligned wire types.
        unsafe { self.base.add(off).cast() }
    }

    /// The bytes of element `index` of type `T`: a published slot, which the program does not
    /// write again until the reader hands it back.
    fn bytes<T>(&self, index: u64) -> &[u8] {
        // SAFETY: in bounds (checked by `at`), and stable while borrowed (see above).
        unsafe { std::slice::from_raw_parts(self.at::<T>(index).as_ptr().cast(), size_of::<T>()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).unwrap_or(4096)
}
