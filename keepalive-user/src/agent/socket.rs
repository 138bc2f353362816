//! The stats socket: a Unix stream socket the agent listens on (default
//! `/run/keepalive/keepalive.sock`), and the client `keepalive stats` uses.
//!
//! Protocol: the client writes one line, `json` or `table`, and reads the answer to EOF. The
//! agent never reads more than that line, so the socket can be opened to a group of operators
//! (`--socket-mode 0660` and a group owning the directory) without giving them any control.
//!
//! Why a socket rather than pinned maps: the kernel maps hold per-flow counters, not the
//! tracker's per-phone state and findings, which live only in the agent; a socket serves both
//! and leaves nothing behind in bpffs when the agent stops.

use std::{
    io::{Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
};

use super::snapshot::State;
use crate::report::{self, PhoneRow};

/// Default path of the stats socket.
pub const DEFAULT_SOCKET: &str = "/run/keepalive/keepalive.sock";

/// Why the stats socket cannot be served or queried.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another agent answers on the socket.
    #[error(
        "another keepalive agent is running (it answers on {0}); stop it first, or give this one \
         its own --socket"
    )]
    InUse(PathBuf),
    /// No socket file.
    #[error(
        "no keepalive agent is running: {0} does not exist (start one with `keepalive run --iface \
         IF`, or point --socket at the one it uses)"
    )]
    NoAgent(PathBuf),
    /// A socket file nobody listens on.
    #[error("no keepalive agent is listening on {0} (a stale socket left by an agent that died?)")]
    Stale(PathBuf),
    /// Not allowed to connect.
    #[error(
        "permission denied on {0}: the agent's socket allows its owner and group only (see \
         `--socket-mode`); run as a member of that group, or as root"
    )]
    Permission(PathBuf),
    /// Anything else.
    #[error("{path}: {error}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SocketError + '_ {
    move |error| match error.kind() {
        std::io::ErrorKind::NotFound => SocketError::NoAgent(path.to_owned()),
        std::io::ErrorKind::ConnectionRefused => SocketError::Stale(path.to_owned()),
        std::io::ErrorKind::PermissionDenied => SocketError::Permission(path.to_owned()),
        _ => SocketError::Io { path: path.to_owned(), error },
    }
}

/// Binds the socket: refuses when another agent answers on it, replaces a stale one, and sets
/// `mode` on it.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, SocketError> {
    if path.exists() {
        match UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse(path.to_owned())),
            Err(_) => std::fs::remove_file(path).map_err(io(path))?,
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(path))?;
    }
    let listener = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
    Ok(listener)
}

/// Serves snapshots until the task is dropped.
pub async fn serve(listener: UnixListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut line = String::new();
            let mut rd = BufReader::new(rd.take(256));
            let read = tokio::time::timeout(Duration::from_secs(2), rd.read_line(&mut line)).await;
            if read.is_err() {
                return;
            }
            let body = render(&state, &Query::parse(&line));
            // A client that went away is not the agent's problem.
            let _ = wr.write_all(&body).await;
            let _ = wr.shutdown().await;
            drop(body);
            release_memory();
        });
    }
}

/// Gives the memory of a large answer back to the system: at 100 000 phones a snapshot and its
/// JSON take a few hundred MB for a moment, and glibc keeps freed heap for reuse otherwise.
pub(super) fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What a `keepalive stats` client asks for, sent as one line:
/// `FORMAT [findings] [phone=ADDR|NAME]`. At 100 000 phones the whole state is a ~90 MB JSON
/// document; the filters keep the summary and counters whole and list only the phones asked
/// for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// The table instead of JSON.
    pub table: bool,
    /// Only phones with at least one finding.
    pub findings_only: bool,
    /// Only the pairs of this phone: its address or its device name (case-insensitive).
    pub phone: Option<String>,
}

impl Query {
    /// The request line.
    pub fn to_line(&self) -> String {
        let mut line = String::from(if self.table { "table" } else { "json" });
        if self.findings_only {
            line.push_str(" findings");
        }
        if let Some(p) = &self.phone {
            line.push_str(" phone=");
            line.push_str(p);
        }
        line.push('\n');
        line
    }

    /// Reads a request line; unknown words are ignored (an older client sends the format only).
    pub fn parse(line: &str) -> Self {
        let mut q = Self::default();
        for (i, word) in line.split_whitespace().enumerate() {
            match word {
                "table" if i == 0 => q.table = true,
                "findings" => q.findings_only = true,
                _ => {
                    if let Some(p) = word.strip_prefix("phone=") {
                        q.phone = Some(p.to_string());
                    }
                }
            }
        }
        q
    }

    /// Whether `row` is listed.
    pub fn keeps(&self, row: &PhoneRow) -> bool {
        (!self.findings_only || !row.findings.is_empty())
            && self.phone.as_deref().is_none_or(|p| {
                row.phone == p || row.device.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(p))
            })
    }
}

fn render(state: &Mutex<State>, query: &Query) -> Vec<u8> {
    let keep = |row: &PhoneRow| query.keeps(row);
    let snap = match state.lock() {
        Ok(s) => s.snapshot_of(keep),
        Err(poisoned) => poisoned.into_inner().snapshot_of(keep),
    };
    let mut out = Vec::new();
    let written = if query.table {
        table(&snap, &mut out)
    } else {
        serde_json::to_writer_pretty(&mut out, &snap).map_err(std::io::Error::from)
    };
    if written.is_err() {
        out.clear();
    }
    out.push(b'\n');
    out
}

fn table(snap: &super::snapshot::Snapshot, out: &mut Vec<u8>) -> std::io::Result<()> {
    let k = &snap.kernel;
    let ifaces: Vec<String> =
        snap.agent.interfaces.iter().map(|i| format!("{} ({:?})", i.name, i.mode)).collect();
    writeln!(
        out,
        "keepalive agent pid {} on {}; kernel: seen {} matched {} tcp / {} arp, events {}, \
         event ring full {}, parse errors {}, flows {} live / {} LRU-evicted",
        snap.agent.pid,
        ifaces.join(", "),
        k.seen,
        k.matched_tcp,
        k.matched_arp,
        k.events,
        k.ringbuf_full,
        k.parse_errors,
        k.flows_live,
        k.lru_evictions
    )?;
    report::table::write(&snap.report, out)
}

/// Asks the agent on `path` for its state.
pub fn fetch(path: &Path, query: &Query) -> Result<String, SocketError> {
    let mut s = UnixStream::connect(path).map_err(io(path))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(io(path))?;
    s.write_all(query.to_line().as_bytes()).map_err(io(path))?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(io(path))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn queries_travel_as_one_line() {
        let q = Query { table: false, findings_only: true, phone: Some("SEP00AB00CD0031".into()) };
        assert_eq!(q.to_line(), "json findings phone=SEP00AB00CD0031\n");
        assert_eq!(Query::parse(&q.to_line()), q);
        // An older client sends the format alone.
        assert_eq!(Query::parse("table\n"), Query { table: true, ..Query::default() });
        assert_eq!(Query::parse("json"), Query::default());
        assert_eq!(Query::parse("json phone=10.0.0.1").phone.as_deref(), Some("10.0.0.1"));
    }
}
