//! Prometheus metrics (OpenMetrics text, encoded by `prometheus-client`), rendered by the
//! evaluator at each refresh ([`super::evaluator`]: a [`Census`] of the
//! tracker taken under the lock, the finding series from the lifecycle without it) and served
//! on `--metrics ADDR` by hyper (GET and HEAD, gzip when asked, a bounded number of scrapes at
//! once). A scrape copies the latest text.
//!
//! Cardinality is bounded by default: labels are protocol, role, state, finding kind and
//! severity, plus one `keepalive_finding` series per active warning or critical finding (and a
//! `keepalive_phone_cycles_to_unregister` per forecast), so what an alert names is bounded by
//! the unhealthy phones, and capped by `--metrics-max-findings`. Per-phone series (one per
//! phone↔server pair) come only with `--metrics-per-phone`.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use prometheus_client::{
    encoding::{text::encode, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, MetricType, TypedMetric},
    registry::Registry,
};
use tokio::net::TcpListener;

use super::{
    lifecycle::{Lifecycle, Subject},
    snapshot::{Interface, KernelStats, State, UserStats},
};
use crate::{
    findings::{Finding, Severity},
    tracker::{
        latency::{Histogram, Latencies},
        Tracker,
    },
};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn counter(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    reg.register(name, help, c);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    reg.register(name, help, g);
}

/// Histograms the tracker accumulated, by (protocol, role), encoded as they are: the tracker
/// keeps the bucket counts (`tracker::latency`), so nothing is replayed at a scrape.
#[derive(Debug)]
struct Histograms {
    bounds: &'static [f64],
    by: Vec<((&'static str, &'static str), Histogram)>,
}

impl Histograms {
    fn of(bounds: &'static [f64], m: &BTreeMap<(&'static str, &'static str), Histogram>) -> Self {
        Self { bounds, by: m.iter().map(|(k, v)| (*k, v.clone())).collect() }
    }
}

impl TypedMetric for Histograms {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for ((protocol, role), h) in &self.by {
            let l = labels(&[("protocol", protocol), ("role", role)]);
            let buckets: Vec<(f64, u64)> = self
                .bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(h.buckets.iter().copied())
                .collect();
            encoder
                .encode_family(&l)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The default of `--metrics-max-findings`.
pub const DEFAULT_MAX_FINDINGS: u32 = 2_000;

/// Which series a scrape carries beyond the bounded families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// One series per phone↔server pair (`--metrics-per-phone`).
    pub per_phone: bool,
    /// At most this many `keepalive_finding` series (`--metrics-max-findings`).
    pub max_findings: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Self { per_phone: false, max_findings: DEFAULT_MAX_FINDINGS as usize }
    }
}

/// One series per active warning or critical finding on a pair, critical first, at most `max`:
/// `keepalive_finding{phone,server,device,protocol,kind,severity} 1`, and for the forecasts
/// among them `keepalive_phone_cycles_to_unregister{phone,server,device}`. Returns how many the
/// cap left out.
fn finding_series(reg: &mut Registry, lifecycle: &Lifecycle, max: usize) -> usize {
    let mut critical = Vec::new();
    let mut warning = Vec::new();
    for (s, f) in lifecycle.findings().filter(|(s, _)| s.phone.is_some()) {
        match f.severity {
            Severity::Critical => critical.push((s, f)),
            Severity::Warning => warning.push((s, f)),
            Severity::Info => {}
        }
    }
    let dropped = (critical.len() + warning.len()).saturating_sub(max);
    // Critical first; only what is exported is put in a stable order (the lifecycle's map has
    // none), so a site-wide outage costs a pass, not a sort, of its findings.
    let mut active: Vec<(&Subject, &Finding)> = critical;
    active.truncate(max);
    let room = max - active.len();
    active.extend(warning.into_iter().take(room));
    active.sort_by(|a, b| {
        (std::cmp::Reverse(a.1.severity), &a.0.phone, &a.0.server, a.1.kind.as_str()).cmp(&(
            std::cmp::Reverse(b.1.severity),
            &b.0.phone,
            &b.0.server,
            b.1.kind.as_str(),
        ))
    });
    let series = Family::<Labels, Gauge>::default();
    let cycles = Family::<Labels, Gauge>::default();
    for (p, f) in active.into_iter().take(max) {
        let (phone, server) = (p.phone.as_deref().unwrap_or(""), p.server.as_deref().unwrap_or(""));
        let device = p.device.as_deref().unwrap_or("");
        series
            .get_or_create(&labels(&[
                ("phone", phone),
                ("server", server),
                ("device", device),
                ("protocol", p.protocol.unwrap_or("")),
                ("kind", f.kind.as_str()),
                ("severity", f.severity.as_str()),
            ]))
            .set(1);
        if let Some(n) = f.fields.get("cycles_to_unregister").and_then(|v| v.as_i64()) {
            let l = labels(&[("phone", phone), ("server", server), ("device", device)]);
            let g = cycles.get_or_create(&l);
            // Several forecasts on one pair: the nearest.
            if g.get() == 0 || n < g.get() {
                g.set(n);
            }
        }
    }
    reg.register(
        "finding",
        "An active warning or critical finding of one phone-server pair (value 1)",
        series,
    );
    reg.register(
        "phone_cycles_to_unregister",
        "Keepalives left before the pair's retransmission delay passes the server's grace",
        cycles,
    );
    dropped
}

/// The metrics text the evaluator rendered last, apart from the agent's state: a scrape takes
/// it under a lock of its own, held to copy a pointer, so it never waits behind the ingest of a
/// batch of events or a slice of an evaluation. (Under the state's lock, the bench's longest
/// scrape at 100 000 phones was 57.6 ms: the queue for that lock.)
#[derive(Clone, Debug, Default)]
pub struct Latest(Arc<Mutex<Option<Arc<str>>>>);

impl Latest {
    /// The newest text replaces the last.
    pub fn set(&self, text: Arc<str>) {
        *self.0.lock() = Some(text);
    }

    /// The newest text, if one was rendered yet.
    pub fn get(&self) -> Option<Arc<str>> {
        self.0.lock().clone()
    }
}

/// What the metrics need from the agent's state, counted under the lock a range of pair slots
/// at a time (counts, no rows), and rendered from by the evaluator without it.
#[derive(Debug)]
pub struct Census {
    version: &'static str,
    interfaces: Vec<Interface>,
    latency: Latencies,
    /// Pairs by (protocol, role, worst finding).
    by_state: BTreeMap<(&'static str, &'static str, &'static str), i64>,
    /// Keepalives, acks and retransmissions by protocol, expired pairs included.
    totals: BTreeMap<&'static str, [u64; 3]>,
    kernel: KernelStats,
    user: UserStats,
    /// The scoring against CUCM's syslog, when it is received.
    cucm: Option<(crate::cucm::score::Totals, crate::cucm::join::Lines, u64)>,
}

impl Census {
    /// The census of `st` without its pairs, which [`Census::add`] counts.
    pub fn new(st: &State) -> Self {
        let tracker = &st.tracker;
        let mut totals: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
        for (app, e) in &tracker.expired {
            let t = totals.entry(crate::record::app_name(*app)).or_default();
            t[0] += e.keepalives;
            t[1] += e.acks;
            t[2] += e.retransmissions;
        }
        Self {
            version: st.agent.version,
            interfaces: st.agent.interfaces.clone(),
            latency: tracker.latency.clone(),
            by_state: BTreeMap::new(),
            totals,
            kernel: st.kernel,
            user: st.user_stats(),
            cucm: st.cucm.as_ref().map(|c| (c.join.totals().clone(), c.join.lines(), c.dropped)),
        }
    }

    /// Counts the pairs in the slots `slots`; `worst` is each pair's worst active finding, as
    /// the lifecycle last saw it.
    pub fn add(
        &mut self,
        tracker: &Tracker,
        slots: Range<usize>,
        worst: &HashMap<(IpAddr, IpAddr, u16), Severity>,
    ) {
        for pair in slots.filter_map(|i| tracker.phone_at(i)) {
            let protocol = crate::record::app_name(pair.app);
            let k = &pair.key;
            let state = match worst.get(&(k.phone, k.server, k.server_port)) {
                Some(Severity::Critical) => "critical",
                Some(Severity::Warning) => "warning",
                _ => "ok",
            };
            *self.by_state.entry((protocol, pair.role().as_str(), state)).or_default() += 1;
            let t = self.totals.entry(protocol).or_default();
            t[0] += pair.keepalives;
            t[1] += pair.acks;
            t[2] += pair.retransmission_count;
        }
    }
}

/// The metrics text: the bounded families from `census`, and the finding series from the
/// findings `lifecycle` follows. Building it reads no pair, so it runs without the state lock.
pub fn render(census: &Census, lifecycle: &Lifecycle, shape: Shape) -> String {
    let mut reg = Registry::with_prefix("keepalive");
    let build = Family::<Labels, Gauge>::default();
    build.get_or_create(&labels(&[("version", census.version)])).set(1);
    reg.register("build_info", "The agent's version (value 1)", build);
    let ifaces = Family::<Labels, Gauge>::default();
    for i in &census.interfaces {
        let mode = match i.mode {
            crate::loader::Attached::Native => "native",
            crate::loader::Attached::Skb => "skb",
            crate::loader::Attached::Tc => "tc",
        };
        ifaces.get_or_create(&labels(&[("iface", &i.name), ("mode", mode)])).set(1);
    }
    reg.register("interface_info", "An interface the program is attached to (value 1)", ifaces);
    let dropped = finding_series(&mut reg, lifecycle, shape.max_findings);
    use crate::tracker::latency::{ACK_BOUNDS, RETRANSMISSION_BOUNDS};
    reg.register_with_unit(
        "ack_latency",
        "Time from a keepalive to the server's answer (KeepAliveAck, 2xx), by protocol and role",
        prometheus_client::registry::Unit::Seconds,
        Histograms::of(&ACK_BOUNDS, &census.latency.ack),
    );
    reg.register_with_unit(
        "retransmission_delay",
        "Delay of a TCP retransmission after the first copy, by protocol and role",
        prometheus_client::registry::Unit::Seconds,
        Histograms::of(&RETRANSMISSION_BOUNDS, &census.latency.retransmission),
    );
    gauge(
        &mut reg,
        "metrics_findings_dropped",
        "Active findings left out of keepalive_finding at this scrape (--metrics-max-findings)",
        dropped as i64,
    );
    let phones = Family::<Labels, Gauge>::default();
    for ((proto, role, state), n) in &census.by_state {
        phones
            .get_or_create(&labels(&[("protocol", proto), ("role", role), ("state", state)]))
            .set(*n);
    }
    reg.register(
        "phones",
        "Phone-server pairs tracked, by protocol, role and worst finding",
        phones,
    );
    let ka = Family::<Labels, Counter>::default();
    let acks = Family::<Labels, Counter>::default();
    let retx = Family::<Labels, Counter>::default();
    for (proto, [k, a, r]) in &census.totals {
        let l = labels(&[("protocol", proto)]);
        ka.get_or_create(&l).inc_by(*k);
        acks.get_or_create(&l).inc_by(*a);
        retx.get_or_create(&l).inc_by(*r);
    }
    reg.register("keepalives", "Keepalives seen (SCCP KeepAlive, SIP REGISTER)", ka);
    reg.register("acks", "Keepalives acknowledged (KeepAliveAck, 2xx)", acks);
    reg.register("retransmissions", "TCP retransmissions on phone connections", retx);
    let findings = Family::<Labels, Gauge>::default();
    for (_, f) in lifecycle.findings() {
        findings
            .get_or_create(&labels(&[("kind", f.kind.as_str()), ("severity", f.severity.as_str())]))
            .inc();
    }
    reg.register("findings", "Current findings, by kind and severity", findings);
    let k = &census.kernel;
    counter(
        &mut reg,
        "kernel_packets_seen",
        "Frames the gate let through to the classifier",
        k.seen,
    );
    counter(&mut reg, "kernel_matched_tcp", "TCP segments on tracked ports", k.matched_tcp);
    counter(&mut reg, "kernel_matched_arp", "ARP frames", k.matched_arp);
    counter(&mut reg, "kernel_events", "Events published in the event rings", k.events);
    counter(&mut reg, "events_lost", "Events lost because an event ring was full", k.ringbuf_full);
    counter(
        &mut reg,
        "kernel_events_shed",
        "Events not recorded because an event ring was 3/4 full and they carried no phone state",
        k.shed,
    );
    counter(
        &mut reg,
        "kernel_parse_errors",
        "Malformed frames of followed protocols",
        k.parse_errors,
    );
    counter(
        &mut reg,
        "kernel_lru_evictions",
        "Flow-map entries evicted by the LRU",
        k.lru_evictions,
    );
    gauge(&mut reg, "kernel_flows", "Flow-map entries live", k.flows_live as i64);
    let layers = Family::<Labels, Counter>::default();
    for (encap, n) in [("gre", k.encap_gre), ("erspan", k.encap_erspan), ("vxlan", k.encap_vxlan)] {
        layers.get_or_create(&labels(&[("encap", encap)])).inc_by(n);
    }
    reg.register(
        "kernel_encap_layers",
        "Outer layers peeled (GRE, ERSPAN, VXLAN), by kind",
        layers,
    );
    counter(
        &mut reg,
        "kernel_encap_too_deep",
        "Frames wrapped in more layers than are peeled (2), passed unread",
        k.encap_too_deep,
    );
    counter(
        &mut reg,
        "records_bad",
        "Event-ring records that did not decode",
        census.user.bad_records,
    );
    gauge(
        &mut reg,
        "pairs_expired",
        "Pairs forgotten after being idle",
        census.user.expired_pairs as i64,
    );
    counter(
        &mut reg,
        "arp_expired",
        "ARP addresses forgotten after being idle",
        census.user.expired_arp,
    );
    gauge(
        &mut reg,
        "kernel_flows_counted_timestamp_seconds",
        "When kernel_flows and kernel_lru_evictions were counted (epoch seconds)",
        k.flows_counted_at as i64,
    );
    let u = &census.user;
    gauge(&mut reg, "tracker_phones", "Pairs that carried a keepalive (phones)", u.phones as i64);
    gauge(
        &mut reg,
        "tracker_candidates",
        "Pairs that have not carried a keepalive yet (handshakes, SYNs)",
        u.candidates as i64,
    );
    gauge(&mut reg, "tracker_phones_limit", "--max-phones", u.limits.phones as i64);
    let evictions = Family::<Labels, Counter>::default();
    for (why, n) in u.evictions.by_reason() {
        evictions.get_or_create(&labels(&[("reason", why)])).inc_by(n);
    }
    reg.register(
        "tracker_evictions",
        "State forgotten to stay within the limits, by reason",
        evictions,
    );

    if let Some((t, lines, dropped)) = &census.cucm {
        cucm_families(&mut reg, t, lines, *dropped);
    }

    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

/// The scoring against CUCM's syslog (`--cucm-syslog`).
fn cucm_families(
    reg: &mut Registry,
    t: &crate::cucm::score::Totals,
    lines: &crate::cucm::join::Lines,
    dropped: u64,
) {
    let unreg = Family::<Labels, Counter>::default();
    for (code, predicted, n) in &t.by_reason {
        let l = labels(&[("reason", &code.to_string()), ("predicted", &predicted.to_string())]);
        unreg.get_or_create(&l).inc_by(*n);
    }
    reg.register(
        "cucm_unregistrations",
        "CUCM's EndPointUnregistered alarms, by Reason code and whether a critical forecast named the phone beforehand",
        unreg,
    );
    reg.register_with_unit(
        "forecast_lead",
        "How long before CUCM unregistered a phone the forecast that named it began",
        prometheus_client::registry::Unit::Seconds,
        Lead(t.clone()),
    );
    let outcomes = Family::<Labels, Counter>::default();
    for (outcome, n) in [
        ("confirmed", t.confirmed),
        ("false-alarm", t.false_alarms),
        ("excused", t.excused),
        ("late", t.late),
    ] {
        outcomes.get_or_create(&labels(&[("outcome", outcome)])).inc_by(n);
    }
    reg.register(
        "cucm_forecasts",
        "Critical forecasts ended: confirmed by an unregistration, a false alarm once their horizon passed, or excused by an unregistration of another reason",
        outcomes,
    );
    gauge(
        reg,
        "cucm_forecasts_pending",
        "Critical forecasts still within their horizon",
        t.pending as i64,
    );
    counter(
        reg,
        "cucm_misses",
        "Unregistrations for lost keepalives or connectivity that no forecast named",
        t.misses,
    );
    counter(
        reg,
        "cucm_unseen",
        "Unregistrations of phones keepalive never saw (not behind this vantage point)",
        t.unseen,
    );
    let kinds = Family::<Labels, Counter>::default();
    for (kind, n) in [
        ("alarm", lines.alarms),
        ("other", lines.other),
        ("malformed", lines.malformed),
        ("dropped", dropped),
    ] {
        kinds.get_or_create(&labels(&[("kind", kind)])).inc_by(n);
    }
    reg.register("cucm_syslog_lines", "CUCM syslog lines received, by what they were", kinds);
}

/// The lead-time histogram the scorer keeps.
#[derive(Debug)]
struct Lead(crate::cucm::score::Totals);

impl TypedMetric for Lead {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Lead {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = crate::cucm::score::LEAD_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.0.lead_buckets.iter().copied())
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.lead_sum_s, self.0.hits, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `--metrics-per-phone`: one series per phone↔server pair, from a whole report of `st`
/// (unbounded; built at the scrape, under the lock). The text ends in `# EOF`.
fn per_phone(st: &State) -> String {
    let mut reg = Registry::with_prefix("keepalive");
    let snap = st.snapshot();
    let pk = Family::<Labels, Counter>::default();
    let pr = Family::<Labels, Counter>::default();
    let seen = Family::<Labels, Gauge>::default();
    let sev = Family::<Labels, Gauge>::default();
    for p in &snap.report.phones {
        let port = p.server_port.to_string();
        let l = labels(&[
            ("phone", &p.phone),
            ("server", &p.server),
            ("server_port", &port),
            ("protocol", p.protocol),
            ("device", p.device.as_deref().unwrap_or("")),
        ]);
        pk.get_or_create(&l).inc_by(p.keepalives);
        pr.get_or_create(&l).inc_by(p.retransmissions.len() as u64);
        seen.get_or_create(&l).set(p.last_seen as i64);
        sev.get_or_create(&l).set(p.worst().map_or(0, |s| s as i64 + 1));
    }
    reg.register("phone_keepalives", "Keepalives of one phone-server pair", pk);
    reg.register("phone_retransmissions", "Recent retransmissions of one pair", pr);
    reg.register("phone_last_seen_seconds", "Last frame of one pair (epoch seconds)", seen);
    reg.register("phone_severity", "Worst finding: 0 none, 1 info, 2 warning, 3 critical", sev);
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

/// `9108` → `127.0.0.1:9108` (loopback unless an address is given); `[::]:9108`, `0.0.0.0:9108`
/// as written.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("`{s}`: expected PORT or ADDRESS:PORT, e.g. 9108 or 0.0.0.0:9108"))
}

/// Scrapes served at once; further connections wait in the listen backlog.
pub const MAX_CONCURRENT_SCRAPES: usize = 8;
/// How long a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of OpenMetrics text.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics` (GET and HEAD, gzip when the scraper accepts it) with hyper until the task
/// is dropped, at most [`MAX_CONCURRENT_SCRAPES`] connections at a time.
/// The metrics server on a thread and runtime of its own: the agent's runtime thread blocks
/// on the state lock while an ingest batch waits for the evaluator, and a scrape served there
/// waited with it (the scale bench's slowest scrape, 51.6 ms, was such a wait). Here a scrape
/// only copies the rendered text out of [`Latest`].
#[derive(Debug)]
pub struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` (bound by the agent's runtime) from a new thread.
    pub fn start(
        listener: TcpListener,
        state: Arc<Mutex<State>>,
        latest: Latest,
        shape: Shape,
        web: super::web_config::WebConfig,
        refresh: Duration,
    ) -> std::io::Result<Self> {
        let listener = listener.into_std()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    super::log("error", "metrics: no runtime", &[("error", &e)]);
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        super::log("error", "metrics: listener", &[("error", &e)]);
                        return;
                    }
                };
                tokio::select! {
                    () = serve(listener, state, latest, shape, web, refresh) => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }

    /// Stops serving (connections in progress are dropped) and waits for the thread.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the metrics on `listener` until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    latest: Latest,
    shape: Shape,
    web: super::web_config::WebConfig,
    refresh: Duration,
) {
    let tls = web.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut failures = super::RateLimited::new(Duration::from_secs(10));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_SCRAPES));
    loop {
        // A slot first, then the connection: a burst of scrapers waits in the kernel's backlog
        // instead of as tasks and buffers here.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE/ENFILE/ENOMEM: retrying at once would spin on the same error.
                failures.log("warn", "metrics: accept failed", &[("error", &e)]);
                tokio::time::sleep(super::socket::ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (state, latest, web, tls) = (state.clone(), latest.clone(), web.clone(), tls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (state, latest, web) = (state.clone(), latest.clone(), web.clone());
                async move {
                    let auth = req
                        .headers()
                        .get(hyper::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    let response = if web.authorized(auth).await {
                        respond(&req, &state, &latest, shape, refresh).await
                    } else {
                        unauthorized()
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let http = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .clone();
            match tls {
                Some(acceptor) => {
                    // The handshake within the header timeout too.
                    let tls = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await;
                    if let Ok(Ok(stream)) = tls {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = http.serve_connection(io, service).await;
                    }
                }
                None => {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = http.serve_connection(io, service).await;
                }
            }
            drop(slot);
        });
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

/// 401 with the challenge (RFC 7617).
fn unauthorized() -> hyper::Response<Body> {
    use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
    let mut r = hyper::Response::new(Body::from("keepalive: authentication required\n"));
    *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
    r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"keepalive\""));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// The answer to one request.
async fn respond<B>(
    req: &hyper::Request<B>,
    state: &Mutex<State>,
    latest: &Latest,
    shape: Shape,
    refresh: Duration,
) -> hyper::Response<Body> {
    use hyper::{header, Method, Response, StatusCode};
    let text = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
        r
    };
    let path = req.uri().path();
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "keepalive serves GET and HEAD\n");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {}
        "/" => return text(StatusCode::OK, "keepalive: metrics at /metrics\n"),
        _ => return text(StatusCode::NOT_FOUND, "keepalive serves /metrics\n"),
    }
    // The text the evaluator rendered at the latest refresh: at most one refresh and one
    // evaluation old. Only a scrape that comes before the first rendering waits for it, a few
    // seconds at most.
    let deadline = Instant::now() + refresh.mul_f64(2.0) + Duration::from_secs(2);
    let bounded = loop {
        match latest.get() {
            Some(text) => break text,
            None if Instant::now() >= deadline => {
                return text(StatusCode::SERVICE_UNAVAILABLE, "keepalive: no metrics yet\n")
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let body: Arc<str> = if shape.per_phone {
        let pairs = per_phone(&state.lock());
        let bounded = bounded.strip_suffix("# EOF\n").unwrap_or(&bounded);
        format!("{bounded}{pairs}").into()
    } else {
        bounded
    };
    let gzip = req
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.trim().split(';');
            let name = parts.next().unwrap_or("");
            // `gzip;q=0` refuses it (RFC 9110 §12.5.3).
            name.eq_ignore_ascii_case("gzip") && !parts.any(|p| p.trim() == "q=0")
        });
    let mut r = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = std::io::Write::write_all(&mut enc, body.as_bytes());
        let mut r = Response::new(Body::from(enc.finish().unwrap_or_default()));
        r.headers_mut().insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(Body::from(body.to_string()))
    };
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(OPENMETRICS));
    r.headers_mut().insert(header::VARY, header::HeaderValue::from_static("Accept-Encoding"));
    r
}
