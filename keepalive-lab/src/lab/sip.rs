//! SIP in the lab with real peers: kamailio as the registrar, configured like CUCM (it grants
//! 120 s whatever the phone asks, docs/DOMAIN.md), and sipp as Cisco-style phones registering over
//! TCP and refreshing at granted − delta (scaled), or sending `Expires: 0` /
//! `cisco-keep-alive` REGISTERs to a backup.
//!
//! CUCM's syslog: given a [`Syslog`], a watcher of kamailio's registrations plays CUCM's part
//! in it. Every 100 ms it reads kamailio's location table over its control socket (`ctl`
//! module, `kamcmd ul.dump`): a contact whose Call-ID and CSeq change was refreshed. A phone
//! not refreshed within [`Syslog::keepalive_timeout`] of its last REGISTER is unregistered,
//! Reason 13, and registered again by its next refresh. A contact deleted at the registrar
//! ([`Registrar::delete`], `kamcmd ul.rm`) is Reason 9, one the phone removed itself Reason 10.
//! kamailio's own expiry is not used: it runs in real seconds (the 120 s it grants) while the
//! lab's timers are scaled, so the watcher applies the lab's timeout to kamailio's record of
//! each refresh. The phone's device name comes from its `+sip.instance`, whose UUID ends with
//! the phone's MAC as a Cisco phone's does (kamailio keeps it with the contact).
//!
//! Secure phones: kamailio also listens for TLS on 5061 (its `tls` module, the lab's
//! certificate), and [`TlsSipPhone`] registers over TLS with rustls. Debian's sipp is built
//! without TLS (`sipp -v` lists no `TLS`, so `-t l1` is not available), and the TLS phone is
//! ours: the fixtures' REGISTERs, with `Via: SIP/2.0/TLS`.

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    sh, spawn_in,
    syslog::{reason, Syslog, Unregistered},
    tls::{LabTls, Wire},
    LabError,
};
use crate::{
    fixtures::{sip_register, SipRegister},
    nap,
};

/// Where kamailio keeps its modules on Debian.
const KAMAILIO_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keepalive-lab-{}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn spawn(cmd: &mut Command, what: &str) -> Result<Child, LabError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|error| {
        LabError::Spawn { cmd: format!("{what} (scripts/bootstrap.sh installs it)"), error }
    })
}

/// A kamailio registrar in a namespace; stopped on drop.
#[derive(Debug)]
pub struct Registrar {
    child: Child,
    /// kamailio's control socket (`ctl` module, binrpc), for `kamcmd`.
    ctl: PathBuf,
    watcher: Option<Watcher>,
}

impl Registrar {
    /// Starts kamailio on `addr`:5060/TCP in `ns`, granting at most `grant` seconds.
    pub fn start(ns: &str, addr: IpAddr, grant: u32) -> Result<Self, LabError> {
        Self::start_on(ns, addr, grant, None)
    }

    /// The same, also listening for TLS on 5061 with the lab's certificate when `tls` is given.
    pub fn start_on(
        ns: &str,
        addr: IpAddr,
        grant: u32,
        tls: Option<&LabTls>,
    ) -> Result<Self, LabError> {
        Self::start_with(ns, addr, grant, tls, None)
    }

    /// The same, sending CUCM's syslog when it unregisters a phone, given `syslog` (the
    /// watcher of the module docs).
    pub fn start_with(
        ns: &str,
        addr: IpAddr,
        grant: u32,
        tls: Option<&LabTls>,
        syslog: Option<Syslog>,
    ) -> Result<Self, LabError> {
        let dir = scratch(&format!("kamailio-{addr}"));
        let cfg = dir.join("kamailio.cfg");
        let ctl = dir.join("ctl");
        let _ = std::fs::remove_file(&ctl);
        let ctl_text = ctl.display();
        let (tls_listen, tls_modules) = match tls {
            Some(t) => tls_config(&dir, addr, t)?,
            None => (String::new(), String::new()),
        };
        let text = format!(
            "#!KAMAILIO
debug=1
log_stderror=yes
children=1
tcp_children=2
auto_aliases=no
listen=tcp:{addr}:5060
{tls_listen}mpath=\"{KAMAILIO_MODULES}\"
{tls_modules}loadmodule \"tm.so\"
loadmodule \"sl.so\"
loadmodule \"pv.so\"
loadmodule \"usrloc.so\"
loadmodule \"registrar.so\"
loadmodule \"ctl.so\"
modparam(\"ctl\", \"binrpc\", \"unix:{ctl_text}\")
modparam(\"registrar\", \"max_expires\", {grant})
modparam(\"registrar\", \"default_expires\", {grant})
request_route {{
    if (method == \"REGISTER\") {{
        if (!save(\"location\")) {{ sl_reply_error(); }}
        exit;
    }}
    sl_send_reply(\"404\", \"Not here\");
}}
"
        );
        std::fs::write(&cfg, text)
            .map_err(|error| LabError::Spawn { cmd: "write kamailio.cfg".into(), error })?;
        let child = spawn(
            Command::new("ip")
                .args(["netns", "exec", ns, "kamailio", "-DD", "-E", "-f"])
                .arg(&cfg)
                .arg("-w")
                .arg(&dir),
            "kamailio",
        )?;
        let mut r = Self { child, ctl, watcher: None };
        // Ready when its TCP port (its TLS port, with TLS) accepts.
        let port = if tls.is_some() { 5061 } else { 5060 };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let up = spawn_in(ns, move || {
                std::net::TcpStream::connect_timeout(
                    &(addr, port).into(),
                    Duration::from_millis(200),
                )
                .is_ok()
            })
            .join()
            .unwrap_or(false);
            if up {
                if let Some(syslog) = syslog {
                    r.watcher = Some(Watcher::start(ns, addr, r.ctl.clone(), syslog));
                }
                return Ok(r);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LabError::Command {
            cmd: "kamailio".into(),
            stderr: "did not start listening in 10 s".into(),
        })
    }
}

impl Registrar {
    /// Deletes `aor`'s registration at the registrar, on purpose (`kamcmd ul.rm`), as an
    /// administrator's reset in CUCM does: the watcher says Reason 9. The phone's next refresh
    /// registers it again.
    pub fn delete(&self, aor: &str) -> Result<(), LabError> {
        if let Some(w) = &self.watcher {
            w.deleted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(aor.into());
        }
        kamcmd(&self.ctl, &["ul.rm", "location", &format!("s:{aor}")]).map(|_| ())
    }

    /// Every syslog line the watcher has sent, in order: a saved CUCM log for `analyze`.
    pub fn syslog_sent(&self) -> Vec<String> {
        self.watcher.as_ref().map_or_else(Vec::new, |w| {
            w.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
        })
    }
}

/// Runs `kamcmd` on kamailio's control socket.
fn kamcmd(ctl: &Path, args: &[&str]) -> Result<String, LabError> {
    let socket = format!("unix:{}", ctl.display());
    let mut all = vec!["-s", socket.as_str()];
    all.extend(args);
    sh("kamcmd", &all)
}

/// One contact of kamailio's location table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contact {
    /// Its address of record (the phone's extension).
    pub aor: String,
    /// The host of its Contact URI.
    pub ip: Option<IpAddr>,
    /// The Call-ID of the REGISTER that saved it.
    pub call_id: String,
    /// Its CSeq.
    pub cseq: u64,
    /// Its `+sip.instance`, if the phone sent one.
    pub instance: Option<String>,
}

impl Contact {
    /// The contacts in `kamcmd ul.dump`'s text (`AoR:` opens a record, `Address:` a contact,
    /// and the fields after it are that contact's).
    pub fn parse(dump: &str) -> Vec<Self> {
        let mut out: Vec<Self> = Vec::new();
        let mut aor = String::new();
        for line in dump.lines() {
            let Some((key, value)) = line.trim().split_once(": ") else { continue };
            let value = value.trim();
            match (key, out.last_mut()) {
                ("AoR", _) => aor = value.to_owned(),
                ("Address", _) => out.push(Self {
                    aor: aor.clone(),
                    ip: uri_host(value).and_then(|h| h.parse().ok()),
                    ..Self::default()
                }),
                ("Call-ID", Some(c)) => c.call_id = value.to_owned(),
                ("CSeq", Some(c)) => c.cseq = value.parse().unwrap_or(0),
                ("Instance", Some(c)) if value != "[not set]" => c.instance = Some(value.into()),
                _ => {}
            }
        }
        out
    }

    /// The device name CUCM would know the phone by: `SEP` and the MAC its instance UUID
    /// ends with, or the address of record when it sent none.
    pub fn device(&self) -> String {
        let mac = self.instance.as_deref().and_then(|i| {
            let hex = i.trim_end_matches('>').rsplit('-').next()?;
            (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| hex.to_ascii_uppercase())
        });
        mac.map_or_else(|| self.aor.clone(), |m| format!("SEP{m}"))
    }
}

/// The host of a SIP URI: `sip:1001@192.0.2.31:20202;transport=tcp` → `192.0.2.31`.
fn uri_host(uri: &str) -> Option<&str> {
    let rest = uri.split_once('@').map_or(uri, |(_, r)| r);
    let rest = rest.split(';').next()?;
    match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next(),
        None => rest.split(':').next(),
    }
}

/// The watcher of the module docs; stopped with its registrar.
#[derive(Debug)]
struct Watcher {
    stop: Arc<AtomicBool>,
    /// Addresses of record being deleted on purpose ([`Registrar::delete`]).
    deleted: Arc<Mutex<HashSet<String>>>,
    sent: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
}

/// How often the watcher reads the location table.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// What the watcher knows of one address of record.
struct Seen {
    /// The Call-ID and CSeq of each of its contacts: a change is a refresh.
    refreshes: Vec<(String, u64)>,
    at: Instant,
    registered: bool,
    device: String,
    ip: Option<IpAddr>,
}

impl Watcher {
    fn start(ns: &str, addr: IpAddr, ctl: PathBuf, syslog: Syslog) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let deleted = Arc::new(Mutex::new(HashSet::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (s, d, log) = (stop.clone(), deleted.clone(), sent.clone());
        let node = format!("cucm-{addr}");
        // In the registrar's namespace: its syslog leaves from the CUCM's address.
        let handle = spawn_in(ns, move || {
            let mut known: HashMap<String, Seen> = HashMap::new();
            let send = |seen: &Seen, reason: u32| {
                if let Some(ip) = seen.ip {
                    let line = syslog.send(&Unregistered {
                        node: &node,
                        device: &seen.device,
                        ip,
                        protocol: "SIP",
                        reason,
                    });
                    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
                }
            };
            while nap(WATCH_EVERY, &s) {
                // kamailio busy or stopping: the next round reads it again.
                let Ok(contacts) = kamcmd(&ctl, &["ul.dump"]).map(|t| Contact::parse(&t)) else {
                    continue;
                };
                let mut now: HashMap<String, Vec<&Contact>> = HashMap::new();
                for c in &contacts {
                    now.entry(c.aor.clone()).or_default().push(c);
                }
                for (aor, cs) in &now {
                    let mut refreshes: Vec<(String, u64)> =
                        cs.iter().map(|c| (c.call_id.clone(), c.cseq)).collect();
                    refreshes.sort();
                    if known.get(aor).is_some_and(|seen| seen.refreshes == refreshes) {
                        continue;
                    }
                    let last = cs[cs.len() - 1];
                    let seen = Seen {
                        refreshes,
                        at: Instant::now(),
                        registered: true,
                        device: last.device(),
                        ip: last.ip,
                    };
                    known.insert(aor.clone(), seen);
                }
                for seen in known.values_mut() {
                    if seen.registered && seen.at.elapsed() > syslog.keepalive_timeout {
                        send(seen, reason::KEEPALIVE_TIMEOUT);
                        seen.registered = false;
                    }
                }
                let gone: Vec<String> =
                    known.keys().filter(|a| !now.contains_key(*a)).cloned().collect();
                for aor in gone {
                    let seen = known.remove(&aor).expect("a known address of record");
                    let on_purpose =
                        d.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&aor);
                    if seen.registered {
                        let why = if on_purpose {
                            reason::CALLMANAGER_RESET
                        } else {
                            reason::DEVICE_UNREGISTERED
                        };
                        send(&seen, why);
                    }
                }
            }
        });
        Self { stop, deleted, sent, handle: Some(handle) }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        // The watcher first: kamailio going away is not an unregistration.
        drop(self.watcher.take());
        // SAFETY: signalling our own child; kamailio -DD stops its workers on SIGTERM.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A sipp phone; stopped on drop.
#[derive(Debug)]
pub struct SipPhone {
    child: Child,
    dir: PathBuf,
}

/// The local port of a sipp phone talking to `server`: one per server, so the phones of one
/// namespace never share it.
fn local_port(server: IpAddr) -> u16 {
    20_000 + u16::from(last_byte(server))
}

/// The last byte of an address: what tells the lab's hosts apart.
fn last_byte(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    }
}

/// The sipp scenario: REGISTER, wait for 200 OK, pause until the refresh is due, again.
const SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="Cisco phone: REGISTER over TCP, refreshed at granted - delta">
  <label id="1"/>
  <send>
    <![CDATA[
      REGISTER sip:[remote_ip] SIP/2.0
      Via: SIP/2.0/TCP [local_ip]:[local_port];branch=[branch]
      From: <sip:[ext]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[ext]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: [cseq] REGISTER
      Max-Forwards: 70
      User-Agent: Cisco-CP8961/9.4.2
      Contact: <sip:[ext]@[local_ip]:[local_port];transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-[mac]>";+u.sip!devicename.ccm.cisco.com="[device]";+u.sip!model.ccm.cisco.com="540"KEEP
      Expires: [expires]
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="REFRESH_MS" next="1"/>
</scenario>
"#;

/// A phone's extension, its address of record: 1000 + the last byte of its address (phone 0,
/// 192.0.2.31, is 1031), so the phones of one registrar never share one.
pub fn extension(src: IpAddr) -> String {
    (1000 + u32::from(last_byte(src))).to_string()
}

/// The MAC that ends a Cisco phone's `+sip.instance` UUID: its device name's, in lower case.
fn instance_mac(device: &str) -> String {
    device.strip_prefix("SEP").unwrap_or(device).to_ascii_lowercase()
}

impl SipPhone {
    /// Starts a phone at `src` in `ns` registering `device` (`SEP` + its MAC) as
    /// [`extension`]`(src)` with `server`: asking 3600 s and
    /// refreshing every `refresh`, or, as a backup keepalive, `Expires: 0` with
    /// `cisco-keep-alive`.
    pub fn start(
        ns: &str,
        src: IpAddr,
        server: IpAddr,
        device: &str,
        refresh: Duration,
        backup: bool,
    ) -> Result<Self, LabError> {
        let dir = scratch(&format!("sipp-{src}-{server}"));
        let xml = dir.join("phone.xml");
        let keep = if backup { ";expires=0;cisco-keep-alive" } else { "" };
        let text =
            SCENARIO.replace("KEEP", keep).replace("REFRESH_MS", &refresh.as_millis().to_string());
        std::fs::write(&xml, text)
            .map_err(|error| LabError::Spawn { cmd: "write the sipp scenario".into(), error })?;
        let child = spawn(
            Command::new("ip")
                .args(["netns", "exec", ns, "sipp", "-sf"])
                .arg(&xml)
                .args(["-t", "t1", &format!("{server}:5060"), "-i", &src.to_string(), "-m", "1"])
                // Its own local port: two sipp phones in one namespace (to the primary and the
                // backup) otherwise race for the same main socket, and the loser exits with
                // "Unable to listen main socket ... Address already in use".
                .args(["-p", &local_port(server).to_string()])
                .args(["-key", "ext", &extension(src), "-key", "device", device])
                .args(["-key", "mac", &instance_mac(device)])
                .args(["-key", "expires", if backup { "0" } else { "3600" }, "-nostdin"])
                // sipp writes its error log (`*_errors.log`) here: see [`SipPhone::status`].
                .args(["-trace_err"])
                .current_dir(&dir),
            "sipp",
        )?;
        Ok(Self { child, dir })
    }

    /// Whether sipp is still running, and the errors it logged: for a test's failure message.
    pub fn status(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(None) => "running".to_owned(),
            Ok(Some(st)) => format!("exited ({st})"),
            Err(e) => format!("unknown ({e})"),
        };
        let errors: String = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        format!("sipp {state}; errors: {}", errors.trim())
    }
}

impl Drop for SipPhone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the lab's certificate and kamailio's `tls.cfg` into `dir`; returns the core settings
/// and the module lines that make kamailio listen for TLS on `addr`:5061 (the tls module's
/// README: `[server:default]` profile, `certificate`, `private_key`, `method`).
fn tls_config(
    dir: &std::path::Path,
    addr: IpAddr,
    t: &LabTls,
) -> Result<(String, String), LabError> {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|error| LabError::Spawn { cmd: format!("write {name}"), error })
    };
    write("cert.pem", &t.cert_pem)?;
    write("key.pem", &t.key_pem)?;
    let d = dir.display();
    write(
        "tls.cfg",
        &format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
             require_certificate = no\ncertificate = {d}/cert.pem\nprivate_key = {d}/key.pem\n\n\
             [client:default]\nverify_certificate = no\nrequire_certificate = no\n"
        ),
    )?;
    Ok((
        format!("enable_tls=yes\nlisten=tls:{addr}:5061\n"),
        format!("loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{d}/tls.cfg\")\n"),
    ))
}

/// A secure SIP phone (ours: see the module docs) registering over TLS on 5061; stopped on
/// drop.
#[derive(Debug)]
pub struct TlsSipPhone {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// Reads one SIP response's status code (its headers, then `Content-Length` bytes of body).
fn read_response(s: &mut impl Read) -> Option<u16> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16_384 || s.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length") || k.trim() == "l")
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut rest = vec![0u8; body.min(65_536)];
    s.read_exact(&mut rest).ok()?;
    Some(status)
}

/// A TLS connection from `src` to `server`:5061.
fn connect_tls(src: IpAddr, server: IpAddr, tls: &LabTls, timeout: Duration) -> Option<impl Wire> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    sock.bind(&SocketAddr::new(src, 0).into()).ok()?;
    sock.connect_timeout(&SocketAddr::new(server, 5061).into(), Duration::from_secs(2)).ok()?;
    let tcp = TcpStream::from(sock);
    tcp.set_nodelay(true).ok()?;
    tcp.set_read_timeout(Some(timeout)).ok()?;
    tls.connect(tcp).ok()
}

impl TlsSipPhone {
    /// Starts a phone at `src` in `ns` registering `device` with `server` over TLS: asking
    /// 3600 s and refreshing `refresh` after each 200 OK, or, as a backup keepalive,
    /// `Expires: 0` with `cisco-keep-alive`. A failed REGISTER closes the connection and the
    /// phone connects again.
    pub fn start(
        ns: &str,
        src: IpAddr,
        server: IpAddr,
        device: &'static str,
        refresh: Duration,
        backup: bool,
        tls: LabTls,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = spawn_in(ns, move || {
            let mut cseq = 101;
            while !s.load(Ordering::Relaxed) {
                let Some(mut w) = connect_tls(src, server, &tls, refresh) else {
                    if !nap(refresh / 4, &s) {
                        return;
                    }
                    continue;
                };
                let port = w.tcp().local_addr().map_or(0, |a| a.port());
                let call_id = format!("{device}-{port}@{src}");
                loop {
                    let reg = SipRegister {
                        phone: src,
                        phone_port: port,
                        server,
                        ext: "1002",
                        device,
                        call_id: &call_id,
                        cseq,
                        expires: if backup { 0 } else { 3600 },
                    };
                    cseq += 1;
                    let text = String::from_utf8_lossy(&sip_register(&reg))
                        .replace("SIP/2.0/TCP", "SIP/2.0/TLS")
                        .replace(";transport=tcp", ";transport=tls");
                    let sent = w.write_all(text.as_bytes()).and_then(|()| w.flush());
                    if sent.is_err() || read_response(&mut w) != Some(200) {
                        break;
                    }
                    if !nap(refresh, &s) {
                        let _ = socket2::SockRef::from(w.tcp()).set_linger(Some(Duration::ZERO));
                        return;
                    }
                }
                if !nap(refresh / 4, &s) {
                    return;
                }
            }
        });
        Self { stop, handle: Some(handle) }
    }
}

impl Drop for TlsSipPhone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kamcmd ul.dump` of kamailio 5.8 with two phones, one without an instance (trimmed to
    /// the fields read, in kamailio's order and indentation).
    const DUMP: &str = "{
\tDomains: {
\t\tDomain: {
\t\t\tDomain: location
\t\t\tSize: 1024
\t\t\tAoRs: {
\t\t\t\tInfo: {
\t\t\t\t\tAoR: 1031
\t\t\t\t\tHashID: 924766748
\t\t\t\t\tContacts: {
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:1031@192.0.2.31:20202;transport=tcp
\t\t\t\t\t\t\tExpires: 120
\t\t\t\t\t\t\tCall-ID: 1-2345@192.0.2.31
\t\t\t\t\t\t\tCSeq: 7
\t\t\t\t\t\t\tUser-Agent: Cisco-CP8961/9.4.2
\t\t\t\t\t\t\tInstance: <urn:uuid:00000000-0000-0000-0000-0024142ddf24>
\t\t\t\t\t\t\tLast-Modified: 1796614731
\t\t\t\t\t\t}
\t\t\t\t\t}
\t\t\t\t}
\t\t\t\tInfo: {
\t\t\t\t\tAoR: 1032
\t\t\t\t\tContacts: {
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:1032@[2001:db8::32]:5060;transport=tcp
\t\t\t\t\t\t\tCall-ID: abc
\t\t\t\t\t\t\tCSeq: 101
\t\t\t\t\t\t\tInstance: [not set]
\t\t\t\t\t\t}
\t\t\t\t\t}
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}";

    #[test]
    fn the_location_table_gives_each_contact_its_refresh_and_device() {
        let c = Contact::parse(DUMP);
        assert_eq!(c.len(), 2, "{c:#?}");
        assert_eq!(c[0].aor, "1031");
        assert_eq!(c[0].ip, Some("192.0.2.31".parse().unwrap()));
        assert_eq!((c[0].call_id.as_str(), c[0].cseq), ("1-2345@192.0.2.31", 7));
        assert_eq!(c[0].device(), "SEP0024142DDF24");
        assert_eq!(c[1].ip, Some("2001:db8::32".parse().unwrap()));
        assert_eq!(c[1].instance, None);
        assert_eq!(c[1].device(), "1032", "no instance: the address of record");
    }

    #[test]
    fn garbage_is_no_contact_and_a_phone_s_extension_follows_its_address() {
        assert!(Contact::parse("error: 500 - Internal error\n").is_empty());
        assert!(Contact::parse("").is_empty());
        assert_eq!(extension("192.0.2.31".parse().unwrap()), "1031");
        assert_eq!(instance_mac("SEP0024142DDF24"), "0024142ddf24");
    }
}
