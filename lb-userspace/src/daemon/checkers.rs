//! One health checker per backend, kept in step with the balancer: started for new backends,
//! stopped for removed ones, restarted when a backend is replaced (same address, new id) or
//! its service's health settings change.

use std::collections::HashMap;

use tokio::{sync::mpsc::UnboundedSender, task::JoinHandle};

use crate::{
    balancer::Balancer,
    config::HealthConfig,
    health::{self, BackendHealthStatus, Health, HealthEvent, HealthHistory, StatusTable},
};

use super::saved::HealthKey as Key;

struct Running {
    task: JoinHandle<()>,
    settings: HealthConfig,
    /// (id, generation) of the backend it checks: a new one means a new backend.
    incarnation: (u32, u32),
}

pub(super) struct Checkers {
    running: HashMap<Key, Running>,
    events: UnboundedSender<HealthEvent>,
    status: StatusTable,
    /// Histories an earlier lb saved, for the first checkers of an adopting start.
    resume: HashMap<Key, HealthHistory>,
}

impl Checkers {
    pub fn new(events: UnboundedSender<HealthEvent>, status: StatusTable) -> Self {
        Checkers { running: HashMap::new(), events, status, resume: HashMap::new() }
    }

    /// The next `start_missing` starts these backends' checkers from their saved history.
    pub fn resume_from(&mut self, histories: HashMap<Key, HealthHistory>) {
        self.resume = histories;
    }

    /// Stops every checker whose backend is gone, replaced, or checked with other settings now,
    /// and waits for each to end, so none of them can send an event afterwards. Returns how
    /// many were stopped.
    pub async fn stop_stale(&mut self, balancer: &Balancer) -> usize {
        let mut wanted: HashMap<Key, (&HealthConfig, (u32, u32))> = HashMap::new();
        for svc in balancer.services() {
            for b in &svc.backends {
                wanted.insert((svc.config.name.clone(), b.addr), (&svc.config.health, (b.id, b.generation)));
            }
        }
        let stale: Vec<Key> = self
            .running
            .iter()
            .filter(|(k, r)| wanted.get(*k) != Some(&(&r.settings, r.incarnation)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &stale {
            self.stop(key).await;
        }
        stale.len()
    }

    /// Starts a checker for every backend that has none, from its saved history (see
    /// `resume_from`) or from the health the balancer holds for it (a new backend: down until
    /// its first check passes, as at start).
    pub fn start_missing(&mut self, balancer: &Balancer) {
        let mut resume = std::mem::take(&mut self.resume);
        for svc in balancer.services() {
            for b in &svc.backends {
                let key = (svc.config.name.clone(), b.addr);
                if self.running.contains_key(&key) {
                    continue;
                }
                let settings = svc.config.health.clone();
                let task = health::spawn_checker(
                    key.0.clone(),
                    b.addr,
                    health::check_target(b.addr, &settings),
                    settings.clone(),
                    resume.remove(&key).unwrap_or(HealthHistory::starting(if b.up { Health::Up } else { Health::Down })),
                    self.events.clone(),
                    self.status.clone(),
                );
                self.running.insert(key, Running { task, settings, incarnation: (b.id, b.generation) });
            }
        }
    }

    /// Stops every checker; returns their last status (to save their history).
    pub async fn stop_all(&mut self) -> HashMap<Key, BackendHealthStatus> {
        let keys: Vec<Key> = self.running.keys().cloned().collect();
        let mut last = HashMap::new();
        for key in keys {
            if let Some(status) = self.stop(&key).await {
                last.insert(key, status);
            }
        }
        last
    }

    /// Stops a checker and waits for it to end; removes and returns its status entry.
    async fn stop(&mut self, key: &Key) -> Option<BackendHealthStatus> {
        if let Some(r) = self.running.remove(key) {
            r.task.abort();
            let _ = r.task.await;
        }
        self.status.lock().ok().and_then(|mut table| table.remove(key))
    }
}
