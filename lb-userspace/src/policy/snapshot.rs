//! A service's shunting as saved to outlive lb (`ServiceShunt::snapshot`), and taken up again
//! by the next lb that adopts the data plane (`ServiceShunt::restore`): the pool's state, since
//! when and why; the operator's command in force; an external open with its wall-clock TTL
//! deadline; the window in progress; the rules' claim; each overflow backend's state, since
//! and own report; the event log. Every time is in Unix seconds, so it means the same to the
//! next lb however long it took to start: a TTL or a drain_timeout that ran out meanwhile
//! runs out at its first tick, as it would have.
//!
//! The config of the new lb wins, as at a reload (`ServiceShunt::reconfigure`): overflow
//! backends are matched by address (one the config dropped is forgotten, a new one starts
//! closed and follows the pool from the first tick), the rules' claim is kept only when the
//! enter and exit rules are unchanged, and min_open_secs, drain_timeout, hooks and windows are
//! the config's. Rule streaks always start over: the seconds lb was down were not sampled, so a
//! streak cannot run across them (a claim the rules hold stays until the exit rules hold for
//! their full for_secs in the new lb).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    BackendReport, EVENTS_KEPT, Event, OverflowBackendState, RuleHeld, ServiceShunt, ShuntState, UnixSecs, Why,
    triggers::{ExternalClaim, ManualHold},
};
use crate::config::{ShuntRule, ShuntWindow};

/// Everything a `ServiceShunt` needs to go on where it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShuntSnapshot {
    pool: PoolSnapshot,
    /// `lb shunt open|close` in force (None: released to the automatic triggers).
    manual: Option<ManualHold>,
    /// An external open in force, with its deadline (`expires_at`, Unix seconds) if it has a TTL.
    external: Option<ExternalClaim>,
    /// The window in progress at the last tick: (start, end).
    window: Option<(UnixSecs, UnixSecs)>,
    /// Why the pool closes when no claim is left (the claim that went last).
    last_withdrawn: Why,
    rules: RulesSnapshot,
    backends: Vec<BackendSnapshot>,
    /// The last EVENTS_KEPT events, oldest first, and how many were ever logged.
    events: Vec<Event>,
    events_pushed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PoolSnapshot {
    state: ShuntState,
    since: UnixSecs,
    why: Why,
    /// When the pool last left closed (or closing): min_open_secs counts from here.
    opened_at: UnixSecs,
    deferral_logged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RulesSnapshot {
    /// The rules the claim was made under, as text: a claim carries over only to the same rules.
    enter: Vec<String>,
    exit: Vec<String>,
    claim: Option<RuleHeld>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BackendSnapshot {
    addr: SocketAddr,
    state: OverflowBackendState,
    since: UnixSecs,
    /// Its own report (`ready` / `closing`), until the pool closes.
    report: Option<BackendReport>,
    healthy: bool,
    /// Its sessions as last counted, while it drains (0 otherwise: a count that moves every
    /// second would rewrite the document every second): a draining backend stays draining until
    /// the new lb has counted them itself.
    sessions: u64,
    opened_this_cycle: bool,
}

/// What a restore could not take over, for the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Restored {
    /// The enter and exit rules are those of the snapshot: the rules' claim carried over.
    pub rules_kept: bool,
    /// Saved overflow backends the config no longer has (forgotten).
    pub dropped_backends: Vec<SocketAddr>,
}

impl ShuntSnapshot {
    /// The pool's state when it was saved.
    pub fn state(&self) -> ShuntState {
        self.pool.state
    }
}

impl ServiceShunt {
    /// The state to save for the next lb.
    pub fn snapshot(&self) -> ShuntSnapshot {
        let l = &self.lifecycle;
        let t = &self.triggers;
        ShuntSnapshot {
            pool: PoolSnapshot {
                state: l.state,
                since: l.since,
                why: l.why.clone(),
                opened_at: l.opened_at,
                deferral_logged: l.deferral_logged,
            },
            manual: t.manual.clone(),
            external: t.external.clone(),
            window: t.window.map(|w| (w.start.unix_timestamp(), w.end.unix_timestamp())),
            last_withdrawn: t.last_withdrawn.clone(),
            rules: RulesSnapshot {
                enter: texts(&self.config.enter),
                exit: texts(&self.config.exit),
                claim: self.rules.claim,
            },
            backends: self
                .backends
                .iter()
                .map(|b| BackendSnapshot {
                    addr: b.addr,
                    state: b.state,
                    since: b.since,
                    report: b.report,
                    healthy: b.healthy,
                    sessions: if b.state == OverflowBackendState::Draining { b.sessions } else { 0 },
                    opened_this_cycle: b.opened_this_cycle,
                })
                .collect(),
            events: self.events.iter().cloned().collect(),
            events_pushed: self.events.pushed(),
        }
    }

    /// Takes up `saved`, an earlier lb's snapshot of this service, in place of the state this
    /// one started with, as far as this service's config allows (see the top of this file).
    /// Nothing runs: no hook, no event; the next tick goes on from there.
    pub fn restore(&mut self, saved: ShuntSnapshot) -> Restored {
        let l = &mut self.lifecycle;
        let p = saved.pool;
        (l.state, l.since, l.why, l.opened_at, l.deferral_logged) = (p.state, p.since, p.why, p.opened_at, p.deferral_logged);
        let t = &mut self.triggers;
        (t.manual, t.external, t.last_withdrawn) = (saved.manual, saved.external, saved.last_withdrawn);
        // Kept even if the config dropped it, as a reload does: the next tick then ends it.
        t.window = saved.window.and_then(|(start, end)| {
            let at = |unix| OffsetDateTime::from_unix_timestamp(unix).ok();
            Some(ShuntWindow { start: at(start)?, end: at(end)? })
        });
        let rules_kept = saved.rules.enter == texts(&self.config.enter) && saved.rules.exit == texts(&self.config.exit);
        if rules_kept {
            self.rules.claim = saved.rules.claim;
        }
        let mut dropped_backends = Vec::new();
        for s in saved.backends {
            match self.backends.backends.iter_mut().find(|b| b.addr == s.addr) {
                Some(b) => {
                    (b.state, b.since, b.report, b.healthy, b.sessions) = (s.state, s.since, s.report, s.healthy, s.sessions);
                    b.opened_this_cycle = s.opened_this_cycle;
                }
                None => dropped_backends.push(s.addr),
            }
        }
        let kept = saved.events.len().saturating_sub(EVENTS_KEPT);
        self.events.events = saved.events.into_iter().skip(kept).collect();
        self.events.pushed = saved.events_pushed.max(self.events.events.len() as u64);
        Restored { rules_kept, dropped_backends }
    }
}

fn texts(rules: &[ShuntRule]) -> Vec<String> {
    rules.iter().map(ToString::to_string).collect()
}
