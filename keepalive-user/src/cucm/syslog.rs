//! CUCM's endpoint alarms as its remote syslog carries them, one line each:
//!
//! ```text
//! <187>563: cucm-pub: Dec 06 2026 18:23:41.123 UTC :  %UC_CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP0024142DDF24][IPAddress=10.147.230.189][Protocol=SIP][DeviceType=437][Description=Lobby][Reason=13][IPAddrAttributes=0][LastSignalReceived=SIPStationDPrimaryLineTimeout][StationState=wait_register][AppID=Cisco CallManager][ClusterID=StandAloneCluster][NodeID=cucm-pub]: Endpoint unregistered
//! ```
//!
//! RFC 3164 framing (`<PRI>`, then a header), CUCM's sequence number, optionally the node's
//! host name (the cluster/node prefix; CUCM omits it unless configured), CUCM's own timestamp
//! with the year, then the alarm: `%UC_CALLMANAGER-<severity>-<name>` (older releases:
//! `%CCM_CALLMANAGER-CALLMANAGER-<severity>-<name>`), and its parameters as `[Name=value]`
//! pairs after a `%` (*Cisco Unified Communications Manager System Error Messages*,
//! `EndPointUnregistered` and `EndPointTransientConnection`). A relay (rsyslog writing a file)
//! may put its own RFC 3164 or RFC 3339 timestamp and host in front.
//!
//! **Time.** The alarm's time is CUCM's own timestamp when the line has one with a year; else
//! an RFC 3339 timestamp (a relay's); else an RFC 3164 `Mmm dd hh:mm:ss`, which has no year:
//! it is placed in the year (of the one before, the one of, and the one after the reference
//! time: the agent's clock, or the capture's first frame) that puts it nearest the reference.
//! A zone other than `UTC`/`GMT`/`Z` or a numeric offset is read as UTC and flagged
//! ([`Placed::ZoneAssumedUtc`]): configure CUCM's syslog in UTC.
//!
//! Every parameter is kept, in order, known or not. A line that is not an endpoint alarm is
//! [`ParseError::NotAnEndpointAlarm`] (CUCM sends many others); one that is but cannot be read
//! is another [`ParseError`], which the callers count and log rate-limited.

use std::{net::IpAddr, time::UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;

use super::reason::Reason;

/// Which endpoint alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Alarm {
    /// A registered endpoint unregistered.
    EndPointUnregistered,
    /// An endpoint connected and failed to register.
    EndPointTransientConnection,
}

impl Alarm {
    /// CUCM's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alarm::EndPointUnregistered => "EndPointUnregistered",
            Alarm::EndPointTransientConnection => "EndPointTransientConnection",
        }
    }
}

/// How the alarm's time was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placed {
    /// A timestamp with its year and zone.
    Exact,
    /// An RFC 3164 timestamp without a year, placed nearest the reference time.
    YearInferred,
    /// A named zone other than UTC, read as UTC.
    ZoneAssumedUtc,
}

/// One endpoint alarm.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CucmEvent {
    /// When CUCM raised it (ns since the epoch).
    pub time_ns: u64,
    /// How that time was placed.
    pub placed: Placed,
    /// Which alarm.
    pub alarm: Alarm,
    /// The syslog severity in the tag (`-3-`: error).
    pub severity: u8,
    /// `DeviceName`.
    pub device: Option<String>,
    /// `IPAddress` (or `IPV6Address`).
    pub ip: Option<IpAddr>,
    /// `Protocol` (SIP, SCCP).
    pub protocol: Option<String>,
    /// `Reason`.
    #[serde(skip)]
    pub reason: Option<Reason>,
    /// The node that raised it: `NodeID`, else the header's host name.
    pub node: Option<String>,
    /// Every parameter, in order.
    pub fields: Vec<(String, String)>,
}

/// Why a line could not be read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not `EndPointUnregistered` or `EndPointTransientConnection` (not counted as malformed).
    #[error("not a CUCM endpoint alarm")]
    NotAnEndpointAlarm,
    /// The tag has no severity.
    #[error("alarm tag without a severity: {0:?}")]
    BadTag(String),
    /// The parameters do not start with `%[`.
    #[error("no parameters after the alarm tag")]
    NoParameters,
    /// A parameter is not `[Name=value]`.
    #[error("malformed parameter at byte {0}")]
    BadParameter(usize),
    /// No timestamp could be read before the alarm.
    #[error("no timestamp before the alarm")]
    NoTime,
    /// Neither `DeviceName` nor an address.
    #[error("the alarm names no device and no address")]
    NoEndpoint,
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Parses one line; `reference_ns` places a timestamp without a year.
pub fn parse(line: &str, reference_ns: u64) -> Result<CucmEvent, ParseError> {
    let line = line.trim_end_matches(['\r', '\n', '\0']);
    let (tag_at, alarm, after_tag) = find_alarm(line)?;
    let tag = &line[tag_at..after_tag];
    let severity = tag
        .split('-')
        .rev()
        .nth(1)
        .and_then(|s| s.parse::<u8>().ok())
        .filter(|s| *s <= 7)
        .ok_or_else(|| ParseError::BadTag(tag.to_owned()))?;
    let rest = line[after_tag..].trim_start_matches(':').trim_start();
    let fields = parameters(rest, line.len() - rest.len())?;
    let header = &line[..tag_at];
    let (time_ns, placed) = time(header, reference_ns).ok_or(ParseError::NoTime)?;
    let get = |name: &str| {
        fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    };
    let device = get("DeviceName").filter(|v| !v.is_empty()).map(str::to_owned);
    let ip = get("IPAddress")
        .and_then(|v| v.parse().ok())
        .or_else(|| get("IPV6Address").and_then(|v| v.parse().ok()));
    if device.is_none() && ip.is_none() {
        return Err(ParseError::NoEndpoint);
    }
    let reason = get("Reason").and_then(|v| v.parse::<u32>().ok()).map(Reason::from_code);
    let node = get("NodeID").filter(|v| !v.is_empty()).map(str::to_owned).or_else(|| host(header));
    Ok(CucmEvent {
        time_ns,
        placed,
        alarm,
        severity,
        device,
        ip,
        protocol: get("Protocol").filter(|v| !v.is_empty()).map(str::to_owned),
        reason,
        node,
        fields,
    })
}

/// The alarm tag: where it starts, which alarm, and where it ends.
fn find_alarm(line: &str) -> Result<(usize, Alarm, usize), ParseError> {
    for (name, alarm) in [
        ("-EndPointUnregistered", Alarm::EndPointUnregistered),
        ("-EndPointTransientConnection", Alarm::EndPointTransientConnection),
    ] {
        let Some(at) = line.find(name) else { continue };
        let end = at + name.len();
        // The tag runs back to its `%`, through `UC_CALLMANAGER-3` or
        // `CCM_CALLMANAGER-CALLMANAGER-3`.
        let Some(start) = line[..at].rfind('%') else { continue };
        let prefix = &line[start + 1..at];
        if !prefix.contains("CALLMANAGER") || prefix.contains(char::is_whitespace) {
            continue;
        }
        // The name must end there (`EndPointUnregisteredX` is another alarm).
        if line[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        return Ok((start, alarm, end));
    }
    Err(ParseError::NotAnEndpointAlarm)
}

/// `%[Name=value][Name=value]...`, starting at byte `offset` of the line (for errors).
fn parameters(s: &str, offset: usize) -> Result<Vec<(String, String)>, ParseError> {
    let mut rest = s.strip_prefix('%').ok_or(ParseError::NoParameters)?;
    if !rest.starts_with('[') {
        return Err(ParseError::NoParameters);
    }
    let mut fields = Vec::new();
    while let Some(body) = rest.strip_prefix('[') {
        let at = offset + (s.len() - rest.len());
        let close = body.find(']').ok_or(ParseError::BadParameter(at))?;
        let (name, value) = body[..close].split_once('=').ok_or(ParseError::BadParameter(at))?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ParseError::BadParameter(at));
        }
        fields.push((name.to_owned(), value.to_owned()));
        rest = &body[close + 1..];
    }
    Ok(fields)
}

/// The header's host name: the last `name:` token before the timestamp that is not CUCM's
/// sequence number (the node prefix).
fn host(header: &str) -> Option<String> {
    let header = header.strip_prefix('<').and_then(|h| h.split_once('>')).map_or(header, |h| h.1);
    header
        .split(": ")
        .map(str::trim)
        .take_while(|t| {
            !t.starts_with(|c: char| {
                c.is_ascii_uppercase() && t.len() > 3 && MONTHS.iter().any(|m| t.starts_with(m))
            })
        })
        .filter(|t| {
            !t.is_empty()
                && !t.bytes().all(|b| b.is_ascii_digit())
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .last()
        .map(str::to_owned)
}

/// The alarm's time from the header (see the module doc).
fn time(header: &str, reference_ns: u64) -> Option<(u64, Placed)> {
    let mut yearless = None;
    let mut rfc3339 = None;
    for (i, _) in header.char_indices() {
        let s = &header[i..];
        if i > 0 && header.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        if let Some(t) = with_year(s) {
            return Some(t);
        }
        if rfc3339.is_none() {
            rfc3339 = iso(s);
        }
        if yearless.is_none() {
            yearless = without_year(s, reference_ns);
        }
    }
    rfc3339.or(yearless)
}

/// `Mmm dd yyyy hh:mm:ss[.fff] [ZONE]`, CUCM's own.
fn with_year(s: &str) -> Option<(u64, Placed)> {
    let (month, rest) = month(s)?;
    let mut words = rest.split_whitespace();
    let day: u32 = words.next()?.parse().ok()?;
    let year: i32 = words.next()?.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let clock = words.next()?;
    let (placed, offset_s) = zone(words.next());
    let ns = civil(year, month, day, clock)?;
    Some((shift(ns, offset_s)?, placed))
}

/// RFC 3164's `Mmm dd hh:mm:ss` (no year), placed nearest `reference_ns`.
fn without_year(s: &str, reference_ns: u64) -> Option<(u64, Placed)> {
    let (month, rest) = month(s)?;
    let mut words = rest.split_whitespace();
    let day: u32 = words.next()?.parse().ok()?;
    let clock = words.next()?;
    if !clock.contains(':') {
        return None;
    }
    let ref_year = 1970 + (reference_ns / 1_000_000_000 / 31_556_952) as i32;
    (ref_year - 1..=ref_year + 1)
        .filter_map(|y| civil(y, month, day, clock))
        .min_by_key(|t| t.abs_diff(reference_ns))
        .map(|t| (t, Placed::YearInferred))
}

/// An RFC 3339 timestamp (`2026-12-06T18:23:41.123+00:00`), as a relay writes it.
fn iso(s: &str) -> Option<(u64, Placed)> {
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    let word = &s[..end];
    if word.len() < 19 || word.as_bytes().get(4) != Some(&b'-') {
        return None;
    }
    // A numeric offset first: humantime reads only `Z` (and would ignore the offset).
    let t = match split_offset(word) {
        Some((local, sign, off)) => {
            let base = humantime::parse_rfc3339_weak(local.trim_end_matches('Z')).ok()?;
            let d = std::time::Duration::from_secs(off);
            if sign > 0 {
                base.checked_sub(d)?
            } else {
                base.checked_add(d)?
            }
        }
        None => humantime::parse_rfc3339_weak(word.trim_end_matches('Z')).ok()?,
    };
    let ns = t.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some((u64::try_from(ns).ok()?, Placed::Exact))
}

/// `…+hh:mm` → (local part, sign, offset seconds).
fn split_offset(word: &str) -> Option<(&str, i8, u64)> {
    let at = word.rfind(['+', '-']).filter(|&i| i > 10)?;
    let (local, off) = word.split_at(at);
    let sign = if off.starts_with('+') { 1 } else { -1 };
    let digits: String = off[1..].chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 4 {
        return None;
    }
    let h: u64 = digits[..2].parse().ok()?;
    let m: u64 = digits[2..].parse().ok()?;
    Some((local, sign, h * 3600 + m * 60))
}

fn month(s: &str) -> Option<(u32, &str)> {
    let m = MONTHS.iter().position(|m| s.starts_with(m))?;
    let rest = &s[3..];
    rest.starts_with(' ').then_some((m as u32 + 1, rest))
}

/// A zone word: UTC, GMT, Z or a numeric offset are exact; a name is read as UTC.
fn zone(word: Option<&str>) -> (Placed, i64) {
    let Some(w) = word.filter(|w| *w != ":") else { return (Placed::Exact, 0) };
    match w {
        "UTC" | "GMT" | "Z" => (Placed::Exact, 0),
        _ => match split_offset(&format!("0000-00-00T00:00:00{w}")) {
            Some((_, sign, off)) => (Placed::Exact, i64::from(sign) * off as i64),
            None if w.bytes().all(|b| b.is_ascii_uppercase()) => (Placed::ZoneAssumedUtc, 0),
            None => (Placed::Exact, 0),
        },
    }
}

/// Local time at `offset_s` east of UTC → UTC.
fn shift(ns: u64, offset_s: i64) -> Option<u64> {
    let off = offset_s.unsigned_abs() * 1_000_000_000;
    if offset_s >= 0 {
        ns.checked_sub(off)
    } else {
        ns.checked_add(off)
    }
}

/// `hh:mm:ss[.fff]` on a date, in UTC, through humantime's RFC 3339 reader.
fn civil(year: i32, month: u32, day: u32, clock: &str) -> Option<u64> {
    if !(1..=31).contains(&day)
        || !clock.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
    {
        return None;
    }
    let stamp = format!("{year:04}-{month:02}-{day:02}T{clock}Z");
    let t = humantime::parse_rfc3339(&stamp).ok()?;
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06 00:00:00 UTC.
    const REF: u64 = 1_796_515_200 * 1_000_000_000;

    fn at(stamp: &str) -> u64 {
        let t = humantime::parse_rfc3339(stamp).unwrap();
        t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
    }

    const FULL: &str = "<187>563: cucm-pub: Dec 06 2026 18:23:41.123 UTC :  %UC_CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP0024142DDF24][IPAddress=10.147.230.189][Protocol=SIP][DeviceType=437][Description=Lobby phone][Reason=13][IPAddrAttributes=0][LastSignalReceived=SIPStationDPrimaryLineTimeout][StationState=wait_register][AppID=Cisco CallManager][ClusterID=StandAloneCluster][NodeID=cucm-pub]: Endpoint unregistered";

    #[test]
    fn a_keepalive_timeout_with_every_field() {
        let e = parse(FULL, REF).unwrap();
        assert_eq!(e.alarm, Alarm::EndPointUnregistered);
        assert_eq!(e.severity, 3);
        assert_eq!(e.time_ns, at("2026-12-06T18:23:41.123Z"));
        assert_eq!(e.placed, Placed::Exact);
        assert_eq!(e.device.as_deref(), Some("SEP0024142DDF24"));
        assert_eq!(e.ip, Some("10.147.230.189".parse().unwrap()));
        assert_eq!(e.protocol.as_deref(), Some("SIP"));
        assert_eq!(e.reason, Some(Reason::KeepAliveTimeout));
        assert_eq!(e.node.as_deref(), Some("cucm-pub"));
        assert_eq!(e.fields.len(), 12);
        assert_eq!(e.fields[4], ("Description".into(), "Lobby phone".into()));
    }

    #[test]
    fn without_the_node_prefix_and_with_the_older_tag() {
        let line = "<187>12: Jan 02 2027 00:00:01.000 UTC :  %CCM_CALLMANAGER-CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP000B5F327F9A][IPAddress=10.10.10.31][Protocol=SCCP][Reason=15]: Endpoint unregistered";
        let e = parse(line, REF).unwrap();
        assert_eq!(e.node, None);
        assert_eq!(e.reason, Some(Reason::CallManagerRestart));
        assert_eq!(e.time_ns, at("2027-01-02T00:00:01Z"));
    }

    #[test]
    fn several_nodes_and_a_transient_connection() {
        let sub = FULL.replace("cucm-pub", "cucm-sub1").replace("[Reason=13]", "[Reason=6]");
        let e = parse(&sub, REF).unwrap();
        assert_eq!(e.node.as_deref(), Some("cucm-sub1"));
        assert_eq!(e.reason, Some(Reason::ConnectivityError));
        let t = "<187>9: cucm-sub2: Dec 06 2026 18:00:00.000 UTC :  %UC_CALLMANAGER-3-EndPointTransientConnection: %[DeviceName=SEP0000000000A0][IPAddress=192.0.2.31][Protocol=SCCP][Reason=13][ConnectingPort=2000]: Endpoint transient connection";
        let e = parse(t, REF).unwrap();
        assert_eq!(e.alarm, Alarm::EndPointTransientConnection);
        assert_eq!(e.node.as_deref(), Some("cucm-sub2"));
        assert!(e.fields.iter().any(|(k, v)| k == "ConnectingPort" && v == "2000"), "kept");
    }

    #[test]
    fn a_relay_s_yearless_stamp_is_placed_nearest_the_reference() {
        // An rsyslog file line whose CUCM part lost its own timestamp.
        let line = "Dec 31 23:59:59 cucm-pub 563: cucm-pub: %UC_CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP1][Reason=13]: x";
        // Read on Jan 1st 2027, it is the day before, not 2027's last day.
        let jan1 = at("2027-01-01T00:10:00Z");
        let e = parse(line, jan1).unwrap();
        assert_eq!((e.time_ns, e.placed), (at("2026-12-31T23:59:59Z"), Placed::YearInferred));
        // CUCM's own stamp wins over the relay's.
        let both = "Dec  6 18:23:42 cucm-pub ".to_owned() + FULL;
        assert_eq!(parse(&both, REF).unwrap().time_ns, at("2026-12-06T18:23:41.123Z"));
        // An RFC 3339 relay stamp with an offset.
        let iso = "2026-12-06T19:23:41.500+01:00 cucm-pub %UC_CALLMANAGER-3-EndPointUnregistered: %[IPAddress=10.0.0.1]";
        assert_eq!(parse(iso, REF).unwrap().time_ns, at("2026-12-06T18:23:41.5Z"));
    }

    #[test]
    fn a_named_zone_is_read_as_utc_and_flagged() {
        let line = FULL.replace(" UTC :", " PST :");
        let e = parse(&line, REF).unwrap();
        assert_eq!((e.time_ns, e.placed), (at("2026-12-06T18:23:41.123Z"), Placed::ZoneAssumedUtc));
    }

    #[test]
    fn other_alarms_and_malformed_lines_say_why() {
        let other = "<187>5: cucm-pub: Dec 06 2026 18:23:41.123 UTC :  %UC_CALLMANAGER-6-EndPointRegistered: %[DeviceName=SEP1]: registered";
        assert_eq!(parse(other, REF), Err(ParseError::NotAnEndpointAlarm));
        assert_eq!(parse("", REF), Err(ParseError::NotAnEndpointAlarm));
        assert_eq!(parse("hello EndPointUnregistered", REF), Err(ParseError::NotAnEndpointAlarm));
        let no_params = "<187>5: Dec 06 2026 18:23:41 UTC : %UC_CALLMANAGER-3-EndPointUnregistered: Endpoint unregistered";
        assert_eq!(parse(no_params, REF), Err(ParseError::NoParameters));
        let bad_tag = "<187>5: Dec 06 2026 18:23:41 UTC : %UC_CALLMANAGER-X-EndPointUnregistered: %[DeviceName=SEP1]";
        assert!(matches!(parse(bad_tag, REF), Err(ParseError::BadTag(_))));
        let no_time = "%UC_CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP1]";
        assert_eq!(parse(no_time, REF), Err(ParseError::NoTime));
        let nobody = "<187>5: Dec 06 2026 18:23:41 UTC : %UC_CALLMANAGER-3-EndPointUnregistered: %[Reason=13]";
        assert_eq!(parse(nobody, REF), Err(ParseError::NoEndpoint));
        // Every truncation of a good line: an event or an error, never a panic.
        for cut in 0..FULL.len() {
            if let Some(prefix) = FULL.get(..cut) {
                let _ = parse(prefix, REF);
            }
        }
        let unclosed = &FULL[..FULL.find("[Reason").unwrap() + 5];
        assert!(matches!(parse(unclosed, REF), Err(ParseError::BadParameter(_))));
    }
}
