//! The JSON report: one object, as docs/DESIGN.md's contract spells it.

use std::io::Write;

use super::Report;

/// Writes `report` as one pretty-printed JSON object and a newline.
pub fn write(report: &Report, mut out: impl Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut out, report)?;
    out.write_all(b"\n")
}
