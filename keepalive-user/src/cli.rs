//! Command-line interface. Parsing only validates and builds plain options; the work happens in
//! the modules the subcommands name.

use std::time::Duration;

use clap::{Parser, Subcommand};
use keepalive_common::wire::{App, Config, PortRule, MAX_PORT_RULES};

use crate::loader::Mode;

/// Tracks Cisco IP phone keepalives (SCCP and SIP over TCP, and ARP) with XDP.
#[derive(Debug, Parser)]
#[command(name = "keepalive", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach the XDP program to interfaces and report what it records.
    Run(Box<RunArgs>),
    /// Analyse a pcap or pcapng capture: which phones are about to unregister, and why.
    Analyze(AnalyzeArgs),
    /// Print the running agent's phones, findings and kernel counters.
    Stats(StatsArgs),
    /// Check a configuration file for `run --config` without attaching anything.
    CheckConfig(CheckConfigArgs),
}

/// `keepalive check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The file (TOML; its keys are `run`'s long flag names).
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
}

/// `keepalive stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The agent's stats socket.
    #[arg(long, value_name = "PATH", default_value = crate::agent::socket::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
    /// List only the phones with findings (the summary and counters stay whole).
    #[arg(long)]
    pub findings: bool,
    /// List only this phone's pairs: its address or its device name.
    #[arg(long, value_name = "ADDR|NAME", value_parser = phone_filter)]
    pub phone: Option<String>,
    /// List at most this many phone rows, worst first (the summary and counters count every
    /// pair; the answer says how many rows were left out).
    #[arg(long, value_name = "N", default_value_t = crate::agent::socket::DEFAULT_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::agent::socket::MAX_LIMIT)))]
    pub limit: u32,
    /// Skip this many rows first (the next page: `--offset 1000`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: u32,
}

/// A phone filter is one word of at most 64 printable characters (it travels in the request
/// line). An address is written the way reports write it (`2001:DB8::0:1` → `2001:db8::1`).
fn phone_filter(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err("an address or a device name: one word of at most 64 characters".into());
    }
    Ok(s.parse::<std::net::IpAddr>().map_or_else(|_| s.to_string(), |a| a.to_string()))
}

/// Report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table of phones and one sentence per finding.
    Table,
    /// One JSON object (the contract in README).
    Json,
}

/// `keepalive analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// The capture (pcap or pcapng; Ethernet, Linux cooked, raw IP).
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The timers the tracker judges keepalives by.
    #[command(flatten)]
    pub timers: TimerArgs,
    /// Tracked port as PROTO:PORT (repeatable; replaces the defaults, as for `run`).
    #[arg(long = "port", value_name = "PROTO:PORT", value_parser = parse_port_rule)]
    pub ports: Vec<PortRule>,
    /// UDP port read as VXLAN (0: none), as for `run`.
    #[arg(long, value_name = "PORT", default_value_t = Config::VXLAN_PORT)]
    pub vxlan_port: u16,
    /// CUCM's syslog saved over the same time (its EndPointUnregistered alarms): each
    /// unregistration is joined to its row and the forecasts are scored against them.
    #[arg(long, value_name = "FILE")]
    pub cucm_syslog: Option<std::path::PathBuf>,
}

impl AnalyzeArgs {
    /// The classifier configuration for these arguments.
    pub fn config(&self) -> Result<Config, String> {
        let mut cfg = ports_config(&self.ports)?;
        cfg.vxlan_port = self.vxlan_port;
        Ok(cfg)
    }
}

/// `--cucm-syslog udp://ADDR:PORT`: CUCM sends its remote syslog over UDP.
pub fn parse_cucm_syslog(s: &str) -> Result<std::net::SocketAddr, String> {
    let usage = "expected udp://ADDR:PORT, e.g. udp://0.0.0.0:5514";
    let rest = s.strip_prefix("udp://").ok_or_else(|| format!("`{s}`: {usage}"))?;
    use std::net::ToSocketAddrs;
    rest.to_socket_addrs()
        .map_err(|e| format!("`{s}`: {e} ({usage})"))?
        .next()
        .ok_or_else(|| format!("`{s}`: no address for {rest} ({usage})"))
}

/// Timer options shared by `run` and `analyze`.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct TimerArgs {
    /// Seconds CUCM waits past a missed refresh before unregistering the phone.
    #[arg(long, value_name = "SECS", default_value_t = 15.0, value_parser = parse_secs)]
    pub grace: f64,
    /// Seconds before expiry a SIP phone refreshes its registration.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_secs)]
    pub delta: f64,
    /// Timers run this many times faster than nominal (a lab or a sped-up replay): grace, delta
    /// and granted SIP expiries are divided by it.
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = parse_scale)]
    pub time_scale: f64,
    /// The frames are a capture replayed --time-scale times faster (tcpreplay --multiplier), so
    /// TCP retransmissions and ARP answers are sped up too: the retransmission floor and the ARP
    /// window are divided by the factor as well, and the lateness floor down to 5 ms. Without
    /// it they stay in real time, as in a lab whose phones run real kernel TCP.
    #[arg(long, requires = "time_scale")]
    pub replay: bool,
}

/// The largest number of seconds a timer option takes (a day: CUCM's timers are minutes).
pub const MAX_TIMER_S: f64 = 86_400.0;
/// The largest time-scale factor.
pub const MAX_SCALE: f64 = 10_000.0;
/// The longest duration option (`--expire`, `--duration`): a year.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);
/// The shortest refresh (`--refresh`): the agent's per-refresh work is milliseconds.
pub const MIN_REFRESH: Duration = Duration::from_millis(100);
/// The longest refresh: counters and findings older than this are of little use.
pub const MAX_REFRESH: Duration = Duration::from_secs(3_600);

impl TimerArgs {
    /// The tracker settings these options give.
    pub fn settings(&self) -> crate::tracker::Settings {
        let settings = crate::tracker::Settings {
            grace_s: self.grace,
            delta_s: self.delta,
            ..crate::tracker::Settings::default()
        }
        .scaled(self.time_scale);
        if self.replay {
            settings.replayed()
        } else {
            settings
        }
    }
}

/// Octal permission bits, e.g. `0660`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("`{s}`: expected octal permission bits, e.g. 0660"))?;
    if m > 0o777 {
        return Err(format!("`{s}`: permission bits go up to 0777"));
    }
    Ok(m)
}

/// A positive time-scale factor, at most [`MAX_SCALE`].
pub fn parse_scale(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (1.0 / MAX_SCALE..=MAX_SCALE).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: expected a factor between 0.0001 and {MAX_SCALE}, e.g. 10")),
    }
}

/// A non-negative number of seconds, at most [`MAX_TIMER_S`].
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}`: expected seconds, e.g. 15"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}`: must be a non-negative number of seconds"));
    }
    if v > MAX_TIMER_S {
        return Err(format!("`{s}`: at most {MAX_TIMER_S} seconds (a day)"));
    }
    Ok(v)
}

/// A number of phones for `--max-phones`: 1 to [`MAX_MAX_PHONES`](crate::tracker::limits::MAX_MAX_PHONES).
pub fn parse_max_phones(s: &str) -> Result<usize, String> {
    use crate::tracker::limits::MAX_MAX_PHONES;
    match s.trim().replace('_', "").parse::<usize>() {
        Ok(n) if (1..=MAX_MAX_PHONES).contains(&n) => Ok(n),
        _ => Err(format!("`{s}`: expected a number of phones from 1 to {MAX_MAX_PHONES}")),
    }
}

/// The default configuration with `ports` replacing the default ports when given.
pub fn ports_config(ports: &[PortRule]) -> Result<Config, String> {
    let mut cfg = Config::DEFAULT;
    if !ports.is_empty() {
        if ports.len() > MAX_PORT_RULES {
            return Err(format!("at most {MAX_PORT_RULES} --port rules are supported"));
        }
        cfg.set_ports(ports);
    }
    Ok(cfg)
}

/// `keepalive run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Read options from this TOML file (keys are the long flag names; flags given here win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Interface to attach to (repeat for several).
    #[arg(long = "iface", required_unless_present = "config", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// XDP mode: native (driver), skb (generic), or auto (native, else skb).
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Where the program runs: xdp (before the kernel's skb; the interface must not hold
    /// another XDP program), or tc (tc ingress through tcx, beside programs already attached;
    /// `--mode` does not apply).
    #[arg(long, value_enum, default_value_t = crate::loader::Hook::Xdp)]
    pub hook: crate::loader::Hook,
    /// Mirror port: drop every frame after recording (the host never needs them).
    #[arg(long)]
    pub mirror: bool,
    /// Tracked port as PROTO:PORT with PROTO one of sccp, sccp-tls, sip, sip-tls (repeatable;
    /// replaces the defaults sccp:2000 sccp-tls:2443 sip:5060 sip-tls:5061).
    #[arg(long = "port", value_name = "PROTO:PORT", value_parser = parse_port_rule)]
    pub ports: Vec<PortRule>,
    /// UDP destination port read as VXLAN (a fabric's underlay), 0 to read none. GRE and
    /// ERSPAN are always peeled.
    #[arg(long, value_name = "PORT", default_value_t = Config::VXLAN_PORT)]
    pub vxlan_port: u16,
    /// Print one JSON line per new finding (the default when stdout is not a terminal).
    #[arg(long, conflicts_with = "events")]
    pub json: bool,
    /// Print one JSON line per recorded frame instead (debugging the classifier).
    #[arg(long)]
    pub events: bool,
    /// Serve Prometheus metrics on ADDR (a bare port binds to loopback: 9108 = 127.0.0.1:9108).
    #[arg(long, value_name = "ADDR", value_parser = crate::agent::metrics::parse_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Add one metric series per phone↔server pair (unbounded cardinality: size it first).
    #[arg(long, requires = "metrics")]
    pub metrics_per_phone: bool,
    /// At most this many `keepalive_finding` series (one per active warning or critical
    /// finding, critical first); the rest are counted in `keepalive_metrics_findings_dropped`.
    #[arg(long, value_name = "N", default_value_t = crate::agent::metrics::DEFAULT_MAX_FINDINGS,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub metrics_max_findings: u32,
    /// TLS and basic auth for the metrics, from a web config file in the format Prometheus'
    /// exporters read (tls_server_config: cert_file, key_file; basic_auth_users: bcrypt).
    #[arg(long, value_name = "FILE")]
    pub metrics_web_config: Option<std::path::PathBuf>,
    /// Also send finding transitions (firing, escalated, resolved) as RFC 5424 syslog to
    /// udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log.
    #[arg(long, value_name = "URL", value_parser = crate::agent::syslog::parse_target)]
    pub syslog: Option<crate::agent::syslog::Target>,
    /// Listen for CUCM's remote syslog on udp://ADDR:PORT (its EndPointUnregistered alarms):
    /// each unregistration is joined to its row, ends its forecasts' episodes and is scored.
    /// Point CUCM's remote syslog (Cisco Unified Serviceability, alarm configuration) here.
    #[arg(long, value_name = "URL", value_parser = parse_cucm_syslog)]
    pub cucm_syslog: Option<std::net::SocketAddr>,
    /// The stats socket `keepalive stats` reads.
    #[arg(long, value_name = "PATH", default_value = crate::agent::socket::DEFAULT_SOCKET)]
    pub socket: std::path::PathBuf,
    /// Permission bits of the stats socket, in octal (0660: owner and group may read stats).
    #[arg(long, value_name = "MODE", default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Forget phones not heard from for this long.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub expire: Duration,
    /// How often the view, the counters and the expiry run (100ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_refresh)]
    pub refresh: Duration,
    /// Phone↔server pairs the agent holds; the candidate, stream, ARP and SIP-buffer limits
    /// follow from it, and the state at this limit is stated in README.
    #[arg(long, value_name = "N", default_value_t = crate::tracker::limits::DEFAULT_MAX_PHONES,
          value_parser = parse_max_phones)]
    pub max_phones: usize,
    /// The timers the tracker judges keepalives by.
    #[command(flatten)]
    pub timers: TimerArgs,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

impl RunArgs {
    /// The XDP program's configuration for these arguments.
    pub fn config(&self) -> Result<Config, String> {
        let mut cfg = ports_config(&self.ports)?;
        cfg.vxlan_port = self.vxlan_port;
        if self.mirror {
            cfg.flags |= Config::FLAG_MIRROR;
        }
        Ok(cfg)
    }
}

/// Parses `sccp:2000`.
pub fn parse_port_rule(s: &str) -> Result<PortRule, String> {
    let (proto, port) =
        s.split_once(':').ok_or_else(|| format!("`{s}`: expected PROTO:PORT, e.g. sccp:2000"))?;
    let app = match proto.to_ascii_lowercase().as_str() {
        "sccp" => App::Sccp,
        "sccp-tls" => App::SccpTls,
        "sip" => App::Sip,
        "sip-tls" => App::SipTls,
        other => return Err(format!("`{other}`: protocol must be sccp, sccp-tls, sip or sip-tls")),
    };
    let port: u16 = port.parse().map_err(|_| format!("`{port}`: not a TCP port number"))?;
    if port == 0 {
        return Err("port 0 cannot be tracked".into());
    }
    Ok(PortRule { port, app: app as u8, _pad: 0 })
}

/// A refresh period: a duration from [`MIN_REFRESH`] to [`MAX_REFRESH`].
pub fn parse_refresh(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(MIN_REFRESH..=MAX_REFRESH).contains(&d) {
        return Err(format!("`{s}`: the refresh must be between 100ms and 1h"));
    }
    Ok(d)
}

/// Parses `90`, `90s`, `5m`, `2h`, `250ms`, up to [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) =
        s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = num.parse().map_err(|_| format!("`{s}`: expected a duration like 30s or 5m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unit must be ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}`: not a valid duration"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("`{s}`: at most a year (8784h)"));
    }
    // In range, so this cannot panic (`from_secs_f64` does beyond u64::MAX seconds).
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}`: not a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_rules() {
        assert_eq!(parse_port_rule("sccp:2000").unwrap().port, 2000);
        assert_eq!(parse_port_rule("SIP-TLS:5061").unwrap().app, App::SipTls as u8);
        assert!(parse_port_rule("h323:1720").unwrap_err().contains("protocol"));
        assert!(parse_port_rule("sip:99999").is_err());
        assert!(parse_port_rule("sip").is_err());
        assert!(parse_port_rule("sip:0").is_err());
    }

    #[test]
    fn phone_filters_are_one_word_and_addresses_are_canonical() {
        assert_eq!(phone_filter("SEP00AB00CD0031").unwrap(), "SEP00AB00CD0031");
        assert_eq!(phone_filter("2001:DB8:0::0:1").unwrap(), "2001:db8::1");
        assert_eq!(phone_filter("10.1.2.3").unwrap(), "10.1.2.3");
        assert!(phone_filter("two words").is_err());
        assert!(phone_filter("").is_err());
        assert!(phone_filter(&"x".repeat(65)).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 parsecs").is_err());
    }

    /// Every numeric option either parses or is refused with a sentence; none panics.
    #[test]
    fn out_of_range_options_are_refused_with_a_sentence() {
        let run = |extra: &[&str]| {
            let mut argv = vec!["keepalive", "run", "--iface", "eth0"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|_| ()).map_err(|e| e.to_string())
        };
        for (flag, bad, says) in [
            ("--expire", "9999999999999999h", "at most a year"),
            ("--expire", "1e400s", "unit must be"),
            ("--expire", "99999999999999999999999999999999999999s", "at most a year"),
            ("--expire=-5m", "", "expected a duration"),
            ("--duration", "NaNs", "expected a duration"),
            ("--refresh", "0", "between 100ms and 1h"),
            ("--refresh", "2h", "between 100ms and 1h"),
            ("--grace", "1e300", "at most 86400 seconds"),
            ("--grace", "inf", "non-negative"),
            ("--delta=-1", "", "non-negative"),
            ("--time-scale", "0", "between 0.0001"),
            ("--time-scale", "1e9", "between 0.0001"),
            ("--max-phones", "0", "from 1 to"),
            ("--max-phones", "99999999999", "from 1 to"),
            ("--count=-1", "", "invalid value"),
            ("--socket-mode", "abc", "octal"),
            ("--metrics", "99999", "expected PORT"),
            ("--port", "sip:70000", "not a TCP port"),
        ] {
            let argv: &[&str] = if bad.is_empty() { &[flag] } else { &[flag, bad] };
            let err = run(argv).expect_err(flag);
            assert!(err.contains(says), "{flag} {bad}: {err}");
        }
        assert!(run(&["--expire", "8784h", "--refresh", "100ms", "--max-phones", "1_000"]).is_ok());
        let stats = |extra: &[&str]| {
            let mut argv = vec!["keepalive", "stats"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map_err(|e| e.to_string())
        };
        assert!(stats(&["--limit", "0"]).unwrap_err().contains("--limit"));
        assert!(stats(&["--offset=-1"]).is_err());
        let Command::Stats(a) = stats(&[]).unwrap().command else { panic!("parsed as stats") };
        assert_eq!((a.limit, a.offset), (crate::agent::socket::DEFAULT_LIMIT, 0));
    }

    #[test]
    fn port_rules_replace_defaults_and_mirror_sets_the_flag() {
        let cli = Cli::try_parse_from([
            "keepalive",
            "run",
            "--iface",
            "eth0",
            "--port",
            "sip:5080",
            "--mirror",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!("parsed as run") };
        assert_eq!(args.socket_mode, 0o660);
        assert_eq!(args.metrics, None);
        let cfg = args.config().unwrap();
        assert_eq!(cfg.app_for(1, 5080), App::Sip);
        assert_eq!(cfg.app_for(1, 2000), App::None);
        assert!(cfg.mirror());
        assert!(Cli::try_parse_from(["keepalive", "run"]).is_err(), "--iface is required");
    }

    #[test]
    fn run_outputs_metrics_and_modes() {
        let cli = Cli::try_parse_from([
            "keepalive",
            "run",
            "--iface",
            "a",
            "--iface",
            "b",
            "--metrics",
            "9108",
            "--json",
            "--socket-mode",
            "0666",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else { panic!("parsed as run") };
        assert_eq!(a.ifaces, ["a", "b"]);
        assert_eq!(a.metrics.unwrap().to_string(), "127.0.0.1:9108");
        assert_eq!(a.socket_mode, 0o666);
        assert!(Cli::try_parse_from(["keepalive", "run", "--iface", "a", "--json", "--events"])
            .is_err());
        assert!(Cli::try_parse_from(["keepalive", "run", "--iface", "a", "--metrics-per-phone"])
            .is_err());
        assert!(Cli::try_parse_from(["keepalive", "run", "--iface", "a", "--socket-mode", "999"])
            .is_err());
        assert!(parse_mode("1777").is_err());
        let s = Cli::try_parse_from(["keepalive", "stats", "--format", "json"]).unwrap();
        assert!(matches!(s.command, Command::Stats(StatsArgs { format: Format::Json, .. })));
    }

    #[test]
    fn replay_needs_a_time_scale_and_shrinks_the_floors_with_it() {
        let run = |extra: &[&str]| {
            let argv = [&["keepalive", "run", "--iface", "a"], extra].concat();
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Run(a) => a.timers.settings(),
                _ => panic!("parsed as run"),
            })
        };
        let err = run(&["--replay"]).unwrap_err().to_string();
        assert!(err.contains("--time-scale"), "{err}");
        let lab = run(&["--time-scale", "288"]).unwrap();
        assert_eq!(
            (lab.late_floor_s, lab.retransmission_floor_s, lab.arp_window_s),
            (0.08, 0.05, 1.0)
        );
        let replay = run(&["--time-scale", "288", "--replay"]).unwrap();
        assert_eq!(replay.late_floor_s, crate::tracker::REPLAY_JITTER_S);
        assert!((replay.retransmission_floor_s - 0.05 / 288.0).abs() < 1e-12);
        assert!((replay.arp_window_s - 1.0 / 288.0).abs() < 1e-12);
        assert_eq!(replay.grace_s, lab.grace_s);
    }

    #[test]
    fn analyze_arguments() {
        let cli = Cli::try_parse_from([
            "keepalive",
            "analyze",
            "x.pcap",
            "--format",
            "json",
            "--grace",
            "20",
        ])
        .unwrap();
        let Command::Analyze(a) = cli.command else { panic!("parsed as analyze") };
        assert_eq!((a.format, a.timers.grace, a.timers.delta), (Format::Json, 20.0, 5.0));
        assert!(Cli::try_parse_from(["keepalive", "analyze", "x", "--grace", "-1"]).is_err());
        assert!(Cli::try_parse_from(["keepalive", "analyze"]).is_err(), "FILE is required");
    }
}
