//! What the policy decided, and why: the events `lb shunt status` lists (the last 50 of a
//! service) and the log lines the daemon writes.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{OverflowBackendState, RuleHeld, ShuntState, UnixSecs};

/// Events kept per service.
pub const EVENTS_KEPT: usize = 50;

/// The trigger behind a decision, with the value that fired it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Why {
    /// `lb shunt open|close` (reason as given, may be empty).
    Manual { reason: String },
    /// The operator gave control back to the automatic triggers.
    ManualReleased,
    /// An external push; an open with a TTL lapses at `expires_at`.
    External { reason: String, expires_at: Option<UnixSecs> },
    /// An external open's TTL ran out without renewal.
    ExternalExpired { reason: String },
    /// An enter rule held.
    Rule(RuleHeld),
    /// Every exit rule held. (A struct variant: a tagged newtype of a list has no JSON form.)
    ExitRules { rules: Vec<RuleHeld> },
    /// A scheduled window is in progress.
    Window { start: UnixSecs, end: UnixSecs },
    WindowEnded { end: UnixSecs },
    /// Nothing holds the pool open (e.g. a manual open was released with no trigger active).
    NoTrigger,
    /// An overflow backend passed its health check and takes flows.
    BackendTakingFlows { backend: SocketAddr },
    /// The closing pool's sessions have all ended.
    Drained,
    DrainTimeout { sessions_left: u64 },
    /// min_open_secs: an automatic close waits until `until`.
    MinOpen { until: UnixSecs },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = |r: &str| if r.is_empty() { String::new() } else { format!(": {r}") };
        match self {
            Why::Manual { reason: r } => write!(f, "manual{}", reason(r)),
            Why::ManualReleased => write!(f, "manual control released to the triggers"),
            Why::External { reason: r, expires_at: Some(t) } => write!(f, "external push{} (expires at {t})", reason(r)),
            Why::External { reason: r, expires_at: None } => write!(f, "external push{}", reason(r)),
            Why::ExternalExpired { reason: r } => write!(f, "external push expired{}", reason(r)),
            Why::Rule(held) => write!(f, "enter rule {held}"),
            Why::ExitRules { rules: held } => {
                let all: Vec<String> = held.iter().map(ToString::to_string).collect();
                write!(f, "exit rules {}", all.join(", "))
            }
            Why::Window { start, end } => write!(f, "window {start}..{end}"),
            Why::WindowEnded { end } => write!(f, "window ended at {end}"),
            Why::NoTrigger => write!(f, "no trigger holds the pool open"),
            Why::BackendTakingFlows { backend } => write!(f, "overflow backend {backend} takes flows"),
            Why::Drained => write!(f, "overflow sessions drained"),
            Why::DrainTimeout { sessions_left } => write!(f, "drain timeout ({sessions_left} sessions left)"),
            Why::MinOpen { until } => write!(f, "min_open_secs: no automatic close before {until}"),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The pool moved from one state to another.
    Pool { from: ShuntState, to: ShuntState },
    /// A trigger started to claim the pool open.
    TriggerFired,
    /// A trigger gave up its claim.
    TriggerWithdrawn,
    /// An automatic close is held back by min_open_secs.
    CloseDeferred,
    /// A command of the operator (`manual`) or of an external system (`external`).
    Command { source: String, action: String },
    /// An overflow backend's own report (`ready` / `closing`).
    BackendReported { backend: SocketAddr, report: super::BackendReport },
    Backend { backend: SocketAddr, from: OverflowBackendState, to: OverflowBackendState },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: UnixSecs,
    #[serde(flatten)]
    pub kind: EventKind,
    pub why: Why,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.at)?;
        match &self.kind {
            EventKind::Pool { from, to } => write!(f, "pool {} -> {}", from.as_str(), to.as_str())?,
            EventKind::TriggerFired => write!(f, "trigger fired")?,
            EventKind::TriggerWithdrawn => write!(f, "trigger withdrawn")?,
            EventKind::CloseDeferred => write!(f, "close deferred")?,
            EventKind::Command { source, action } => write!(f, "{source} {action}")?,
            EventKind::BackendReported { backend, report } => write!(f, "backend {backend} reports {}", report.as_str())?,
            EventKind::Backend { backend, from, to } => {
                write!(f, "backend {backend} {} -> {}", from.as_str(), to.as_str())?
            }
        }
        write!(f, " ({})", self.why)
    }
}

/// The last EVENTS_KEPT events, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    pub(super) events: VecDeque<Event>,
    /// Events ever pushed, so a reader can tell which are new once the log is full.
    pub(super) pushed: u64,
}

impl EventLog {
    pub fn push(&mut self, at: UnixSecs, kind: EventKind, why: Why) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(Event { at, kind, why });
        self.pushed += 1;
    }

    /// Events pushed since the log was made (more than it keeps).
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// The events pushed after the first `seen` ever pushed (those still kept).
    pub fn since(&self, seen: u64) -> impl Iterator<Item = &Event> {
        let new = self.pushed.saturating_sub(seen).min(self.events.len() as u64) as usize;
        self.events.iter().skip(self.events.len() - new)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
