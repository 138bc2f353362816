//! The CUCM syslog listener (`--cucm-syslog udp://ADDR:PORT`). CUCM sends each alarm as one
//! RFC 3164 datagram (a relay may put several lines in one). Each line is parsed as it
//! arrives and its alarm queued in the state; the evaluator joins and scores the queue at its
//! next refresh, where the findings' lifecycle is (`evaluator`), so an unregistration is
//! judged against the forecasts as they stood when it came.
//!
//! A line that is an endpoint alarm but cannot be read is counted and logged, at most once
//! per [`LOG_EVERY`] with how many were not logged; never fatal. A receive error is logged
//! the same way and retried after [`BACKOFF`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{log, now_ns, snapshot::State};
use crate::cucm::{join::Join, syslog::CucmEvent};

/// Alarms queued between two refreshes at most; beyond, they are counted in `dropped`.
pub const PENDING_MAX: usize = 100_000;
/// Unregistrations and forecasts a `stats` answer lists (the newest); the totals count all.
pub const STATS_RECENT: usize = 200;
/// How often a malformed line or a receive error is logged at most.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The wait after a receive error.
pub const BACKOFF: Duration = Duration::from_millis(100);

/// What the agent holds of CUCM's word.
#[derive(Debug, Default)]
pub struct CucmState {
    /// The join and the scoring (the evaluator's).
    pub join: Join,
    /// Alarms received since the last refresh.
    pub pending: Vec<CucmEvent>,
    /// Alarms dropped because the queue was full.
    pub dropped: u64,
    limiter: Limiter,
}

/// Logs at most once per [`LOG_EVERY`], saying how many were suppressed.
#[derive(Debug, Default)]
struct Limiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl Limiter {
    fn log(&mut self, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        let n = std::mem::take(&mut self.suppressed);
        let mut all: Vec<(&str, &dyn std::fmt::Display)> = fields.to_vec();
        all.push(("suppressed", &n));
        log("warn", msg, &all);
        self.last = Some(Instant::now());
    }
}

/// Receives on `sock` until the task is aborted.
pub async fn serve(sock: tokio::net::UdpSocket, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 65_536];
    let mut errors = Limiter::default();
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                errors.log("cucm syslog receive failed", &[("error", &e)]);
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let now = now_ns();
        let mut st = state.lock();
        let Some(c) = st.cucm.as_mut() else { return };
        for line in text.lines() {
            match c.join.line(line, now) {
                Ok(Some(ev)) if c.pending.len() < PENDING_MAX => c.pending.push(ev),
                Ok(Some(_)) => c.dropped += 1,
                Ok(None) => {}
                Err(e) => c.limiter.log("malformed cucm alarm", &[("from", &from), ("error", &e)]),
            }
        }
    }
}
