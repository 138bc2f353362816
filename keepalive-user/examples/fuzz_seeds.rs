//! Seeds the cargo-fuzz corpora from the built-in scenarios:
//! `cargo run --example fuzz_seeds -- fuzz/corpus` writes `analyze/*.pcap` (whole captures)
//! and `frames/*` (runs of 32 frames, each as `u16 LE length` + frame, the `frames` target's
//! input format).

use keepalive::fixtures::scenario::{self, Vantage};

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let (analyze, frames) = (dir.join("analyze"), dir.join("frames"));
    std::fs::create_dir_all(&analyze)?;
    std::fs::create_dir_all(&frames)?;
    let all = [
        ("proxy-arp", scenario::proxy_arp(Vantage::PhoneSide)),
        ("port-security", scenario::port_security(Vantage::ServerSide)),
        ("sccp-port-security", scenario::sccp_port_security(Vantage::PhoneSide)),
        ("sip-primary-backup", scenario::sip_primary_backup(2)),
        ("site", scenario::site(8, 2)),
    ];
    let mut seeds = 0;
    for (name, mut tl) in all {
        std::fs::write(analyze.join(format!("{name}.pcap")), tl.to_pcap())?;
        for (i, chunk) in tl.frames().chunks(32).enumerate() {
            let mut seed = Vec::new();
            for (_, f) in chunk {
                seed.extend_from_slice(&(f.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
                seed.extend_from_slice(f);
            }
            std::fs::write(frames.join(format!("{name}-{i}")), seed)?;
            seeds += 1;
        }
    }
    println!("{}: 5 captures, {seeds} frame runs", dir.display());
    Ok(())
}
