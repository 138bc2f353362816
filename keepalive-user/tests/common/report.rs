//! What the capture tests read off a report.

use keepalive::{
    analyze::{self, Options},
    findings::Severity,
    report::{PhoneRow, Report},
};
use keepalive_lab::fixtures::scenario::Timeline;

/// `keepalive analyze` on a built capture.
pub fn run(tl: &mut Timeline) -> Report {
    analyze::bytes(&tl.to_pcap(), &Options::default()).expect("a valid capture")
}

/// The kinds of a row's findings.
pub fn kinds(p: &PhoneRow) -> Vec<&'static str> {
    p.findings.iter().map(|f| f.kind.as_str()).collect()
}

/// The row's finding of `kind` (panics, naming the row's kinds, when there is none).
pub fn finding<'a>(p: &'a PhoneRow, kind: &str) -> &'a keepalive::findings::Finding {
    p.findings.iter().find(|f| f.kind == kind).unwrap_or_else(|| {
        panic!("no {kind} finding on {} → {}: {:?}", p.phone, p.server, kinds(p))
    })
}

/// Every warning or critical finding, on rows and of the network, as sentences.
pub fn warnings(r: &Report) -> Vec<String> {
    r.phones
        .iter()
        .flat_map(|p| p.findings.iter().map(move |f| (p, f)))
        .filter(|(_, f)| f.severity >= Severity::Warning)
        .map(|(p, f)| format!("{} → {}: {} {}", p.phone, p.server, f.kind, f.message))
        .chain(r.findings.iter().map(|f| format!("network: {} {}", f.kind, f.message)))
        .collect()
}

/// The report's one row.
pub fn only_row(r: &Report) -> &PhoneRow {
    assert_eq!(r.phones.len(), 1, "one phone↔server pair expected");
    &r.phones[0]
}
