//! SIP in the lab with real peers: kamailio as the registrar, configured like CUCM (it grants
//! 120 s whatever the phone asks, docs/DOMAIN.md), and sipp as Cisco-style phones registering over
//! TCP and refreshing at granted − delta (scaled), or sending `Expires: 0` /
//! `cisco-keep-alive` REGISTERs to a backup.
//!
//! Secure phones: kamailio also listens for TLS on 5061 (its `tls` module, the lab's
//! certificate), and [`TlsSipPhone`] registers over TLS with rustls. Debian's sipp is built
//! without TLS (`sipp -v` lists no `TLS`, so `-t l1` is not available), and the TLS phone is
//! ours: the fixtures' REGISTERs, with `Via: SIP/2.0/TLS`.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    spawn_in,
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
        let dir = scratch(&format!("kamailio-{addr}"));
        let cfg = dir.join("kamailio.cfg");
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
        let r = Self { child };
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

impl Drop for Registrar {
    fn drop(&mut self) {
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
    let last = match server {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    20_000 + u16::from(last)
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
      Contact: <sip:[ext]@[local_ip]:[local_port];transport=tcp>;+u.sip!devicename.ccm.cisco.com="[device]";+u.sip!model.ccm.cisco.com="540"KEEP
      Expires: [expires]
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="REFRESH_MS" next="1"/>
</scenario>
"#;

impl SipPhone {
    /// Starts a phone at `src` in `ns` registering `device` with `server`: asking 3600 s and
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
                .args(["-key", "ext", "1001", "-key", "device", device])
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
