//! Active sessions per backend, counted off the daemon's loop: a walk of SESSIONS reads all of
//! it (16 MiB by default, 256 MiB at 16M records), so it runs on a blocking thread and
//! reports back through a channel the loop selects on. `lb status`, `lb metrics` and scrapes
//! read the last count; a large table is walked less often than once a tick.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::state::TICK;
use crate::dataplane::{SessionCounts, SessionReader};

/// A walk may take at most 1/BUDGET of the time (it holds a core): one that took 100 ms is
/// repeated at most every 2 s.
const BUDGET: u32 = 20;

/// One walk of the table; `Some` unless cancelled. Runs on a blocking thread.
pub(super) type Walker = Arc<dyn Fn(&AtomicBool) -> Option<SessionCounts> + Send + Sync>;

/// A finished walk, as the loop receives it.
pub(super) struct Walked {
    started: Instant,
    took: Duration,
    counts: SessionCounts,
}

pub(super) struct SessionCensus {
    walker: Walker,
    counts: SessionCounts,
    /// When the walk behind `counts` started, and how long it took.
    taken: Option<Instant>,
    walk: Duration,
    /// The walk in progress: its start, and the flag that stops it.
    running: Option<(Instant, Arc<AtomicBool>)>,
    /// A count was asked for while a walk ran: walk again as soon as it ends.
    again: bool,
    done_tx: UnboundedSender<Walked>,
    done: UnboundedReceiver<Walked>,
}

impl SessionCensus {
    pub fn new(walker: Walker) -> Self {
        let (done_tx, done) = unbounded_channel();
        SessionCensus {
            walker,
            counts: SessionCounts::new(),
            taken: None,
            walk: Duration::ZERO,
            running: None,
            again: false,
            done_tx,
            done,
        }
    }

    /// Walks `reader`'s table.
    pub fn of(reader: SessionReader) -> Self {
        Self::new(Arc::new(move |cancel: &AtomicBool| reader.counts(cancel)))
    }

    /// Starts a walk if none runs and the last count is a tick old (or older than its
    /// budget allows).
    pub fn start_if_due(&mut self, now: Instant) {
        if self.running.is_none() && self.due(now) {
            self.start();
        }
    }

    /// Asks for a count that starts from now on (a drain wants the sessions left after it):
    /// at once, or right after the walk in progress.
    pub fn ask(&mut self) {
        if self.running.is_some() {
            self.again = true;
        } else {
            self.start();
        }
    }

    fn start(&mut self) {
        let started = Instant::now();
        let cancel = Arc::new(AtomicBool::new(false));
        self.running = Some((started, cancel.clone()));
        let (walker, done) = (self.walker.clone(), self.done_tx.clone());
        tracing::debug!("walking SESSIONS");
        tokio::task::spawn_blocking(move || {
            if let Some(counts) = walker(&cancel) {
                // The receiver lives as long as the census; gone, nobody wants the count.
                let _ = done.send(Walked { started, took: started.elapsed(), counts });
            }
        });
    }

    /// The next finished walk (cancel-safe, for the loop's select).
    pub async fn next_walk(&mut self) -> Walked {
        self.done.recv().await.expect("the census holds a sender")
    }

    /// Takes a finished walk's count; starts the next walk if one was asked for meanwhile.
    /// Returns when that count's walk started: it speaks for every change made before.
    pub fn finished(&mut self, w: Walked) -> Instant {
        tracing::debug!(walk_us = w.took.as_micros() as u64, "counted SESSIONS");
        self.running = None;
        (self.counts, self.taken, self.walk) = (w.counts, Some(w.started), w.took);
        if std::mem::take(&mut self.again) {
            self.start();
        }
        w.started
    }

    fn due(&self, now: Instant) -> bool {
        let Some(taken) = self.taken else { return true };
        // Ticks come about (not exactly) a TICK apart: half a tick of slack keeps "every tick".
        let every = TICK.max(self.walk * BUDGET);
        now + TICK / 2 >= taken + every
    }

    pub fn counts(&self) -> &SessionCounts {
        &self.counts
    }

    /// Active sessions of a backend incarnation as of the last count.
    pub fn get(&self, id: u32, generation: u32) -> u64 {
        self.counts.of(id, generation)
    }

    /// Active sessions over all backend incarnations as of the last count; None before the first.
    pub fn total(&self) -> Option<u64> {
        self.taken.map(|_| self.counts.total())
    }

    /// When the walk behind the last count started (it saw every change made before); None
    /// before the first.
    pub fn taken(&self) -> Option<Instant> {
        self.taken
    }

    /// How old the last count is; None before the first.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.taken.map(|t| now.saturating_duration_since(t))
    }
}

impl Drop for SessionCensus {
    /// A walk in progress stops within a few MiB of table (shutdown need not wait for it).
    fn drop(&mut self) {
        if let Some((_, cancel)) = &self.running {
            cancel.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
