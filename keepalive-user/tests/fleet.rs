//! The fleet: Prometheus and Alertmanager as the campus's engine, with the rules shipped in
//! `deploy/prometheus/`.
//!
//! * The rules pass `promtool check rules`, and their unit tests (`promtool test rules`) fire
//!   and resolve every alert; the example scrape config passes `promtool check config`.
//! * The fleet lab (root): two routers' labs (`keepalive_lab::lab`), each with its phones, its
//!   CUCMs and an agent on its switch ports, and a monitoring namespace joined to both switches
//!   where the test runs a real Prometheus (the shipped rules, scraping both agents every
//!   second), a real Alertmanager and a webhook receiver. Port security is staged on one phone
//!   behind router A (timers 10× faster): `KeepalivePhoneUnregisterForecast` fires naming that
//!   phone, its device and router A's agent, and Alertmanager delivers it; no alert names a
//!   healthy phone; stopping agent B fires `KeepaliveAgentDown` for B only. Everything is torn
//!   down, Prometheus and Alertmanager included, even when the test fails.

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::Agent;
use keepalive_lab::lab::{
    addr, fault, ip,
    sccp::{Cucm, Phone, Timers},
    spawn_in, Lab,
};
use serde_json::Value;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).current_dir(rules_dir()).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {}: {text}", args.join(" "));
    text
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests_fire_and_resolve_each_alert() {
    if !common::have_tools(&["promtool"], "the_rules_pass_promtool") {
        return;
    }
    assert!(promtool(&["check", "rules", "keepalive-rules.yml"]).contains("SUCCESS: 9 rules"));
    promtool(&["test", "rules", "keepalive-rules.test.yml"]);
    // Every alert of the contract has a unit test.
    let tests = std::fs::read_to_string(rules_dir().join("keepalive-rules.test.yml")).unwrap();
    for alert in [
        "KeepalivePhoneUnregisterForecast",
        "KeepalivePhoneUnanswered",
        "KeepaliveProxyArp",
        "KeepaliveAgentDown",
        "KeepaliveEventsLost",
        "KeepaliveFlowTableEvicting",
    ] {
        assert!(tests.contains(&format!("alertname: {alert}")), "no unit test for {alert}");
    }
    // The example scrape config, with its rule file where the test can point it.
    let dir = tmp_dir("promcfg");
    let cfg = std::fs::read_to_string(rules_dir().join("prometheus.yml")).unwrap();
    let rules = rules_dir().join("keepalive-rules.yml").canonicalize().unwrap();
    let cfg = cfg.replace("/etc/prometheus/keepalive-rules.yml", rules.to_str().unwrap());
    std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
    promtool(&["check", "config", dir.join("prometheus.yml").to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped Grafana dashboard: every PromQL expression in it, with Grafana's variables put
/// in, passes promtool (as recording rules), and it shows what it promises.
#[test]
fn the_dashboard_queries_pass_promtool() {
    if !common::have_tools(&["promtool"], "the_dashboard_queries_pass_promtool") {
        return;
    }
    let path = rules_dir().join("../grafana/keepalive.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| {
            t["expr"].as_str().unwrap().replace("$__rate_interval", "5m").replace("$instance", ".*")
        })
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    for metric in [
        "keepalive_phones",
        "keepalive_findings",
        "keepalive_phone_cycles_to_unregister",
        "keepalive_ack_latency_seconds_bucket",
        "keepalive_retransmission_delay_seconds_bucket",
        "keepalive_events_lost_total",
        "keepalive_kernel_packets_seen_total",
    ] {
        assert!(exprs.iter().any(|e| e.contains(metric)), "the dashboard shows no {metric}");
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // A JSON string is a YAML double-quoted scalar.
        rules.push_str(&format!(
            "      - record: keepalive_dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let dir = tmp_dir("dashboard");
    std::fs::write(dir.join("dashboard-rules.yml"), rules).unwrap();
    let out = promtool(&["check", "rules", dir.join("dashboard-rules.yml").to_str().unwrap()]);
    assert!(out.contains(&format!("SUCCESS: {} rules found", exprs.len())), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tmp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("keepalive-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A namespace the test created, removed on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A server the test started (its log in the temp directory), killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A webhook receiver for Alertmanager inside `ns`: every request body it got.
struct Webhook {
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Webhook {
    fn start(ns: &str, port: u16) -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bodies.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        spawn_in(ns, move || {
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            l.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                if let Some(body) = read_request(&mut c) {
                    b.lock().unwrap().push(body);
                }
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        ready_rx.recv().unwrap();
        Self { bodies, stop }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One HTTP request's body (by Content-Length).
fn read_request(c: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Some(body.to_string());
            }
        }
    }
}

/// `GET path` on 127.0.0.1:`port` inside `ns`: the body, or None if nothing answers 200.
fn get(ns: &str, port: u16, path: &str) -> Option<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let out = String::from_utf8(common::http(ns, port, &request).ok()?).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Polls `f` every 500 ms for up to `limit`.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

const PROM: u16 = 19_090;
const AM: u16 = 19_093;
const HOOK: u16 = 19_094;

/// Prometheus's active alerts (pending and firing).
fn alerts(mon: &str) -> Vec<Value> {
    get(mon, PROM, "/api/v1/alerts")
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| v["data"]["alerts"].as_array().cloned())
        .unwrap_or_default()
}

fn firing<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    all.iter().filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing").collect()
}

/// Joins the monitoring namespace to `lab`'s switch: mon `to-{tag}` ↔ switch `mgmt`.
fn mgmt_link(mon: &str, lab: &Lab, tag: &str, mon_addr: &str, agent_addr: &str) {
    let (a, b) = (
        format!("kfm{tag}{}a", std::process::id() % 10_000),
        format!("kfm{tag}{}b", std::process::id() % 10_000),
    );
    let sw = lab.ns("switch");
    let run = |args: &[&str]| ip(args).unwrap_or_else(|e| panic!("{e}"));
    run(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    run(&["link", "set", &a, "netns", mon, "name", &format!("to-{tag}")]);
    run(&["link", "set", &b, "netns", &sw, "name", "mgmt"]);
    run(&["-n", mon, "addr", "add", mon_addr, "dev", &format!("to-{tag}")]);
    run(&["-n", &sw, "addr", "add", agent_addr, "dev", "mgmt"]);
    run(&["-n", mon, "link", "set", &format!("to-{tag}"), "up"]);
    run(&["-n", &sw, "link", "set", "mgmt", "up"]);
}

fn agent(lab: &Lab, metrics: &str) -> Agent {
    let mut args = vec!["--json", "--refresh", "300ms", "--time-scale", "10", "--metrics", metrics];
    let ports = lab.ports();
    for p in &ports {
        args.extend(["--iface", p.as_str()]);
    }
    Agent::start_with(&lab.ns("switch"), &args, Stdio::null())
}

fn spawn_server(name: &'static str, ns: &str, program: &str, args: &[String]) -> Server {
    let log = std::fs::File::create(
        std::env::temp_dir().join(format!("keepalive-fleet-{}-{name}.log", std::process::id())),
    )
    .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    Server(child)
}

#[test]
fn prometheus_and_alertmanager_name_the_phone_about_to_unregister_and_the_agent_down() {
    const TEST: &str = "prometheus_and_alertmanager_name_the_phone_about_to_unregister";
    if !common::have_root(TEST)
        || !common::have_tools(&["prometheus", "prometheus-alertmanager", "promtool"], TEST)
    {
        return;
    }
    const SCALE: f64 = 10.0;
    let pid = std::process::id() % 1000;
    let lab_a = Lab::up(&format!("kf{pid}a"), 2).expect("lab A");
    let lab_b = Lab::up(&format!("kf{pid}b"), 1).expect("lab B");
    let mon = Netns(format!("kf{pid}-mon"));
    let _ = Command::new("ip").args(["netns", "del", &mon.0]).stderr(Stdio::null()).status();
    ip(&["netns", "add", &mon.0]).unwrap();
    ip(&["-n", &mon.0, "link", "set", "lo", "up"]).unwrap();
    // TEST-NET-3, only inside these namespaces.
    mgmt_link(&mon.0, &lab_a, "a", "203.0.113.1/30", "203.0.113.2/30");
    mgmt_link(&mon.0, &lab_b, "b", "203.0.113.5/30", "203.0.113.6/30");
    let (inst_a, inst_b) = ("203.0.113.2:9108", "203.0.113.6:9108");
    let agent_a = agent(&lab_a, inst_a);
    let mut agent_b = agent(&lab_b, inst_b);

    // Alertmanager, a webhook, and Prometheus with the shipped rules, all in `mon`.
    let dir = tmp_dir("fleet");
    let rules = rules_dir().join("keepalive-rules.yml").canonicalize().unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 900ms\n\
             rule_files:\n  - {}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{AM}\"]\n\
             scrape_configs:\n  - job_name: keepalive\n    static_configs:\n      - targets: [\"{inst_a}\", \"{inst_b}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, instance, phone]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{HOOK}/alerts\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let hook = Webhook::start(&mon.0, HOOK);
    let d = |p: &str| dir.join(p).display().to_string();
    let _am = spawn_server(
        "alertmanager",
        &mon.0,
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", d("alertmanager.yml")),
            format!("--storage.path={}", d("am")),
            format!("--web.listen-address=127.0.0.1:{AM}"),
            // No gossip: one Alertmanager, in a namespace without routes.
            "--cluster.listen-address=".into(),
        ],
    );
    let _prom = spawn_server(
        "prometheus",
        &mon.0,
        "prometheus",
        &[
            format!("--config.file={}", d("prometheus.yml")),
            format!("--storage.tsdb.path={}", d("tsdb")),
            format!("--web.listen-address=127.0.0.1:{PROM}"),
        ],
    );

    // Phones: router A's phone 0 gets port security after a healthy start, phone 1 stays
    // healthy; router B's phone 0 is healthy.
    let cucm1: std::net::IpAddr = addr::CUCM1.parse().unwrap();
    let cucm2: std::net::IpAddr = addr::CUCM2.parse().unwrap();
    let _servers = [
        Cucm::start(&lab_a.ns("cucm1"), cucm1, true),
        Cucm::start(&lab_a.ns("cucm2"), cucm2, false),
        Cucm::start(&lab_b.ns("cucm1"), cucm1, true),
        Cucm::start(&lab_b.ns("cucm2"), cucm2, false),
    ];
    std::thread::sleep(Duration::from_millis(200));
    let t = Timers::scaled(SCALE);
    let p = |i: usize| addr::phone(i).parse::<std::net::IpAddr>().unwrap();
    let _phones = [
        // Without its backup connection: its KeepAlives there would refresh the aged MAC.
        Phone::start(&lab_a.phone_ns(0), p(0), "SEP0000000000A0", cucm1, None, t, None),
        Phone::start(&lab_a.phone_ns(1), p(1), "SEP0000000000A1", cucm1, Some(cucm2), t, None),
        Phone::start(&lab_b.phone_ns(0), p(0), "SEP0000000000B0", cucm1, Some(cucm2), t, None),
    ];

    // Both agents are up in Prometheus.
    let up = wait_for(Duration::from_secs(30), || {
        let body = get(&mon.0, PROM, "/api/v1/query?query=up%7Bjob%3D%22keepalive%22%7D")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let res = v["data"]["result"].as_array()?.clone();
        let ups: Vec<(String, String)> = res
            .iter()
            .map(|r| {
                (
                    r["metric"]["instance"].as_str().unwrap_or("").into(),
                    r["value"][1].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        (ups.len() == 2 && ups.iter().all(|(_, v)| v == "1")).then_some(ups)
    });
    assert!(
        up.is_some(),
        "both agents up in Prometheus: {:?}",
        get(&mon.0, PROM, "/api/v1/targets")
    );

    // Port security on A's phone 0 after three healthy KeepAlives.
    std::thread::sleep(t.primary.mul_f64(3.3));
    fault::port_security(&lab_a, 0, t.primary.mul_f64(0.3)).expect("port security");
    // First the agent: its critical rto-growth reaches Prometheus as a series. How soon
    // depends on the kernel's RTO backoff under the staged fault (and on a busy machine), so
    // this waits longer; what is asserted after it is what the rules and Alertmanager do.
    let finding = "/api/v1/query?query=keepalive_finding%7Bkind%3D%22rto-growth%22%2C\
                   severity%3D%22critical%22%7D";
    let critical = wait_for(t.primary.mul_f64(20.0), || {
        let v: Value = serde_json::from_str(&get(&mon.0, PROM, finding)?).ok()?;
        (!v["data"]["result"].as_array()?.is_empty()).then_some(v)
    });
    if critical.is_none() {
        let stats = common::stats_with(&agent_a.socket, "json", false, &[]);
        panic!(
            "agent A never reported a critical rto-growth for phone 0; its stats: {}",
            String::from_utf8_lossy(&stats.stdout)
        );
    }
    let mut seen: Vec<Value> = Vec::new();
    let forecast = wait_for(Duration::from_secs(15), || {
        let all = alerts(&mon.0);
        seen.extend(all.iter().cloned());
        firing(&all, "KeepalivePhoneUnregisterForecast").first().map(|a| (*a).clone())
    });
    let forecast = forecast.unwrap_or_else(|| panic!("no forecast alert; alerts seen: {seen:#?}"));
    let l = &forecast["labels"];
    assert_eq!(
        (l["phone"].as_str(), l["device"].as_str(), l["instance"].as_str(), l["server"].as_str()),
        (Some(addr::phone(0).as_str()), Some("SEP0000000000A0"), Some(inst_a), Some(addr::CUCM1)),
        "{forecast:#}"
    );
    assert!(forecast["annotations"]["summary"].as_str().unwrap().contains("SEP0000000000A0"));
    let delivered = wait_for(Duration::from_secs(15), || {
        hook.bodies().into_iter().find(|b| {
            b.contains("KeepalivePhoneUnregisterForecast") && b.contains("SEP0000000000A0")
        })
    });
    let delivered = delivered.expect("Alertmanager delivered the forecast to the webhook");
    let delivered: Value = serde_json::from_str(&delivered).unwrap();
    assert_eq!(delivered["status"], "firing", "{delivered:#}");

    // Agent B stops: KeepaliveAgentDown for B only, after its 30 s.
    agent_b.stop();
    let down = wait_for(Duration::from_secs(60), || {
        let all = alerts(&mon.0);
        seen.extend(all.iter().cloned());
        let f: Vec<Value> = firing(&all, "KeepaliveAgentDown").into_iter().cloned().collect();
        (!f.is_empty()).then_some(f)
    });
    let down = down.expect("KeepaliveAgentDown fires for agent B");
    let instances: Vec<&str> =
        down.iter().filter_map(|a| a["labels"]["instance"].as_str()).collect();
    assert_eq!(instances, [inst_b], "{down:#?}");

    // No alert, in Prometheus or delivered, ever named a healthy phone.
    let healthy = |labels: &Value| {
        let (inst, phone) = (labels["instance"].as_str(), labels["phone"].as_str());
        (inst == Some(inst_a) && phone == Some(addr::phone(1).as_str()))
            || (inst == Some(inst_b) && phone.is_some())
    };
    for a in &seen {
        assert!(!healthy(&a["labels"]), "an alert names a healthy phone: {a:#}");
    }
    for body in hook.bodies() {
        let v: Value = serde_json::from_str(&body).unwrap();
        for a in v["alerts"].as_array().unwrap() {
            assert!(!healthy(&a["labels"]), "a delivered alert names a healthy phone: {a:#}");
        }
    }
    drop(agent_a);
    let _ = std::fs::remove_dir_all(&dir);
}
