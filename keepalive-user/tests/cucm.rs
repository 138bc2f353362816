//! CUCM's syslog joined with the wire (`keepalive analyze --cucm-syslog`): each unregistration
//! on its row, and the forecasts scored against what CUCM decided.

use std::{path::PathBuf, process::Command};

use keepalive_lab::fixtures::scenario::{self, Vantage};
use serde_json::Value;

use keepalive_lab::fixtures::cucm::{stamp as cucm_stamp, unregistered};

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(name: &str) -> TempDir {
    let p = std::env::temp_dir().join(format!("keepalive-cucm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

fn analyze(
    pcap: &std::path::Path,
    log: Option<&std::path::Path>,
    format: &str,
) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    cmd.arg("analyze").arg(pcap).args(["--format", format]);
    if let Some(l) = log {
        cmd.arg("--cucm-syslog").arg(l);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

/// Case study 2 (port security, every REGISTER's first copy lost and the delay doubling): the
/// rto-growth forecast comes first; CUCM's KeepAliveTimeout afterwards is a hit, with the
/// forecast's lead. CUCM's other lines are counted, not fatal: a restart of a phone this
/// capture never saw (not behind this vantage point), a message of another kind, a malformed
/// alarm.
#[test]
fn case_study_2_s_unregistration_is_a_hit_with_its_lead() {
    let dir = tempdir("cs2");
    let pcap = dir.0.join("cs2.pcap");
    std::fs::write(&pcap, scenario::port_security(Vantage::PhoneSide).to_pcap()).unwrap();
    let plain = json(&analyze(&pcap, None, "json").0);
    assert!(plain.get("cucm").is_none(), "no syslog, no section");
    let row = &plain["phones"][0];
    let growth =
        row["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "rto-growth").unwrap();
    assert_eq!(growth["severity"], "critical");
    let end = plain["summary"]["end"].as_f64().unwrap();
    // CUCM gives up two REGISTERs later (the forecast said "in 2 more REGISTERs (about 4
    // min)").
    let unreg_at = end + 230.0;
    let log = dir.0.join("cucm.log");
    let lines = [
        unregistered(Some("cucm-pub"), unreg_at, "SEP0024142DDF24", "10.147.230.189", "SIP", 13),
        unregistered(None, unreg_at + 1.0, "SEP00000000BEEF", "10.9.9.9", "SCCP", 15),
        format!("<190>78: cucm-pub: {} :  %UC_CALLMANAGER-6-EndPointRegistered: %[DeviceName=SEP1][IPAddress=10.9.9.9]: Endpoint registered", cucm_stamp(unreg_at + 2.0)),
        format!("<187>79: cucm-pub: {} :  %UC_CALLMANAGER-3-EndPointUnregistered: %[DeviceName=SEP2][Reason=13", cucm_stamp(unreg_at + 3.0)),
    ];
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let (out, err) = analyze(&pcap, Some(&log), "json");
    assert!(err.contains("cucm.log:4: malformed parameter"), "{err}");
    let r = json(&out);
    let c = &r["cucm"];
    assert_eq!(
        (c["hits"].as_u64(), c["misses"].as_u64(), c["unseen"].as_u64()),
        (Some(1), Some(0), Some(1)),
        "{c:#}"
    );
    assert_eq!(
        (
            c["lines"]["alarms"].as_u64(),
            c["lines"]["other"].as_u64(),
            c["lines"]["malformed"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let hit = &c["unregistrations"][0];
    assert_eq!(
        (hit["verdict"].as_str(), hit["reason"].as_u64(), hit["reason_name"].as_str()),
        (Some("hit"), Some(13), Some("KeepAliveTimeout"))
    );
    let lead = hit["lead_s"].as_f64().unwrap();
    // The forecast became critical at the fifth REGISTER, the capture's last.
    assert!((230.0..240.0).contains(&lead), "lead {lead}");
    assert_eq!(hit["forecast"], c["forecasts"][0]["id"]);
    assert_eq!(c["forecasts"][0]["kind"], "rto-growth");
    assert_eq!(c["forecasts"][0]["outcome"], "confirmed");
    let restart = &c["unregistrations"][1];
    assert_eq!(
        (restart["verdict"].as_str(), restart["seen"].as_bool(), restart["class"].as_str()),
        (Some("not-scored"), Some(false), Some("server"))
    );
    // The row says it too.
    let row = &r["phones"][0];
    assert_eq!(row["unregistered"]["verdict"], "hit", "{row:#}");
    assert_eq!(row["unregistered"]["reason"], 13);
    // And the table, in an engineer's words.
    let (table, _) = analyze(&pcap, Some(&log), "table");
    assert!(table.contains("SEP0024142DDF24 10.147.230.189 unregistered"), "{table}");
    assert!(table.contains("(Reason 13 KeepAliveTimeout), forecast 4 min ahead"), "{table}");
    assert!(table.contains("not behind this vantage point"), "{table}");
    assert!(
        table.contains("forecasts: 1 hits, 0 misses, 0 false alarms, 0 excused, 0 late"),
        "{table}"
    );
}

/// A healthy phone that CUCM drops for keepalives anyway is a miss; one reset on purpose is
/// not scored.
#[test]
fn an_unforecast_loss_is_a_miss_and_a_reset_is_not_scored() {
    let dir = tempdir("healthy");
    let pcap = dir.0.join("healthy.pcap");
    std::fs::write(&pcap, scenario::sccp_primary_backup(5).to_pcap()).unwrap();
    let plain = json(&analyze(&pcap, None, "json").0);
    let phone = plain["phones"][0]["phone"].as_str().unwrap().to_owned();
    let end = plain["summary"]["end"].as_f64().unwrap();
    let log = dir.0.join("cucm.log");
    let lines = [
        unregistered(Some("cucm-pub"), end - 60.0, "SEP002414000041", &phone, "SCCP", 8),
        unregistered(Some("cucm-pub"), end - 30.0, "SEP002414000041", &phone, "SCCP", 13),
    ];
    std::fs::write(&log, lines.join("\n")).unwrap();
    let r = json(&analyze(&pcap, Some(&log), "json").0);
    let c = &r["cucm"];
    assert_eq!(
        (c["hits"].as_u64(), c["misses"].as_u64(), c["false_alarms"].as_u64()),
        (Some(0), Some(1), Some(0)),
        "{c:#}"
    );
    assert_eq!(c["unregistrations"][0]["verdict"], "not-scored");
    assert_eq!(c["unregistrations"][0]["class"], "intentional");
    assert_eq!(c["unregistrations"][1]["verdict"], "miss");
}
