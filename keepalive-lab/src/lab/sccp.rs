//! SCCP phone and CUCM simulators over real kernel TCP (no open-source SCCP stack exists).
//! Their bytes are the fixtures' PDUs, which tshark's SKINNY dissector decodes (the capture
//! tests check KeepAlive, KeepAliveAck and the Register's DeviceName against it).
//!
//! * [`Cucm`]: answers Register with RegisterAck and, as a primary, KeepAlive with KeepAliveAck;
//!   a backup answers nothing (the kernel's TCP ACK is all the phone gets).
//! * [`Phone`]: registers with its primary, sends a KeepAlive every interval and waits for the
//!   ack; after two unanswered KeepAlives it resets the connection and reconnects from a new
//!   port (docs/DOMAIN.md). To its backup it sends a KeepAlive every backup interval.
//!
//! Both speak clear SCCP on 2000 or, given a [`LabTls`], SCCP over TLS on 2443 (a secure
//! phone in a mixed-mode cluster): the same PDUs, each written as one TLS record.

use std::{
    io::Read,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use keepalive_common::wire::sccp_msg;

use super::{
    spawn_in,
    tls::{LabTls, Wire},
};
use crate::{
    fixtures::{sccp_keepalive, sccp_keepalive_ack, sccp_pdu, sccp_register},
    nap,
};

/// How long blocking calls wait before checking the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The clear SCCP port.
pub const PORT: u16 = 2000;
/// The SCCP-over-TLS port.
pub const TLS_PORT: u16 = 2443;

/// Reads one SCCP PDU: (message id, whole PDU length). `None` on EOF, timeout or garbage.
fn read_pdu(s: &mut impl Read) -> Option<(u16, usize)> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    if !(4..=4096).contains(&len) {
        return None;
    }
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).ok()?;
    Some((sccp_msg::from_wire(u32::from_le_bytes(rest[..4].try_into().ok()?)), len + 8))
}

/// A CUCM listening on port 2000 inside a namespace.
#[derive(Debug)]
pub struct Cucm {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Cucm {
    /// Starts a CUCM on `addr`:2000 in namespace `ns`; `primary` answers KeepAlives.
    pub fn start(ns: &str, addr: IpAddr, primary: bool) -> Self {
        Self::start_on(ns, addr, primary, None)
    }

    /// The same, over TLS on 2443 when `tls` is given.
    pub fn start_on(ns: &str, addr: IpAddr, primary: bool, tls: Option<LabTls>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let port = if tls.is_some() { TLS_PORT } else { PORT };
        let handle = spawn_in(ns, move || {
            let l = TcpListener::bind((addr, port)).expect("bind the CUCM's port");
            l.set_nonblocking(true).expect("nonblocking listener");
            let mut conns = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let s2 = s.clone();
                        let tls = tls.clone();
                        conns.push(std::thread::spawn(move || {
                            let _ = c.set_nonblocking(false);
                            match tls {
                                Some(t) => {
                                    if let Ok(w) = t.accept(c) {
                                        serve(w, primary, &s2);
                                    }
                                }
                                None => serve(c, primary, &s2),
                            }
                        }));
                    }
                    Err(_) => std::thread::sleep(POLL),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Self { stop, handle: Some(handle) }
    }

    /// Stops the CUCM: every connection is reset (SO_LINGER 0), as a crashed CUCM's would be.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Cucm {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut c: impl Wire, primary: bool, stop: &AtomicBool) {
    let _ = c.tcp().set_read_timeout(Some(POLL));
    let _ = c.tcp().set_nodelay(true);
    loop {
        if stop.load(Ordering::Relaxed) {
            // Reset, not FIN: a restarting CUCM does not close politely.
            let _ = socket2::SockRef::from(c.tcp()).set_linger(Some(Duration::ZERO));
            return;
        }
        // Wait for bytes on the socket (for TLS: the next record; each PDU is one).
        let mut peek = [0u8; 1];
        match c.tcp().peek(&mut peek) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let _ = c.tcp().set_read_timeout(Some(Duration::from_secs(2)));
        let Some((id, _)) = read_pdu(&mut c) else { return };
        let _ = c.tcp().set_read_timeout(Some(POLL));
        let reply = match id {
            sccp_msg::REGISTER => Some(sccp_pdu(sccp_msg::REGISTER_ACK, &[0; 16])),
            sccp_msg::KEEPALIVE if primary => Some(sccp_keepalive_ack()),
            _ => None,
        };
        if let Some(r) = reply {
            if c.write_all(&r).and_then(|()| c.flush()).is_err() {
                return;
            }
        }
    }
}

/// Answers ARP for `ip` from namespace `ns` after `delay`, in userspace (AF_PACKET), until
/// `stop` is set. The namespace's kernel must be told not to answer (`arp_ignore=8`): this is
/// how the lab makes the real owner of an address answer ARP later than a proxy does.
pub fn delayed_arp_responder(
    ns: &str,
    ip: std::net::Ipv4Addr,
    delay: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    spawn_in(ns, move || {
        const ETH_P_ARP: u16 = 0x0806;
        // SAFETY: plain socket(2); the fd is closed below.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(ETH_P_ARP.to_be())) };
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        // SAFETY: setsockopt with a timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        let mut buf = [0u8; 1514];
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        while !stop.load(Ordering::Relaxed) {
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: recvfrom into our buffer and address.
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                )
            };
            if n < 42 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let f = &buf[..n as usize];
            // Ethernet + ARP request (op 1) for our address.
            if f[20..22] != [0, 1] || f[38..42] != ip.octets() {
                continue;
            }
            let (sha, spa) = (<[u8; 6]>::try_from(&f[22..28]).unwrap(), &f[28..32]);
            let own = own_mac(fd, from.sll_ifindex);
            std::thread::sleep(delay);
            let eth = crate::fixtures::Eth::new(own, sha);
            let spa = std::net::Ipv4Addr::new(spa[0], spa[1], spa[2], spa[3]);
            let reply =
                crate::fixtures::arp_frame(&eth, crate::fixtures::ARP_REPLY, own, ip, sha, spa);
            let mut to = from;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&sha);
            // SAFETY: sendto from our buffer to a sockaddr_ll of the right size.
            unsafe {
                libc::sendto(
                    fd,
                    reply.as_ptr().cast(),
                    reply.len(),
                    0,
                    (&raw const to).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
            }
        }
        // SAFETY: closing our own fd.
        unsafe { libc::close(fd) };
    })
}

fn own_mac(fd: i32, ifindex: i32) -> [u8; 6] {
    // SAFETY: zeroed ifreq, filled by two ioctls on our socket.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_ifru.ifru_ifindex = ifindex;
        libc::ioctl(fd, libc::SIOCGIFNAME, &raw mut ifr);
        libc::ioctl(fd, libc::SIOCGIFHWADDR, &raw mut ifr);
        let sa = ifr.ifr_ifru.ifru_hwaddr.sa_data;
        [sa[0] as u8, sa[1] as u8, sa[2] as u8, sa[3] as u8, sa[4] as u8, sa[5] as u8]
    }
}

/// Timers of a simulated phone (already scaled).
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    /// KeepAlive interval to the primary (30 s nominal).
    pub primary: Duration,
    /// KeepAlive interval to the backup (60 s nominal).
    pub backup: Duration,
}

impl Timers {
    /// Cisco's defaults divided by `scale`.
    pub fn scaled(scale: f64) -> Self {
        Self {
            primary: Duration::from_secs_f64(30.0 / scale),
            backup: Duration::from_secs_f64(60.0 / scale),
        }
    }
}

/// Called before each KeepAlive to the primary with its number (a fault can act there).
pub type Hook = Box<dyn Fn(u32) + Send>;

/// A simulated phone.
pub struct Phone {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone").field("threads", &self.handles.len()).finish()
    }
}

fn connect_tcp(src: IpAddr, dst: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    sock.connect_timeout(&SocketAddr::new(dst, port).into(), Duration::from_secs(2))?;
    let s: TcpStream = sock.into();
    s.set_nodelay(true)?;
    Ok(s)
}

/// A phone's connection to `dst`: clear on 2000, or TLS on 2443.
fn connect(src: IpAddr, dst: IpAddr, tls: Option<&LabTls>) -> std::io::Result<Box<dyn Wire>> {
    match tls {
        None => Ok(Box::new(connect_tcp(src, dst, PORT)?)),
        Some(t) => {
            let tcp = connect_tcp(src, dst, TLS_PORT)?;
            let w = t.connect(tcp).map_err(std::io::Error::other)?;
            Ok(Box::new(w))
        }
    }
}

impl Wire for Box<dyn Wire> {
    fn tcp(&self) -> &TcpStream {
        (**self).tcp()
    }
}

/// Writes one message (for TLS: one record) and pushes it out.
fn send(s: &mut impl Wire, message: &[u8]) -> std::io::Result<()> {
    s.write_all(message)?;
    s.flush()
}

impl Phone {
    /// Starts phone `device` at `src` in namespace `ns`, registered to `primary`, keeping a
    /// connection to `backup`.
    pub fn start(
        ns: &str,
        src: IpAddr,
        device: &'static str,
        primary: IpAddr,
        backup: Option<IpAddr>,
        timers: Timers,
        hook: Option<Hook>,
    ) -> Self {
        Self::start_on(ns, src, device, primary, backup, timers, hook, None)
    }

    /// The same, over TLS on 2443 when `tls` is given (a secure phone).
    #[allow(clippy::too_many_arguments)]
    pub fn start_on(
        ns: &str,
        src: IpAddr,
        device: &'static str,
        primary: IpAddr,
        backup: Option<IpAddr>,
        timers: Timers,
        hook: Option<Hook>,
        tls: Option<LabTls>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        let s = stop.clone();
        let t = tls.clone();
        handles.push(spawn_in(ns, move || {
            primary_loop(src, primary, device, timers, hook.as_ref(), t.as_ref(), &s)
        }));
        if let Some(b) = backup {
            let s = stop.clone();
            handles.push(spawn_in(ns, move || backup_loop(src, b, timers, tls.as_ref(), &s)));
        }
        Self { stop, handles }
    }

    /// Stops the phone.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop();
    }
}

fn primary_loop(
    src: IpAddr,
    dst: IpAddr,
    device: &str,
    t: Timers,
    hook: Option<&Hook>,
    tls: Option<&LabTls>,
    stop: &AtomicBool,
) {
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect(src, dst, tls) else {
            if !nap(t.primary / 4, stop) {
                return;
            }
            continue;
        };
        let _ = s.tcp().set_read_timeout(Some(t.primary));
        if send(&mut s, &sccp_register(device)).is_err() || read_pdu(&mut s).is_none() {
            let _ = socket2::SockRef::from(s.tcp()).set_linger(Some(Duration::ZERO));
            if !nap(t.primary / 4, stop) {
                return;
            }
            continue;
        }
        let mut unanswered = 0;
        loop {
            if !nap(t.primary, stop) {
                return;
            }
            if let Some(h) = hook {
                h(n);
            }
            n += 1;
            if send(&mut s, &sccp_keepalive()).is_err() {
                break;
            }
            // The ack must come before the next KeepAlive is due.
            let sent = Instant::now();
            let _ = s.tcp().set_read_timeout(Some(t.primary.mul_f64(0.9)));
            match read_pdu(&mut s) {
                Some((sccp_msg::KEEPALIVE_ACK, _)) => unanswered = 0,
                Some(_) => {}
                None if sent.elapsed() >= t.primary.mul_f64(0.8) => unanswered += 1,
                None => break,
            }
            if unanswered >= 2 {
                break;
            }
        }
        // Tear the connection down (RST) and register again from a new port.
        let _ = socket2::SockRef::from(s.tcp()).set_linger(Some(Duration::ZERO));
        drop(s);
        if !nap(t.primary / 10, stop) {
            return;
        }
    }
}

fn backup_loop(src: IpAddr, dst: IpAddr, t: Timers, tls: Option<&LabTls>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect(src, dst, tls) else {
            if !nap(t.backup / 4, stop) {
                return;
            }
            continue;
        };
        loop {
            if !nap(t.backup, stop) {
                let _ = socket2::SockRef::from(s.tcp()).set_linger(Some(Duration::ZERO));
                return;
            }
            if send(&mut s, &sccp_keepalive()).is_err() {
                break;
            }
        }
    }
}
