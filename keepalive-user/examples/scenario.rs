//! Writes the built-in scenario captures (docs/DOMAIN.md's case studies and the healthy
//! configurations) as pcap files, for Wireshark or `keepalive analyze`:
//! `cargo run --example scenario -- OUT_DIR`.

use keepalive_lab::fixtures::scenario::{self, Vantage};

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    let all = [
        ("proxy-arp-phone-side", scenario::proxy_arp(Vantage::PhoneSide)),
        ("proxy-arp-server-side", scenario::proxy_arp(Vantage::ServerSide)),
        ("port-security-phone-side", scenario::port_security(Vantage::PhoneSide)),
        ("port-security-server-side", scenario::port_security(Vantage::ServerSide)),
        ("sccp-port-security-phone-side", scenario::sccp_port_security(Vantage::PhoneSide)),
        ("sccp-port-security-server-side", scenario::sccp_port_security(Vantage::ServerSide)),
        (
            "intermittent-loss-phone-side",
            scenario::sccp_intermittent_loss(Vantage::PhoneSide, false),
        ),
        (
            "intermittent-loss-server-side",
            scenario::sccp_intermittent_loss(Vantage::ServerSide, false),
        ),
        ("sccp-primary-backup", scenario::sccp_primary_backup(10)),
        ("sip-primary-backup", scenario::sip_primary_backup(6)),
        ("site-300", scenario::site(300, 10)),
    ];
    for (name, mut tl) in all {
        let path = dir.join(format!("{name}.pcap"));
        std::fs::write(&path, tl.to_pcap())?;
        println!("{} ({} frames)", path.display(), tl.len());
    }
    Ok(())
}
