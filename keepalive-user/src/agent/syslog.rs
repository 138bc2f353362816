//! The syslog sink (`--syslog udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///dev/log`): each
//! finding transition ([`super::lifecycle`]) as one RFC 5424 message, the finding's fields as
//! structured data, for the team's SIEM.
//!
//! ```text
//! <26>1 2026-12-04T01:23:45.678Z router-a keepalive 4242 firing [keepalive@32473 id="…-1"
//!   event="firing" kind="rto-growth" severity="critical" phone="192.0.2.31" …] the first copy …
//! ```
//!
//! * Facility `daemon` (3); severity: critical → 2 (crit), warning → 4, info → 6, and a
//!   resolution → 5 (notice). MSGID is the event.
//! * The SD-ID `keepalive@32473` uses the enterprise number RFC 5612 reserves for
//!   documentation; parameter values escape `"`, `\` and `]` (RFC 5424 §6.3.3).
//! * TCP frames by octet counting (RFC 6587 §3.4.1); UDP and the local socket send one
//!   datagram per message.
//! * A message that cannot be sent is counted and logged, rate-limited, never fatal; a TCP
//!   connection that failed is retried after [`RETRY_AFTER`].

use std::{
    io::Write,
    net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket},
    os::unix::net::UnixDatagram,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

use super::lifecycle::{Event, Transition};
use crate::findings::Severity;

/// How long a failed TCP connection waits before the next attempt.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Facility `daemon` (RFC 5424 §6.2.1).
const FACILITY: u8 = 3;
/// The SD-ID: RFC 5612's documentation enterprise number.
const SD_ID: &str = "keepalive@32473";

/// Where messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One datagram per message.
    Udp(SocketAddr),
    /// A stream, octet-counted.
    Tcp(SocketAddr),
    /// The local syslog socket (a datagram socket, usually `/dev/log`).
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// Parses `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///PATH` (the host is resolved now).
pub fn parse_target(s: &str) -> Result<Target, String> {
    let usage = "expected udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log";
    let (scheme, rest) = s.split_once("://").ok_or_else(|| format!("`{s}`: {usage}"))?;
    let resolve = |rest: &str| -> Result<SocketAddr, String> {
        rest.to_socket_addrs()
            .map_err(|e| format!("`{s}`: {e} ({usage})"))?
            .next()
            .ok_or_else(|| format!("`{s}`: no address for {rest}"))
    };
    match scheme {
        "udp" => Ok(Target::Udp(resolve(rest)?)),
        "tcp" => Ok(Target::Tcp(resolve(rest)?)),
        "unix" if rest.starts_with('/') => Ok(Target::Unix(PathBuf::from(rest))),
        _ => Err(format!("`{s}`: {usage}")),
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
}

/// The sink.
pub struct Syslog {
    target: Target,
    conn: Option<Conn>,
    retry_at: Option<Instant>,
    hostname: String,
    /// Messages that could not be sent.
    pub dropped: u64,
    limited: super::RateLimited,
}

impl std::fmt::Debug for Syslog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syslog")
            .field("target", &self.target)
            .field("dropped", &self.dropped)
            .finish()
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    // RFC 5424 HOSTNAME: printable ASCII, no spaces; NILVALUE when unknown.
    if rc != 0 || name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        "-".into()
    } else {
        name
    }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An SD-NAME: printable ASCII without `=`, space, `]` and `"`, at most 32 characters.
fn sd_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 32
        && k.bytes().all(|b| b.is_ascii_graphic() && !b"= ]\"".contains(&b))
}

/// The RFC 5424 message for `t`.
pub fn format(t: &Transition, hostname: &str, pid: u32, now: SystemTime) -> String {
    let severity = match (t.event, t.finding.severity) {
        (Event::Resolved, _) => 5,
        (_, Severity::Critical) => 2,
        (_, Severity::Warning) => 4,
        (_, Severity::Info) => 6,
    };
    let pri = FACILITY * 8 + severity;
    let ts = humantime::format_rfc3339_millis(now);
    let mut sd = format!("[{SD_ID} id=\"{}\" event=\"{}\"", escape(&t.id), t.event.as_str());
    let mut param = |k: &str, v: &str| {
        if sd_name(k) {
            sd.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
    };
    param("kind", t.finding.kind.as_str());
    param("severity", t.finding.severity.as_str());
    let s = &t.subject;
    for (k, v) in [("phone", &s.phone), ("server", &s.server), ("device", &s.device)] {
        if let Some(v) = v {
            param(k, v);
        }
    }
    if let Some(p) = s.server_port {
        param("server_port", &p.to_string());
    }
    if let Some(p) = s.protocol {
        param("protocol", p);
    }
    for (k, v) in &t.finding.fields {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Array(_) | Value::Object(_) => v.to_string(),
            other => other.to_string(),
        };
        param(k, &text);
    }
    sd.push(']');
    format!(
        "<{pri}>1 {ts} {hostname} keepalive {pid} {} {sd} {}",
        t.event.as_str(),
        t.finding.message
    )
}

impl Syslog {
    /// A sink to `target`; it connects on the first message.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            conn: None,
            retry_at: None,
            hostname: hostname(),
            dropped: 0,
            limited: super::RateLimited::new(Duration::from_secs(60)),
        }
    }

    fn connect(&self) -> std::io::Result<Conn> {
        Ok(match &self.target {
            Target::Udp(a) => {
                let bind: SocketAddr = if a.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(bind)?;
                s.connect(a)?;
                Conn::Udp(s)
            }
            Target::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, Duration::from_secs(1))?;
                s.set_write_timeout(Some(Duration::from_secs(1)))?;
                Conn::Tcp(s)
            }
            Target::Unix(p) => {
                let s = UnixDatagram::unbound()?;
                s.connect(p)?;
                Conn::Unix(s)
            }
        })
    }

    /// Sends `t`; a failure is counted and logged (rate-limited), and the connection redone.
    pub fn send(&mut self, t: &Transition) {
        let msg = format(t, &self.hostname, std::process::id(), SystemTime::now());
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                self.dropped += 1;
                return;
            }
            match self.connect() {
                Ok(c) => self.conn = Some(c),
                Err(e) => return self.failed(&e),
            }
        }
        let sent = match self.conn.as_mut() {
            Some(Conn::Udp(s)) => s.send(msg.as_bytes()).map(|_| ()),
            Some(Conn::Unix(s)) => s.send(msg.as_bytes()).map(|_| ()),
            Some(Conn::Tcp(s)) => s.write_all(format!("{} {msg}", msg.len()).as_bytes()),
            None => Ok(()),
        };
        if let Err(e) = sent {
            self.conn = None;
            self.failed(&e);
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        self.dropped += 1;
        self.retry_at = Some(Instant::now() + RETRY_AFTER);
        let target = self.target.to_string();
        self.limited.log(
            "warn",
            "syslog: message not sent",
            &[("target", &target), ("error", e), ("dropped", &self.dropped)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        agent::lifecycle::Subject,
        findings::{Finding, Kind},
    };

    #[test]
    fn messages_are_rfc5424_with_the_fields_as_structured_data() {
        let t = Transition {
            event: Event::Firing,
            id: "00ab-1".into(),
            subject: Subject {
                phone: Some("192.0.2.31".into()),
                server: Some("192.0.2.202".into()),
                server_port: Some(2000),
                protocol: Some("sccp"),
                device: Some("SEP00AB00CD0031".into()),
                ..Subject::default()
            },
            finding: Finding::new(Kind::RtoGrowth, Severity::Critical, 0, "grows ×2".into())
                .with("cycles_to_unregister", 1)
                .with("evidence", "a \"quoted] \\ value"),
            cucm: None,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        let m = format(&t, "router-a", 42, now);
        assert!(m.starts_with("<26>1 2026-11-30T00:53:20.123Z "), "{m}");
        assert!(m.contains(".123Z router-a keepalive 42 firing [keepalive@32473 id=\"00ab-1\" event=\"firing\" kind=\"rto-growth\" severity=\"critical\" phone=\"192.0.2.31\""), "{m}");
        assert!(m.contains(" cycles_to_unregister=\"1\""), "{m}");
        assert!(m.contains(" evidence=\"a \\\"quoted\\] \\\\ value\""), "{m}");
        assert!(m.ends_with("] grows ×2"), "{m}");
        let resolved = Transition { event: Event::Resolved, ..t };
        assert!(format(&resolved, "-", 1, now).starts_with("<29>1 "), "notice");
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("udp://127.0.0.1:514").unwrap(),
            Target::Udp("127.0.0.1:514".parse().unwrap())
        );
        assert_eq!(
            parse_target("tcp://[::1]:6514").unwrap(),
            Target::Tcp("[::1]:6514".parse().unwrap())
        );
        assert_eq!(parse_target("unix:///dev/log").unwrap(), Target::Unix("/dev/log".into()));
        for bad in ["127.0.0.1:514", "http://x:1", "udp://nohostport", "unix://relative"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
