//! Live test (root): `keepalive run` attached to a veth inside a namespace sees real kernel TCP
//! to port 2000 carrying SCCP KeepAlive bytes, and the ARP exchange before it.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use common::VethPair;
use keepalive_lab::fixtures;

#[test]
fn run_reports_real_sccp_keepalives_and_arp() {
    if !common::have_root("run_reports_real_sccp_keepalives_and_arp") {
        return;
    }
    let net = VethPair::new();
    let mut agent = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.ns_b,
            env!("CARGO_BIN_EXE_keepalive"),
            "run",
            "--iface",
            &net.if_b,
            "--duration",
            "30s",
            "--events",
            "--socket",
            &format!("/tmp/keepalive-live-{}.sock", std::process::id()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keepalive run");
    // Wait until the program is attached before sending anything.
    let mut stderr = BufReader::new(agent.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("attached") && line.contains("iface=ka-cucm"), "agent said: {line}");

    // The "CUCM": answers each KeepAlive with a KeepAliveAck.
    let addr_b = net.addr_b;
    let server = VethPair::in_ns(&net.ns_b, move || {
        let l = TcpListener::bind((addr_b, 2000)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 12];
        for _ in 0..3 {
            s.read_exact(&mut buf).unwrap();
            assert_eq!(buf.to_vec(), fixtures::sccp_keepalive());
            s.write_all(&fixtures::sccp_keepalive_ack()).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    // The "phone": three KeepAlives, each in its own segment.
    let phone = VethPair::in_ns(&net.ns_a, move || {
        let mut s = TcpStream::connect_timeout(
            &(addr_b.parse::<std::net::IpAddr>().unwrap(), 2000).into(),
            Duration::from_secs(5),
        )
        .unwrap();
        s.set_nodelay(true).unwrap();
        let mut ack = [0u8; 12];
        for _ in 0..3 {
            s.write_all(&fixtures::sccp_keepalive()).unwrap();
            s.read_exact(&mut ack).unwrap();
        }
    });
    phone.join().expect("phone");
    server.join().expect("server");
    std::thread::sleep(Duration::from_millis(300));
    // SIGTERM: the agent must exit cleanly and detach.
    // SAFETY: kill on our child's pid.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.wait_with_output().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(out.status.success(), "agent failed: {rest}");

    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let keepalives = events
        .iter()
        .filter(|e| e["tcp"]["sccp"].as_array().is_some_and(|a| a.iter().any(|m| m == "KeepAlive")))
        .count();
    assert_eq!(keepalives, 3, "three KeepAlives on the wire: {events:#?}");
    let syn = events.iter().any(|e| {
        e["tcp"]["flags"].as_str().is_some_and(|f| f.contains('S')) && e["tcp"]["dport"] == 2000
    });
    assert!(syn, "the SYN to port 2000 is recorded");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "arp" && e["arp"]["op"] == "request" && e["dst"] == net.addr_b),
        "the phone's ARP request for the server is recorded: {events:#?}"
    );
    assert!(
        events.iter().all(|e| e["src"] == net.addr_a || e["kind"] == "arp"),
        "only ingress frames from the phone"
    );
    assert!(rest.contains("events="), "final counters are printed: {rest}");

    // Detached: no XDP program left on the interface.
    let link =
        Command::new("ip").args(["-n", &net.ns_b, "link", "show", &net.if_b]).output().unwrap();
    assert!(!String::from_utf8_lossy(&link.stdout).contains("xdp"), "program still attached");
}
