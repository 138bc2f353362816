//! The stats socket: a Unix stream socket the agent listens on (default
//! `/run/keepalive/keepalive.sock`), and the client `keepalive stats` uses.
//!
//! Protocol: the client writes one line, `json` or `table` with its filters (see [`Query`]),
//! and reads the answer to EOF. The agent reads at most [`MAX_REQUEST`] bytes within
//! [`REQUEST_TIMEOUT`] and nothing after the line, so the socket can be opened to a group of
//! operators (`--socket-mode 0660` and a group owning the directory) without giving them any
//! control. A request it cannot read is answered with one `error:` line. Answers list at most
//! [`MAX_LIMIT`] rows ([`DEFAULT_LIMIT`] unless asked), so no client, and no flood of pairs,
//! makes a document of hundreds of MB.
//!
//! Why a socket rather than pinned maps: the kernel maps hold per-flow counters, not the
//! tracker's per-phone state and findings, which live only in the agent; a socket serves both
//! and leaves nothing behind in bpffs when the agent stops.

use std::{
    io::{Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
};

use super::snapshot::State;
use crate::report::{self, PhoneRow};

/// Default path of the stats socket.
pub const DEFAULT_SOCKET: &str = "/run/keepalive/keepalive.sock";
/// The longest request line read.
pub const MAX_REQUEST: usize = 256;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Rows listed when the request does not say (`keepalive stats --limit`).
pub const DEFAULT_LIMIT: u32 = 1_000;
/// The most rows one answer lists (about 1 KB each in JSON); page with `--offset` beyond.
pub const MAX_LIMIT: u32 = 100_000;
/// How long the server waits after a failed `accept` (EMFILE: out of file descriptors)
/// before trying again; the kernel keeps the connection queued meanwhile.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
         `--socket-mode`); run as a member of that group (for the packaged service, group \
         keepalive: `adduser NAME keepalive`, then log in again), or as root"
    )]
    Permission(PathBuf),
    /// The agent refused the request.
    #[error("the agent refused the request: {0}")]
    Refused(String),
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

/// Serves snapshots until the task is dropped: each client on a task of its own.
pub async fn serve(listener: UnixListener, state: Arc<Mutex<State>>) {
    let mut failures = super::RateLimited::new(Duration::from_secs(10));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE/ENFILE/ENOMEM: retrying at once would spin on the same error.
                failures.log("warn", "stats socket: accept failed", &[("error", &e)]);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            let body = match read_request(&mut rd).await {
                // Off the runtime's one thread, which drains the event rings: the page is
                // built on a blocking thread that shares the lock with the ingest.
                Ok(query) => tokio::task::spawn_blocking(move || render(&state, &query))
                    .await
                    .unwrap_or_else(|_| b"error: building the answer failed\n".to_vec()),
                Err(why) => format!("error: {why}\n").into_bytes(),
            };
            // A client that went away is not the agent's problem.
            let _ = wr.write_all(&body).await;
            let _ = wr.shutdown().await;
            // Unread bytes of an oversized request would reset the connection when it closes
            // (the client could lose the answer): read a little more of them first.
            let (mut rest, mut sink) = ((&mut rd).take(64 * 1024), tokio::io::sink());
            let drain = tokio::io::copy(&mut rest, &mut sink);
            let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
            drop(body);
            release_memory();
        });
    }
}

/// Reads one request line: at most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`].
async fn read_request(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> Result<Query, String> {
    let mut line = Vec::new();
    let mut rd = BufReader::new(rd.take(MAX_REQUEST as u64 + 1));
    match tokio::time::timeout(REQUEST_TIMEOUT, rd.read_until(b'\n', &mut line)).await {
        Err(_) => return Err(format!("no request line within {} s", REQUEST_TIMEOUT.as_secs())),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(_)) => {}
    }
    parse_request(&line)
}

/// The request in `line` (what the agent read of it, at most [`MAX_REQUEST`] + 1 bytes), or
/// the sentence that refuses it.
pub fn parse_request(line: &[u8]) -> Result<Query, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_owned())?;
    Query::parse(text)
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
/// `FORMAT [findings] [phone=ADDR|NAME] [limit=N] [offset=N]`. At 100 000 phones the whole
/// state is a ~90 MB JSON document; the filters and the page keep the summary and counters
/// whole and list only the phones asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The table instead of JSON.
    pub table: bool,
    /// Only phones with at least one finding.
    pub findings_only: bool,
    /// Only the pairs of this phone: its address or its device name (case-insensitive).
    pub phone: Option<String>,
    /// Rows listed at most (1 to [`MAX_LIMIT`]).
    pub limit: u32,
    /// Rows skipped first.
    pub offset: u32,
}

impl Default for Query {
    fn default() -> Self {
        Self { table: false, findings_only: false, phone: None, limit: DEFAULT_LIMIT, offset: 0 }
    }
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
        line.push_str(&format!(" limit={} offset={}", self.limit, self.offset));
        line.push('\n');
        line
    }

    /// Reads a request line; unknown words are ignored (an older client sends the format
    /// only), a page out of range is refused with the reason.
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut q = Self::default();
        let number = |word: &str, v: &str| -> Result<u32, String> {
            v.parse().map_err(|_| format!("`{word}`: expected a number"))
        };
        for (i, word) in line.split_whitespace().enumerate() {
            match word {
                "table" if i == 0 => q.table = true,
                "findings" => q.findings_only = true,
                _ => {
                    if let Some(p) = word.strip_prefix("phone=") {
                        q.phone = Some(p.to_string());
                    } else if let Some(v) = word.strip_prefix("limit=") {
                        q.limit = number(word, v)?;
                        if !(1..=MAX_LIMIT).contains(&q.limit) {
                            return Err(format!("limit must be from 1 to {MAX_LIMIT}"));
                        }
                    } else if let Some(v) = word.strip_prefix("offset=") {
                        q.offset = number(word, v)?;
                    }
                }
            }
        }
        Ok(q)
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
    let (offset, limit) = (query.offset as usize, query.limit as usize);
    let snap = State::snapshot_page_sliced(&mut state.lock(), keep, offset, limit);
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
         event ring full {}, shed {}, parse errors {}, flows {} live / {} LRU-evicted",
        snap.agent.pid,
        ifaces.join(", "),
        k.seen,
        k.matched_tcp,
        k.matched_arp,
        k.events,
        k.ringbuf_full,
        k.shed,
        k.parse_errors,
        k.flows_live,
        k.lru_evictions
    )?;
    let u = &snap.userspace;
    let evicted: Vec<String> = u
        .evictions
        .by_reason()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(why, n)| format!("{n} {why}"))
        .collect();
    writeln!(
        out,
        "tracker: {} phones (limit {}), {} candidates (limit {}), {} streams, {} ARP addresses; \
         evicted: {}",
        u.phones,
        u.limits.phones,
        u.candidates,
        u.limits.candidates,
        u.streams,
        u.arp_addresses,
        if evicted.is_empty() { "nothing".to_owned() } else { evicted.join(", ") }
    )?;
    report::table::write(&snap.report, &mut *out)?;
    if let Some(p) = snap.page.filter(|p| p.offset + p.rows < p.matching || p.offset > 0) {
        writeln!(
            out,
            "rows {}–{} of {} listed (worst first); `--offset {}` for the next page, `--limit` \
             for more at once",
            p.offset + 1,
            p.offset + p.rows,
            p.matching,
            p.offset + p.rows
        )?;
    }
    Ok(())
}

/// Asks the agent on `path` for its state.
pub fn fetch(path: &Path, query: &Query) -> Result<String, SocketError> {
    let mut s = UnixStream::connect(path).map_err(io(path))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(io(path))?;
    s.write_all(query.to_line().as_bytes()).map_err(io(path))?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(io(path))?;
    if let Some(why) = out.strip_prefix("error: ") {
        return Err(SocketError::Refused(why.trim_end().to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn queries_travel_as_one_line() {
        let q = Query {
            findings_only: true,
            phone: Some("SEP00AB00CD0031".into()),
            limit: 10,
            offset: 20,
            ..Query::default()
        };
        assert_eq!(q.to_line(), "json findings phone=SEP00AB00CD0031 limit=10 offset=20\n");
        assert_eq!(Query::parse(&q.to_line()), Ok(q));
        // An older client sends the format alone, and gets the default page.
        assert_eq!(Query::parse("table\n"), Ok(Query { table: true, ..Query::default() }));
        assert_eq!(Query::parse("json"), Ok(Query::default()));
        assert_eq!(Query::parse("json phone=10.0.0.1").unwrap().phone.as_deref(), Some("10.0.0.1"));
        assert!(Query::parse("json limit=0").unwrap_err().contains("from 1 to"));
        assert!(Query::parse("json limit=100001").is_err());
        assert!(Query::parse("json offset=-3").unwrap_err().contains("number"));
    }

    /// Requests the agent cannot read get one sentence, never a hang or a huge answer.
    #[tokio::test]
    async fn oversized_slow_and_garbage_requests_are_refused() {
        let long = format!("json {}\n", "x".repeat(super::MAX_REQUEST));
        let read = super::read_request;
        assert!(read(&mut long.as_bytes()).await.unwrap_err().contains("longer than"));
        let garbage: &[u8] = b"json \xff\xfe\n";
        assert!(read(&mut &garbage[..]).await.unwrap_err().contains("UTF-8"));
        assert!(read(&mut &b"table"[..]).await.unwrap().table);
        // A client that connects and says nothing is let go after the timeout.
        let (_client, mut server) = tokio::io::duplex(64);
        let started = std::time::Instant::now();
        let slow = super::read_request(&mut server).await.unwrap_err();
        assert!(slow.contains("no request line"), "{slow}");
        assert!(started.elapsed() >= super::REQUEST_TIMEOUT);
    }
}
