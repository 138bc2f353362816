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
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    loader::{FlowMaps, LoaderError},
    nap,
};

/// How often the flows are counted once there are [`SLOW_ABOVE`] or more.
pub const SLOW_EVERY: Duration = Duration::from_secs(30);
/// Below this many flows they are counted on every refresh.
pub const SLOW_ABOVE: u64 = 10_000;

/// `(live, created)` of the latest count and the first error, shared with the thread.
#[derive(Debug, Default)]
struct Latest {
    live: u64,
    created: u64,
    error: Option<String>,
}

/// The counting thread; stopped and joined when dropped.
#[derive(Debug)]
pub struct FlowCounter {
    latest: Arc<Mutex<Latest>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<FlowMaps>>,
}

impl FlowCounter {
    /// Counts once now (so the first refresh has a figure), then on a thread every `refresh`
    /// (or [`SLOW_EVERY`] once the maps hold [`SLOW_ABOVE`] flows).
    pub fn start(maps: FlowMaps, refresh: Duration) -> Result<Self, LoaderError> {
        let (live, created) = maps.count()?;
        let latest = Arc::new(Mutex::new(Latest { live, created, error: None }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (latest, stop) = (latest.clone(), stop.clone());
            std::thread::Builder::new()
                .name("flow-count".into())
                .spawn(move || {
                    let mut live = live;
                    loop {
                        let wait = if live < SLOW_ABOVE { refresh } else { SLOW_EVERY };
                        if !nap(wait, &stop) {
                            return maps;
                        }
                        let got = maps.count();
                        let mut l = latest.lock().unwrap_or_else(|e| e.into_inner());
                        match got {
                            Ok((n, created)) => (l.live, l.created, live) = (n, created, n),
                            Err(e) => l.error = Some(e.to_string()),
                        }
                    }
                })
                .map_err(|e| LoaderError::Map {
                    name: "FLOWS",
                    source: aya::maps::MapError::IoError(e),
                })?
        };
        Ok(Self { latest, stop, thread: Some(thread) })
    }

    /// `(live, evicted)` as of the latest good count (evictions are the flows created that
    /// are no longer live), and the latest error the thread met since the last call, if any.
    pub fn get(&self) -> ((u64, u64), Option<String>) {
        let mut l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let error = l.error.take();
        ((l.live, l.created.saturating_sub(l.live)), error)
    }

    /// Stops the thread and counts once more, for the final figures.
    pub fn finish(mut self) -> Result<(u64, u64), LoaderError> {
        self.stop.store(true, Ordering::Relaxed);
        let maps = self.thread.take().and_then(|t| t.join().ok());
        if let Some((live, created)) = maps.map(|m| m.count()).transpose()? {
            let mut l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            (l.live, l.created) = (live, created);
        }
        let l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        Ok((l.live, l.created.saturating_sub(l.live)))
    }
}

impl Drop for FlowCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
