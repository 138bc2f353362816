//! SCCP phone and CUCM simulators over real kernel TCP (no open-source SCCP stack exists).
//! Their bytes are the fixtures' PDUs, which tshark's SKINNY dissector decodes (the capture
//! tests check KeepAlive, KeepAliveAck and the Register's DeviceName against it).
//!
//! * [`Cucm`]: answers Register with RegisterAck and, as a primary, KeepAlive with KeepAliveAck;
//!   a backup answers nothing (the kernel's TCP ACK is all the phone gets).
//! * [`Phone`]: registers with its primary, asks what a phone asks after registering (time,
//!   button and soft-key templates, config), sends a KeepAlive every interval and waits for the
//!   ack; after two unanswered KeepAlives it resets the connection and reconnects from a new
//!   port (docs/DOMAIN.md). To its backup it sends a KeepAlive every backup interval.
//!   Given [`Timers::call_every`], it also makes calls on its primary connection: OffHook,
//!   four digits, the media channel's setup, and OnHook a KeepAlive later, so a KeepAlive and
//!   its ack fall in the middle of the call. The KeepAlive timer runs on its own schedule,
//!   whatever the call does, as a phone's does.
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
    syslog::{reason, Syslog, Unregistered},
    tls::{LabTls, Wire},
};
use crate::{
    fixtures::{
        sccp_keepalive, sccp_keepalive_ack, sccp_pdu, sccp_register,
        scenario::REGISTRATION_REQUESTS,
    },
    nap,
};

/// How long blocking calls wait before checking the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Call-signalling message ids the simulators use (Wireshark's `packet-skinny.c` names).
mod call_msg {
    pub const KEYPAD_BUTTON: u16 = 0x0003;
    pub const OFF_HOOK: u16 = 0x0006;
    pub const ON_HOOK: u16 = 0x0007;
    pub const OPEN_RECEIVE_CHANNEL_ACK: u16 = 0x0022;
    pub const START_TONE: u16 = 0x0082;
    pub const STOP_TONE: u16 = 0x0083;
    pub const SET_LAMP: u16 = 0x0086;
    pub const START_MEDIA_TRANSMISSION: u16 = 0x008A;
    pub const STOP_MEDIA_TRANSMISSION: u16 = 0x008B;
    pub const CALL_INFO: u16 = 0x008F;
    pub const OPEN_RECEIVE_CHANNEL: u16 = 0x0105;
    pub const CLOSE_RECEIVE_CHANNEL: u16 = 0x0106;
    pub const SELECT_SOFT_KEYS: u16 = 0x0110;
    pub const CALL_STATE: u16 = 0x0111;
    pub const DISPLAY_PROMPT_STATUS: u16 = 0x0112;
    pub const CLEAR_PROMPT_STATUS: u16 = 0x0113;
    pub const ACTIVATE_CALL_PLANE: u16 = 0x0116;
}

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

/// Waits up to `wait` for the next PDU: `Ok(None)` when none began, `Err` on EOF, an error or
/// garbage. Once a PDU's first byte is in, the rest must follow within 2 s.
fn next_pdu(s: &mut impl Wire, wait: Duration) -> Result<Option<u16>, ()> {
    Ok(next_pdu_body(s, wait)?.map(|(id, _)| id))
}

/// [`next_pdu`] with the PDU's body (after the message id).
fn next_pdu_body(s: &mut impl Wire, wait: Duration) -> Result<Option<(u16, Vec<u8>)>, ()> {
    let _ = s.tcp().set_read_timeout(Some(wait.max(Duration::from_millis(1))));
    let mut first = [0u8; 1];
    match s.read(&mut first) {
        Ok(0) => return Err(()),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None)
        }
        Err(_) => return Err(()),
    }
    let _ = s.tcp().set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 8];
    head[0] = first[0];
    s.read_exact(&mut head[1..]).map_err(|_| ())?;
    let len = u32::from_le_bytes(head[..4].try_into().map_err(|_| ())?) as usize;
    if !(4..=4096).contains(&len) {
        return Err(());
    }
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).map_err(|_| ())?;
    let id = sccp_msg::from_wire(u32::from_le_bytes(rest[..4].try_into().map_err(|_| ())?));
    Ok(Some((id, rest.split_off(4))))
}

/// A call-signalling PDU of `body` bytes (line 1, call reference 1; the rest zeros). A
/// current phone's call messages carry the line and call reference (chan-sccp's
/// `sccp_protocol.h` records a 7962's OffHook: header version 0x16, 8 bytes of body), so none
/// is a KeepAlive's 12 bytes and a secure phone's call records differ in size from its
/// keepalive's.
fn call_pdu(id: u16, body: usize) -> Vec<u8> {
    let mut b = vec![0u8; body];
    if body >= 8 {
        b[..4].copy_from_slice(&1u32.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
    }
    sccp_pdu(id, &b)
}

/// What a CUCM sends for a phone's call message (`digits`: digits dialled so far).
fn call_reply(id: u16, digits: &mut u32) -> Vec<Vec<u8>> {
    use call_msg::*;
    match id {
        OFF_HOOK => {
            *digits = 0;
            vec![
                call_pdu(SET_LAMP, 12),
                call_pdu(CALL_STATE, 24),
                call_pdu(ACTIVATE_CALL_PLANE, 4),
                call_pdu(START_TONE, 16),
                call_pdu(SELECT_SOFT_KEYS, 16),
                call_pdu(DISPLAY_PROMPT_STATUS, 44),
            ]
        }
        KEYPAD_BUTTON => {
            *digits += 1;
            match *digits {
                1 => vec![call_pdu(STOP_TONE, 8)],
                4 => vec![
                    call_pdu(CALL_STATE, 24),
                    call_pdu(CALL_INFO, 264),
                    call_pdu(START_TONE, 16),
                    call_pdu(DISPLAY_PROMPT_STATUS, 44),
                    call_pdu(OPEN_RECEIVE_CHANNEL, 36),
                ],
                _ => Vec::new(),
            }
        }
        OPEN_RECEIVE_CHANNEL_ACK => vec![
            call_pdu(STOP_TONE, 8),
            call_pdu(CALL_STATE, 24),
            call_pdu(START_MEDIA_TRANSMISSION, 48),
        ],
        ON_HOOK => vec![
            call_pdu(CLOSE_RECEIVE_CHANNEL, 12),
            call_pdu(STOP_MEDIA_TRANSMISSION, 12),
            call_pdu(SET_LAMP, 12),
            call_pdu(CALL_STATE, 24),
            call_pdu(CLEAR_PROMPT_STATUS, 8),
            call_pdu(SELECT_SOFT_KEYS, 16),
        ],
        _ => Vec::new(),
    }
}

/// A CUCM listening on port 2000 inside a namespace.
#[derive(Debug)]
pub struct Cucm {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// What a CUCM connection knows of its phone, for its alarms.
struct Registration {
    device: String,
    ip: IpAddr,
    node: String,
    syslog: Syslog,
}

impl Registration {
    /// Sends `EndPointUnregistered` with `reason`.
    fn unregistered(&self, reason: u32) {
        self.syslog.send(&Unregistered {
            node: &self.node,
            device: &self.device,
            ip: self.ip,
            protocol: "SCCP",
            reason,
        });
    }
}

impl Cucm {
    /// Starts a CUCM on `addr`:2000 in namespace `ns`; `primary` answers KeepAlives.
    pub fn start(ns: &str, addr: IpAddr, primary: bool) -> Self {
        Self::start_on(ns, addr, primary, None)
    }

    /// The same, over TLS on 2443 when `tls` is given.
    pub fn start_on(ns: &str, addr: IpAddr, primary: bool, tls: Option<LabTls>) -> Self {
        Self::start_with(ns, addr, primary, tls, None)
    }

    /// The same, sending CUCM's syslog when it unregisters a phone, given `syslog`: Reason 13
    /// after the keepalive timeout (it then resets the connection), 6 when the phone's
    /// connection breaks, 15 to every registered phone when the CUCM is stopped (a restart).
    pub fn start_with(
        ns: &str,
        addr: IpAddr,
        primary: bool,
        tls: Option<LabTls>,
        syslog: Option<Syslog>,
    ) -> Self {
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
                                        serve(w, primary, &s2, syslog);
                                    }
                                }
                                None => serve(c, primary, &s2, syslog),
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

fn serve(mut c: impl Wire, primary: bool, stop: &AtomicBool, syslog: Option<Syslog>) {
    let _ = c.tcp().set_read_timeout(Some(POLL));
    let _ = c.tcp().set_nodelay(true);
    let mut digits = 0;
    let mut registered: Option<Registration> = None;
    let mut heard = Instant::now();
    let reset = |c: &dyn Wire| {
        let _ = socket2::SockRef::from(c.tcp()).set_linger(Some(Duration::ZERO));
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            // Reset, not FIN: a restarting CUCM does not close politely.
            if let Some(r) = &registered {
                r.unregistered(reason::CALLMANAGER_RESTART);
            }
            reset(&c);
            return;
        }
        if let Some(r) =
            registered.as_ref().filter(|r| heard.elapsed() > r.syslog.keepalive_timeout)
        {
            r.unregistered(reason::KEEPALIVE_TIMEOUT);
            reset(&c);
            return;
        }
        // Through the TLS layer, not a peek at the socket: rustls may already hold the
        // plaintext of several records that came in one read.
        let (id, body) = match next_pdu_body(&mut c, POLL) {
            Ok(Some(pdu)) => pdu,
            Ok(None) => continue,
            Err(()) => {
                if let Some(r) = &registered {
                    r.unregistered(reason::CONNECTIVITY_ERROR);
                }
                return;
            }
        };
        heard = Instant::now();
        if id == sccp_msg::REGISTER && primary {
            registered = syslog.zip(c.tcp().peer_addr().ok()).map(|(syslog, peer)| {
                let name = body.get(..16).unwrap_or(&body);
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                Registration {
                    device: String::from_utf8_lossy(&name[..end]).into_owned(),
                    ip: peer.ip(),
                    node: c
                        .tcp()
                        .local_addr()
                        .map_or("cucm".into(), |a| format!("cucm-{}", a.ip())),
                    syslog,
                }
            });
        }
        let replies = match id {
            sccp_msg::REGISTER => vec![sccp_pdu(sccp_msg::REGISTER_ACK, &[0; 16])],
            sccp_msg::KEEPALIVE if primary => vec![sccp_keepalive_ack()],
            sccp_msg::KEEPALIVE => Vec::new(),
            other if primary => match REGISTRATION_REQUESTS.iter().find(|r| r.0 == other) {
                Some(&(_, res, len)) => vec![sccp_pdu(res, &vec![0; len])],
                None => call_reply(other, &mut digits),
            },
            _ => Vec::new(),
        };
        // Each PDU is its own write, so over TLS each is its own record.
        for r in replies {
            if send(&mut c, &r).is_err() {
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
        let sock = super::PacketSocket::open(ETH_P_ARP, Duration::from_millis(50))
            .unwrap_or_else(|e| panic!("AF_PACKET socket: {e}"));
        let mut buf = [0u8; 1514];
        while !stop.load(Ordering::Relaxed) {
            let Some((n, from)) = sock.recv(&mut buf) else {
                continue;
            };
            if n < 42 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let f = &buf[..n];
            // Ethernet + ARP request (op 1) for our address.
            if f[20..22] != [0, 1] || f[38..42] != ip.octets() {
                continue;
            }
            let (sha, spa) = (<[u8; 6]>::try_from(&f[22..28]).unwrap(), &f[28..32]);
            let own = own_mac(sock.fd(), from.sll_ifindex);
            std::thread::sleep(delay);
            let eth = crate::fixtures::Eth::new(own, sha);
            let spa = std::net::Ipv4Addr::new(spa[0], spa[1], spa[2], spa[3]);
            let reply =
                crate::fixtures::arp_frame(&eth, crate::fixtures::ARP_REPLY, own, ip, sha, spa);
            let mut to = super::PacketSocket::to(from.sll_ifindex, sha);
            to.sll_protocol = from.sll_protocol;
            sock.send(&reply, &to);
        }
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
    /// A call after every this many KeepAlives to the primary, none when `None`.
    pub call_every: Option<u32>,
}

impl Timers {
    /// Cisco's defaults divided by `scale`, no calls.
    pub fn scaled(scale: f64) -> Self {
        Self {
            primary: Duration::from_secs_f64(30.0 / scale),
            backup: Duration::from_secs_f64(60.0 / scale),
            call_every: None,
        }
    }

    /// The same phone, making a call after every `n` KeepAlives.
    pub fn with_calls(self, n: u32) -> Self {
        Self { call_every: Some(n.max(1)), ..self }
    }
}

/// A call's messages from the phone, each due this fraction of the KeepAlive interval after
/// the KeepAlive the call follows: OffHook, four digits, and OnHook after the next KeepAlive
/// (the OpenReceiveChannelAck answers the CUCM's OpenReceiveChannel as it comes).
const CALL: [(f64, u16, usize); 6] = [
    (0.40, call_msg::OFF_HOOK, 8),
    (0.50, call_msg::KEYPAD_BUTTON, 12),
    (0.53, call_msg::KEYPAD_BUTTON, 12),
    (0.56, call_msg::KEYPAD_BUTTON, 12),
    (0.59, call_msg::KEYPAD_BUTTON, 12),
    (1.30, call_msg::ON_HOOK, 8),
];

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
        // What a phone asks after registering (bodiless, a KeepAlive's size); the answers
        // are read below with everything else the CUCM sends.
        if REGISTRATION_REQUESTS.iter().any(|r| send(&mut s, &sccp_pdu(r.0, &[])).is_err()) {
            continue;
        }
        // The KeepAlive timer keeps its own schedule; between KeepAlives the phone reads
        // what the CUCM sends and makes its calls.
        let mut next_ka = Instant::now() + t.primary;
        let mut outstanding = false;
        let mut unanswered = 0;
        let mut calls: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= next_ka {
                // The ack must have come before the next KeepAlive is due.
                if outstanding {
                    unanswered += 1;
                    if unanswered >= 2 {
                        break;
                    }
                }
                if let Some(h) = hook {
                    h(n);
                }
                n += 1;
                if send(&mut s, &sccp_keepalive()).is_err() {
                    break;
                }
                outstanding = true;
                if t.call_every.is_some_and(|every| (n - 1).is_multiple_of(every))
                    && calls.is_empty()
                {
                    for (at, id, body) in CALL {
                        calls.push_back((next_ka + t.primary.mul_f64(at), call_pdu(id, body)));
                    }
                }
                next_ka += t.primary;
                continue;
            }
            if calls.front().is_some_and(|(at, _)| now >= *at) {
                let (_, m) = calls.pop_front().expect("a call message is due");
                if send(&mut s, &m).is_err() {
                    break;
                }
                continue;
            }
            let due = calls.front().map_or(next_ka, |(at, _)| (*at).min(next_ka));
            match next_pdu(&mut s, due.saturating_duration_since(now).min(POLL)) {
                Err(()) => break,
                Ok(Some(sccp_msg::KEEPALIVE_ACK)) => {
                    outstanding = false;
                    unanswered = 0;
                }
                Ok(Some(call_msg::OPEN_RECEIVE_CHANNEL)) => {
                    if send(&mut s, &call_pdu(call_msg::OPEN_RECEIVE_CHANNEL_ACK, 16)).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
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
