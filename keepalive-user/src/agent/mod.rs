//! The live agent (`keepalive run`): loads and attaches the XDP program, feeds the event rings
//! into the same [`Tracker`] `analyze` uses, and shows the result: a refreshed view on a
//! terminal, JSON lines of new findings otherwise, the stats socket ([`socket`]) and Prometheus
//! metrics ([`metrics`]).
//!
//! * [`snapshot`]: the agent's state as one document.
//! * [`socket`]: the stats socket and its client.
//! * [`metrics`]: the Prometheus exposition.
//! * [`view`]: the terminal view and the JSON-lines findings.
//! * [`flows`]: the flow-map count, on a thread of its own.
//! * [`evaluator`]: the refreshes' evaluation of findings, lifecycle and metrics, on a thread
//!   of its own that holds the state only in short slices.
//! * [`lifecycle`]: findings as episodes (firing, escalated, resolved) for the JSON lines and
//!   syslog.
//! * [`syslog`]: the RFC 5424 sink (`--syslog`).
//! * [`web_config`]: TLS and basic auth for the metrics (`--metrics-web-config`).

pub mod cucm;
pub mod evaluator;
pub mod flows;
pub mod lifecycle;
pub mod metrics;
pub mod snapshot;
pub mod socket;
pub mod syslog;
pub mod view;
pub mod web_config;

use std::{
    io::Write,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;

use keepalive_common::wire::Config;

use self::{
    flows::{FlowCount, FlowCounter},
    snapshot::{AgentInfo, Interface, KernelStats, State},
};
use crate::{
    loader::{LoadOptions, LoaderError, Mode, Probe},
    record::EventJson,
    source::live::LiveSource,
    tracker::{Limits, Settings, Tracker},
};

/// What the agent does, as the command line asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interfaces to attach to.
    pub ifaces: Vec<String>,
    /// XDP mode.
    pub mode: Mode,
    /// XDP or tc ingress.
    pub hook: crate::loader::Hook,
    /// Ports and mirror flag.
    pub config: Config,
    /// Tracker settings.
    pub settings: Settings,
    /// Stats socket path and mode.
    pub socket: PathBuf,
    /// Permission bits of the socket.
    pub socket_mode: u32,
    /// Metrics address.
    pub metrics: Option<std::net::SocketAddr>,
    /// Per-phone metric series.
    pub metrics_per_phone: bool,
    /// At most this many `keepalive_finding` series.
    pub metrics_max_findings: usize,
    /// TLS and basic auth for the metrics (exporter-toolkit web config file).
    pub metrics_web_config: Option<PathBuf>,
    /// Output: the terminal view, JSON lines of findings, or JSON lines of every event.
    pub output: Output,
    /// How often the view, counters and expiry run.
    pub refresh: Duration,
    /// Pairs idle this long are forgotten.
    pub expire: Duration,
    /// Bounds of the tracker's state.
    pub limits: Limits,
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Where finding transitions also go as RFC 5424 syslog (`--syslog`).
    pub syslog: Option<syslog::Target>,
    /// Where CUCM's remote syslog is received (`--cucm-syslog`).
    pub cucm_syslog: Option<std::net::SocketAddr>,
    /// How SIGHUP re-reads the options (from `--config`); without it SIGHUP is ignored.
    pub reload: Option<Reload>,
}

/// Builds the options afresh from the configuration file, on SIGHUP.
#[derive(Clone)]
pub struct Reload(Arc<dyn Fn() -> Result<Options, String> + Send + Sync>);

impl Reload {
    /// Re-reads the options with `f`.
    pub fn new(f: impl Fn() -> Result<Options, String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reload(..)")
    }
}

/// What a reload changed: the options applied in place, and those that need a restart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Applied without detaching or losing any pair.
    pub applied: Vec<&'static str>,
    /// Changed in the file, not applied: they need `systemctl restart keepalive`.
    pub need_restart: Vec<&'static str>,
}

impl Options {
    /// Takes from `new` what can change while running (the timers: grace, delta, time scale
    /// and replay; the expiry; the refresh) and names what cannot (interfaces, mode, ports,
    /// mirror, outputs, socket, metrics, limits), leaving those as they are.
    pub fn reload_from(&mut self, new: &Options) -> Reloaded {
        let mut r = Reloaded::default();
        if self.settings != new.settings {
            self.settings = new.settings;
            r.applied.push("timers");
        }
        if self.expire != new.expire {
            self.expire = new.expire;
            r.applied.push("expire");
        }
        if self.refresh != new.refresh {
            self.refresh = new.refresh;
            r.applied.push("refresh");
        }
        for (name, changed) in [
            ("iface", self.ifaces != new.ifaces),
            ("mode", self.mode != new.mode),
            ("port/mirror", self.config != new.config),
            ("socket", self.socket != new.socket || self.socket_mode != new.socket_mode),
            (
                "metrics",
                self.metrics != new.metrics
                    || self.metrics_per_phone != new.metrics_per_phone
                    || self.metrics_max_findings != new.metrics_max_findings
                    || self.metrics_web_config != new.metrics_web_config,
            ),
            ("output", self.output != new.output),
            ("syslog", self.syslog != new.syslog),
            ("max-phones", self.limits != new.limits),
            ("count/duration", self.count != new.count || self.duration != new.duration),
        ] {
            if changed {
                r.need_restart.push(name);
            }
        }
        r
    }
}

/// What goes to standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A refreshed table (on a terminal).
    View,
    /// One JSON line per new finding.
    Findings,
    /// One JSON line per event (debugging the classifier).
    Events,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The kernel or the privileges lack something (checked before loading).
    #[error(transparent)]
    Preflight(#[from] crate::preflight::PreflightError),
    /// Loading or attaching.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// The stats socket.
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    /// The metrics web config (TLS, basic auth).
    #[error(transparent)]
    WebConfig(#[from] web_config::WebConfigError),
    /// The metrics address.
    #[error("cannot serve metrics on {addr}: {error}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The CUCM syslog address.
    #[error("cannot listen for CUCM's syslog on udp://{addr}: {error} (a port below 1024 needs CAP_NET_BIND_SERVICE: use 5514 and point CUCM's remote syslog there)")]
    CucmSyslog {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// Anything else on the way.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Logs one structured line (logfmt) on stderr.
pub fn log(level: &str, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    let mut line = format!("ts={:.3} level={level} msg={msg:?}", now_s());
    for (k, v) in fields {
        let v = v.to_string();
        if v.contains([' ', '"', '=']) {
            line.push_str(&format!(" {k}={v:?}"));
        } else {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    eprintln!("{line}");
}

/// A log line that is written at most once per period; the lines held back meanwhile are
/// counted and reported with the next one written (`suppressed=N`).
#[derive(Debug)]
pub struct RateLimited {
    every: Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        Self { every, last: None, suppressed: 0 }
    }

    /// Logs this line unless one was written less than the period ago.
    pub fn log(&mut self, level: &str, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            self.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        let mut all: Vec<(&str, &dyn std::fmt::Display)> = fields.to_vec();
        all.push(("suppressed", &suppressed));
        log(level, msg, &all);
        self.last = Some(std::time::Instant::now());
    }
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// How often freed heap is given back to the system (rows built on refreshes, expired pairs).
const RELEASE_MEMORY_EVERY: Duration = Duration::from_secs(30);

fn kernel_stats(probe: &Probe, flows: FlowCount) -> Result<KernelStats, LoaderError> {
    let c = probe.counters()?;
    Ok(KernelStats {
        seen: c.seen,
        matched_tcp: c.matched_tcp,
        matched_arp: c.matched_arp,
        events: c.events,
        ringbuf_full: c.ringbuf_full,
        shed: c.shed,
        parse_errors: c.parse_errors,
        // The three flow figures come from one count, with its time (see `FlowCount`).
        flows_created: flows.created,
        flows_live: flows.live,
        lru_evictions: flows.evicted(),
        flows_counted_at: flows.at_ns as f64 / 1e9,
        flow_update_errors: c.flow_update_errors,
        mirror_drops: c.mirror_drops,
        encap_gre: c.encap_gre,
        encap_erspan: c.encap_erspan,
        encap_vxlan: c.encap_vxlan,
        encap_too_deep: c.encap_too_deep,
    })
}

/// Runs the agent until a signal, `--count` or `--duration`.
pub async fn run(opts: Options) -> Result<(), AgentError> {
    // What the kernel and the privileges lack is named before anything is loaded. Loading
    // touches nothing shared; then refuse, before attaching to any interface, when another
    // agent owns the socket.
    crate::preflight::check()?;
    // The metrics' TLS and users are read before anything is loaded, too.
    let web = match &opts.metrics_web_config {
        Some(path) => web_config::WebConfig::load(path)?,
        None => web_config::WebConfig::default(),
    };
    // Both handlers first: a SIGHUP (a reload, a closed terminal) must never kill the agent with
    // its default action, not even while it attaches. Without --config it is logged and ignored.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let load = LoadOptions { config: opts.config, hook: opts.hook, ..LoadOptions::default() };
    let mut probe = Probe::load(&load)?;
    let listener = socket::bind(&opts.socket, opts.socket_mode)?;
    let _cleanup = RemoveOnDrop(opts.socket.clone());
    let mut interfaces = Vec::new();
    for iface in &opts.ifaces {
        let mode = probe.attach(iface, opts.mode)?;
        log("info", "attached", &[("iface", iface), ("mode", &format!("{mode:?}").to_lowercase())]);
        interfaces.push(Interface { name: iface.clone(), mode });
    }
    let mut source = LiveSource::new(probe.rings()?);
    let metrics_listener = match opts.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| AgentError::Metrics { addr, error })?,
        ),
        None => None,
    };
    let cucm_listener = match opts.cucm_syslog {
        Some(addr) => Some(
            tokio::net::UdpSocket::bind(addr)
                .await
                .map_err(|error| AgentError::CucmSyslog { addr, error })?,
        ),
        None => None,
    };
    let state = Arc::new(Mutex::new(State {
        tracker: Tracker::with_limits(opts.settings, opts.config, opts.limits),
        kernel: KernelStats::default(),
        agent: AgentInfo {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION"),
            started: now_s(),
            interfaces,
            socket: opts.socket.display().to_string(),
            metrics: opts.metrics.map(|a| a.to_string()),
        },
        bad_records: 0,
        evaluation: Default::default(),
        cucm: opts.cucm_syslog.map(|_| Box::default()),
    }));
    let cucm_task = cucm_listener.map(|sock| {
        log(
            "info",
            "cucm syslog",
            &[("addr", &opts.cucm_syslog.map(|a| a.to_string()).unwrap_or_default())],
        );
        tokio::spawn(cucm::serve(sock, state.clone()))
    });
    let latest = metrics::Latest::default();
    let socket_task = tokio::spawn(socket::serve(listener, state.clone()));
    log("info", "stats socket", &[("path", &opts.socket.display())]);
    let metrics_task = metrics_listener.map(|l| {
        log(
            "info",
            "metrics",
            &[("addr", &opts.metrics.map(|a| a.to_string()).unwrap_or_default())],
        );
        let shape = metrics::Shape {
            per_phone: opts.metrics_per_phone,
            max_findings: opts.metrics_max_findings,
        };
        let latest = latest.clone();
        metrics::Server::start(l, state.clone(), latest, shape, web, opts.refresh)
    });
    let metrics_task = metrics_task.transpose()?;

    let mut opts = opts;
    let duration = opts.duration;
    let deadline = async move {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(opts.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flows = FlowCounter::start(probe.flow_maps()?, opts.refresh)?;
    let mut released = std::time::Instant::now();
    // The expiry runs on the evaluator's thread, and so do the findings, for the JSON lines,
    // the syslog sink and the metrics (which export what the lifecycle follows, so a scrape
    // builds no report).
    let findings = opts.output == Output::Findings
        || opts.syslog.is_some()
        || opts.metrics.is_some()
        || opts.cucm_syslog.is_some();
    let sinks = evaluator::Sinks {
        json_lines: opts.output == Output::Findings,
        syslog: opts.syslog.clone().map(syslog::Syslog::new),
        metrics: latest,
    };
    let evaluator = evaluator::Evaluator::start(state.clone(), sinks)?;
    let mut batch = Vec::new();
    let mut total: u64 = 0;
    let reason = loop {
        tokio::select! {
            _ = source.next_batch(&mut batch) => {
                let asked = Instant::now();
                let mut st = state.lock();
                let e = &mut st.evaluation;
                e.ingest_waited_max_us = e.ingest_waited_max_us.max(asked.elapsed().as_micros() as u64);
                let mut out = std::io::stdout().lock();
                for rec in batch.drain(..) {
                    if opts.output == Output::Events {
                        serde_json::to_writer(&mut out, &EventJson::new(&rec.event)).map_err(std::io::Error::from)?;
                        out.write_all(b"\n")?;
                    }
                    st.tracker.ingest(&rec);
                    total += 1;
                }
                out.flush()?;
                st.bad_records = source.bad_records();
                if opts.count.is_some_and(|n| total >= n) {
                    break "count reached";
                }
            }
            _ = tick.tick() => {
                let (counted, error) = flows.get();
                if let Some(e) = error {
                    log("warn", "counting the flow maps failed", &[("error", &e)]);
                }
                let kernel = kernel_stats(&probe, counted)?;
                if released.elapsed() >= RELEASE_MEMORY_EVERY {
                    socket::release_memory();
                    released = std::time::Instant::now();
                }
                let mut st = state.lock();
                st.kernel = kernel;
                if opts.output == Output::View {
                    view::draw(&st)?;
                }
                drop(st);
                let job = evaluator::Job {
                    now_ns: now_ns(),
                    expire: opts.expire,
                    findings,
                    hold_down: hold_down(&opts.settings),
                    refresh: opts.refresh,
                    metrics: opts.metrics.is_some().then_some(metrics::Shape {
                        per_phone: opts.metrics_per_phone,
                        max_findings: opts.metrics_max_findings,
                    }),
                    whole: false,
                };
                if !evaluator.offer(job) {
                    state.lock().evaluation.skipped += 1;
                }
            }
            _ = sighup.recv() => {
                let Some(reload) = opts.reload.clone() else {
                    log("info", "SIGHUP ignored: no --config to re-read", &[]);
                    continue;
                };
                match (reload.0)() {
                    Err(e) => log("warn", "reload refused, options unchanged", &[("error", &e)]),
                    Ok(new) => {
                        let r = opts.reload_from(&new);
                        state.lock().tracker.settings = opts.settings;
                        if r.applied.contains(&"refresh") {
                            tick = tokio::time::interval(opts.refresh);
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                        log("info", "configuration reloaded", &[
                            ("applied", &r.applied.join(",")),
                            ("grace_s", &opts.settings.grace_s),
                            ("delta_s", &opts.settings.delta_s),
                        ]);
                        if !r.need_restart.is_empty() {
                            log("warn", "changed options need a restart, not applied", &[
                                ("options", &r.need_restart.join(",")),
                            ]);
                        }
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break "interrupted",
            _ = sigterm.recv() => break "terminated",
            () = &mut deadline => break "duration reached",
        }
    };
    socket_task.abort();
    if let Some(t) = metrics_task {
        t.stop();
    }
    if let Some(t) = cucm_task {
        t.abort();
    }
    let kernel = kernel_stats(&probe, flows.finish()?)?;
    state.lock().kernel = kernel;
    // The last word on every pair, for the JSON lines and the syslog.
    evaluator.finish(evaluator::Job {
        now_ns: now_ns(),
        expire: opts.expire,
        findings: opts.output == Output::Findings
            || opts.syslog.is_some()
            || opts.cucm_syslog.is_some(),
        hold_down: hold_down(&opts.settings),
        refresh: opts.refresh,
        metrics: None,
        whole: true,
    })?;
    let k = kernel;
    log(
        "info",
        "stopping",
        &[
            ("reason", &reason),
            ("seen", &k.seen),
            ("matched_tcp", &k.matched_tcp),
            ("matched_arp", &k.matched_arp),
            ("events", &k.events),
            ("ringbuf_full", &k.ringbuf_full),
            ("shed", &k.shed),
            ("parse_errors", &k.parse_errors),
            ("bad_records", &source.bad_records()),
        ],
    );
    // Dropping the probe detaches the program from every interface; the guard removes the socket.
    drop(probe);
    Ok(())
}

/// The lifecycle's hold-down in wall time (nominal seconds divided by `--time-scale`).
fn hold_down(settings: &Settings) -> Duration {
    Duration::try_from_secs_f64(settings.wall_s(lifecycle::HOLD_DOWN_S)).unwrap_or(Duration::ZERO)
}

/// Logs what the tracker evicted since the last refresh, at most once a minute (a flood would
/// otherwise log on every refresh).
#[derive(Debug)]
struct EvictionLog {
    seen: crate::tracker::Evictions,
    limited: RateLimited,
}

impl Default for EvictionLog {
    fn default() -> Self {
        Self { seen: Default::default(), limited: RateLimited::new(Duration::from_secs(60)) }
    }
}

impl EvictionLog {
    fn report(&mut self, tracker: &Tracker) {
        let now = tracker.evictions;
        if now.total() == self.seen.total() {
            return;
        }
        let before = self.seen.by_reason();
        let by_reason: Vec<String> = now
            .by_reason()
            .iter()
            .zip(before)
            .filter(|((_, n), (_, b))| n > b)
            .map(|((why, n), _)| format!("{why}:{n}"))
            .collect();
        let (phones, candidates) = (tracker.phone_count(), tracker.candidate_count());
        self.limited.log(
            "warn",
            "tracker limits reached: state evicted (totals by reason)",
            &[("evicted", &by_reason.join(",")), ("phones", &phones), ("candidates", &candidates)],
        );
        self.seen = now;
    }
}

/// Removes the socket file when the agent stops, however it stops.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
