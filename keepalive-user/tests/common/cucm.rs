//! CUCM syslog lines as CUCM's remote syslog sends them, for the tests that feed them.

use std::time::UNIX_EPOCH;

/// CUCM's own stamp: `Mmm dd yyyy hh:mm:ss.mmm UTC`.
pub fn cucm_stamp(epoch_s: f64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs_f64(epoch_s);
    let iso = humantime::format_rfc3339_millis(t).to_string(); // 2024-01-01T18:00:00.000Z
    let months =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m: usize = iso[5..7].parse().unwrap();
    format!("{} {} {} {} UTC", months[m - 1], &iso[8..10], &iso[..4], &iso[11..23])
}

/// An `EndPointUnregistered` line as CUCM's remote syslog sends it.
pub fn unregistered(
    node: Option<&str>,
    epoch_s: f64,
    device: &str,
    ip: &str,
    proto: &str,
    reason: u32,
) -> String {
    let node = node.map_or(String::new(), |n| format!("{n}: "));
    format!(
        "<187>77: {node}{} :  %UC_CALLMANAGER-3-EndPointUnregistered: %[DeviceName={device}][IPAddress={ip}][Protocol={proto}][DeviceType=437][Description=lab][Reason={reason}][IPAddrAttributes=0][LastSignalReceived=SIPStationDPrimaryLineTimeout][AppID=Cisco CallManager][ClusterID=StandAloneCluster][NodeID=cucm-pub]: Endpoint unregistered",
        cucm_stamp(epoch_s)
    )
}
