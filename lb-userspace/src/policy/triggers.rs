//! What asks for the pool to be open, and how those asks combine into one demand.
//!
//! 1. The operator first: after `lb shunt close` the pool is closed whatever else asks, and
//!    after `lb shunt open` it is open whatever else says, until the other command or a
//!    release (`ManualCommand::Release`) gives control back to the automatic triggers. An
//!    operator's close is the one close that does not wait for min_open_secs.
//! 2. Otherwise the pool is open while any automatic trigger claims it: an external open (until
//!    an external close, or its TTL lapses unless renewed by another open), a scheduled window
//!    in progress, or the rules (from an enter rule holding until all exit rules hold). An
//!    external close withdraws only the external claim: it does not override the rules or a
//!    window. The pool closes once no claim is left, not before min_open_secs.
//!
//! Why the pool is open is the claim that opened it, in the order manual, external, window,
//! rules when several come at once; why it closes is the claim that went last.

use serde::{Deserialize, Serialize};

use super::{EventKind, RuleHeld, UnixSecs, Why};
use crate::config::ShuntWindow;

/// `lb shunt open|close SERVICE [--reason TEXT]`, and giving control back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualCommand {
    Open { reason: String },
    Close { reason: String },
    Release,
}

/// `POST /v1/services/NAME/shunt` `{"action": "open"|"close", "reason", "ttl_secs"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalCommand {
    /// Without a TTL the claim holds until an external close.
    Open { reason: String, ttl_secs: Option<u64> },
    Close { reason: String },
}

/// What the triggers ask of the pool now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Demand {
    Open(Why),
    /// No claim left: close once min_open_secs has passed.
    Close(Why),
    /// The operator's close: at once.
    ForceClose(Why),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ManualHold {
    pub(super) open: bool,
    pub(super) reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ExternalClaim {
    pub(super) reason: String,
    pub(super) expires_at: Option<UnixSecs>,
}

/// The manual and external commands in force and the window in progress.
#[derive(Debug, Clone)]
pub struct Triggers {
    pub(super) manual: Option<ManualHold>,
    pub(super) external: Option<ExternalClaim>,
    pub(super) window: Option<ShuntWindow>,
    pub(super) last_withdrawn: Why,
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers { manual: None, external: None, window: None, last_withdrawn: Why::NoTrigger }
    }
}

/// Events a trigger change adds to the service's log.
pub type TriggerEvents = Vec<(EventKind, Why)>;

impl Triggers {
    pub fn manual(&mut self, command: ManualCommand) -> TriggerEvents {
        let (action, why) = match command {
            ManualCommand::Open { reason } => {
                self.manual = Some(ManualHold { open: true, reason: reason.clone() });
                ("open", Why::Manual { reason })
            }
            ManualCommand::Close { reason } => {
                self.manual = Some(ManualHold { open: false, reason: reason.clone() });
                ("close", Why::Manual { reason })
            }
            ManualCommand::Release => {
                self.manual = None;
                self.last_withdrawn = Why::ManualReleased;
                ("release", Why::ManualReleased)
            }
        };
        vec![(EventKind::Command { source: "manual".into(), action: action.into() }, why)]
    }

    /// An external open replaces (renews) any earlier one; a TTL counts from `now`.
    pub fn external(&mut self, now: UnixSecs, command: ExternalCommand) -> TriggerEvents {
        match command {
            ExternalCommand::Open { reason, ttl_secs } => {
                let expires_at = ttl_secs.map(|ttl| now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
                self.external = Some(ExternalClaim { reason: reason.clone(), expires_at });
                vec![(EventKind::Command { source: "external".into(), action: "open".into() }, Why::External { reason, expires_at })]
            }
            ExternalCommand::Close { reason } => {
                let why = Why::External { reason, expires_at: None };
                let mut events = vec![(EventKind::Command { source: "external".into(), action: "close".into() }, why.clone())];
                if self.external.take().is_some() {
                    self.last_withdrawn = why.clone();
                    events.push((EventKind::TriggerWithdrawn, why));
                }
                events
            }
        }
    }

    /// Lets an external open lapse at its TTL and follows the windows to `now`.
    pub fn refresh(&mut self, now: UnixSecs, windows: &[ShuntWindow]) -> TriggerEvents {
        let mut events = Vec::new();
        if let Some(claim) = self.external.take_if(|c| c.expires_at.is_some_and(|t| now >= t)) {
            let why = Why::ExternalExpired { reason: claim.reason };
            self.last_withdrawn = why.clone();
            events.push((EventKind::TriggerWithdrawn, why));
        }
        let current = windows.iter().find(|w| w.contains(now)).copied();
        if current != self.window {
            if let Some(ended) = self.window {
                let why = Why::WindowEnded { end: ended.end.unix_timestamp() };
                self.last_withdrawn = why.clone();
                events.push((EventKind::TriggerWithdrawn, why));
            }
            if let Some(w) = current {
                events.push((EventKind::TriggerFired, window_why(&w)));
            }
            self.window = current;
        }
        events
    }

    /// The rules gave up their claim (all exit rules held).
    pub fn rules_withdrawn(&mut self, why: Why) {
        self.last_withdrawn = why;
    }

    /// The demand of every trigger together; `rules` is the rules' claim, if any.
    pub fn demand(&self, rules: Option<&RuleHeld>) -> Demand {
        match &self.manual {
            Some(ManualHold { open: false, reason }) => return Demand::ForceClose(Why::Manual { reason: reason.clone() }),
            Some(ManualHold { open: true, reason }) => return Demand::Open(Why::Manual { reason: reason.clone() }),
            None => {}
        }
        if let Some(c) = &self.external {
            return Demand::Open(Why::External { reason: c.reason.clone(), expires_at: c.expires_at });
        }
        if let Some(w) = &self.window {
            return Demand::Open(window_why(w));
        }
        if let Some(held) = rules {
            return Demand::Open(Why::Rule(*held));
        }
        Demand::Close(self.last_withdrawn.clone())
    }
}

fn window_why(w: &ShuntWindow) -> Why {
    Why::Window { start: w.start.unix_timestamp(), end: w.end.unix_timestamp() }
}
