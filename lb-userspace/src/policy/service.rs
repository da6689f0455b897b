//! One service's shunting, put together: its rules, triggers, pool lifecycle, overflow
//! backends and event log. The daemon holds one per service that has `[service.shunt]`,
//! passes commands in as they come and calls `tick` once a second with that second's figures.

use std::net::SocketAddr;

use serde::Serialize;

use super::{
    BackendObservation, BackendReport, Event, EventKind, EventLog, ExternalCommand, Hook, Lifecycle, ManualCommand,
    OverflowBackend, OverflowBackends, PolicyError, RuleEdge, RuleEvaluator, ServiceSample, ShuntState, Triggers,
    UnixSecs, Why,
};
use crate::config::{Pool, ServiceConfig, ShuntConfig};

/// A hook to run now: which one and its argv (None when the service configures none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookRun {
    pub hook: Hook,
    pub argv: Option<Vec<String>>,
}

/// What a tick decided, for the daemon to carry out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickOutcome {
    pub hook: Option<HookRun>,
    /// The overflow backends that may take new flows now (the data plane's overflow set,
    /// less those `quota::full_backends` names).
    pub taking_new_flows: Vec<SocketAddr>,
    /// Backends that opened for the first time since the pool opened
    /// (`Contributions::record_opening`).
    pub first_openings: Vec<SocketAddr>,
}

/// What a reload kept of a service's shunting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconfigured {
    /// The enter and exit rules were unchanged: their streaks and claim carried over.
    pub rules_kept: bool,
}

/// `lb shunt status` for one service.
#[derive(Debug, Clone, Serialize)]
pub struct ShuntStatus {
    pub service: String,
    pub state: ShuntState,
    pub since: UnixSecs,
    pub why: Why,
    pub backends: Vec<OverflowBackend>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone)]
pub struct ServiceShunt {
    service: String,
    pub(super) config: ShuntConfig,
    pub(super) rules: RuleEvaluator,
    pub(super) triggers: Triggers,
    pub(super) lifecycle: Lifecycle,
    pub(super) backends: OverflowBackends,
    pub(super) events: EventLog,
}

impl ServiceShunt {
    /// None for a service without `[service.shunt]`.
    pub fn new(service: &ServiceConfig, now: UnixSecs) -> Option<Self> {
        let config = service.shunt.clone()?;
        Some(ServiceShunt {
            service: service.name.clone(),
            rules: RuleEvaluator::new(&config),
            triggers: Triggers::default(),
            lifecycle: Lifecycle::new(now, config.min_open, config.drain_timeout),
            backends: OverflowBackends::new(overflow_addrs(service), now),
            events: EventLog::default(),
            config,
        })
    }

    /// Follows a reload of the service's config. Kept: the pool's state (and since, why), the
    /// manual and external commands in force, the events, and each kept overflow backend's
    /// state. The rules' streaks and claim are kept when the enter and exit rules are the same;
    /// changed rules start over (a pool the old rules held open then closes like any pool no
    /// trigger claims, not before min_open_secs). Other keys apply from now on. Returns None,
    /// leaving `self` as it was, when the service has no `[service.shunt]` any more.
    pub fn reconfigure(&mut self, service: &ServiceConfig, now: UnixSecs) -> Option<Reconfigured> {
        let config = service.shunt.clone()?;
        let rules_kept = self.rules.same_rules(&config);
        if !rules_kept {
            self.rules = RuleEvaluator::new(&config);
        }
        self.lifecycle.set_timeouts(config.min_open, config.drain_timeout);
        self.backends.reconfigure(overflow_addrs(service), now);
        self.config = config;
        Some(Reconfigured { rules_kept })
    }

    /// Takes effect at the next `tick` (call it at once to act without waiting a second).
    pub fn manual(&mut self, now: UnixSecs, command: ManualCommand) {
        let events = self.triggers.manual(command);
        self.log(now, events);
    }

    /// Takes effect at the next `tick`.
    pub fn external(&mut self, now: UnixSecs, command: ExternalCommand) -> Result<(), PolicyError> {
        if matches!(command, ExternalCommand::Open { ttl_secs: Some(0), .. }) {
            return Err(PolicyError::ZeroTtl);
        }
        let events = self.triggers.external(now, command);
        self.log(now, events);
        Ok(())
    }

    /// An overflow backend's own report of its state; takes effect at the next `tick`.
    pub fn backend_report(&mut self, now: UnixSecs, backend: SocketAddr, report: BackendReport) -> Result<(), PolicyError> {
        self.backends.report(now, backend, report, &mut self.events)
    }

    /// One second: `sample` of the service, `overflow` what is known of its overflow backends.
    pub fn tick(&mut self, now: UnixSecs, sample: &ServiceSample, overflow: &[BackendObservation]) -> TickOutcome {
        self.tick_counted(now, sample, overflow, true)
    }

    /// `tick`, told whether the sessions in `overflow` were counted after the pool began
    /// closing (a count can be older than the tick, see `Lifecycle::follow_counted`).
    pub fn tick_counted(
        &mut self,
        now: UnixSecs,
        sample: &ServiceSample,
        overflow: &[BackendObservation],
        counted_since_closing: bool,
    ) -> TickOutcome {
        match self.rules.observe(sample) {
            Some(RuleEdge::Enter(held)) => self.events.push(now, EventKind::TriggerFired, Why::Rule(held)),
            Some(RuleEdge::Exit(held)) => {
                let why = Why::ExitRules { rules: held };
                self.triggers.rules_withdrawn(why.clone());
                self.events.push(now, EventKind::TriggerWithdrawn, why);
            }
            None => {}
        }
        let events = self.triggers.refresh(now, &self.config.windows);
        self.log(now, events);
        let demand = self.triggers.demand(self.rules.claim());
        // The pool's sessions as of this second, for the drain decision.
        let pool_sessions = self.backends_seen(overflow);
        let hook = self.lifecycle.follow_counted(now, &demand, pool_sessions, counted_since_closing, &mut self.events);
        let first_openings = self.backends.update(now, self.lifecycle.state(), overflow, &mut self.events);
        let taking_new_flows = self.backends.taking_new_flows();
        if let Some(&first) = taking_new_flows.first() {
            self.lifecycle.backend_taking_flows(now, first, &mut self.events);
        }
        TickOutcome {
            hook: hook.map(|hook| HookRun {
                hook,
                argv: match hook {
                    Hook::OnOpen => self.config.on_open.clone(),
                    Hook::OnClose => self.config.on_close.clone(),
                },
            }),
            taking_new_flows,
            first_openings,
        }
    }

    pub fn state(&self) -> ShuntState {
        self.lifecycle.state()
    }

    pub fn backends(&self) -> &OverflowBackends {
        &self.backends
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// How many events were ever logged: pass it to `events_since` later to get the new ones.
    pub fn events_pushed(&self) -> u64 {
        self.events.pushed()
    }

    /// The events logged after the first `seen` (those still kept).
    pub fn events_since(&self, seen: u64) -> impl Iterator<Item = &Event> {
        self.events.since(seen)
    }

    pub fn status(&self) -> ShuntStatus {
        ShuntStatus {
            service: self.service.clone(),
            state: self.lifecycle.state(),
            since: self.lifecycle.since(),
            why: self.lifecycle.why().clone(),
            backends: self.backends.iter().cloned().collect(),
            events: self.events.iter().cloned().collect(),
        }
    }

    /// The overflow backends' sessions, taking this second's observations over older ones.
    fn backends_seen(&self, overflow: &[BackendObservation]) -> u64 {
        self.backends
            .iter()
            .map(|b| overflow.iter().find(|o| o.addr == b.addr).map_or(b.sessions, |o| o.sessions))
            .sum()
    }

    fn log(&mut self, now: UnixSecs, events: Vec<(EventKind, Why)>) {
        for (kind, why) in events {
            self.events.push(now, kind, why);
        }
    }
}

fn overflow_addrs(service: &ServiceConfig) -> impl Iterator<Item = SocketAddr> + '_ {
    service.backends.iter().filter(|b| b.pool == Pool::Overflow).map(|b| SocketAddr::new(b.address, b.port))
}
