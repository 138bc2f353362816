//! What the agent prints on standard output: on a terminal, a view refreshed in place (phones
//! with findings first, then the newest findings as sentences); otherwise one JSON line per
//! finding the first time it is seen, for a log shipper.

use std::{collections::HashSet, io::Write};

use serde::Serialize;

use super::snapshot::{Snapshot, State};
use crate::{
    findings::{clock, Finding},
    report::{table::phones_table, PhoneRow},
};

/// Rows of the phone table on the terminal view.
const VIEW_ROWS: usize = 25;
/// Finding sentences under it.
const VIEW_FINDINGS: usize = 10;

/// Redraws the terminal view: the summary of every pair, the first rows and the newest
/// findings ([`State::top`], which builds no row for the pairs it does not show).
pub fn draw(state: &State) -> std::io::Result<()> {
    let (snap, recent) = state.top(VIEW_ROWS, VIEW_FINDINGS);
    let mut out = std::io::stdout().lock();
    // Home the cursor and clear the screen (ECMA-48 CUP and ED).
    write!(out, "\x1b[H\x1b[2J")?;
    let s = &snap.report.summary;
    let k = &snap.kernel;
    writeln!(
        out,
        "keepalive {} — {} pairs ({} phones), {} with findings: {} critical, {} warning | \
         kernel: seen {} matched {} lost {} | {}",
        snap.agent.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(","),
        s.phones,
        s.phone_addresses,
        s.phones_with_findings,
        s.critical,
        s.warning,
        k.seen,
        k.matched_tcp + k.matched_arp,
        k.ringbuf_full,
        clock((super::now_s() * 1e9) as u64),
    )?;
    if !snap.report.phones.is_empty() {
        writeln!(out, "{}", phones_table(&snap.report, VIEW_ROWS))?;
    }
    if s.phones > snap.report.phones.len() {
        writeln!(out, "… {} more pairs (keepalive stats)", s.phones - snap.report.phones.len())?;
    }
    for (who, f) in recent.iter().take(VIEW_FINDINGS) {
        writeln!(
            out,
            "{} {:<8} {who} {}: {}",
            clock((f.time * 1e9) as u64),
            f.severity.as_str(),
            f.kind,
            f.message
        )?;
    }
    out.flush()
}

#[derive(Serialize)]
struct FindingLine<'a> {
    phone: Option<&'a str>,
    phone_port: Option<u16>,
    server: Option<&'a str>,
    server_port: Option<u16>,
    protocol: Option<&'a str>,
    device: Option<&'a str>,
    #[serde(flatten)]
    finding: &'a Finding,
}

/// Prints the findings not printed before (or now more severe), one JSON line each.
pub fn new_findings(snap: &Snapshot, printed: &mut HashSet<u64>) -> std::io::Result<()> {
    print_new_findings(&snap.report.phones, &snap.report.findings, printed)
}

/// [`new_findings`] over some phone rows and the findings not tied to a row.
pub fn print_new_findings(
    phones: &[PhoneRow],
    findings: &[Finding],
    printed: &mut HashSet<u64>,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let rows = phones.iter().flat_map(|p| p.findings.iter().map(move |f| (Some(p), f)));
    let global = findings.iter().map(|f| (None, f));
    for (p, f) in rows.chain(global) {
        // What identifies a printed finding, hashed: 8 bytes each instead of a string (a
        // site-wide outage prints one finding per phone).
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            p.map(|p| (&p.phone, &p.server, p.server_port)).hash(&mut h);
            (f.kind, f.severity.as_str(), f.time.to_bits()).hash(&mut h);
            h.finish()
        };
        if printed.len() > 100_000 {
            // Bounded memory for an agent that runs for months: forget what was printed (a few
            // findings may be printed again).
            printed.clear();
        }
        if !printed.insert(key) {
            continue;
        }
        let line = FindingLine {
            phone: p.map(|p| p.phone.as_str()),
            phone_port: p.map(|p| p.phone_port),
            server: p.map(|p| p.server.as_str()),
            server_port: p.map(|p| p.server_port),
            protocol: p.map(|p| p.protocol),
            device: p.and_then(|p| p.device.as_deref()),
            finding: f,
        };
        serde_json::to_writer(&mut out, &line).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
