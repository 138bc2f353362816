//! The human report: a table of phones (the ones with findings first), then each finding as a
//! sentence, then ARP anomalies and a summary line.

use std::io::Write;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, ContentArrangement, Table};

use super::{PhoneRow, Report};
use crate::findings::{clock, Finding, Severity};

fn marker(s: Option<Severity>) -> &'static str {
    match s {
        Some(Severity::Critical) => "CRIT",
        Some(Severity::Warning) => "WARN",
        Some(Severity::Info) => "info",
        None => "ok",
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn phone_cell(p: &PhoneRow) -> String {
    let vlan = if p.vlan.is_empty() {
        String::new()
    } else {
        format!(" vlan {}", p.vlan.iter().map(u16::to_string).collect::<Vec<_>>().join("."))
    };
    let segment = p.segment.map(|s| format!(" {}", s.label())).unwrap_or_default();
    format!("{}:{}{vlan}{segment}", p.phone, p.phone_port)
}

/// The table of phones, at most `limit` rows (the rest are summarised).
pub fn phones_table(report: &Report, limit: usize) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(vec![
        "",
        "PHONE",
        "SERVER",
        "PROTO",
        "ROLE",
        "DEVICE",
        "KA/ACK",
        "INTERVAL s",
        "EXPIRES",
        "RETX",
        "FINDINGS",
    ]);
    for p in report.phones.iter().take(limit) {
        let kinds: Vec<&str> = p.findings.iter().map(|f| f.kind.as_str()).collect();
        let learning = p.tls.as_ref().is_some_and(|t| t.state == "learning");
        t.add_row(vec![
            Cell::new(match p.worst() {
                None if learning => "learning",
                w => marker(w),
            }),
            Cell::new(phone_cell(p)),
            Cell::new(format!("{}:{}", p.server, p.server_port)),
            Cell::new(p.protocol),
            Cell::new(p.role),
            Cell::new(opt(p.device.as_deref())),
            Cell::new(format!("{}/{}", p.keepalives, p.acks)),
            Cell::new(opt(p.interval_s.map(|i| format!("{:.1}", i.median)))),
            Cell::new(match (p.expires_requested, p.expires_granted) {
                (None, None) => "-".to_owned(),
                (r, g) => format!("{}→{}", opt(r), opt(g)),
            }),
            Cell::new(p.retransmissions.len()),
            Cell::new(kinds.join(", ")),
        ]);
    }
    t
}

fn finding_line(out: &mut impl Write, who: &str, f: &Finding) -> std::io::Result<()> {
    writeln!(out, "  {:<4} {who} {}: {}", marker(Some(f.severity)), f.kind, f.message)
}

/// Writes the whole human report.
pub fn write(report: &Report, mut out: impl Write) -> std::io::Result<()> {
    let s = &report.summary;
    if report.phones.is_empty() {
        writeln!(out, "no phone traffic found (SCCP/SIP over TCP on the tracked ports)")?;
    } else {
        writeln!(out, "{}", phones_table(report, usize::MAX))?;
    }
    let with: Vec<&PhoneRow> = report.phones.iter().filter(|p| !p.findings.is_empty()).collect();
    if !with.is_empty() || !report.findings.is_empty() {
        writeln!(out, "\nFindings (times UTC):")?;
    }
    for p in with {
        let who = format!("{} → {}:{}", p.phone, p.server, p.server_port);
        for f in &p.findings {
            finding_line(&mut out, &who, f)?;
        }
    }
    for f in &report.findings {
        finding_line(&mut out, "network", f)?;
    }
    if !report.arp.is_empty() {
        writeln!(out, "\nARP:")?;
        for a in &report.arp {
            let t = clock((a.time * 1e9) as u64);
            writeln!(out, "  {t} {} {}: {}", a.ip, a.kind, a.macs.join(", "))?;
        }
    }
    if let Some(c) = &report.cucm {
        cucm_section(&mut out, c)?;
    }
    writeln!(
        out,
        "\n{} packets, {} matched, {} phone↔server pairs ({} phones), {} with findings: {} critical, {} warning, {} info",
        s.packets, s.matched, s.phones, s.phone_addresses, s.phones_with_findings, s.critical, s.warning, s.info
    )?;
    if s.parse_errors > 0 {
        writeln!(out, "{} malformed frames of followed protocols were skipped", s.parse_errors)?;
    }
    if let Some(t) = &s.truncated {
        writeln!(out, "note: {t}")?;
    }
    Ok(())
}

/// What CUCM said, and how the forecasts scored.
fn cucm_section(out: &mut impl Write, c: &crate::cucm::join::CucmSection) -> std::io::Result<()> {
    use crate::{cucm::score::Verdict, findings::span};
    writeln!(out, "\nCUCM (syslog, times UTC):")?;
    for u in &c.unregistrations {
        let who = match (&u.event.device, u.event.ip) {
            (Some(d), Some(ip)) => format!("{d} {ip}"),
            (Some(d), None) => d.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => "?".into(),
        };
        let reason = match (u.reason, u.reason_name) {
            (Some(r), Some(n)) => format!("Reason {r} {n}"),
            _ => "no reason".into(),
        };
        let verdict = match (u.verdict, u.lead_s) {
            _ if !u.seen => "not behind this vantage point: keepalive never saw it".to_owned(),
            (Verdict::Hit, Some(lead)) => format!("forecast {} ahead", span(lead)),
            (Verdict::Miss, _) => "no forecast named it (miss)".into(),
            _ => format!("not scored ({})", u.class.as_str()),
        };
        let t = clock(u.event.time_ns);
        let alarm = match u.event.alarm {
            crate::cucm::syslog::Alarm::EndPointUnregistered => "unregistered",
            crate::cucm::syslog::Alarm::EndPointTransientConnection => "transient connection",
        };
        writeln!(out, "  {who} {alarm} {t} ({reason}), {verdict}")?;
    }
    let t = &c.totals;
    let lead = if t.hits > 0 {
        format!(", mean lead {}", span(t.lead_sum_s / t.hits as f64))
    } else {
        String::new()
    };
    writeln!(
        out,
        "  forecasts: {} hits, {} misses, {} false alarms, {} excused, {} late, {} pending{lead}",
        t.hits, t.misses, t.false_alarms, t.excused, t.late, t.pending
    )?;
    if c.lines.malformed > 0 {
        writeln!(out, "  {} alarm lines could not be read", c.lines.malformed)?;
    }
    Ok(())
}
