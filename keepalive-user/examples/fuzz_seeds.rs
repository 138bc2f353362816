//! Seeds the cargo-fuzz corpora (`fuzz/corpus`, kept in the repository) from the built-in
//! scenarios: `cargo run --example fuzz_seeds -- fuzz/corpus` writes
//! * `analyze/*.pcap`: whole captures;
//! * `frames/*`: runs of 32 frames, after two bytes that set `--max-phones` (the target's
//!   input: `u16 LE max-phones`, then `u16 LE length` + frame each), floods among them;
//! * `sip/*`: SIP messages cut into segments (`u8` length + bytes each);
//! * `stats_request/*`: request lines; `cli/*`: command lines (arguments split by NUL).

use keepalive_lab::fixtures::{
    self,
    flood::{self, Target},
    scenario::{self, Timeline, Vantage},
    SipRegister,
};

fn frame_runs(tl: &mut Timeline, max_phones: u16) -> Vec<Vec<u8>> {
    tl.frames()
        .chunks(32)
        .map(|chunk| {
            let mut seed = max_phones.to_le_bytes().to_vec();
            for (_, f) in chunk {
                seed.extend_from_slice(&(f.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
                seed.extend_from_slice(f);
            }
            seed
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let sub = |name: &str| -> std::io::Result<std::path::PathBuf> {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let (analyze, frames) = (sub("analyze")?, sub("frames")?);
    let all = [
        ("proxy-arp", scenario::proxy_arp(Vantage::PhoneSide)),
        ("port-security", scenario::port_security(Vantage::ServerSide)),
        ("sccp-port-security", scenario::sccp_port_security(Vantage::PhoneSide)),
        ("sip-primary-backup", scenario::sip_primary_backup(2)),
    ];
    let mut seeds = 0;
    for (name, mut tl) in all {
        std::fs::write(analyze.join(format!("{name}.pcap")), tl.to_pcap())?;
        // Every fourth run of each capture is enough to reach every frame kind.
        for (i, seed) in frame_runs(&mut tl, 16).into_iter().enumerate().step_by(4) {
            std::fs::write(frames.join(format!("{name}-{i}")), seed)?;
            seeds += 1;
        }
    }
    let target =
        Target { server: "192.0.2.202".parse().unwrap(), src_mac: [2; 6], dst_mac: [4; 6] };
    let floods = [
        ("syn-flood", flood::syn_flood(&target, 2000, 64, 0, 1_000)),
        ("arp-flood", flood::arp_flood(&target, 64, 0, 1_000)),
        ("sip-headers", flood::endless_sip_headers(&target, 5060, 4, 8, 0, 1_000)),
    ];
    for (name, mut tl) in floods {
        for (i, seed) in frame_runs(&mut tl, 4).into_iter().enumerate().take(2) {
            std::fs::write(frames.join(format!("{name}-{i}")), seed)?;
            seeds += 1;
        }
    }
    let sip = sub("sip")?;
    let reg = SipRegister {
        phone: "10.0.0.31".parse().unwrap(),
        phone_port: 50_000,
        server: "10.0.0.202".parse().unwrap(),
        ext: "1001",
        device: "SEP00AB00CD0031",
        call_id: "c1@10.0.0.31",
        cseq: 101,
        expires: 3600,
    };
    let messages = [
        ("register", fixtures::sip_register(&reg)),
        ("backup-keepalive", fixtures::sip_register(&SipRegister { expires: 0, ..reg.clone() })),
        ("ok", fixtures::sip_register_ok(&reg, 120)),
    ];
    for (name, m) in &messages {
        for cut in [255usize, 100, 7] {
            let mut seed = Vec::new();
            for part in m.chunks(cut) {
                seed.push(part.len() as u8);
                seed.extend_from_slice(part);
            }
            std::fs::write(sip.join(format!("{name}-{cut}")), seed)?;
        }
    }
    let requests = sub("stats_request")?;
    for (i, line) in
        ["json\n", "table findings\n", "json phone=SEP00AB00CD0031 limit=10 offset=5\n"]
            .iter()
            .enumerate()
    {
        std::fs::write(requests.join(format!("request-{i}")), line)?;
    }
    let cli = sub("cli")?;
    let lines: [&[&str]; 4] = [
        &["run", "--iface", "eth0", "--expire", "1h", "--refresh", "2s", "--max-phones", "1000"],
        &["run", "--iface", "eth0", "--port", "sip:5080", "--grace", "20", "--time-scale", "10"],
        &["analyze", "x.pcap", "--format", "json", "--delta", "5"],
        &["stats", "--limit", "10", "--offset", "20", "--phone", "10.0.0.1"],
    ];
    for (i, args) in lines.iter().enumerate() {
        std::fs::write(cli.join(format!("args-{i}")), args.join("\0"))?;
    }
    let config = sub("config")?;
    let files = [
        include_str!("../../packaging/keepalive.toml").to_string(),
        "iface = [\"eth1\", \"eth2\"]\nmax-phones = 5000\nexpire = \"2h\"\ngrace = 20\n".into(),
        "iface = \"eth1\"\nport = [\"sccp:2000\", \"sip:5080\"]\nmetrics = 9108\nmetrics-per-phone = true\n"
            .into(),
        "iface = [\"a\"]\ntime-scale = 10\nreplay = true\nsocket-mode = \"0600\"\n".into(),
    ];
    for (i, text) in files.iter().enumerate() {
        std::fs::write(config.join(format!("file-{i}")), text)?;
    }
    let cucm = sub("cucm_syslog")?;
    let alarms = [
        "<187>563: cucm-pub: Dec 06 2026 18:23:41.123 UTC :  %UC_CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP0024142DDF24][IPAddress=10.147.230.189][Protocol=SIP][DeviceType=437][Description=Lobby][Reason=13][IPAddrAttributes=0][LastSignalReceived=SIPStationDPrimaryLineTimeout][StationState=wait_register][AppID=Cisco CallManager][ClusterID=StandAloneCluster][NodeID=cucm-pub]: Endpoint unregistered",
        "<187>12: Jan 02 2027 00:00:01.000 UTC :  %CCM_CALLMANAGER-CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP000B5F327F9A][IPAddress=10.10.10.31][Protocol=SCCP][Reason=15]: Endpoint unregistered",
        "Dec 31 23:59:59 cucm-pub 563: cucm-pub: %UC_CALLMANAGER-3-EndPointTransientConnection: %[DeviceName=SEP1][IPAddress=192.0.2.31][Reason=13][ConnectingPort=2000]: x",
        "2026-12-06T19:23:41.500+01:00 cucm-pub %UC_CALLMANAGER-3-EndPointUnregistered: %[IPAddress=10.0.0.1][Reason=6]",
    ];
    for (i, line) in alarms.iter().enumerate() {
        std::fs::write(cucm.join(format!("alarm-{i}")), line)?;
    }
    std::fs::write(cucm.join("log"), alarms.join("\n"))?;
    println!(
        "{}: 4 captures, {seeds} frame runs, SIP, request, command-line, config-file and CUCM syslog seeds",
        dir.display()
    );
    Ok(())
}
