//! The live flow-map count, on a thread of its own.
//!
//! The kernel keeps no element count for an LRU hash map, so counting reads the whole map:
//! 58 ms for the 200 000 flows of 100 000 phones in batches (`crate::flow_count`), 133 ms key
//! by key. Done in the event loop, that was time in which nobody read the event rings, and
//! the scale bench lost a few hundred SIP events to it. Here a thread counts (every refresh
//! while the maps are small, every [`SLOW_EVERY`] once they are not) and the loop reads the
//! latest count.

use std::{
    sync::{
        mpsc::{self, RecvTimeoutError},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::loader::{FlowMaps, LoaderError};

/// How often the flows are counted once there are [`SLOW_ABOVE`] or more.
pub const SLOW_EVERY: Duration = Duration::from_secs(30);
/// Below this many flows they are counted on every refresh.
pub const SLOW_ABOVE: u64 = 10_000;

/// One count of the flow maps: the live entries and the `flows_created` counter read with
/// them, and when. Evictions are `created − live` of the same count, so the three always
/// agree; a fresh `flows_created` beside an older live count would make up evictions (or
/// hide them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCount {
    /// Entries live in the flow maps.
    pub live: u64,
    /// Flow entries the program had created when they were counted.
    pub created: u64,
    /// When they were counted (ns since the epoch).
    pub at_ns: u64,
}

impl FlowCount {
    fn now((live, created): (u64, u64)) -> Self {
        Self { live, created, at_ns: super::now_ns() }
    }

    /// Entries the LRU evicted by the time of the count.
    pub fn evicted(&self) -> u64 {
        self.created.saturating_sub(self.live)
    }
}

/// The latest count and the first error since it was read, shared with the thread.
#[derive(Debug, Default)]
struct Latest {
    count: FlowCount,
    error: Option<String>,
}

/// The counting thread; stopped and joined when dropped.
#[derive(Debug)]
pub struct FlowCounter {
    latest: Arc<Mutex<Latest>>,
    /// Dropping it (or sending on it) stops the thread at once, even mid-wait.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<FlowMaps>>,
}

impl FlowCounter {
    /// Counts once now (so the first refresh has a figure), then on a thread every `refresh`
    /// (or [`SLOW_EVERY`] once the maps hold [`SLOW_ABOVE`] flows).
    pub fn start(maps: FlowMaps, refresh: Duration) -> Result<Self, LoaderError> {
        let count = FlowCount::now(maps.count()?);
        let live = count.live;
        let latest = Arc::new(Mutex::new(Latest { count, error: None }));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = {
            let latest = latest.clone();
            std::thread::Builder::new()
                .name("flow-count".into())
                .spawn(move || {
                    let mut live = live;
                    loop {
                        let wait = if live < SLOW_ABOVE { refresh } else { SLOW_EVERY };
                        match stopped.recv_timeout(wait) {
                            Err(RecvTimeoutError::Timeout) => {}
                            Ok(()) | Err(RecvTimeoutError::Disconnected) => return maps,
                        }
                        let got = maps.count();
                        let mut l = latest.lock().unwrap_or_else(|e| e.into_inner());
                        match got {
                            Ok(c) => {
                                l.count = FlowCount::now(c);
                                live = l.count.live;
                            }
                            Err(e) => l.error = Some(e.to_string()),
                        }
                    }
                })
                .map_err(|e| LoaderError::Map {
                    name: "FLOWS",
                    source: aya::maps::MapError::IoError(e),
                })?
        };
        Ok(Self { latest, stop: Some(stop), thread: Some(thread) })
    }

    /// The latest good count, and the latest error the thread met since the last call.
    pub fn get(&self) -> (FlowCount, Option<String>) {
        let mut l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let error = l.error.take();
        (l.count, error)
    }

    /// Stops the thread and counts once more, for the final figures.
    pub fn finish(mut self) -> Result<FlowCount, LoaderError> {
        drop(self.stop.take());
        let maps = self.thread.take().and_then(|t| t.join().ok());
        if let Some(c) = maps.map(|m| m.count()).transpose()? {
            let mut l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            l.count = FlowCount::now(c);
        }
        let l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        Ok(l.count)
    }
}

impl Drop for FlowCounter {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
