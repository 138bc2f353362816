//! `cargo xtask demo`: the lab in one command. Builds `keepalive_lab::lab` (three phones, a switch
//! running keepalive on every port, a primary and a backup CUCM, an ASA; addresses from
//! TEST-NET-1 that exist only in the lab's namespaces), starts two SCCP phones and the CUCM
//! simulators over real kernel TCP, a SIP phone (sipp) registered with kamailio on both CUCMs,
//! with timers scaled down, and shows the agent's live view. After a healthy
//! start it stages the chosen fault on phone 192.0.2.31. Ctrl-C (or --duration) ends it; the
//! namespaces are always removed.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use keepalive_lab::lab::{
    addr,
    fault::{self, FaultKind},
    sccp::{Cucm, Phone, Timers},
    sip::{Registrar, SipPhone},
    Lab,
};

/// Demo options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Protocol timers run this many times faster than Cisco's (30 s KeepAlives every 3 s).
    #[arg(long, default_value_t = 10.0)]
    pub scale: f64,
    /// The fault staged on phone 192.0.2.31 after a healthy start.
    #[arg(long, value_enum, default_value_t = FaultKind::ProxyArp)]
    pub fault: FaultKind,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
}

/// The demo agent's stats socket (`keepalive stats --socket` reads it while the demo runs).
const DEMO_SOCKET: &str = "/run/keepalive/demo.sock";

/// Runs the demo.
pub fn run(a: &Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and attaches XDP: run it as root");
    }
    if !(a.scale > 0.0 && a.scale <= 100.0) {
        bail!("--scale must be in (0, 100]");
    }
    crate::cargo(&["build", "--release", "--quiet", "-p", "keepalive-user"])?;
    let bin = std::env::current_dir()?.join("target/release/keepalive");
    let lab = Lab::up("ka-demo", 3).context("building the lab (iproute2)")?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    }
    let mut agent = Command::new("ip");
    agent.args(["netns", "exec", &lab.ns("switch")]).arg(&bin).args([
        "run",
        "--socket",
        DEMO_SOCKET,
    ]);
    agent.args(["--time-scale", &a.scale.to_string(), "--refresh", "1s"]);
    for p in lab.ports() {
        agent.args(["--iface", &p]);
    }
    let mut agent = agent.spawn().context("starting keepalive run")?;
    std::thread::sleep(Duration::from_millis(700));
    let mut cucm1 = Cucm::start(&lab.ns("cucm1"), addr::CUCM1.parse()?, true);
    let _cucm2 = Cucm::start(&lab.ns("cucm2"), addr::CUCM2.parse()?, false);
    std::thread::sleep(Duration::from_millis(200));
    let t = Timers::scaled(a.scale);
    let backup = Some(addr::CUCM2.parse()?);
    let primary = addr::CUCM1.parse()?;
    // Phone 0 keeps no backup connection under port security: its KeepAlives to the backup
    // would refresh the MAC the switch ages out.
    let b0 = if a.fault == FaultKind::PortSecurity { None } else { backup };
    let phones = [
        Phone::start(
            &lab.phone_ns(0),
            addr::phone(0).parse()?,
            "SEP002414000031",
            primary,
            b0,
            t,
            None,
        ),
        Phone::start(
            &lab.phone_ns(1),
            addr::phone(1).parse()?,
            "SEP002414000032",
            primary,
            backup,
            t,
            None,
        ),
    ];
    // A SIP phone (sipp) registered with kamailio on both CUCMs: 3600 asked, 120 granted,
    // refreshed at granted − 5 s (scaled); `Expires: 0` keepalives to the backup.
    let (c1, c2) = (addr::CUCM1.parse()?, addr::CUCM2.parse()?);
    let _registrars = [
        Registrar::start(&lab.ns("cucm1"), c1, 120)?,
        Registrar::start(&lab.ns("cucm2"), c2, 120)?,
    ];
    let refresh = Duration::from_secs_f64(115.0 / a.scale);
    let p2 = addr::phone(2).parse()?;
    let _sip = [
        SipPhone::start(&lab.phone_ns(2), p2, c1, "SEP0024142DDF24", refresh, false)?,
        SipPhone::start(&lab.phone_ns(2), p2, c2, "SEP0024142DDF24", refresh, true)?,
    ];
    let fault_at = t.primary.mul_f64(4.5);
    let start = Instant::now();
    let mut staged: Option<Box<dyn std::any::Any>> = None;
    while !stop.load(Ordering::Relaxed) {
        if staged.is_none() && start.elapsed() >= fault_at {
            staged = Some(match a.fault {
                FaultKind::None => Box::new(()),
                FaultKind::PortSecurity => {
                    // Aging at 0.3 of the interval: the first copies keep aging out while the
                    // RTO doubles to 0.2, 0.4, 0.8, 1.6 s (at the default scale), then the
                    // phone gives up, as in case study 2.
                    Box::new(fault::port_security(&lab, 0, t.primary.mul_f64(0.3))?)
                }
                FaultKind::Loss => Box::new(fault::loss(&lab, 0, fault::Loss::Random(10))?),
                FaultKind::ProxyArp => Box::new(fault::proxy_arp(&lab, 0)?),
                FaultKind::CucmRestart => {
                    cucm1.stop();
                    std::thread::sleep(t.primary * 3);
                    cucm1 = Cucm::start(&lab.ns("cucm1"), addr::CUCM1.parse()?, true);
                    Box::new(())
                }
            });
        }
        if a.duration.is_some_and(|d| start.elapsed().as_secs_f64() >= d) {
            break;
        }
        if agent.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(phones);
    drop(staged);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait()?;
    drop(lab);
    if !status.success() && status.code() != Some(130) {
        bail!("keepalive run exited with {status}");
    }
    eprintln!("demo: lab removed");
    Ok(())
}
