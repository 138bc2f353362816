//! What the agent prints on standard output: on a terminal, a view refreshed in place (phones
//! with findings first, then the newest findings as sentences); otherwise one JSON line per
//! finding transition (firing, escalated, resolved: [`super::lifecycle`]), for a log shipper.

use std::io::Write;

use super::snapshot::State;
use crate::{findings::clock, report::table::phones_table};

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

/// Writes finding transitions as JSON lines (`--json`): one line per `firing`, `escalated` or
/// `resolved`, with the finding's fields, its pair and its episode `id`.
pub fn print_transitions(moved: &[super::lifecycle::Transition]) -> std::io::Result<()> {
    if moved.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for t in moved {
        serde_json::to_writer(&mut out, t).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
