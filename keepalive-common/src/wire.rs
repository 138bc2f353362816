//! Types that cross the kernel/user boundary. All are `#[repr(C)]`, padding-free and `Copy`, so
//! the bytes the XDP program writes are the bytes userspace reads.

/// Application protocol of a tracked TCP port.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum App {
    /// Not a tracked port.
    None = 0,
    /// SCCP (Skinny) in clear text, default port 2000.
    Sccp = 1,
    /// SCCP over TLS, default port 2443: only TLS record framing is visible.
    SccpTls = 2,
    /// SIP over TCP, default port 5060.
    Sip = 3,
    /// SIP over TLS, default port 5061: only TLS record framing is visible.
    SipTls = 4,
}

impl App {
    /// Decode the wire byte; unknown values are [`App::None`].
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Sccp,
            2 => Self::SccpTls,
            3 => Self::Sip,
            4 => Self::SipTls,
            _ => Self::None,
        }
    }
}

/// The outer layer a frame arrived in (the innermost when there were several), as an
/// [`Event`] carries it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encap {
    /// Not encapsulated (or an unknown wire value).
    #[default]
    None = 0,
    /// GRE carrying an Ethernet frame (protocol type 0x6558).
    GreEthernet = 1,
    /// GRE carrying an IP packet (no link layer inside).
    GreIp = 2,
    /// ERSPAN type I (GRE 0x88BE without a sequence number).
    ErspanI = 3,
    /// ERSPAN type II (GRE 0x88BE).
    ErspanII = 4,
    /// ERSPAN type III (GRE 0x22EB).
    ErspanIII = 5,
    /// VXLAN.
    Vxlan = 6,
}

impl Encap {
    /// Decode the wire byte; unknown values are [`Encap::None`].
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::GreEthernet,
            2 => Self::GreIp,
            3 => Self::ErspanI,
            4 => Self::ErspanII,
            5 => Self::ErspanIII,
            6 => Self::Vxlan,
            _ => Self::None,
        }
    }

    /// The name used in JSON, tables and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::GreEthernet => "gre",
            Self::GreIp => "gre-ip",
            Self::ErspanI => "erspan-i",
            Self::ErspanII => "erspan-ii",
            Self::ErspanIII => "erspan-iii",
            Self::Vxlan => "vxlan",
        }
    }

    /// What the layer's segment id is: "vni", "erspan-session" or "gre-key".
    pub const fn segment_name(self) -> &'static str {
        match self {
            Self::Vxlan => "vni",
            Self::ErspanI | Self::ErspanII | Self::ErspanIII => "erspan-session",
            Self::GreEthernet | Self::GreIp => "gre-key",
            Self::None => "none",
        }
    }
}

/// What an [`Event`] describes.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Not set.
    None = 0,
    /// A TCP segment to or from a tracked port.
    Tcp = 1,
    /// An ARP request or reply.
    Arp = 2,
}

/// What the start of a SIP segment is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipKind {
    /// No SIP payload (pure ACK, SYN, ...).
    None = 0,
    /// A `REGISTER` request line.
    Register = 1,
    /// Another request line (`INVITE`, `OPTIONS`, ...).
    OtherRequest = 2,
    /// A status line; the code is in [`Event::sip_status`].
    Response = 3,
    /// Payload that does not start with a start line: the continuation of a message split across
    /// segments, or a keep-alive CRLF.
    Continuation = 4,
}

/// SCCP message ids named by the design (Wireshark's SKINNY dissector uses the same values).
///
/// On the wire an id is 32 bits; every id SKINNY defines fits in 16, and events carry 16 (an
/// event of 128 bytes, two cache lines, instead of 144). A larger id is carried as
/// [`OTHER`](sccp_msg::OTHER).
pub mod sccp_msg {
    /// Any id of more than 16 bits (none is defined).
    pub const OTHER: u16 = 0xFFFF;

    /// The id an event carries for the 32-bit id on the wire.
    #[inline(always)]
    pub const fn from_wire(id: u32) -> u16 {
        if id > 0xFFFF {
            OTHER
        } else {
            id as u16
        }
    }

    /// `KeepAliveMessage`, phone → CUCM.
    pub const KEEPALIVE: u16 = 0x0000;
    /// `RegisterMessage`, phone → CUCM.
    pub const REGISTER: u16 = 0x0001;
    /// `UnregisterMessage`, phone → CUCM.
    pub const UNREGISTER: u16 = 0x0027;
    /// `RegisterAckMessage`, CUCM → phone.
    pub const REGISTER_ACK: u16 = 0x0081;
    /// `RegisterRejectMessage`, CUCM → phone.
    pub const REGISTER_REJECT: u16 = 0x009D;
    /// `KeepAliveAckMessage`, CUCM → phone.
    pub const KEEPALIVE_ACK: u16 = 0x0100;
    /// `UnregisterAckMessage`, CUCM → phone.
    pub const UNREGISTER_ACK: u16 = 0x0118;
}

/// The content type of a TLS record (RFC 8446 §5.1, RFC 5246 §6.2.1), as [`Event::tls_types`]
/// carries it: the wire value − 20, in two bits. Every other wire value is not a record
/// header (the classifier stops there).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsContent {
    /// 20, `change_cipher_spec`.
    ChangeCipherSpec = 0,
    /// 21, `alert`.
    Alert = 1,
    /// 22, `handshake`.
    Handshake = 2,
    /// 23, `application_data` (in TLS 1.3, every record after the handshake).
    ApplicationData = 3,
}

impl TlsContent {
    /// The content type of a record header's first byte, if it is one.
    #[inline(always)]
    pub const fn from_wire(b: u8) -> Option<Self> {
        match b {
            20 => Some(Self::ChangeCipherSpec),
            21 => Some(Self::Alert),
            22 => Some(Self::Handshake),
            23 => Some(Self::ApplicationData),
            _ => None,
        }
    }

    /// From two bits of [`Event::tls_types`].
    pub const fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::ChangeCipherSpec,
            1 => Self::Alert,
            2 => Self::Handshake,
            _ => Self::ApplicationData,
        }
    }
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// How many SCCP PDUs or TLS records one event can carry (walked per segment).
pub const MAX_PDUS: usize = 8;
/// How many VLAN tags are parsed (802.1ad outer + 802.1Q inner).
pub const MAX_VLANS: usize = 2;
/// How many bytes of payload follow a SIP event (or an SCCP event carrying a Register) in its
/// payload-ring slot. A full-size Ethernet
/// segment (MSS 1460) fits, so a REGISTER carried in one segment arrives whole.
pub const SIP_COPY_MAX: usize = 1536;

/// One event-ring record: everything the tracker needs about one matched packet.
///
/// Addresses are 16 bytes; IPv4 (and ARP) addresses are stored IPv4-mapped (`::ffff:a.b.c.d`).
/// For ARP, `src_addr`/`dst_addr` are the sender and target protocol addresses and
/// `arp_sha`/`arp_tha` the sender and target hardware addresses.
/// When `copy_len > 0`, that many payload bytes follow the event in the same record (an
/// [`EventWithPayload`] in the payload ring).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) live; capture time in ns since the epoch offline.
    pub ts_ns: u64,
    /// Interface the frame arrived on (0 offline).
    pub ifindex: u32,
    /// [`EventKind`] as a byte.
    pub kind: u8,
    /// [`App`] as a byte.
    pub app: u8,
    /// 4 or 6 (ARP: 4).
    pub ip_version: u8,
    /// Number of VLAN ids in `vlans`.
    pub vlan_count: u8,
    /// VLAN ids, outer first.
    pub vlans: [u16; MAX_VLANS],
    /// TCP source port.
    pub src_port: u16,
    /// TCP destination port.
    pub dst_port: u16,
    /// Ethernet source MAC.
    pub src_mac: [u8; 6],
    /// Ethernet destination MAC.
    pub dst_mac: [u8; 6],
    /// Source address (IPv4-mapped for IPv4; ARP sender protocol address).
    pub src_addr: [u8; 16],
    /// Destination address (IPv4-mapped for IPv4; ARP target protocol address).
    pub dst_addr: [u8; 16],
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgement number.
    pub ack: u32,
    /// TCP payload bytes in this segment.
    pub payload_len: u16,
    /// TCP flags ([`tcp_flags`]).
    pub tcp_flags: u8,
    /// Number of valid entries in `pdus`.
    pub pdu_count: u8,
    /// The application units that start in this segment, in order: SCCP PDUs' message ids
    /// ([`sccp_msg`]), or TLS records' lengths (their content types are in `tls_types`).
    pub pdus: [u16; MAX_PDUS],
    /// Bytes of the last SCCP PDU or TLS record that lie beyond this segment (it continues in
    /// the next one).
    pub spill: u32,
    /// What identifies the frame's segment when it arrived encapsulated: the VXLAN VNI, the
    /// ERSPAN session id or the GRE key (see `encap`); 0 otherwise.
    pub segment: u32,
    /// [`SipKind`] as a byte.
    pub sip_kind: u8,
    /// [`Encap`] as a byte: the outer layer the frame was peeled from.
    pub encap: u8,
    /// SIP status code when `sip_kind` is a response.
    pub sip_status: u16,
    /// The content type of each TLS record in `pdus`, two bits each, record 0 in the lowest
    /// ([`TlsContent`]: the content type − 20).
    pub tls_types: u16,
    /// ARP operation (1 request, 2 reply).
    pub arp_op: u16,
    /// ARP sender hardware address.
    pub arp_sha: [u8; 6],
    /// ARP target hardware address.
    pub arp_tha: [u8; 6],
    /// Payload bytes copied after this event in its payload-ring record.
    pub copy_len: u16,
    /// Offset of the TCP payload inside the whole frame, outer layers included (used to copy
    /// it).
    pub payload_off: u16,
}

impl Event {
    /// An all-zero event.
    pub const ZERO: Self = Self {
        ts_ns: 0,
        ifindex: 0,
        kind: 0,
        app: 0,
        ip_version: 0,
        vlan_count: 0,
        vlans: [0; MAX_VLANS],
        src_port: 0,
        dst_port: 0,
        src_mac: [0; 6],
        dst_mac: [0; 6],
        src_addr: [0; 16],
        dst_addr: [0; 16],
        seq: 0,
        ack: 0,
        payload_len: 0,
        tcp_flags: 0,
        pdu_count: 0,
        pdus: [0; MAX_PDUS],
        spill: 0,
        segment: 0,
        sip_kind: 0,
        encap: 0,
        sip_status: 0,
        tls_types: 0,
        arp_op: 0,
        arp_sha: [0; 6],
        arp_tha: [0; 6],
        copy_len: 0,
        payload_off: 0,
    };

    /// Zeroes the event in place with 8-byte volatile stores. `*self = Event::ZERO` does the
    /// same on the host, but in BPF a struct-sized store becomes a call to a byte-at-a-time
    /// `memset` (or a stack temporary), which costs verifier states, stack and cycles.
    #[inline(always)]
    pub fn clear(&mut self) {
        let p = (self as *mut Self).cast::<u64>();
        let mut i = 0;
        while i < Self::WORDS {
            // SAFETY: `p` points at size_of::<Event>() bytes, 8-byte aligned (align_of is 8).
            unsafe { core::ptr::write_volatile(p.add(i), 0) };
            i += 1;
        }
    }

    /// Copies `self` to `dst` word by word (see [`Event::clear`] for why not `*dst = *self`).
    ///
    /// # Safety
    /// `dst` must be valid for writes of one `Event` and 8-byte aligned.
    #[inline(always)]
    pub unsafe fn write_to(&self, dst: *mut Self) {
        let (d, s) = (dst.cast::<u64>(), (self as *const Self).cast::<u64>());
        let mut i = 0;
        while i < Self::WORDS {
            // SAFETY: both point at whole, 8-byte aligned events (caller's contract for `dst`).
            unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
            i += 1;
        }
    }

    const WORDS: usize = core::mem::size_of::<Self>() / 8;

    /// The SCCP message ids found in this segment (on an SCCP port).
    pub fn sccp_ids(&self) -> &[u16] {
        let n = (self.pdu_count as usize).min(MAX_PDUS);
        &self.pdus[..n]
    }

    /// The TLS records that start in this segment (on a TLS port): content type and length.
    pub fn tls_records(&self) -> impl Iterator<Item = (TlsContent, u16)> + '_ {
        let n = (self.pdu_count as usize).min(MAX_PDUS);
        self.pdus[..n]
            .iter()
            .enumerate()
            .map(|(i, &len)| (TlsContent::from_bits((self.tls_types >> (2 * i)) as u8), len))
    }

    /// The direction-specific IPv4 flow key of a TCP event over IPv4 (`ip_version` 4; the
    /// addresses' IPv4-mapped prefix is not checked).
    #[inline(always)]
    pub fn flow_key_v4(&self) -> FlowKeyV4 {
        FlowKeyV4::from_mapped(&self.src_addr, &self.dst_addr, self.src_port, self.dst_port)
    }

    /// The direction-specific flow key of a TCP event.
    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            src_addr: self.src_addr,
            dst_addr: self.dst_addr,
            src_port: self.src_port,
            dst_port: self.dst_port,
        }
    }
}

/// A payload-ring slot: the event and room for the copied payload (SIP segments with payload,
/// SCCP segments carrying a Register).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventWithPayload {
    /// The event; `event.copy_len` bytes of `payload` are valid.
    pub event: Event,
    /// The start of the TCP payload.
    pub payload: [u8; SIP_COPY_MAX],
}

/// Key of the per-flow LRU map: one direction of one TCP connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address (IPv4-mapped for IPv4).
    pub src_addr: [u8; 16],
    /// Destination address.
    pub dst_addr: [u8; 16],
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl FlowKey {
    /// The IPv4 key of this flow, when both addresses are IPv4-mapped.
    pub fn v4(&self) -> Option<FlowKeyV4> {
        let mapped = |a: &[u8; 16]| a[..10] == [0; 10] && a[10..12] == [0xff, 0xff];
        (mapped(&self.src_addr) && mapped(&self.dst_addr)).then(|| {
            FlowKeyV4::from_mapped(&self.src_addr, &self.dst_addr, self.src_port, self.dst_port)
        })
    }
}

/// Key of the IPv4 flow map: a [`FlowKey`] of an IPv4 connection in 12 bytes.
///
/// The kernel hashes the whole key on every lookup (jhash2 over its 32-bit words) and compares
/// it in the bucket; 12 bytes instead of 36 take ~17 ns off every matched IPv4 segment
/// (BENCHMARKS.md). IPv6 flows keep the full key in a map of their own.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKeyV4 {
    /// Source address.
    pub src_addr: [u8; 4],
    /// Destination address.
    pub dst_addr: [u8; 4],
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl FlowKeyV4 {
    /// The key of IPv4-mapped addresses: their last four bytes (the prefix is not checked).
    #[inline(always)]
    pub fn from_mapped(src: &[u8; 16], dst: &[u8; 16], src_port: u16, dst_port: u16) -> Self {
        Self {
            src_addr: [src[12], src[13], src[14], src[15]],
            dst_addr: [dst[12], dst[13], dst[14], dst[15]],
            src_port,
            dst_port,
        }
    }
}

/// Value of the per-flow LRU map. Only segments with payload touch it: a segment without
/// (an ACK, a SYN, a FIN) has no PDU to resume and its event carries all the tracker reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Segments with payload seen in this direction.
    pub packets: u64,
    /// TCP payload bytes seen.
    pub bytes: u64,
    /// First segment with payload, `bpf_ktime_get_ns()`.
    pub first_ns: u64,
    /// Last segment with payload, `bpf_ktime_get_ns()`.
    pub last_ns: u64,
    /// Sequence number one past the highest payload byte seen.
    pub next_seq: u32,
    /// Data segments that did not advance `next_seq` (retransmissions).
    pub retransmits: u32,
    /// SCCP KeepAlive (or, on SIP ports, REGISTER) messages seen.
    pub keepalives: u32,
    /// SCCP KeepAliveAck (or SIP responses) seen.
    pub acks: u32,
    /// Sequence number at which an SCCP PDU or TLS record spilling out of the previous segment
    /// ends: a segment starting exactly at `resume_seq - spill` skips `spill` bytes.
    pub resume_seq: u32,
    /// See `resume_seq`.
    pub spill: u32,
}

/// The positions of one CPU's ring of fixed-size slots (the event ring or the payload ring).
///
/// The XDP program is the only writer of `head` and the agent the only writer of `tail`; both
/// count slots from 0 and never wrap (2^64 events). Slot `head % slots` is written first, then
/// `head` is advanced with release ordering, so a reader that loads `head` with acquire
/// ordering sees every slot before it complete. The program writes nothing while
/// `head - tail == slots` (the ring is full: counted in [`Counters::ringbuf_full`]), so a slot
/// is never rewritten while the agent may still be reading it. The two positions are a cache
/// line apart, because the kernel and the agent write them from different CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingPos {
    /// Slots published by the program.
    pub head: u64,
    /// Reserved, zero: keeps `tail` off `head`'s cache line.
    pub _head_line: [u64; 7],
    /// Slots consumed by the agent.
    pub tail: u64,
    /// Reserved, zero.
    pub _tail_line: [u64; 7],
}

impl RingPos {
    /// Index in its slot map of slot `seq` of `cpu`'s ring of `1 << log2` slots. Each CPU has
    /// its ring's slots and then a spare one, which takes the event of a full ring.
    #[inline(always)]
    pub const fn slot_index(cpu: u32, log2: u8, seq: u64) -> u32 {
        let n = 1u32 << log2;
        cpu * (n + 1) + (seq as u32 & (n - 1))
    }

    /// Index of `cpu`'s spare slot.
    #[inline(always)]
    pub const fn spare_index(cpu: u32, log2: u8) -> u32 {
        let n = 1u32 << log2;
        cpu * (n + 1) + n
    }

    /// Entries of a slot map for `cpus` CPUs.
    pub const fn map_entries(cpus: u32, log2: u8) -> u32 {
        cpus * ((1u32 << log2) + 1)
    }
}

/// Index of a CPU's event ring in the ring-position map: `cpu * RINGS_PER_CPU + ring`.
pub const RING_EVENTS: u32 = 0;
/// Index of a CPU's payload ring in the ring-position map.
pub const RING_PAYLOAD: u32 = 1;
/// Rings per CPU.
pub const RINGS_PER_CPU: u32 = 2;

/// Per-CPU packet counters. Nothing is silently lost: every miss has a counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Every frame the classifier examined: in the kernel, those the gate let through (the
    /// gate counts nothing, so the frames it turns away cost no write; the interface's own
    /// counters have them); offline, every frame of the capture.
    pub seen: u64,
    /// TCP segments on a tracked port.
    pub matched_tcp: u64,
    /// ARP frames.
    pub matched_arp: u64,
    /// Events published in the event rings.
    pub events: u64,
    /// Events lost because this CPU's event ring was full (the agent fell behind).
    pub ringbuf_full: u64,
    /// Frames of a followed protocol (ARP, IPv4, IPv6, TCP on a tracked port) that were
    /// truncated or malformed before they could be classified.
    pub parse_errors: u64,
    /// Flow-map entries created (LRU evictions = created − live entries).
    pub flows_created: u64,
    /// Flow-map updates that failed.
    pub flow_update_errors: u64,
    /// Frames the classifier examined and then dropped in mirror mode (the gate drops the
    /// others uncounted).
    pub mirror_drops: u64,
    /// Events not recorded because this CPU's event ring was three quarters full and they
    /// carried nothing a phone's state needs (a segment without payload of a flow with no
    /// data, an ARP frame): the last quarter of the ring is kept for keepalives under a flood.
    pub shed: u64,
    /// Outer GRE layers peeled (carrying Ethernet or IP; ERSPAN is counted apart).
    pub encap_gre: u64,
    /// Outer ERSPAN layers (type I, II or III) peeled.
    pub encap_erspan: u64,
    /// Outer VXLAN layers peeled.
    pub encap_vxlan: u64,
    /// Frames wrapped in more layers than the classifier peels (passed unread).
    pub encap_too_deep: u64,
}

/// One tracked port and its protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRule {
    /// TCP port; 0 = unused slot.
    pub port: u16,
    /// [`App`] as a byte; 0 = unused slot.
    pub app: u8,
    /// Reserved, zero.
    pub _pad: u8,
}

/// Number of port rules the program holds.
pub const MAX_PORT_RULES: usize = 8;

/// Load-time configuration of the XDP program, written into its read-only data before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Tracked ports. Unused slots are zero.
    pub ports: [PortRule; MAX_PORT_RULES],
    /// [`Config::FLAG_MIRROR`] and friends.
    pub flags: u32,
    /// Each CPU's event ring holds `1 << event_slots_log2` [`Event`]s (see [`RingPos`]). Set
    /// by the loader, which sizes the rings' maps to match.
    pub event_slots_log2: u8,
    /// Each CPU's payload ring holds `1 << payload_slots_log2` [`EventWithPayload`]s. Set by
    /// the loader.
    pub payload_slots_log2: u8,
    /// UDP destination port read as VXLAN; 0 reads no VXLAN.
    pub vxlan_port: u16,
    /// The gate's set of `ports` ([`crate::classify::gate`]). [`Config::set_ports`] keeps it
    /// in step, and the loader recomputes it before load.
    pub port_filter: PortFilter,
}

/// The tracked ports as a set of their low ten bits: one load and a bit test answer "may this
/// port be tracked?" for the gate, where the rules' loop costs two loads and two compares a
/// rule. A port that shares its low bits with a tracked one (0.4 % of random ports for the
/// four defaults) passes the gate and is then refused by the classifier's exact rules.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortFilter {
    bits: [u64; PortFilter::WORDS],
}

impl PortFilter {
    /// Bits in the set: two cache lines.
    pub const BITS: usize = 1024;
    const WORDS: usize = Self::BITS / 64;

    /// The set of the rules' ports (unused rules left out).
    pub const fn of(rules: &[PortRule; MAX_PORT_RULES]) -> Self {
        let mut bits = [0u64; Self::WORDS];
        let mut i = 0;
        while i < MAX_PORT_RULES {
            if rules[i].app != 0 && rules[i].port != 0 {
                let b = rules[i].port as usize & (Self::BITS - 1);
                bits[b / 64] |= 1 << (b % 64);
            }
            i += 1;
        }
        Self { bits }
    }

    /// Whether `port` may be one of the set's (it is not when this is `false`).
    #[inline(always)]
    pub fn may_hold(&self, port: u16) -> bool {
        let b = port as usize & (Self::BITS - 1);
        (self.bits[b / 64] >> (b % 64)) & 1 != 0
    }
}

impl Config {
    /// Drop every frame after recording (a SPAN port that exists only to be watched).
    pub const FLAG_MIRROR: u32 = 1;

    /// IANA's VXLAN port (RFC 7348 §5), the default of `vxlan_port`.
    pub const VXLAN_PORT: u16 = 4789;

    /// The defaults of docs/DESIGN.md: SCCP 2000, SCCP/TLS 2443, SIP 5060, SIP/TLS 5061, pass
    /// verdict; VXLAN on 4789.
    pub const DEFAULT: Self = {
        let mut ports = [PortRule { port: 0, app: 0, _pad: 0 }; MAX_PORT_RULES];
        ports[0] = PortRule { port: 2000, app: App::Sccp as u8, _pad: 0 };
        ports[1] = PortRule { port: 2443, app: App::SccpTls as u8, _pad: 0 };
        ports[2] = PortRule { port: 5060, app: App::Sip as u8, _pad: 0 };
        ports[3] = PortRule { port: 5061, app: App::SipTls as u8, _pad: 0 };
        Self {
            ports,
            flags: 0,
            event_slots_log2: 0,
            payload_slots_log2: 0,
            vxlan_port: Self::VXLAN_PORT,
            port_filter: PortFilter::of(&ports),
        }
    };

    /// Replaces the tracked ports with `rules` (at most [`MAX_PORT_RULES`]; the rest unused).
    pub fn set_ports(&mut self, rules: &[PortRule]) {
        self.ports = [PortRule { port: 0, app: 0, _pad: 0 }; MAX_PORT_RULES];
        self.ports[..rules.len()].copy_from_slice(rules);
        self.sync_port_filter();
    }

    /// Derives the gate's port set from the rules again. Whoever hands a configuration to a
    /// classifier (the agent's loader for the kernel, its `HostProbe` offline) calls this, so a
    /// configuration whose `ports` were written field by field (a test, a deserialised one) can
    /// never leave the gate turning a tracked port away.
    pub fn sync_port_filter(&mut self) {
        self.port_filter = PortFilter::of(&self.ports);
    }

    /// Whether mirror mode (drop after recording) is on.
    pub const fn mirror(&self) -> bool {
        self.flags & Self::FLAG_MIRROR != 0
    }

    /// The protocol of a connection between `a` and `b`, if either is a tracked port. The
    /// destination port is tried first (a phone's segment to its server).
    #[inline(always)]
    pub fn app_for(&self, src: u16, dst: u16) -> App {
        let mut i = 0;
        while i < MAX_PORT_RULES {
            let r = self.ports[i];
            if r.app != 0 && (r.port == dst || r.port == src) {
                return App::from_u8(r.app);
            }
            i += 1;
        }
        App::None
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are #[repr(C)], Copy, built only from integers and integer arrays, with no
    // implicit padding (checked by the size assertions in the tests below).
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowKeyV4 {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::PortRule {}
    unsafe impl aya::Pod for super::PortFilter {}
    unsafe impl aya::Pod for super::RingPos {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_have_no_hidden_padding() {
        // Sum of the field sizes; a mismatch means the compiler inserted padding, which would
        // leak uninitialised kernel stack bytes and break byte-wise comparison.
        let fields = 8 + 4 + 4 + 4 + 4 + 12 + 32 + 8 + 4 + 16 + 4 + 4 + 4 + 4 + 12 + 4;
        assert_eq!(size_of::<Event>(), fields);
        assert_eq!(size_of::<Event>(), 128, "two cache lines");
        assert_eq!(align_of::<Event>(), 8);
        assert_eq!(size_of::<FlowKey>(), 36);
        assert_eq!(size_of::<FlowKeyV4>(), 12);
        assert_eq!(size_of::<FlowStats>(), 56);
        assert_eq!(size_of::<Config>(), 40 + PortFilter::BITS / 8);
        assert_eq!(size_of::<RingPos>(), 128);
        assert_eq!(size_of::<EventWithPayload>(), size_of::<Event>() + SIP_COPY_MAX);
    }

    #[test]
    fn v4_flow_keys_only_for_mapped_addresses() {
        let mut ev = Event::ZERO;
        ev.src_addr = crate::classify::v4_mapped([10, 0, 0, 1]);
        ev.dst_addr = crate::classify::v4_mapped([10, 0, 0, 2]);
        (ev.src_port, ev.dst_port) = (50000, 2000);
        let v4 = FlowKeyV4 {
            src_addr: [10, 0, 0, 1],
            dst_addr: [10, 0, 0, 2],
            src_port: 50000,
            dst_port: 2000,
        };
        assert_eq!(ev.flow_key_v4(), v4);
        assert_eq!(ev.flow_key().v4(), Some(v4));
        ev.dst_addr[0] = 0x20;
        assert_eq!(ev.flow_key().v4(), None);
    }

    #[test]
    fn default_ports() {
        let c = Config::DEFAULT;
        assert_eq!(c.app_for(50000, 2000), App::Sccp);
        assert_eq!(c.app_for(2000, 50000), App::Sccp);
        assert_eq!(c.app_for(40000, 2443), App::SccpTls);
        assert_eq!(c.app_for(5060, 5060), App::Sip);
        assert_eq!(c.app_for(1, 5061), App::SipTls);
        assert_eq!(c.app_for(0, 0), App::None);
        assert_eq!(c.app_for(443, 50000), App::None);
    }
}
