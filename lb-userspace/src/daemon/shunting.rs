//! Traffic shunting in the running daemon: a `ServiceShunt` per service with `[service.shunt]`,
//! load alerts per service with `[service.load_alerts]`, and the contribution accounts.
//!
//! Once a second (`tick`, from `Daemon::tick`) it feeds the policy the second's measurements
//! (`shunt_samples`) and carries out what it decided: the overflow backends that take new flows
//! (`Balancer::set_pool_open`), the backends at max_sessions / max_bytes_per_sec
//! (`Balancer::set_full_marks`, for every service, shunted or not), the hook to run (off the
//! loop, `hooks`), what to add to the accounts, what to log. Commands (the operator's now, an
//! external system's or an overflow server's own report, `control`) all come in through `command`
//! and take effect at the next tick.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{
    accounts::Accounts,
    hooks,
    rates::RateMeter,
    sessions::SessionCensus,
    saved::{SavedService, SavedServices},
    shunt_samples::{Measured, measure, observations, service_sample},
};
use crate::{
    api::{
        ContributionCounts, ContributionReport, ContributionRow, QuotaStatus, ShuntBackendStatus, ShuntEvent,
        ShuntServiceStatus, ShuntSummary,
    },
    balancer::{Balancer, LiveError},
    config::{Config, LoadAlertsConfig, Pool, Quota, ServiceConfig},
    health::StatusTable,
    policy::{
        AlertMetric, BackendReport, EventKind, ExternalCommand, LoadAlerts, ManualCommand, PolicyError, QuotaUse,
        ServiceShunt, ShuntState, UnixSecs, full_backends,
    },
};

/// A command to a service's shunting, whoever gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShuntCommand {
    /// `lb shunt open|close|release`.
    Manual(ManualCommand),
    /// A push from an external system (`--control-listen`).
    External(ExternalCommand),
    /// An overflow server's own report of its state (`--control-listen`).
    BackendReport { backend: SocketAddr, report: BackendReport },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ShuntError {
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(
        "service {0:?} has no overflow backends: there is no pool to open or close; give it backends with \
         pool = \"overflow\" and a [service.shunt] table in the config file, then `lb reload`"
    )]
    NotShunted(String),
    #[error("service {service:?}: {source}")]
    Policy { service: String, source: PolicyError },
}

struct Shunted {
    shunt: ServiceShunt,
    /// Events already logged (`ServiceShunt::events_pushed` when last logged).
    logged: u64,
    /// Times the pool went from closed to opening since the data plane started (kept across
    /// restarts that adopt it).
    opened_total: u64,
    /// When the pool last began closing, while it is closing: its drain is decided only on a
    /// session count that started after (`SessionCensus::taken`).
    closing_began: Option<Instant>,
}

pub(super) struct Shunting {
    services: BTreeMap<String, Shunted>,
    alerts: HashMap<String, LoadAlerts>,
    pub accounts: Accounts,
    /// Each service's backends as measured at the last tick (status shows their quota use).
    last: HashMap<String, Vec<Measured>>,
    hook_timeout: Duration,
}

/// Seconds since the Unix epoch, the policy's clock.
pub(super) fn unix_now() -> UnixSecs {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Shunting {
    pub fn new(config: &Config, accounts: Accounts, now: UnixSecs) -> Shunting {
        let mut s = Shunting {
            services: BTreeMap::new(),
            alerts: HashMap::new(),
            accounts,
            last: HashMap::new(),
            hook_timeout: hooks::HOOK_TIMEOUT,
        };
        s.reconfigure(config, now);
        s
    }

    /// Follows a reload (or a live service change): services keep their shunt state where
    /// their config allows (`ServiceShunt::reconfigure`); new ones start closed; services that
    /// are gone, or lost their `[service.shunt]`, are forgotten (no hook runs; the balancer has
    /// already dropped or closed their overflow backends).
    pub fn reconfigure(&mut self, config: &Config, now: UnixSecs) {
        let mut services = BTreeMap::new();
        for svc in &config.services {
            let kept = self.services.remove(&svc.name).and_then(|mut s| {
                let how = s.shunt.reconfigure(svc, now)?;
                if !how.rules_kept {
                    tracing::info!(service = %svc.name, "shunt rules changed: their streaks start over");
                }
                Some(s)
            });
            let entry = kept.or_else(|| {
                ServiceShunt::new(svc, now).map(|shunt| Shunted {
                    logged: shunt.events_pushed(),
                    shunt,
                    opened_total: 0,
                    closing_began: None,
                })
            });
            if let Some(e) = entry {
                services.insert(svc.name.clone(), e);
            }
        }
        for (name, gone) in std::mem::take(&mut self.services) {
            if gone.shunt.state() != ShuntState::Closed {
                tracing::warn!(service = %name, state = gone.shunt.state().as_str(),
                    "shunting removed by the config while the pool was not closed; on_close does not run");
            }
        }
        self.services = services;
        self.alerts.retain(|name, _| config.services.iter().any(|s| s.name == *name && s.load_alerts.is_some()));
        self.last.retain(|name, _| config.services.iter().any(|s| s.name == *name));
    }

    /// What to save for the next lb (`saved::shunt`): every shunted service's state.
    pub fn saved(&self) -> SavedServices {
        let saved = |s: &Shunted| SavedService { shunt: s.shunt.snapshot(), opened_total: s.opened_total };
        self.services.iter().map(|(name, s)| (name.clone(), saved(s))).collect()
    }

    /// Before the first tick of a start that adopted the data plane: every shunted service
    /// takes up the state an earlier lb saved for it, where the config allows (as a reload
    /// would); a saved service the config no longer shunts is forgotten, without on_close.
    /// Nothing runs now: no hook, no map write. Lines to log, one per saved service.
    pub fn restore(&mut self, saved: SavedServices) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, saved) in saved {
            let Some(s) = self.services.get_mut(&name) else {
                let state = saved.shunt.state().as_str();
                lines.push(format!(
                    "service {name}: saved shunt state ({state}) dropped: the config has no such service with a \
                     [service.shunt]; on_close does not run"
                ));
                continue;
            };
            let restored = s.shunt.restore(saved.shunt);
            s.opened_total = saved.opened_total;
            // The restored events were logged by the lb that saved them.
            s.logged = s.shunt.events_pushed();
            // A drain is decided only on a count of this lb, all of which start after now.
            s.closing_began = (s.shunt.state() == ShuntState::Closing).then(Instant::now);
            let since = crate::api::when(s.shunt.status().since);
            let mut line = format!("{} since {since} goes on", self.describe(&name));
            if !restored.rules_kept {
                line += "; the shunt rules changed: their claim and streaks start over";
            }
            if !restored.dropped_backends.is_empty() {
                line += &format!("; overflow backends no longer in the config forgotten: {:?}", restored.dropped_backends);
            }
            lines.push(line);
        }
        lines
    }

    /// Hands a command to the service's policy; it takes effect at the next tick.
    pub fn command(&mut self, balancer: &Balancer, now: UnixSecs, service: &str, command: ShuntCommand) -> Result<(), ShuntError> {
        balancer.service(service)?;
        let s = self.services.get_mut(service).ok_or_else(|| ShuntError::NotShunted(service.to_string()))?;
        let policy = |source| ShuntError::Policy { service: service.to_string(), source };
        match command {
            ShuntCommand::Manual(c) => s.shunt.manual(now, c),
            ShuntCommand::External(c) => s.shunt.external(now, c).map_err(policy)?,
            ShuntCommand::BackendReport { backend, report } => s.shunt.backend_report(now, backend, report).map_err(policy)?,
        }
        Ok(())
    }

    /// One second: measure, decide, apply. Only a failed map write is an error.
    pub fn tick(
        &mut self,
        now: UnixSecs,
        balancer: &mut Balancer,
        rates: &RateMeter,
        census: &SessionCensus,
        health: &StatusTable,
    ) -> Result<(), LiveError> {
        let measured: Vec<(String, Vec<Measured>)> = {
            let health = health.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            balancer.services().iter().map(|svc| (svc.config.name.clone(), measure(svc, rates, census, &health))).collect()
        };
        for (name, measured) in measured {
            let config = &balancer.service(&name)?.config;
            let samples: Vec<_> = measured.iter().map(Measured::sample).collect();
            // The marks are decided on a session count and a byte rate. Until this lb has both
            // (its first seconds), they stay as they are: an adopted data plane keeps the marks
            // the earlier lb set, rather than lifting them for a second at every restart.
            let full = if census.taken().is_some() && rates.has_rates() {
                full_backends(config, &samples)
            } else {
                balancer.service(&name)?.backends.iter().filter(|b| b.full).map(|b| b.addr).collect()
            };
            if config.load_alerts.is_some() {
                let alerts = self.alerts.entry(name.clone()).or_default();
                for a in alerts.observe(now, config, &samples) {
                    let (metric, backend) = (a.metric.as_str(), a.backend);
                    if a.raised {
                        tracing::warn!(service = %name, %backend, metric, value = a.value, threshold = a.threshold, "load alert raised");
                    } else {
                        tracing::info!(service = %name, %backend, metric, value = a.value, threshold = a.threshold, "load alert cleared");
                    }
                }
            }
            let open = match self.services.get_mut(&name) {
                Some(s) => {
                    let sample = service_sample(config, &measured, &samples);
                    let counted_at = census.taken();
                    Some(tick_service(&name, s, now, &sample, &measured, counted_at, &mut self.accounts, self.hook_timeout))
                }
                None => None,
            };
            // The balancer clones the service to compare: ask only when the set changed.
            let same = |open: &[SocketAddr]| {
                balancer.service(&name).is_ok_and(|svc| {
                    svc.backends.iter().filter(|b| b.pool == Pool::Overflow).all(|b| b.open == open.contains(&b.addr))
                })
            };
            if let Some(open) = open
                && !same(&open)
                && balancer.set_pool_open(&name, &open)?
            {
                tracing::info!(service = %name, taking_new_flows = ?open, "overflow pool table changed");
            }
            for (backend, full) in balancer.set_full_marks(&name, &full)? {
                tracing::info!(service = %name, %backend, full, "backend full mark (max_sessions / max_bytes_per_sec) changed");
            }
            self.last.insert(name, measured);
        }
        self.accounts.save_if_due(Instant::now());
        Ok(())
    }

    /// `lb shunt status [SERVICE]`.
    pub fn status(&self, balancer: &Balancer, service: Option<&str>) -> Result<Vec<ShuntServiceStatus>, ShuntError> {
        if let Some(name) = service {
            balancer.service(name)?;
            if !self.services.contains_key(name) {
                return Err(ShuntError::NotShunted(name.to_string()));
            }
        }
        let wanted = self.services.iter().filter(|(name, _)| service.is_none_or(|s| s == name.as_str()));
        Ok(wanted.map(|(name, s)| self.service_status(balancer, name, s)).collect())
    }

    fn service_status(&self, balancer: &Balancer, name: &str, s: &Shunted) -> ShuntServiceStatus {
        let status = s.shunt.status();
        let svc = balancer.service(name).ok();
        let backends = status
            .backends
            .iter()
            .map(|b| {
                let state = svc.and_then(|svc| svc.backends.iter().find(|x| x.addr == b.addr));
                let measured = self.measured(name, b.addr);
                ShuntBackendStatus {
                    address: b.addr,
                    state: b.state.as_str().to_string(),
                    since: b.since,
                    report: b.report.map(|r| r.as_str().to_string()),
                    healthy: b.healthy,
                    taking_new_flows: state.is_some_and(|x| x.in_pool_service()),
                    full: state.is_some_and(|x| x.full),
                    sessions: b.sessions,
                    rates: measured.map(|m| m.rates).unwrap_or_default(),
                    quota: state.and_then(|x| self.quota_status(name, x.addr, &x.quota)),
                }
            })
            .collect();
        let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
        ShuntServiceStatus {
            service: name.to_string(),
            state: status.state.as_str().to_string(),
            since: status.since,
            why: status.why.to_string(),
            trigger: json(serde_json::to_value(&status.why)),
            opened_total: s.opened_total,
            backends,
            events: status
                .events
                .iter()
                .map(|e| ShuntEvent { at: e.at, text: e.to_string(), detail: json(serde_json::to_value(e)) })
                .collect(),
        }
    }

    /// The shunt line of `lb status` for a service, if it is shunted.
    pub fn summary(&self, service: &str) -> Option<ShuntSummary> {
        let s = self.services.get(service)?;
        let status = s.shunt.status();
        Some(ShuntSummary {
            state: status.state.as_str().to_string(),
            since: status.since,
            why: status.why.to_string(),
            opened_total: s.opened_total,
        })
    }

    /// A backend's quotas and its use of them over the last second; None without quotas.
    pub fn quota_status(&self, service: &str, backend: SocketAddr, quota: &Quota) -> Option<QuotaStatus> {
        if quota.is_empty() {
            return None;
        }
        let used = self.measured(service, backend).map(|m| QuotaUse::of(quota, &m.sample())).unwrap_or_default();
        Some(QuotaStatus {
            max_new_sessions_per_sec: quota.max_new_sessions_per_sec,
            max_sessions: quota.max_sessions,
            max_bytes_per_sec: quota.max_bytes_per_sec,
            new_sessions_percent: used.new_sessions,
            sessions_percent: used.sessions,
            bytes_percent: used.bytes,
        })
    }

    /// Per threshold of the service's `[service.load_alerts]`: whether `backend` is over it.
    pub fn load_alerts(&self, config: &ServiceConfig, backend: SocketAddr) -> BTreeMap<String, bool> {
        let Some(limits) = config.load_alerts else { return BTreeMap::new() };
        let raised = |m: AlertMetric| self.alerts.get(&config.name).is_some_and(|a| a.is_raised(backend, m));
        configured(&limits).into_iter().map(|m| (m.as_str().to_string(), raised(m))).collect()
    }

    /// `lb shunt report`, and the accounts in `lb status` / metrics.
    pub fn report(&self) -> ContributionReport {
        ContributionReport { state_file: self.accounts.location(), backends: self.contribution_rows() }
    }

    pub fn contribution_rows(&self) -> Vec<ContributionRow> {
        self.accounts
            .get()
            .iter()
            .map(|(service, backend, c)| ContributionRow {
                service: service.to_string(),
                backend,
                counts: ContributionCounts {
                    openings: c.openings,
                    seconds_open: c.seconds_open,
                    new_sessions: c.new_sessions,
                    packets: c.packets,
                    bytes: c.bytes,
                },
            })
            .collect()
    }

    /// One line for the operator: the service's pool now.
    pub fn describe(&self, service: &str) -> String {
        match self.services.get(service) {
            Some(s) => {
                let st = s.shunt.status();
                format!("service {service}: overflow pool {} ({})", st.state.as_str(), st.why)
            }
            None => format!("service {service}: no overflow pool any more"),
        }
    }

    fn measured(&self, service: &str, backend: SocketAddr) -> Option<&Measured> {
        self.last.get(service)?.iter().find(|m| m.addr == backend)
    }
}

/// One service's second: the policy's tick, its hook, its accounts and its log. Returns the
/// overflow backends that take new flows now. `counted_at`: when the walk behind the session
/// counts in `measured` started.
#[allow(clippy::too_many_arguments)]
fn tick_service(
    name: &str,
    s: &mut Shunted,
    now: UnixSecs,
    sample: &crate::policy::ServiceSample,
    measured: &[Measured],
    counted_at: Option<Instant>,
    accounts: &mut Accounts,
    hook_timeout: Duration,
) -> Vec<SocketAddr> {
    let mut seen = observations(measured);
    let counted_since_closing = match s.closing_began {
        Some(began) => counted_at.is_some_and(|walk| walk > began),
        None => true,
    };
    if !counted_since_closing {
        // A count from before the close misses sessions opened just before it: keep the
        // higher of it and what was known, so a backend with sessions stays draining.
        for o in &mut seen {
            o.sessions = o.sessions.max(s.shunt.backends().get(o.addr).map_or(0, |b| b.sessions));
        }
    }
    let outcome = s.shunt.tick_counted(now, sample, &seen, counted_since_closing);
    s.closing_began = match (s.shunt.state(), s.closing_began) {
        (ShuntState::Closing, Some(began)) => Some(began),
        (ShuntState::Closing, None) => Some(Instant::now()),
        _ => None,
    };
    for e in s.shunt.events_since(s.logged) {
        if matches!(e.kind, EventKind::Pool { from: ShuntState::Closed, to: ShuntState::Opening }) {
            s.opened_total += 1;
        }
        tracing::info!(service = %name, "shunt: {e}");
    }
    s.logged = s.shunt.events_pushed();
    let contributions = accounts.get_mut();
    for &backend in &outcome.first_openings {
        contributions.record_opening(name, backend);
    }
    for m in measured {
        if let Some(b) = s.shunt.backends().get(m.addr) {
            contributions.record_second(name, b.state, &m.counted_sample());
        }
    }
    if let Some(run) = outcome.hook
        && let Some(argv) = run.argv
    {
        // Detached: it reports its own end in the log.
        drop(hooks::spawn(name, run.hook, argv, hook_timeout));
    }
    outcome.taking_new_flows
}

/// The alert metrics a `[service.load_alerts]` sets a threshold for.
fn configured(limits: &LoadAlertsConfig) -> Vec<AlertMetric> {
    [
        (AlertMetric::NewSessionsPerSec, limits.new_sessions_per_sec.is_some()),
        (AlertMetric::ActiveSessions, limits.active_sessions.is_some()),
        (AlertMetric::BytesPerSec, limits.bytes_per_sec.is_some()),
        (AlertMetric::QuotaPercent, limits.quota_percent.is_some()),
    ]
    .into_iter()
    .filter_map(|(m, on)| on.then_some(m))
    .collect()
}
