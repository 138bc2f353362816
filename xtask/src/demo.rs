//! `cargo xtask demo`: the lab in one command. Creates two network namespaces joined by a veth
//! pair (a phone and a CUCM, addresses from TEST-NET-1 that exist only there), runs a small
//! SCCP CUCM (answers KeepAlive with KeepAliveAck) and an SCCP phone (Register, then a
//! KeepAlive every interval), and runs `keepalive run` on the CUCM's interface, printing what
//! it records. Ctrl-C (or --duration) ends it; the namespaces are always removed.

use std::{
    fs::File,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use keepalive::fixtures;

/// Demo options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds between KeepAlives: the phone's 30 s StationKeepaliveInterval scaled down.
    #[arg(long, default_value_t = 3.0)]
    pub interval: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
}

const NS_PHONE: &str = "ka-demo-phone";
const NS_CUCM: &str = "ka-demo-cucm";
const PHONE_IP: &str = "192.0.2.31";
const CUCM_IP: &str = "192.0.2.202";

struct Lab;

impl Lab {
    fn up() -> anyhow::Result<Self> {
        Self::teardown();
        let lab = Self;
        ip(&["netns", "add", NS_PHONE])?;
        ip(&["netns", "add", NS_CUCM])?;
        ip(&["link", "add", "ka-demo-a", "type", "veth", "peer", "name", "ka-demo-b"])?;
        ip(&["link", "set", "ka-demo-a", "netns", NS_PHONE, "name", "phone0"])?;
        ip(&["link", "set", "ka-demo-b", "netns", NS_CUCM, "name", "cucm0"])?;
        for (ns, dev, addr) in [(NS_PHONE, "phone0", PHONE_IP), (NS_CUCM, "cucm0", CUCM_IP)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn teardown() {
        for ns in [NS_PHONE, NS_CUCM] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        Self::teardown();
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn enter(ns: &str) -> anyhow::Result<()> {
    let f = File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: setns for the calling thread only, with a valid fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The CUCM: answers KeepAlive with KeepAliveAck and Register with nothing (enough for SCCP
/// keepalive timing).
fn cucm(stop: &AtomicBool) -> anyhow::Result<()> {
    enter(NS_CUCM)?;
    let l = TcpListener::bind((CUCM_IP, 2000))?;
    l.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                let mut hdr = [0u8; 12];
                while !stop.load(Ordering::Relaxed) {
                    match s.read_exact(&mut hdr) {
                        Ok(()) => {
                            let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
                            let mut body = vec![0u8; len.saturating_sub(4)];
                            s.read_exact(&mut body)?;
                            if hdr[8..12] == [0, 0, 0, 0] {
                                s.write_all(&fixtures::sccp_keepalive_ack())?;
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Ok(())
}

/// The phone: Register, then a KeepAlive every `interval`, reading each KeepAliveAck.
fn phone(stop: &AtomicBool, interval: Duration) -> anyhow::Result<()> {
    enter(NS_PHONE)?;
    let mut s = TcpStream::connect((CUCM_IP, 2000))?;
    s.set_nodelay(true)?;
    s.write_all(&fixtures::sccp_register("SEP0024142DDF24"))?;
    let mut ack = [0u8; 12];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(&fixtures::sccp_keepalive())?;
        s.read_exact(&mut ack)?;
        let until = Instant::now() + interval;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// The demo agent's stats socket (`keepalive stats --socket` reads it while the demo runs).
const DEMO_SOCKET: &str = "/run/keepalive/demo.sock";

/// Runs the demo.
pub fn run(a: &Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and attaches XDP: run it as root");
    }
    crate::cargo(&["build", "--release", "--quiet", "-p", "keepalive-user"])?;
    let bin = std::env::current_dir()?.join("target/release/keepalive");
    let lab = Lab::up()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    }
    let mut agent = Command::new("ip")
        .args(["netns", "exec", NS_CUCM])
        .arg(&bin)
        .args(["run", "--iface", "cucm0", "--socket", DEMO_SOCKET])
        // The phone's 30 s timer runs `interval` s here: the tracker is told the same factor.
        .args(["--time-scale", &format!("{}", 30.0 / a.interval)])
        .spawn()
        .context("starting keepalive run")?;
    std::thread::sleep(Duration::from_millis(500));
    let s1 = stop.clone();
    let server = std::thread::spawn(move || cucm(&s1));
    std::thread::sleep(Duration::from_millis(200));
    let s2 = stop.clone();
    let interval = Duration::from_secs_f64(a.interval);
    let client = std::thread::spawn(move || phone(&s2, interval));
    eprintln!(
        "demo: phone {PHONE_IP} (ns {NS_PHONE}) sends an SCCP KeepAlive every {:.1} s to CUCM {CUCM_IP}:2000 \
         (ns {NS_CUCM}); keepalive watches cucm0 (`keepalive stats --socket {DEMO_SOCKET}` from \
         another shell). Ctrl-C to stop.",
        a.interval
    );
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if a.duration.is_some_and(|d| start.elapsed().as_secs_f64() >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        if agent.try_wait()?.is_some() {
            stop.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait()?;
    let _ = client.join();
    let _ = server.join();
    drop(lab);
    std::io::stdout().flush()?;
    if !status.success() && status.code() != Some(130) {
        bail!("keepalive run exited with {status}");
    }
    eprintln!("demo: lab removed");
    Ok(())
}
