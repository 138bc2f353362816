//! The loader: puts the XDP program into the kernel configured for this run, attaches it to
//! interfaces, and gives access to its maps (event rings, flows, counters).
//!
//! The object is built by `build.rs` (nightly, bpf-linker, BPF v3) and embedded in the binary,
//! so `keepalive` is a single file to deploy.

use std::{collections::HashMap, os::fd::AsFd};

use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray, ProgramArray},
    programs::{
        tc::{qdisc_add_clsact, TcAttachType},
        Program, ProgramError, SchedClassifier, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use keepalive_common::wire::{
    Config, Counters, Event, EventWithPayload, FlowKey, FlowKeyV4, FlowStats, RingPos,
    RINGS_PER_CPU,
};

use crate::source::rings::{EventRings, RingError, EVENT_SLOTS, PAYLOAD_SLOTS, RING_POS};

/// The XDP object, built by build.rs for bpfel-unknown-none: the program and its maps, nothing
/// else.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keepalive"));

/// The benchmark's object (keepalive-ebpf `bench.rs`): the same program and maps, plus the
/// baselines. Embedded only with the `testing` feature, so the shipped binary carries none of it.
#[cfg(feature = "testing")]
static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keepalive-bench"));

/// Name of the recording program in the object.
pub const PROGRAM: &str = "keepalive";
/// The programs [`PROGRAM`] hands a frame on to by tail call, at their index in the `PROGS`
/// program array: the classifier (index 4), which gets every frame the gate lets through, and
/// for an encapsulated frame the inner frame when it starts with Ethernet, when it is an IP
/// packet, and the GRE or VXLAN header (both indices 2 and 3). Loaded with every object.
pub const TAIL_PROGRAMS: [(&str, &[u32]); 4] = [
    ("keepalive_inner_eth", &[0]),
    ("keepalive_inner_ip", &[1]),
    ("keepalive_tunnel", &[2, 3]),
    ("keepalive_classify", &[4]),
];
/// The program array of [`TAIL_PROGRAMS`].
const PROGS: &str = "PROGS";
/// The recording program at tc ingress (`--hook tc`).
pub const TC_PROGRAM: &str = "keepalive_tc";
/// [`TAIL_PROGRAMS`] at tc ingress, in the `PROGS_TC` program array.
pub const TC_TAIL_PROGRAMS: [(&str, &[u32]); 4] = [
    ("keepalive_tc_inner_eth", &[0]),
    ("keepalive_tc_inner_ip", &[1]),
    ("keepalive_tc_tunnel", &[2, 3]),
    ("keepalive_tc_classify", &[4]),
];
const PROGS_TC: &str = "PROGS_TC";
/// Name of the empty XDP_PASS program (the benchmark baseline; bench object only).
#[cfg(feature = "testing")]
pub const EMPTY_PROGRAM: &str = "keepalive_empty";
/// The program that only reads the EtherType (the live benchmark's second baseline).
#[cfg(feature = "testing")]
pub const TOUCH_PROGRAM: &str = "keepalive_touch";
/// The program that reads the EtherType and the transport ports' bytes (the live benchmark's
/// third baseline: the frame's cache lines the gate reads, without its decisions). Short: the
/// kernel keeps 15 bytes of a program's name (BPF_OBJ_NAME_LEN), which the bench finds it by.
#[cfg(feature = "testing")]
pub const TOUCH_PORTS_PROGRAM: &str = "keepalive_ports";
/// Programs doing one piece of a matched frame's work each (keepalive-ebpf `floor.rs`), for
/// the benchmark: the clock read, an event in a BPF ring buffer record, an event in an event-ring
/// slot, a flow lookup.
#[cfg(feature = "testing")]
pub const FLOOR_PROGRAMS: [&str; 4] = ["floor_clock", "floor_ringbuf", "floor_slot", "floor_flow"];
const CONFIG_SYMBOL: &str = "KEEPALIVE_CONFIG";
/// The flow maps: IPv4 connections (12-byte key) and IPv6 ones (36-byte key).
const FLOWS_V4: &str = "FLOWS";
const FLOWS_V6: &str = "FLOWS6";
/// The per-CPU counters.
const COUNTERS: &str = "COUNTERS";
/// Flow-map entries read per `BPF_MAP_LOOKUP_BATCH` syscall (68 bytes each).
const FLOW_COUNT_BATCH: u32 = 8192;

/// Errors of loading and attaching, each with what the operator should do.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The kernel refused the object (verifier, BTF, privileges).
    #[error("could not load the XDP program: {0}{hint}", hint = privilege_hint(.0))]
    Load(#[source] Box<aya::EbpfError>),
    /// A program inside the object could not be loaded or attached.
    #[error("XDP program `{name}`: {source}{hint}", hint = program_hint(source))]
    Program {
        /// The program's name.
        name: &'static str,
        /// The cause.
        #[source]
        source: ProgramError,
    },
    /// The interface does not exist.
    #[error("interface `{0}` does not exist: check `ip link show` (and the network namespace)")]
    NoInterface(String),
    /// Another XDP program holds the interface.
    #[error(
        "an XDP program is already attached to `{0}` (another keepalive agent, a DDoS filter, a \
         load balancer?): `ip link show {0}` shows it. To run beside it, use `--hook tc` (tc \
         ingress through tcx); otherwise stop that agent, or `ip link set {0} xdp off` if it was \
         attached by hand"
    )]
    Busy(String),
    /// A map is missing or has an unexpected type.
    #[error("map `{name}`: {source}")]
    Map {
        /// The map's name.
        name: &'static str,
        /// The cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// A map is missing from the object.
    #[error("map `{0}` is missing from the XDP object (object and binary out of step?)")]
    MissingMap(&'static str),
    /// A map has another type than the loader expects.
    #[error("map `{0}` has an unexpected type (object and binary out of step?)")]
    MapType(&'static str),
    /// A ring size beyond what the loader allows.
    #[error("a ring of 2^{0} slots per CPU: at most 2^{max} are allowed", max = MAX_SLOTS_LOG2)]
    RingSize(u8),
    /// The number of possible CPUs (the event rings are per CPU) could not be read.
    #[error("could not read the possible CPUs from {0}: {1}")]
    Cpus(&'static str, #[source] std::io::Error),
    /// The event rings could not be mapped into this process.
    #[error(transparent)]
    Rings(#[from] RingError),
}

/// The OS error number anywhere in `e`'s chain of causes.
fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(code) =
            err.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

fn is_eperm(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(os_error(e), Some(libc::EPERM | libc::EACCES))
}

fn privilege_hint(e: &aya::EbpfError) -> &'static str {
    if is_eperm(e) {
        ": permission denied — run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON \
         (e.g. `sudo setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(which keepalive)`)"
    } else if matches!(e, aya::EbpfError::BtfError(_))
        && !std::path::Path::new("/sys/kernel/btf/vmlinux").exists()
    {
        ": this kernel exposes no BTF (/sys/kernel/btf/vmlinux) — use a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (every major distribution's since about 2020)"
    } else {
        ""
    }
}

fn program_hint(e: &ProgramError) -> &'static str {
    match os_error(e) {
        Some(libc::EPERM | libc::EACCES) => {
            ": permission denied — run as root or grant CAP_BPF and CAP_NET_ADMIN"
        }
        // dev_xdp_attach: a driver without ndo_bpf cannot run native XDP.
        Some(libc::EOPNOTSUPP) => {
            ": this interface's driver has no native XDP — use `--mode skb` (or `--mode auto`)"
        }
        _ => "",
    }
}

/// Where the program runs (`keepalive run --hook`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// XDP, before the kernel builds an skb: the cheapest, and one program per interface
    /// unless the program already there chains others.
    #[default]
    Xdp,
    /// tc ingress through tcx (Linux 6.6+; clsact before), beside programs already attached:
    /// the same program on the skb, after the driver.
    Tc,
}

/// A hook's programs: the first one, those it hands frames on to, their array.
type HookPrograms = (&'static str, &'static [(&'static str, &'static [u32]); 4], &'static str);

impl Hook {
    fn programs(self) -> HookPrograms {
        match self {
            Self::Xdp => (PROGRAM, &TAIL_PROGRAMS, PROGS),
            Self::Tc => (TC_PROGRAM, &TC_TAIL_PROGRAMS, PROGS_TC),
        }
    }
}

/// XDP attach mode requested on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Native (driver) mode, falling back to generic (skb) mode when the driver refuses.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Skb,
}

/// The mode an attachment actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attached {
    /// Driver mode.
    Native,
    /// Generic mode.
    Skb,
    /// tc ingress (`--hook tc`), through tcx or a clsact qdisc.
    Tc,
}

/// Sizes and behaviour fixed at load time.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Tracked ports and verdict mode.
    pub config: Config,
    /// Entries of the per-direction IPv4 flow LRU map (two per connection).
    pub flow_capacity: u32,
    /// Entries of the IPv6 flow map (a map of its own: its 36-byte key costs more per lookup).
    pub flow_capacity_v6: u32,
    /// Event slots per CPU, as a power of two; 0 = sized by [`ring_sizes`].
    pub event_slots_log2: u8,
    /// Payload slots per CPU, as a power of two; 0 = sized by [`ring_sizes`].
    pub payload_slots_log2: u8,
    /// XDP or tc: which programs are loaded.
    pub hook: Hook,
}

/// Largest ring, as a power of two of slots per CPU (the slot maps' indices are 32 bits).
pub const MAX_SLOTS_LOG2: u8 = 24;

/// The rings' default share of memory, over all CPUs: event slots (128 bytes each).
pub const EVENT_RING_BUDGET: u64 = 16 << 20;
/// The same for payload slots (1 664 bytes each).
pub const PAYLOAD_RING_BUDGET: u64 = 16 << 20;

/// Default ring sizes for `cpus` CPUs, as powers of two: the budgets above split over the
/// CPUs, at least 1 024 events and 64 payloads and at most 32 768 and 4 096 per CPU. The
/// agent drains every [`POLL_EVERY`](crate::source::live::POLL_EVERY), so 1 024 event slots
/// absorb 100 000 events a second on one CPU. The scale bench (100 000 phones replayed at
/// 150 000 frames/s, half of them SIP) lost 16 500 events, counted, with 1 024 payload slots
/// per CPU; its SCCP-only steps lost none with 16 384 event slots.
pub fn ring_sizes(cpus: u32) -> (u8, u8) {
    let fit = |budget: u64, each: usize, min: u8, max: u8| {
        let per_cpu = budget / u64::from(cpus.max(1)) / each as u64;
        (per_cpu.max(1).ilog2() as u8).clamp(min, max)
    };
    (
        fit(EVENT_RING_BUDGET, size_of::<Event>(), 10, 15),
        fit(PAYLOAD_RING_BUDGET, size_of::<EventWithPayload>(), 6, 12),
    )
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            config: Config::DEFAULT,
            flow_capacity: 262_144,
            flow_capacity_v6: 65_536,
            event_slots_log2: 0,
            payload_slots_log2: 0,
            hook: Hook::Xdp,
        }
    }
}

/// The loaded XDP object.
#[derive(Debug)]
pub struct Probe {
    ebpf: Ebpf,
    attached: HashMap<String, Attached>,
    /// Possible CPUs: each has its own event rings.
    cpus: u32,
    /// The configuration the program was loaded with (ring sizes filled in).
    config: Config,
    /// Which programs were loaded.
    hook: Hook,
}

impl Probe {
    /// Loads the object with `opts` into the kernel (the program loaded, not attached).
    pub fn load(opts: &LoadOptions) -> Result<Self, LoaderError> {
        Self::load_object(OBJECT, &[opts.hook.programs().0], opts)
    }

    /// Loads the benchmark's object instead: the same program and maps, with the empty and
    /// the two touch baselines loaded beside it (and the floors loadable with [`Probe::load_program`]).
    #[cfg(feature = "testing")]
    pub fn load_bench(opts: &LoadOptions) -> Result<Self, LoaderError> {
        Self::load_object(
            BENCH_OBJECT,
            &[PROGRAM, EMPTY_PROGRAM, TOUCH_PROGRAM, TOUCH_PORTS_PROGRAM],
            opts,
        )
    }

    fn load_object(
        object: &[u8],
        programs: &[&'static str],
        opts: &LoadOptions,
    ) -> Result<Self, LoaderError> {
        raise_memlock_limit();
        let cpus = aya::util::nr_cpus().map_err(|(path, e)| LoaderError::Cpus(path, e))? as u32;
        let (events, payloads) = ring_sizes(cpus);
        let mut config = opts.config;
        // The gate's port set is the rules', whoever wrote the rules.
        config.sync_port_filter();
        config.event_slots_log2 =
            if opts.event_slots_log2 == 0 { events } else { opts.event_slots_log2 };
        config.payload_slots_log2 =
            if opts.payload_slots_log2 == 0 { payloads } else { opts.payload_slots_log2 };
        for log2 in [config.event_slots_log2, config.payload_slots_log2] {
            if log2 > MAX_SLOTS_LOG2 {
                return Err(LoaderError::RingSize(log2));
            }
        }
        let mut ebpf = EbpfLoader::new()
            .override_global(CONFIG_SYMBOL, &config, true)
            .map_max_entries(FLOWS_V4, opts.flow_capacity)
            .map_max_entries(FLOWS_V6, opts.flow_capacity_v6)
            .map_max_entries(EVENT_SLOTS, RingPos::map_entries(cpus, config.event_slots_log2))
            .map_max_entries(PAYLOAD_SLOTS, RingPos::map_entries(cpus, config.payload_slots_log2))
            .map_max_entries(RING_POS, cpus * RINGS_PER_CPU)
            .load(object)
            .map_err(|e| LoaderError::Load(Box::new(e)))?;
        let (_, tail, array) = opts.hook.programs();
        for &name in programs.iter().chain(tail.iter().map(|(name, _)| name)) {
            load_program(&mut ebpf, name)?;
        }
        install_tail(&mut ebpf, tail, array)?;
        Ok(Self { ebpf, attached: HashMap::new(), cpus, config, hook: opts.hook })
    }

    #[cfg(feature = "testing")]
    /// Loads one more program of the object into the kernel (the benchmark's
    /// [`FLOOR_PROGRAMS`]), for [`Probe::test_run`].
    pub fn load_program(&mut self, name: &'static str) -> Result<(), LoaderError> {
        xdp_mut(&mut self.ebpf, name)?
            .load()
            .map_err(|source| LoaderError::Program { name, source })
    }

    /// Attaches the recording program to `iface` in `mode` (XDP) or at tc ingress (the probe
    /// loaded with [`Hook::Tc`]: `mode` does not apply); returns what it got.
    pub fn attach(&mut self, iface: &str, mode: Mode) -> Result<Attached, LoaderError> {
        match self.hook {
            Hook::Xdp => self.attach_program(iface, PROGRAM, mode),
            Hook::Tc => self.attach_tc(iface),
        }
    }

    /// Attaches [`TC_PROGRAM`] at `iface`'s ingress, after what is attached there: through
    /// tcx on Linux 6.6+ (aya picks it), through a clsact qdisc (added when missing) before.
    fn attach_tc(&mut self, iface: &str) -> Result<Attached, LoaderError> {
        if if_index(iface).is_none() {
            return Err(LoaderError::NoInterface(iface.to_string()));
        }
        let name = TC_PROGRAM;
        let prog: &mut SchedClassifier = program_mut(&mut self.ebpf, name)?
            .try_into()
            .map_err(|source| LoaderError::Program { name, source })?;
        if prog.attach(iface, TcAttachType::Ingress).is_err() {
            // Before tcx: the netlink attachment needs the clsact qdisc (an existing one is
            // fine, so the error of adding it again is not one).
            let _ = qdisc_add_clsact(iface);
            prog.attach(iface, TcAttachType::Ingress)
                .map_err(|source| LoaderError::Program { name, source })?;
        }
        self.attached.insert(iface.to_string(), Attached::Tc);
        Ok(Attached::Tc)
    }

    /// Attaches program `name` ([`PROGRAM`], or a baseline of the bench object)
    /// to `iface` in `mode`; returns the mode it got.
    pub fn attach_program(
        &mut self,
        iface: &str,
        name: &'static str,
        mode: Mode,
    ) -> Result<Attached, LoaderError> {
        if if_index(iface).is_none() {
            return Err(LoaderError::NoInterface(iface.to_string()));
        }
        let prog = xdp_mut(&mut self.ebpf, name)?;
        let got = match mode {
            Mode::Native => prog.attach(iface, XdpMode::Driver).map(|_| Attached::Native),
            Mode::Skb => prog.attach(iface, XdpMode::Skb).map(|_| Attached::Skb),
            Mode::Auto => match prog.attach(iface, XdpMode::Driver) {
                Ok(_) => Ok(Attached::Native),
                Err(_) => prog.attach(iface, XdpMode::Skb).map(|_| Attached::Skb),
            },
        }
        .map_err(|source| match os_error(&source) {
            // bpf_link_create: EEXIST when a program is attached through netlink, EBUSY when
            // through another link (kernel/bpf: dev_xdp_attach).
            Some(libc::EEXIST | libc::EBUSY) => LoaderError::Busy(iface.to_string()),
            _ => LoaderError::Program { name, source },
        })?;
        self.attached.insert(iface.to_string(), got);
        Ok(got)
    }

    /// Interfaces attached so far and their modes.
    pub fn attached(&self) -> &HashMap<String, Attached> {
        &self.attached
    }

    #[cfg(feature = "testing")]
    /// Runs program `name` once per `repeat` on `frame` with `BPF_PROG_TEST_RUN`; returns the
    /// verdict and the kernel's average time per run.
    pub fn test_run(
        &mut self,
        name: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), LoaderError> {
        use aya::programs::{TestRun as _, TestRunOptions};
        let opts = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::default() };
        let r = match program(&self.ebpf, name)? {
            Program::Xdp(p) => p.test_run(opts),
            Program::SchedClassifier(p) => p.test_run(opts),
            _ => Err(ProgramError::NotLoaded),
        }
        .map_err(|source| LoaderError::Program { name, source })?;
        Ok((r.return_value, r.duration))
    }

    /// The event rings, mapped into this process. There must be one reader: it owns the
    /// rings' tails.
    pub fn rings(&self) -> Result<EventRings, LoaderError> {
        let array = |name: &'static str| match self.map(name)? {
            Map::Array(m) => Ok(m),
            _ => Err(LoaderError::MapType(name)),
        };
        let maps: [&MapData; 3] = [array(EVENT_SLOTS)?, array(PAYLOAD_SLOTS)?, array(RING_POS)?];
        let c = &self.config;
        Ok(EventRings::new(maps, self.cpus, c.event_slots_log2, c.payload_slots_log2)?)
    }

    #[cfg(feature = "testing")]
    /// Instructions the verifier processed to accept program `name` (its limit is 1 000 000).
    pub fn verified_instructions(&mut self, name: &'static str) -> Result<u32, LoaderError> {
        let info = program(&self.ebpf, name)?
            .info()
            .map_err(|source| LoaderError::Program { name, source })?;
        Ok(info.verified_instruction_count().unwrap_or(0))
    }

    /// Kernel counters summed over CPUs.
    pub fn counters(&self) -> Result<Counters, LoaderError> {
        read_counters(self.map(COUNTERS)?)
    }

    /// Number of live entries in the flow maps (IPv4 and IPv6): 8 192 entries a syscall
    /// ([`flow_count`](crate::flow_count)), or one a syscall on kernels without batch lookups.
    pub fn flow_count(&self) -> Result<usize, LoaderError> {
        count_flows(self.map(FLOWS_V4)?, self.map(FLOWS_V6)?)
    }

    #[cfg(feature = "testing")]
    /// The flow maps' entries read `batch` a syscall; `None` when the kernel has no batch
    /// lookup for them (before Linux 5.6).
    pub fn flow_count_by(&self, batch: u32) -> Result<Option<usize>, LoaderError> {
        let v4 = count_batched::<FlowKeyV4>(self.map(FLOWS_V4)?, FLOWS_V4, batch)?;
        let v6 = count_batched::<FlowKey>(self.map(FLOWS_V6)?, FLOWS_V6, batch)?;
        Ok(v4.zip(v6).map(|(a, b)| a + b))
    }

    #[cfg(feature = "testing")]
    /// Number of live entries in the flow maps, one `BPF_MAP_GET_NEXT_KEY` syscall per entry.
    pub fn flow_count_by_keys(&self) -> Result<usize, LoaderError> {
        Ok(walk_keys::<FlowKeyV4>(self.map(FLOWS_V4)?, FLOWS_V4)?
            + walk_keys::<FlowKey>(self.map(FLOWS_V6)?, FLOWS_V6)?)
    }

    /// The flow maps and the counters opened again (new file descriptors), for a thread of
    /// their own: the agent counts flows away from its event loop.
    pub fn flow_maps(&self) -> Result<FlowMaps, LoaderError> {
        let reopen = |name: &'static str| -> Result<MapData, LoaderError> {
            let data: &MapData = match self.map(name)? {
                Map::LruHashMap(m) | Map::PerCpuArray(m) => m,
                _ => return Err(LoaderError::MapType(name)),
            };
            let fd = data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| LoaderError::Map { name, source: aya::maps::MapError::IoError(e) })?;
            MapData::from_fd(fd).map_err(|source| LoaderError::Map { name, source })
        };
        Ok(FlowMaps {
            v4: Map::LruHashMap(reopen(FLOWS_V4)?),
            v6: Map::LruHashMap(reopen(FLOWS_V6)?),
            counters: Map::PerCpuArray(reopen(COUNTERS)?),
        })
    }

    fn map(&self, name: &'static str) -> Result<&Map, LoaderError> {
        self.ebpf.map(name).ok_or(LoaderError::MissingMap(name))
    }

    /// One flow's kernel state: in the IPv4 map when both addresses are IPv4-mapped, else (or
    /// when not there: an IPv6 packet may carry IPv4-mapped addresses) in the IPv6 map.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowStats>, LoaderError> {
        if let Some(k4) = key.v4() {
            let got = found(self.flows_map::<FlowKeyV4>(FLOWS_V4)?.get(&k4, 0), FLOWS_V4)?;
            if got.is_some() {
                return Ok(got);
            }
        }
        found(self.flows_map::<FlowKey>(FLOWS_V6)?.get(key, 0), FLOWS_V6)
    }

    #[cfg(feature = "testing")]
    /// Removes every flow (tests start each fixture from a clean state).
    pub fn clear_flows(&mut self) -> Result<(), LoaderError> {
        self.clear_map::<FlowKeyV4>(FLOWS_V4)?;
        self.clear_map::<FlowKey>(FLOWS_V6)
    }

    #[cfg(feature = "testing")]
    fn clear_map<K: aya::Pod>(&mut self, name: &'static str) -> Result<(), LoaderError> {
        let map = self.ebpf.map_mut(name).ok_or(LoaderError::MissingMap(name))?;
        let mut flows = BpfHashMap::<_, K, FlowStats>::try_from(map)
            .map_err(|source| LoaderError::Map { name, source })?;
        let keys: Vec<K> = flows.keys().filter_map(Result::ok).collect();
        for k in keys {
            // Already gone (LRU) is fine.
            let _ = flows.remove(&k);
        }
        Ok(())
    }

    fn flows_map<K: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<BpfHashMap<&MapData, K, FlowStats>, LoaderError> {
        let map = self.ebpf.map(name).ok_or(LoaderError::MissingMap(name))?;
        BpfHashMap::try_from(map).map_err(|source| LoaderError::Map { name, source })
    }
}

/// The flow maps and the counters of a loaded program, on file descriptors of their own
/// ([`Probe::flow_maps`]), so a thread can count flows while the agent reads the rings.
#[derive(Debug)]
pub struct FlowMaps {
    v4: Map,
    v6: Map,
    counters: Map,
}

impl FlowMaps {
    /// `(live flow entries, flows_created)`. The counters are read first, so flows created
    /// during the count can only make the evictions derived from the two (`created − live`)
    /// smaller, never larger.
    pub fn count(&self) -> Result<(u64, u64), LoaderError> {
        let created = read_counters(&self.counters)?.flows_created;
        Ok((count_flows(&self.v4, &self.v6)? as u64, created))
    }
}

/// The per-CPU counters in `map`, summed.
fn read_counters(map: &Map) -> Result<Counters, LoaderError> {
    let per_cpu = PerCpuArray::<_, Counters>::try_from(map)
        .and_then(|counters| counters.get(&0, 0))
        .map_err(|source| LoaderError::Map { name: COUNTERS, source })?;
    Ok(sum_counters(per_cpu.iter()))
}

/// Live entries of both flow maps.
fn count_flows(v4: &Map, v6: &Map) -> Result<usize, LoaderError> {
    Ok(count_entries::<FlowKeyV4>(v4, FLOWS_V4)? + count_entries::<FlowKey>(v6, FLOWS_V6)?)
}

/// Live entries of flow map `map`: in batches where the kernel has them, else key by key.
fn count_entries<K: aya::Pod>(map: &Map, name: &'static str) -> Result<usize, LoaderError> {
    match count_batched::<K>(map, name, FLOW_COUNT_BATCH)? {
        Some(n) => Ok(n),
        None => walk_keys::<K>(map, name),
    }
}

/// Entries of hash map `map` with keys `K`, `batch` a syscall; `None` without batch lookups.
fn count_batched<K: aya::Pod>(
    map: &Map,
    name: &'static str,
    batch: u32,
) -> Result<Option<usize>, LoaderError> {
    let (Map::LruHashMap(data) | Map::HashMap(data)) = map else {
        return Err(LoaderError::MapType(name));
    };
    crate::flow_count::count(data.fd().as_fd(), size_of::<K>(), size_of::<FlowStats>(), batch)
        .map_err(|e| LoaderError::Map { name, source: aya::maps::MapError::IoError(e) })
}

/// Entries of hash map `map` with keys `K`, one syscall each.
fn walk_keys<K: aya::Pod>(map: &Map, name: &'static str) -> Result<usize, LoaderError> {
    let flows = BpfHashMap::<_, K, FlowStats>::try_from(map)
        .map_err(|source| LoaderError::Map { name, source })?;
    Ok(flows.keys().filter(Result::is_ok).count())
}

/// A map lookup's answer, with "no such key" as `None`.
fn found<V>(
    got: Result<V, aya::maps::MapError>,
    name: &'static str,
) -> Result<Option<V>, LoaderError> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(LoaderError::Map { name, source }),
    }
}

/// Puts [`TAIL_PROGRAMS`] in [`PROGS`], where the programs tail-call them: the classifier
/// for what passes the gate, the tunnel steps for an encapsulated frame. The array holds a
/// reference to each program: they stay loaded as long as the array does, that is as long as
/// a program using it is.
fn install_tail(
    ebpf: &mut Ebpf,
    tail: &[(&'static str, &'static [u32])],
    array: &'static str,
) -> Result<(), LoaderError> {
    let mut fds = Vec::new();
    for &(name, indices) in tail {
        let fd = program(ebpf, name)?
            .fd()
            .and_then(|fd| fd.try_clone().map_err(ProgramError::from))
            .map_err(|source| LoaderError::Program { name, source })?;
        fds.push((fd, indices));
    }
    let map = ebpf.map_mut(array).ok_or(LoaderError::MissingMap(array))?;
    let mut progs =
        ProgramArray::try_from(map).map_err(|source| LoaderError::Map { name: array, source })?;
    for (fd, indices) in &fds {
        for &i in *indices {
            progs.set(i, fd, 0).map_err(|source| LoaderError::Map { name: array, source })?;
        }
    }
    Ok(())
}

/// Loads program `name` of the object into the kernel, XDP or tc.
fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), LoaderError> {
    let loaded = match program_mut(ebpf, name)? {
        Program::Xdp(p) => p.load(),
        Program::SchedClassifier(p) => p.load(),
        _ => Err(ProgramError::NotLoaded),
    };
    loaded.map_err(|source| LoaderError::Program { name, source })
}

fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, LoaderError> {
    program_mut(ebpf, name)?.try_into().map_err(|source| LoaderError::Program { name, source })
}

/// Program `name` of the object, or the error that names it.
fn program<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Program, LoaderError> {
    ebpf.program(name).ok_or(LoaderError::Program { name, source: ProgramError::NotLoaded })
}

/// [`program`], to load or attach it.
fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Program, LoaderError> {
    ebpf.program_mut(name).ok_or(LoaderError::Program { name, source: ProgramError::NotLoaded })
}

/// Sums per-CPU counter slots.
pub fn sum_counters<'a>(slots: impl Iterator<Item = &'a Counters>) -> Counters {
    slots.fold(Counters::default(), |mut acc, c| {
        acc.seen += c.seen;
        acc.matched_tcp += c.matched_tcp;
        acc.matched_arp += c.matched_arp;
        acc.events += c.events;
        acc.ringbuf_full += c.ringbuf_full;
        acc.parse_errors += c.parse_errors;
        acc.flows_created += c.flows_created;
        acc.flow_update_errors += c.flow_update_errors;
        acc.mirror_drops += c.mirror_drops;
        acc.shed += c.shed;
        acc.encap_gre += c.encap_gre;
        acc.encap_erspan += c.encap_erspan;
        acc.encap_vxlan += c.encap_vxlan;
        acc.encap_too_deep += c.encap_too_deep;
        acc
    })
}

/// Interface index of `name`, if it exists.
pub fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; raising it is harmless after.
fn raise_memlock_limit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid struct; failure only matters on old kernels.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}
