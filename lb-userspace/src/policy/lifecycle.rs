//! The pool of one service: closed -> opening -> open -> closing -> closed.
//!
//! - closed -> opening when the triggers demand it open (`on_open` runs);
//! - opening -> open once an overflow backend takes flows (passed its health check);
//! - opening/open -> closing when no trigger claims it any more, but not before min_open_secs
//!   since it opened (an operator's close does not wait); no new flows go to the pool from then;
//! - closing -> closed once the pool's sessions are 0 (counted in a later second than the one
//!   closing began in) or after drain_timeout (`on_close` runs);
//! - closing -> opening when a trigger claims it again before it has closed (no hook: its
//!   servers were never told to stop).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Demand, EventKind, EventLog, UnixSecs, Why};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShuntState {
    Closed,
    Opening,
    Open,
    Closing,
}

impl ShuntState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShuntState::Closed => "closed",
            ShuntState::Opening => "opening",
            ShuntState::Open => "open",
            ShuntState::Closing => "closing",
        }
    }

    /// Whether overflow backends may take new flows (each once it passes its health check).
    pub fn admits_new_flows(self) -> bool {
        matches!(self, ShuntState::Opening | ShuntState::Open)
    }
}

/// Which of the service's hooks to run (the daemon runs it, off its loop, with a timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    OnOpen,
    OnClose,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub(super) state: ShuntState,
    pub(super) since: UnixSecs,
    pub(super) why: Why,
    /// When the pool last left closed (or closing): min_open_secs counts from here.
    pub(super) opened_at: UnixSecs,
    /// The current deferral of a close has been logged.
    pub(super) deferral_logged: bool,
    min_open: i64,
    drain_timeout: i64,
}

impl Lifecycle {
    pub fn new(now: UnixSecs, min_open: Duration, drain_timeout: Duration) -> Self {
        Lifecycle {
            state: ShuntState::Closed,
            since: now,
            why: Why::NoTrigger,
            opened_at: now,
            deferral_logged: false,
            min_open: min_open.as_secs() as i64,
            drain_timeout: drain_timeout.as_secs() as i64,
        }
    }

    pub fn state(&self) -> ShuntState {
        self.state
    }

    /// A reload changed min_open_secs or drain_timeout: they apply from now on, to the state
    /// the pool is in (a running min_open or drain counts from when it began).
    pub fn set_timeouts(&mut self, min_open: Duration, drain_timeout: Duration) {
        self.min_open = min_open.as_secs() as i64;
        self.drain_timeout = drain_timeout.as_secs() as i64;
    }

    /// When the pool entered its state.
    pub fn since(&self) -> UnixSecs {
        self.since
    }

    /// Why the pool is in its state.
    pub fn why(&self) -> &Why {
        &self.why
    }

    /// Follows the triggers' demand. `pool_sessions`: the overflow backends' active sessions.
    pub fn follow(&mut self, now: UnixSecs, demand: &Demand, pool_sessions: u64, log: &mut EventLog) -> Option<Hook> {
        self.follow_counted(now, demand, pool_sessions, true, log)
    }

    /// `follow`, told whether `pool_sessions` were counted after the pool began closing: a
    /// count from before (sessions opened since are not in it) never closes a draining pool
    /// (its drain_timeout still does).
    pub fn follow_counted(
        &mut self,
        now: UnixSecs,
        demand: &Demand,
        pool_sessions: u64,
        counted_since_closing: bool,
        log: &mut EventLog,
    ) -> Option<Hook> {
        use ShuntState::*;
        match (self.state, demand) {
            (Closed, Demand::Open(why)) => {
                self.opened_at = now;
                self.enter(now, Opening, why.clone(), log);
                Some(Hook::OnOpen)
            }
            (Closed, _) => None,
            (Opening | Open, Demand::Open(_)) => {
                self.deferral_logged = false;
                None
            }
            (Opening | Open, Demand::ForceClose(why)) => {
                self.enter(now, Closing, why.clone(), log);
                None
            }
            (Opening | Open, Demand::Close(why)) => {
                let until = self.opened_at.saturating_add(self.min_open);
                if now >= until {
                    self.enter(now, Closing, why.clone(), log);
                } else if !self.deferral_logged {
                    self.deferral_logged = true;
                    log.push(now, EventKind::CloseDeferred, Why::MinOpen { until });
                }
                None
            }
            (Closing, Demand::Open(why)) => {
                self.opened_at = now;
                self.enter(now, Opening, why.clone(), log);
                None
            }
            (Closing, _) => {
                let why = if pool_sessions == 0 && counted_since_closing && now > self.since {
                    Why::Drained
                } else if now >= self.since.saturating_add(self.drain_timeout) {
                    Why::DrainTimeout { sessions_left: pool_sessions }
                } else {
                    return None;
                };
                self.enter(now, Closed, why, log);
                Some(Hook::OnClose)
            }
        }
    }

    /// An overflow backend takes flows: an opening pool is open.
    pub fn backend_taking_flows(&mut self, now: UnixSecs, backend: std::net::SocketAddr, log: &mut EventLog) {
        if self.state == ShuntState::Opening {
            self.enter(now, ShuntState::Open, Why::BackendTakingFlows { backend }, log);
        }
    }

    fn enter(&mut self, now: UnixSecs, to: ShuntState, why: Why, log: &mut EventLog) {
        log.push(now, EventKind::Pool { from: self.state, to }, why.clone());
        self.deferral_logged = false;
        self.state = to;
        self.since = now;
        // Open keeps the trigger that opened the pool as its why, not the backend that came up.
        if !matches!(why, Why::BackendTakingFlows { .. }) {
            self.why = why;
        }
    }
}
