//! Capture files: pcap and pcapng (the `pcap-file` crate reads the formats), normalised to
//! Ethernet frames so the shared classifier sees the same bytes it sees in the kernel.
//!
//! Link types handled: Ethernet; Linux cooked capture v1 and v2 (`tcpdump -i any`), whose
//! header becomes a synthetic Ethernet header (the destination MAC is unknown there and left
//! zero); raw IPv4/IPv6; BSD loopback. Anything else is a clear error.
//!
//! Two deliberate departures from `pcap-file`'s own checks, both so that real captures are
//! read rather than refused:
//! * classic pcap records are read raw: `pcap-file` rejects a record whose original length
//!   exceeds the snap length, which is every frame of a capture taken with `-s 96`;
//! * pcapng timestamps are scaled by the interface's `if_tsresol` (`pcap-file` 2.0 reports the
//!   raw tick count as nanoseconds, which is only right for nanosecond captures).
//!
//! A capture that ends mid-record (a `tcpdump` that was killed) is not an error: the frames read
//! so far are analysed and [`CaptureStats::truncated`] says what happened.
//!
//! A capture file is read in place through a memory map (`pcap-file`'s slice parsers over the
//! mapped file), not copied through `read(2)` into two buffers: the copies were a sixth of
//! `analyze`'s time on the bench's captures. The pages read are handed back as it goes
//! (every 2 MiB), so the file never counts in full in the process's memory. Other inputs
//! (a pipe, bytes in memory) are read through a buffer.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use pcap_file::{
    pcap::{PcapParser, PcapReader, RawPcapPacket},
    pcapng::{
        blocks::{
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            Block,
        },
        PcapNgParser, PcapNgReader,
    },
    DataLink, PcapError,
};

/// Why a capture cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The capture.
        path: PathBuf,
        /// The I/O error (in the message, not repeated as a cause).
        error: std::io::Error,
    },
    /// Neither a pcap nor a pcapng file.
    #[error(
        "{path} is not a pcap or pcapng capture (magic {magic:02x?}); save it from Wireshark as \
         pcap or pcapng, or record it with `tcpdump -w`"
    )]
    NotACapture {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        magic: Vec<u8>,
    },
    /// The header is damaged.
    #[error("{path}: damaged capture header: {detail}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// A link type the classifier cannot read.
    #[error(
        "{path}: link type {link:?} is not supported; keepalive reads Ethernet, Linux cooked \
         capture (SLL/SLL2, `tcpdump -i any`), raw IP and loopback captures"
    )]
    LinkType {
        /// The file.
        path: PathBuf,
        /// The link type.
        link: DataLink,
    },
}

/// What reading a capture met besides frames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames delivered.
    pub frames: u64,
    /// Frames skipped because their interface's link type is not supported (pcapng files can
    /// mix link types).
    pub unsupported_link: u64,
    /// Set when reading stopped early; says why (the frames before it were delivered).
    pub truncated: Option<String>,
}

/// One frame, normalised to Ethernet.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Capture time, ns since the epoch.
    pub ts_ns: u64,
    /// pcapng interface id + 1 (0 for classic pcap): keeps per-interface state apart.
    pub ifindex: u32,
    /// The frame, starting with an Ethernet header.
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Ethernet,
    Sll,
    Sll2,
    Raw,
    Ipv4,
    Ipv6,
    Null,
}

impl Link {
    fn of(d: DataLink) -> Option<Self> {
        Some(match d {
            DataLink::ETHERNET => Self::Ethernet,
            DataLink::LINUX_SLL => Self::Sll,
            DataLink::LINUX_SLL2 => Self::Sll2,
            DataLink::RAW => Self::Raw,
            DataLink::IPV4 => Self::Ipv4,
            DataLink::IPV6 => Self::Ipv6,
            DataLink::NULL | DataLink::LOOP => Self::Null,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    link: Option<Link>,
    /// Ticks per second of this interface's timestamps.
    ticks_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: u64,
}

impl Iface {
    fn from_idb(idb: &InterfaceDescriptionBlock<'_>) -> Self {
        let mut ticks_per_sec = 1_000_000;
        let mut offset_s = 0;
        for opt in &idb.options {
            match opt {
                // if_tsresol: high bit clear → 10^-n s; set → 2^-n s (RFC draft, §4.2).
                InterfaceDescriptionOption::IfTsResol(r) => {
                    let n = u32::from(r & 0x7f);
                    ticks_per_sec = if r & 0x80 == 0 {
                        10u64.checked_pow(n).unwrap_or(1_000_000_000)
                    } else {
                        1u64.checked_shl(n).unwrap_or(1 << 30)
                    };
                }
                InterfaceDescriptionOption::IfTsOffset(o) => offset_s = *o,
                _ => {}
            }
        }
        Self { link: Link::of(idb.linktype), ticks_per_sec: ticks_per_sec.max(1), offset_s }
    }

    fn ts_ns(&self, ticks: u128) -> u64 {
        let tps = u128::from(self.ticks_per_sec);
        let ns = (ticks / tps) * 1_000_000_000 + (ticks % tps) * 1_000_000_000 / tps;
        u64::try_from(ns)
            .unwrap_or(u64::MAX)
            .saturating_add(self.offset_s.saturating_mul(1_000_000_000))
    }
}

type Input = Counting<BufReader<Box<dyn Read + Send>>>;

enum Format {
    Pcap { reader: PcapReader<Input>, link: Link, nanos: bool },
    PcapMapped { file: Mapped, parser: PcapParser, link: Link, nanos: bool },
    PcapNg { reader: PcapNgReader<Input>, ifaces: Vec<Iface> },
    PcapNgMapped { file: Mapped, parser: PcapNgParser, ifaces: Vec<Iface> },
}

/// Bytes read in place between two hand-backs of the pages behind (`MADV_DONTNEED`: the
/// kernel drops them from the process, and they stay in the page cache).
const RELEASE_EVERY: usize = 2 << 20;

/// A file mapped for reading, with how far it has been read.
struct Mapped {
    map: memmap2::Mmap,
    /// Where the next record starts.
    at: usize,
    /// The pages before this offset were handed back.
    released: usize,
}

impl Mapped {
    /// Reads the records to the end of the file or the first damaged one (recorded in
    /// `stats.truncated`): `record` parses the one the bytes it is given start with, hands it
    /// on, and says how many bytes are left after it. The progress counter follows.
    fn read(
        &mut self,
        pos: &AtomicU64,
        stats: &mut CaptureStats,
        mut record: impl FnMut(&[u8], &mut CaptureStats) -> Result<usize, PcapError>,
    ) {
        while self.at < self.map.len() {
            match record(&self.map[self.at..], stats) {
                Ok(left) => {
                    let next = self.map.len() - left;
                    self.advance(next);
                    pos.store(next as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.truncated = Some(damage(&e, stats.frames));
                    break;
                }
            }
        }
    }

    /// The next record starts at `at`; hands back the pages behind it every [`RELEASE_EVERY`]
    /// bytes.
    fn advance(&mut self, at: usize) {
        self.at = at;
        let end = at - at % RELEASE_EVERY;
        if end > self.released {
            // SAFETY: MADV_DONTNEED on a read-only mapping of a file only drops the pages: the
            // next read of one faults it in again from the file, so no byte seen through the
            // map changes (the frames before `at` are not borrowed any more anyway). `end` is
            // a multiple of RELEASE_EVERY, hence of the page size, and within the map.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.released,
                    end - self.released,
                )
            };
            self.released = end;
        }
    }
}

/// A capture file, read frame by frame.
pub struct Capture {
    path: PathBuf,
    format: Format,
    pos: Arc<AtomicU64>,
    len: u64,
    scratch: Vec<u8>,
    stats: CaptureStats,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("path", &self.path).field("stats", &self.stats).finish()
    }
}

/// Counts the bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    pos: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl Capture {
    /// Opens a capture file and reads its header.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let io = |error| CaptureError::Io { path: path.to_owned(), error };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let len = meta.len();
        if meta.is_file() {
            if let Some(cap) = Self::mapped(path, &file)? {
                return Ok(cap);
            }
        }
        Self::from_reader(path, Box::new(file), len)
    }

    /// A pcap or pcapng file read in place; `None` for anything else, or where the file
    /// cannot be mapped (it is then read).
    fn mapped(path: &Path, file: &File) -> Result<Option<Self>, CaptureError> {
        // SAFETY: the map is only read. Its bytes change if another process writes the file
        // meanwhile (frames are then read as they are found, as through read(2)); a file
        // truncated under the reader would fault (SIGBUS), as under any reader of a mapped
        // file (ripgrep, grep --mmap): captures are not truncated while being analysed.
        let Ok(map) = (unsafe { memmap2::Mmap::map(file) }) else {
            return Ok(None);
        };
        let pcap = PCAP_MAGICS.iter().any(|m| map.starts_with(m));
        if !pcap && !map.starts_with(&PCAPNG_MAGIC) {
            return Ok(None);
        }
        // Read ahead further, and drop behind (the pages are also handed back as they are read).
        let _ = map.advise(memmap2::Advice::Sequential);
        let path = path.to_owned();
        let bad =
            |e: PcapError| CaptureError::BadHeader { path: path.clone(), detail: e.to_string() };
        let len = map.len() as u64;
        let (at, format) = if pcap {
            let (rest, parser) = PcapParser::new(&map).map_err(bad)?;
            let header = parser.header();
            let link = Link::of(header.datalink).ok_or_else(|| CaptureError::LinkType {
                path: path.clone(),
                link: header.datalink,
            })?;
            let nanos = header.ts_resolution == pcap_file::TsResolution::NanoSecond;
            let at = map.len() - rest.len();
            let file = Mapped { map, at, released: 0 };
            (at, Format::PcapMapped { file, parser, link, nanos })
        } else {
            let (rest, parser) = PcapNgParser::new(&map).map_err(bad)?;
            let at = map.len() - rest.len();
            let file = Mapped { map, at, released: 0 };
            (at, Format::PcapNgMapped { file, parser, ifaces: Vec::new() })
        };
        Ok(Some(Self {
            path,
            format,
            pos: Arc::new(AtomicU64::new(at as u64)),
            len,
            scratch: Vec::new(),
            stats: CaptureStats::default(),
        }))
    }

    /// Reads a capture from any byte stream (`name` is used in messages; `len` for progress).
    pub fn from_reader(
        name: &Path,
        input: Box<dyn Read + Send>,
        len: u64,
    ) -> Result<Self, CaptureError> {
        let path = name.to_owned();
        let pos = Arc::new(AtomicU64::new(0));
        let mut reader = BufReader::with_capacity(1 << 20, input);
        let magic =
            reader.fill_buf().map_err(|error| CaptureError::Io { path: path.clone(), error })?;
        let magic: Vec<u8> = magic[..magic.len().min(4)].to_vec();
        let reader = Counting { inner: reader, pos: pos.clone() };
        let bad =
            |e: PcapError| CaptureError::BadHeader { path: path.clone(), detail: e.to_string() };
        let format = if PCAP_MAGICS.iter().any(|m| m[..] == magic[..]) {
            let reader = PcapReader::new(reader).map_err(bad)?;
            let header = reader.header();
            let link = Link::of(header.datalink).ok_or_else(|| CaptureError::LinkType {
                path: path.clone(),
                link: header.datalink,
            })?;
            let nanos = header.ts_resolution == pcap_file::TsResolution::NanoSecond;
            Format::Pcap { reader, link, nanos }
        } else if magic[..] == PCAPNG_MAGIC[..] {
            Format::PcapNg { reader: PcapNgReader::new(reader).map_err(bad)?, ifaces: Vec::new() }
        } else {
            return Err(CaptureError::NotACapture { path, magic });
        };
        Ok(Self { path, format, pos, len, scratch: Vec::new(), stats: CaptureStats::default() })
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file (never a valid capture; `open` fails first).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A shared counter of bytes read so far (for progress).
    pub fn position(&self) -> Arc<AtomicU64> {
        self.pos.clone()
    }

    /// What was met so far.
    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }

    /// Calls `f` for every frame, in file order. Stops at the end of the file or at the first
    /// damaged record (recorded in [`CaptureStats::truncated`]).
    pub fn for_each_frame(&mut self, mut f: impl FnMut(Frame<'_>)) -> &CaptureStats {
        let Self { format, scratch, stats, pos, .. } = self;
        match format {
            Format::Pcap { reader, link, nanos } => loop {
                let raw = match reader.next_raw_packet() {
                    None => break,
                    Some(Ok(raw)) => raw,
                    Some(Err(e)) => {
                        stats.truncated = Some(damage(&e, stats.frames));
                        break;
                    }
                };
                pcap_frame(&raw, *link, *nanos, scratch, stats, &mut f);
            },
            Format::PcapMapped { file, parser, link, nanos } => {
                file.read(pos, stats, |data, stats| {
                    let (rest, raw) = parser.next_raw_packet(data)?;
                    pcap_frame(&raw, *link, *nanos, scratch, stats, &mut f);
                    Ok(rest.len())
                })
            }
            Format::PcapNg { reader, ifaces } => loop {
                let block = match reader.next_block() {
                    None => break,
                    Some(Ok(b)) => b,
                    Some(Err(e)) => {
                        stats.truncated = Some(damage(&e, stats.frames));
                        break;
                    }
                };
                pcapng_block(&block, ifaces, scratch, stats, &mut f);
            },
            Format::PcapNgMapped { file, parser, ifaces } => {
                file.read(pos, stats, |data, stats| {
                    let (rest, block) = parser.next_block(data)?;
                    pcapng_block(&block, ifaces, scratch, stats, &mut f);
                    Ok(rest.len())
                })
            }
        }
        stats
    }
}

/// One pcapng block: interfaces are noted, packets go to `f` as Ethernet.
fn pcapng_block(
    block: &Block<'_>,
    ifaces: &mut Vec<Iface>,
    scratch: &mut Vec<u8>,
    stats: &mut CaptureStats,
    f: &mut impl FnMut(Frame<'_>),
) {
    let (id, ticks, data) = match block {
        Block::SectionHeader(_) => {
            // A new section restarts interface numbering.
            ifaces.clear();
            return;
        }
        Block::InterfaceDescription(idb) => {
            ifaces.push(Iface::from_idb(idb));
            return;
        }
        Block::EnhancedPacket(p) => (p.interface_id, p.timestamp.as_nanos(), &p.data),
        Block::Packet(p) => (u32::from(p.interface_id), u128::from(p.timestamp), &p.data),
        Block::SimplePacket(p) => (0, 0, &p.data),
        _ => return,
    };
    let Some(iface) = ifaces.get(id as usize) else {
        stats.unsupported_link += 1;
        return;
    };
    let Some(link) = iface.link else {
        stats.unsupported_link += 1;
        return;
    };
    let ts_ns = iface.ts_ns(ticks);
    if let Some(data) = to_ethernet(link, data, scratch) {
        stats.frames += 1;
        f(Frame { ts_ns, ifindex: id + 1, data });
    }
}

/// One classic pcap record to `f`, as Ethernet.
fn pcap_frame(
    raw: &RawPcapPacket<'_>,
    link: Link,
    nanos: bool,
    scratch: &mut Vec<u8>,
    stats: &mut CaptureStats,
    f: &mut impl FnMut(Frame<'_>),
) {
    let frac = u64::from(raw.ts_frac);
    let frac_ns = if nanos { frac } else { frac * 1000 };
    let ts_ns = u64::from(raw.ts_sec) * 1_000_000_000 + frac_ns.min(999_999_999);
    if let Some(data) = to_ethernet(link, &raw.data, scratch) {
        stats.frames += 1;
        f(Frame { ts_ns, ifindex: 0, data });
    }
}

fn damage(e: &PcapError, frames: u64) -> String {
    match e {
        PcapError::IncompleteBuffer => cut(frames),
        PcapError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => cut(frames),
        other => format!("damaged record after {frames} frames: {other}"),
    }
}

fn cut(frames: u64) -> String {
    format!(
        "the capture ends in the middle of a record after {frames} frames (was the capture \
         stopped abruptly?); the frames before it were analysed"
    )
}

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
/// ARPHRD_ETHER: the cooked header's address is a MAC.
const ARPHRD_ETHER: u16 = 1;

/// The frame as Ethernet: borrowed when it already is, else rebuilt in `scratch`.
/// `None` for a frame too short to carry its link header (counted by the caller as a frame the
/// classifier never sees).
fn to_ethernet<'a>(link: Link, data: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let (dst, src, ethertype, rest): ([u8; 6], [u8; 6], [u8; 2], &[u8]) = match link {
        Link::Ethernet => return Some(data),
        // struct sll_header: pkttype, hatype, halen, addr[8], protocol (all big-endian). The
        // address is the sender's, whatever the packet type (pcap-linktype(7)).
        Link::Sll => {
            let h = data.get(..16)?;
            let hatype = u16::from_be_bytes([h[2], h[3]]);
            let halen = u16::from_be_bytes([h[4], h[5]]);
            let mac = cooked_mac(hatype, halen, &h[6..12]);
            ([0; 6], mac, [h[14], h[15]], &data[16..])
        }
        // struct sll2_header: protocol, reserved, ifindex, hatype, pkttype, halen, addr[8].
        Link::Sll2 => {
            let h = data.get(..20)?;
            let hatype = u16::from_be_bytes([h[8], h[9]]);
            let mac = cooked_mac(hatype, u16::from(h[11]), &h[12..18]);
            ([0; 6], mac, [h[0], h[1]], &data[20..])
        }
        Link::Raw => match data.first()? >> 4 {
            4 => ([0; 6], [0; 6], ETH_P_IP, data),
            6 => ([0; 6], [0; 6], ETH_P_IPV6, data),
            _ => return None,
        },
        Link::Ipv4 => ([0; 6], [0; 6], ETH_P_IP, data),
        Link::Ipv6 => ([0; 6], [0; 6], ETH_P_IPV6, data),
        // BSD loopback: a 4-byte address family in host byte order; 2 is AF_INET, the AF_INET6
        // values differ by OS (24, 28, 30), so the IP version nibble decides.
        Link::Null => {
            let rest = data.get(4..)?;
            match rest.first()? >> 4 {
                4 => ([0; 6], [0; 6], ETH_P_IP, rest),
                6 => ([0; 6], [0; 6], ETH_P_IPV6, rest),
                _ => return None,
            }
        }
    };
    scratch.clear();
    scratch.extend_from_slice(&dst);
    scratch.extend_from_slice(&src);
    scratch.extend_from_slice(&ethertype);
    scratch.extend_from_slice(rest);
    Some(scratch)
}

fn cooked_mac(hatype: u16, halen: u16, addr: &[u8]) -> [u8; 6] {
    let mut mac = [0; 6];
    if hatype == ARPHRD_ETHER && halen == 6 {
        mac.copy_from_slice(&addr[..6]);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sll_becomes_ethernet() {
        let mut sll = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&[0x45, 0, 0, 20]);
        let mut scratch = Vec::new();
        let eth = to_ethernet(Link::Sll, &sll, &mut scratch).unwrap();
        assert_eq!(&eth[..14], &[0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0x08, 0x00]);
        assert_eq!(&eth[14..], &[0x45, 0, 0, 20]);
        assert!(to_ethernet(Link::Sll, &sll[..10], &mut scratch).is_none());
    }

    /// Every frame (time, interface, bytes) and what the reading met.
    fn frames(mut cap: Capture) -> (Vec<(u64, u32, Vec<u8>)>, CaptureStats) {
        let mut out = Vec::new();
        let stats = cap.for_each_frame(|f| out.push((f.ts_ns, f.ifindex, f.data.to_vec()))).clone();
        (out, stats)
    }

    /// The file read in place and the same bytes read through a buffer give the same frames
    /// and the same verdict, pcap and pcapng: whole captures, captures cut anywhere (in a
    /// record's header, in its data) and damaged ones.
    #[test]
    fn a_mapped_capture_reads_as_a_streamed_one() {
        use keepalive_lab::fixtures::scenario::{self, Vantage};
        let dir = std::env::temp_dir().join(format!("keepalive-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.pcap");
        let (mut a, mut b) =
            (scenario::port_security(Vantage::PhoneSide), scenario::sip_primary_backup(2));
        let seeds = [a.to_pcap(), b.to_pcap(), a.to_pcapng(), b.to_pcapng()];
        let mut next = keepalive_lab::fixtures::xorshift(7);
        let mut inputs: Vec<Vec<u8>> = seeds.to_vec();
        for seed in &seeds {
            for _ in 0..40 {
                let mut b = seed.clone();
                // Past the file's header (pcap: 24 bytes; pcapng: the section header's 28).
                let at = 28 + (next() as usize) % (b.len() - 28);
                if next().is_multiple_of(2) {
                    b.truncate(at);
                } else {
                    b[at] = next() as u8;
                }
                inputs.push(b);
            }
        }
        let (mut cut, mut ng) = (0, 0);
        for b in &inputs {
            std::fs::write(&path, b).unwrap();
            let mapped = Capture::open(&path).unwrap();
            ng += usize::from(matches!(mapped.format, Format::PcapNgMapped { .. }));
            assert!(matches!(
                mapped.format,
                Format::PcapMapped { .. } | Format::PcapNgMapped { .. }
            ));
            let streamed =
                Capture::from_reader(&path, Box::new(std::io::Cursor::new(b.clone())), 0).unwrap();
            let (m, s) = (frames(mapped), frames(streamed));
            assert_eq!(m, s);
            cut += usize::from(m.1.truncated.is_some());
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(ng, inputs.len() / 2);
        // The cuts and damage inside a record were met, not only cuts between records.
        assert!(cut > 40, "{cut} of {} inputs truncated", inputs.len());
    }

    #[test]
    fn tsresol_scales_ticks() {
        let micro = Iface { link: Some(Link::Ethernet), ticks_per_sec: 1_000_000, offset_s: 0 };
        assert_eq!(micro.ts_ns(1_500_000), 1_500_000_000);
        let nano = Iface { ticks_per_sec: 1_000_000_000, ..micro };
        assert_eq!(nano.ts_ns(7), 7);
    }
}
