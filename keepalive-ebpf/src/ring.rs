//! The event rings: for every CPU, a ring of [`Event`] slots and a ring of [`EventWithPayload`]
//! slots, in memory-mappable array maps the agent reads in place (`keepalive_user::source::rings`).
//!
//! Why not the kernel's BPF ring buffer: `bpf_ringbuf_reserve` and `bpf_ringbuf_commit` take
//! one spinlock shared by every CPU, with interrupts disabled, and end in an atomic exchange:
//! 10 ns per record on the benchmark machine even when the ring stays in the cache
//! (BENCHMARKS.md, "the floor"), and its wakeups are inter-processor interrupts paid inside
//! this program. A CPU's ring here has one writer: XDP runs in softirq (or
//! `BPF_PROG_TEST_RUN`) with preemption disabled, and softirqs do not nest on a CPU, so no lock
//! is needed, and the ring never wakes the agent: the agent polls the positions on a short
//! timer. A slot is written where it will be read: no copy.
//!
//! The protocol is [`RingPos`]'s: a full ring refuses the event (counted), a reservation that is
//! dropped without [`Slot::publish`] is simply not published.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE, helpers::bpf_get_smp_processor_id, macros::map, maps::Array,
};
use keepalive_common::wire::{
    Event, EventWithPayload, RingPos, RINGS_PER_CPU, RING_EVENTS, RING_PAYLOAD,
};

// `super`: the program's root, whether it is the crate (main.rs) or the bench object's
// `product` module (bench.rs).
use super::config;

/// Every CPU's event slots, CPU by CPU: `1 << Config::event_slots_log2` each and a spare one.
/// Sized by userspace at load time from the number of possible CPUs.
#[map]
static EVENT_SLOTS: Array<Event> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Every CPU's payload slots, CPU by CPU: `1 << Config::payload_slots_log2` each and a spare.
#[map]
static PAYLOAD_SLOTS: Array<EventWithPayload> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// The positions of every CPU's two rings: `cpu * RINGS_PER_CPU + RING_EVENTS | RING_PAYLOAD`.
#[map]
static RING_POS: Array<RingPos> = Array::with_max_entries(RINGS_PER_CPU, BPF_F_MMAPABLE);

/// A reserved slot of either ring: written by the caller, then published (or dropped, which
/// publishes nothing). An [`Event`] starts both kinds of slot.
///
/// When the ring is full the slot is the CPU's spare one, after its ring's slots in the same
/// map: the event is still built (the flow state the next segment needs comes out of it), and
/// is not published. Building into the same map, rather than into a scratch map, keeps the
/// verifier's states of the two cases alike, so it prunes one against the other: a scratch
/// map of its own took the verifier from 265 000 to 939 000 instructions of its limit of a
/// million.
pub struct Slot {
    slot: *mut Event,
    pos: *mut RingPos,
    head: u64,
    full: bool,
    crowded: bool,
}

impl Slot {
    /// The slot's event, exclusively ours until published.
    #[inline(always)]
    pub fn event(&self) -> *mut Event {
        self.slot
    }

    /// The slot as a payload slot. Only for a slot of [`reserve_payload`]: the verifier
    /// refuses a write past an event slot's end.
    #[inline(always)]
    pub fn payload(&self) -> *mut EventWithPayload {
        self.slot.cast()
    }

    /// Whether the ring was full: the slot is the spare one and is never published.
    #[inline(always)]
    pub fn full(&self) -> bool {
        self.full
    }

    /// Whether the ring is three quarters full or more: the last quarter is kept for events
    /// a phone's state needs (see `record` in main.rs).
    #[inline(always)]
    pub fn crowded(&self) -> bool {
        self.crowded
    }

    /// Makes the slot visible to the agent (nothing for the spare slot of a full ring).
    #[inline(always)]
    pub fn publish(self) {
        if !self.full {
            release_store(self.pos, self.head.wrapping_add(1));
        }
    }
}

/// A slot of this CPU's event ring (the spare one when the ring is full).
#[inline(always)]
pub fn reserve_event() -> Option<Slot> {
    reserve(&EVENT_SLOTS, RING_EVENTS, config().event_slots_log2)
}

/// A slot of this CPU's payload ring (the spare one when the ring is full).
#[inline(always)]
pub fn reserve_payload() -> Option<Slot> {
    reserve(&PAYLOAD_SLOTS, RING_PAYLOAD, config().payload_slots_log2)
}

/// `None` only when a lookup fails, which the maps' sizes rule out.
#[inline(always)]
fn reserve<T>(slots: &Array<T>, ring: u32, log2: u8) -> Option<Slot> {
    // SAFETY: helper without arguments (inlined by the verifier on x86-64 and arm64, 6.10+).
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let pos = RING_POS.get_ptr_mut(cpu * RINGS_PER_CPU + ring)?;
    // SAFETY: a live array value. `head` is written only here, on this CPU; `tail` is the
    // agent's, read volatile so every reservation sees its latest value.
    let (head, tail) = unsafe { ((*pos).head, core::ptr::read_volatile(&raw const (*pos).tail)) };
    let n = 1u32 << log2;
    let used = head.wrapping_sub(tail);
    let full = used >= u64::from(n);
    let crowded = used >= u64::from(n - n / 4);
    let index =
        if full { RingPos::spare_index(cpu, log2) } else { RingPos::slot_index(cpu, log2, head) };
    // The index is checked against the map's size by the array lookup itself.
    let slot = slots.get_ptr_mut(index)?.cast();
    Some(Slot { slot, pos, head, full, crowded })
}

/// Stores `head` so that every store before it (the slot's) is visible first.
///
/// On x86-64 the CPU keeps stores in order (TSO) and the BPF JIT emits them in program order,
/// so a compiler barrier and a plain store are a release store. Other architectures need BPF's
/// own store-release instruction (Linux 6.15, `-mcpu=v4`; `build.rs` selects v3, for older
/// kernels) or a fetching atomic (v3 has those); until the build selects one, they do not build.
#[inline(always)]
fn release_store(pos: *mut RingPos, head: u64) {
    #[cfg(not(bpf_target_arch = "x86_64"))]
    compile_error!(
        "the event rings publish with a plain store, a release store only on x86-64 (TSO); \
         this architecture needs BPF store-release (Linux 6.15, -mcpu=v4)"
    );
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Release);
    // SAFETY: a live array value; this CPU is the only writer of its `head`.
    unsafe { core::ptr::write_volatile(&raw mut (*pos).head, head) };
}
