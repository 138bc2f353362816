//! SIP in the lab with real peers: kamailio as the registrar, configured like CUCM (it grants
//! 120 s whatever the phone asks, docs/DOMAIN.md), and sipp as Cisco-style phones registering over
//! TCP and refreshing at granted − delta (scaled), or sending `Expires: 0` /
//! `cisco-keep-alive` REGISTERs to a backup.

use std::{
    net::IpAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{spawn_in, LabError};

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
        let dir = scratch(&format!("kamailio-{addr}"));
        let cfg = dir.join("kamailio.cfg");
        let text = format!(
            "#!KAMAILIO
debug=1
log_stderror=yes
children=1
tcp_children=2
auto_aliases=no
listen=tcp:{addr}:5060
mpath=\"{KAMAILIO_MODULES}\"
loadmodule \"tm.so\"
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
        // Ready when its TCP port accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let up = spawn_in(ns, move || {
                std::net::TcpStream::connect_timeout(
                    &(addr, 5060).into(),
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
