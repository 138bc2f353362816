//! Shared helpers for the root-only test layers.
#![allow(dead_code)]

pub mod report;

/// Whether this process may load BPF programs. When not, the test is skipped with a reason —
/// unless KEEPALIVE_REQUIRE_ROOT is set (CI sets it), where skipping would hide a failure.
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("KEEPALIVE_REQUIRE_ROOT").is_some() {
        panic!("{test}: KEEPALIVE_REQUIRE_ROOT is set but the tests are not running as root");
    }
    eprintln!("skipped {test}: needs root (CAP_BPF and CAP_NET_ADMIN) to load XDP programs");
    false
}

/// Whether `tools` run here (`TOOL --version`). When one does not, the test is skipped with a
/// reason, unless KEEPALIVE_REQUIRE_ROOT is set (CI), where the bootstrap must have installed it.
pub fn have_tools(tools: &[&str], test: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| Command::new(t).arg("--version").output().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("KEEPALIVE_REQUIRE_ROOT").is_some() {
        panic!("{test}: {missing:?} missing (scripts/bootstrap.sh installs them)");
    }
    eprintln!("skipped {test}: {missing:?} not installed");
    false
}

/// One HTTP/1.1 exchange with 127.0.0.1:`port` inside `ns`: the raw response (the request
/// should say `Connection: close`). Connecting waits 2 s at most, reading 10 s.
pub fn http(ns: &str, port: u16, request: &str) -> std::io::Result<Vec<u8>> {
    let request = request.to_owned();
    keepalive_lab::lab::spawn_in(ns, move || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request.as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the HTTP client thread panicked")))
}

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    if let Err(e) = keepalive_lab::lab::ip(args) {
        panic!("{e}");
    }
}

/// Two network namespaces joined by a veth pair, removed on drop (even when a test panics).
/// Addresses come from TEST-NET-1 (192.0.2.0/24) and exist only inside these namespaces.
#[derive(Debug)]
pub struct VethPair {
    /// Namespace of side A (the phone).
    pub ns_a: String,
    /// Namespace of side B (the server, where keepalive runs).
    pub ns_b: String,
    /// Interface in A.
    pub if_a: String,
    /// Interface in B.
    pub if_b: String,
    /// Address of A.
    pub addr_a: &'static str,
    /// Address of B.
    pub addr_b: &'static str,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Names for a veth pair while it is still in the root namespace: unique per process and
/// call, so tests running in parallel never collide (IFNAMSIZ allows 15 characters).
fn tmp_names() -> (String, String) {
    let id = format!("{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed));
    (format!("ka{id}a"), format!("ka{id}b"))
}

impl VethPair {
    /// Creates the namespaces, the pair, addresses, and brings everything up.
    pub fn new() -> Self {
        let id = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let p = Self {
            ns_a: format!("ka-a-{id}"),
            ns_b: format!("ka-b-{id}"),
            if_a: "ka-phone".into(),
            if_b: "ka-cucm".into(),
            addr_a: "192.0.2.31",
            addr_b: "192.0.2.202",
        };
        ip(&["netns", "add", &p.ns_a]);
        ip(&["netns", "add", &p.ns_b]);
        let (ta, tb) = tmp_names();
        ip(&["link", "add", &ta, "type", "veth", "peer", "name", &tb]);
        ip(&["link", "set", &ta, "netns", &p.ns_a, "name", &p.if_a]);
        ip(&["link", "set", &tb, "netns", &p.ns_b, "name", &p.if_b]);
        for (ns, ifn, addr) in [(&p.ns_a, &p.if_a, p.addr_a), (&p.ns_b, &p.if_b, p.addr_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", ifn]);
            ip(&["-n", ns, "link", "set", ifn, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Runs `f` on a thread that has entered namespace `ns`; sockets it creates live there.
    pub fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        keepalive_lab::lab::spawn_in(ns, f)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth end, and with it the pair.
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Three namespaces: a phone, a router and a CUCM, joined by two veth pairs, with the router
/// forwarding between 192.0.2.0/24 (TEST-NET-1, phones) and 198.51.100.0/24 (TEST-NET-2,
/// servers). keepalive runs in the router on both of its interfaces, so it sees each direction
/// on ingress: the deployment the design describes. Removed on drop.
#[derive(Debug)]
pub struct RouterLab {
    /// Phone namespace.
    pub ns_phone: String,
    /// Router namespace.
    pub ns_router: String,
    /// CUCM namespace.
    pub ns_cucm: String,
    /// Router interface towards the phone.
    pub r_phone: &'static str,
    /// Router interface towards the CUCM.
    pub r_cucm: &'static str,
    /// Phone address.
    pub phone: &'static str,
    /// CUCM address.
    pub cucm: &'static str,
}

impl RouterLab {
    /// Builds the lab.
    pub fn new() -> Self {
        let id = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let lab = Self {
            ns_phone: format!("ka-p-{id}"),
            ns_router: format!("ka-r-{id}"),
            ns_cucm: format!("ka-c-{id}"),
            r_phone: "r-phone",
            r_cucm: "r-cucm",
            phone: "192.0.2.31",
            cucm: "198.51.100.202",
        };
        for ns in [&lab.ns_phone, &lab.ns_router, &lab.ns_cucm] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let link = |a_ns: &str, a: &str, a_addr: &str, b_ns: &str, b: &str, b_addr: &str| {
            let (ta, tb) = tmp_names();
            ip(&["link", "add", &ta, "type", "veth", "peer", "name", &tb]);
            ip(&["link", "set", &ta, "netns", a_ns, "name", a]);
            ip(&["link", "set", &tb, "netns", b_ns, "name", b]);
            for (ns, ifn, addr) in [(a_ns, a, a_addr), (b_ns, b, b_addr)] {
                ip(&["-n", ns, "addr", "add", addr, "dev", ifn]);
                ip(&["-n", ns, "link", "set", ifn, "up"]);
            }
        };
        link(&lab.ns_phone, "eth0", "192.0.2.31/24", &lab.ns_router, lab.r_phone, "192.0.2.1/24");
        link(
            &lab.ns_cucm,
            "eth0",
            "198.51.100.202/24",
            &lab.ns_router,
            lab.r_cucm,
            "198.51.100.1/24",
        );
        ip(&["-n", &lab.ns_phone, "route", "add", "default", "via", "192.0.2.1"]);
        ip(&["-n", &lab.ns_cucm, "route", "add", "default", "via", "198.51.100.1"]);
        let fwd = Command::new("ip")
            .args(["netns", "exec", &lab.ns_router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status()
            .expect("sysctl");
        assert!(fwd.success(), "enable forwarding in the router namespace");
        lab
    }
}

impl RouterLab {
    /// `keepalive run` in the router on both of its interfaces, with `--json` and `extra`.
    pub fn agent(&self, extra: &[&str]) -> Agent {
        let mut args = vec!["--iface", self.r_phone, "--iface", self.r_cucm, "--json"];
        args.extend_from_slice(extra);
        Agent::start(&self.ns_router, &args)
    }
}

impl Drop for RouterLab {
    fn drop(&mut self) {
        for ns in [&self.ns_phone, &self.ns_router, &self.ns_cucm] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_keepalive");
static N: AtomicU32 = AtomicU32::new(0);

/// A fresh stats socket path for one agent.
pub fn socket_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "keepalive-agent-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running agent; killed on drop if the test did not stop it.
pub struct Agent {
    child: Option<Child>,
    stderr: BufReader<ChildStderr>,
    /// What it logged so far.
    pub log: String,
    /// Its stats socket.
    pub socket: PathBuf,
}

impl Agent {
    /// Starts `keepalive run` in `ns` with `args`, and waits until its stats socket is up;
    /// its standard output is kept for [`Agent::stop`].
    pub fn start(ns: &str, args: &[&str]) -> Self {
        Self::start_with(ns, args, Stdio::piped())
    }

    /// [`Agent::start`] with the agent's standard output sent to `stdout`.
    pub fn start_with(ns: &str, args: &[&str], stdout: Stdio) -> Self {
        let socket = socket_path();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, BIN, "run", "--socket"])
            .arg(&socket)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keepalive run");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("agent exited before serving stats: {log}");
            }
            log.push_str(&line);
            if line.contains("msg=\"stats socket\"") {
                break;
            }
        }
        Self { child: Some(child), stderr, log, socket }
    }

    /// The agent's process id (`ip netns exec` execs the agent in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then the agent's output.
    pub fn stop(&mut self) -> (Output, String) {
        let child = self.child.take().unwrap();
        // SAFETY: kill on our child's pid (`ip netns exec` execs the agent in place).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        self.log.push_str(&rest);
        (out, self.log.clone())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `keepalive stats --format FORMAT` against `socket`, as root or as user nobody.
pub fn stats(socket: &Path, format: &str, as_nobody: bool) -> Output {
    stats_with(socket, format, as_nobody, &[])
}

/// `keepalive stats` with more arguments (filters).
pub fn stats_with(socket: &Path, format: &str, as_nobody: bool, more: &[&str]) -> Output {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(["stats", "--format", format, "--socket"])
        .arg(socket)
        .args(more)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run keepalive stats")
}

/// An SCCP phone and CUCM over real TCP through the router: Register → RegisterAck, then
/// `n` KeepAlives `gap` apart, each answered by a KeepAliveAck.
pub fn sccp_phone(lab: &RouterLab, device: &'static str, n: usize, gap: Duration) {
    let cucm: IpAddr = lab.cucm.parse().unwrap();
    let server = VethPair::in_ns(&lab.ns_cucm, move || {
        let l = TcpListener::bind((cucm, 2000)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut head = [0u8; 8];
        s.read_exact(&mut head).unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(head[..4].try_into().unwrap()) as usize];
        s.read_exact(&mut body).unwrap();
        s.write_all(&keepalive_lab::fixtures::sccp_pdu(
            keepalive_common::wire::sccp_msg::REGISTER_ACK,
            &[0; 16],
        ))
        .unwrap();
        let mut ka = [0u8; 12];
        for _ in 0..n {
            s.read_exact(&mut ka).unwrap();
            s.write_all(&keepalive_lab::fixtures::sccp_keepalive_ack()).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let phone = VethPair::in_ns(&lab.ns_phone, move || {
        let mut s =
            TcpStream::connect_timeout(&(cucm, 2000).into(), Duration::from_secs(5)).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&keepalive_lab::fixtures::sccp_register(device)).unwrap();
        let mut ack = [0u8; 28];
        s.read_exact(&mut ack).unwrap();
        let mut ka = [0u8; 12];
        for _ in 0..n {
            s.write_all(&keepalive_lab::fixtures::sccp_keepalive()).unwrap();
            s.read_exact(&mut ka).unwrap();
            std::thread::sleep(gap);
        }
    });
    phone.join().expect("phone");
    server.join().expect("cucm");
}
