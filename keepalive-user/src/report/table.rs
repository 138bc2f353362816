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
    format!("{}:{}{vlan}", p.phone, p.phone_port)
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
