//! Each overflow backend's own state, from the pool's state, its health check and its own
//! report (`POST /v1/services/NAME/backends/ADDR {"state": "ready"|"closing"}`):
//!
//! | state | when | new flows |
//! |---|---|---|
//! | closed | the pool is closed, or it has nothing left to drain | no |
//! | starting | the pool admits flows, the backend is not healthy and has not reported ready | no |
//! | ready_awaiting_health | it reported ready, its health check has not passed yet | no |
//! | open | the pool admits flows and its health check passes | yes |
//! | closing | it reported closing and still has sessions (they finish) | no |
//! | draining | the pool is closing and it still has sessions | no |
//!
//! A report of ready does not replace the health check; a report of closing keeps the backend
//! out until it reports ready again. Reports are forgotten when the pool closes, so each
//! opening starts from the servers' health alone.

use std::net::SocketAddr;

use serde::Serialize;

use super::{EventKind, EventLog, PolicyError, ShuntState, UnixSecs, Why};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowBackendState {
    Closed,
    Starting,
    ReadyAwaitingHealth,
    Open,
    Closing,
    Draining,
}

impl OverflowBackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowBackendState::Closed => "closed",
            OverflowBackendState::Starting => "starting",
            OverflowBackendState::ReadyAwaitingHealth => "ready_awaiting_health",
            OverflowBackendState::Open => "open",
            OverflowBackendState::Closing => "closing",
            OverflowBackendState::Draining => "draining",
        }
    }
}

/// What an overflow server says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendReport {
    Ready,
    Closing,
}

impl BackendReport {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendReport::Ready => "ready",
            BackendReport::Closing => "closing",
        }
    }
}

/// What the daemon knows of an overflow backend this second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendObservation {
    pub addr: SocketAddr,
    /// Its health check passes (the balancer's `up`).
    pub healthy: bool,
    /// Its active sessions.
    pub sessions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverflowBackend {
    pub addr: SocketAddr,
    pub state: OverflowBackendState,
    pub since: UnixSecs,
    pub report: Option<BackendReport>,
    pub healthy: bool,
    pub sessions: u64,
    /// It has been open since the pool last opened (so an opening is counted once).
    #[serde(skip)]
    pub(super) opened_this_cycle: bool,
}

/// The overflow backends of one service, in the order of the config.
#[derive(Debug, Clone, Default)]
pub struct OverflowBackends {
    pub(super) backends: Vec<OverflowBackend>,
}

impl OverflowBackends {
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>, now: UnixSecs) -> Self {
        let backends = addrs
            .into_iter()
            .map(|addr| OverflowBackend {
                addr,
                state: OverflowBackendState::Closed,
                since: now,
                report: None,
                healthy: false,
                sessions: 0,
                opened_this_cycle: false,
            })
            .collect();
        OverflowBackends { backends }
    }

    /// A reload's list of overflow backends, in its order: the ones kept keep their state,
    /// new ones start closed (the next update gives them the pool's state), others are dropped.
    pub fn reconfigure(&mut self, addrs: impl IntoIterator<Item = SocketAddr>, now: UnixSecs) {
        let mut old = std::mem::take(&mut self.backends);
        let fresh = OverflowBackends::new(addrs, now);
        self.backends = fresh
            .backends
            .into_iter()
            .map(|new| match old.iter().position(|b| b.addr == new.addr) {
                Some(i) => old.swap_remove(i),
                None => new,
            })
            .collect();
    }

    pub fn report(&mut self, now: UnixSecs, addr: SocketAddr, report: BackendReport, log: &mut EventLog) -> Result<(), PolicyError> {
        let b = self.backends.iter_mut().find(|b| b.addr == addr).ok_or(PolicyError::NotAnOverflowBackend(addr))?;
        b.report = Some(report);
        log.push(now, EventKind::BackendReported { backend: addr, report }, Why::NoTrigger);
        Ok(())
    }

    /// Moves every backend to the state `pool` and what was `seen` give it (a backend not
    /// seen keeps its last health and sessions). Returns the backends that opened for the
    /// first time since the pool opened.
    pub fn update(&mut self, now: UnixSecs, pool: ShuntState, seen: &[BackendObservation], log: &mut EventLog) -> Vec<SocketAddr> {
        let mut first_openings = Vec::new();
        for b in &mut self.backends {
            if let Some(o) = seen.iter().find(|o| o.addr == b.addr) {
                (b.healthy, b.sessions) = (o.healthy, o.sessions);
            }
            if pool == ShuntState::Closed {
                b.report = None;
                b.opened_this_cycle = false;
            }
            let next = state_for(pool, b.report, b.healthy, b.sessions);
            if next == b.state {
                continue;
            }
            log.push(now, EventKind::Backend { backend: b.addr, from: b.state, to: next }, Why::NoTrigger);
            (b.state, b.since) = (next, now);
            if next == OverflowBackendState::Open && !b.opened_this_cycle {
                b.opened_this_cycle = true;
                first_openings.push(b.addr);
            }
        }
        first_openings
    }

    /// The overflow backends that may take new flows: what the data plane's overflow table is
    /// given (less the ones `quota::full_backends` names).
    pub fn taking_new_flows(&self) -> Vec<SocketAddr> {
        self.backends.iter().filter(|b| b.state == OverflowBackendState::Open).map(|b| b.addr).collect()
    }

    /// Their active sessions together.
    pub fn sessions(&self) -> u64 {
        self.backends.iter().map(|b| b.sessions).sum()
    }

    pub fn get(&self, addr: SocketAddr) -> Option<&OverflowBackend> {
        self.backends.iter().find(|b| b.addr == addr)
    }

    pub fn iter(&self) -> impl Iterator<Item = &OverflowBackend> {
        self.backends.iter()
    }
}

/// The table at the top of this file.
fn state_for(pool: ShuntState, report: Option<BackendReport>, healthy: bool, sessions: u64) -> OverflowBackendState {
    use OverflowBackendState::*;
    let draining = |s| if sessions > 0 { s } else { Closed };
    match (pool, report) {
        (ShuntState::Closed, _) => Closed,
        (_, Some(BackendReport::Closing)) => draining(Closing),
        (ShuntState::Closing, _) => draining(Draining),
        (ShuntState::Opening | ShuntState::Open, _) if healthy => Open,
        (ShuntState::Opening | ShuntState::Open, Some(BackendReport::Ready)) => ReadyAwaitingHealth,
        (ShuntState::Opening | ShuntState::Open, None) => Starting,
    }
}
