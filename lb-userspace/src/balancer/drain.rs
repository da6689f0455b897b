//! Draining: a backend leaves the table and the in-service list (no new flows) but keeps its
//! UP flag, so its sessions go on; it is removed once no session uses it, it goes down, or its
//! timeout passes.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{Balancer, Drain, LiveError, publish};
use crate::dataplane::SessionCounts;

impl Balancer {
    /// Stops new flows to a backend while its sessions go on: out of the table and the
    /// in-service list, UP flag kept; `finish_drains` removes it at the latest after `timeout`
    /// (None: the service's `drain_timeout`). Draining a draining backend restarts its clock.
    pub fn drain(&mut self, service: &str, addr: SocketAddr, timeout: Option<Duration>, now: Instant) -> Result<Vec<String>, LiveError> {
        let (i, j) = self.locate(service, addr)?;
        let timeout = timeout.unwrap_or(self.services[i].config.drain_timeout);
        let done = format!(
            "service {service}: backend {addr} draining: no new flows; removed once no session \
             uses it, at the latest in {} s",
            timeout.as_secs()
        );
        let prev = &self.services[i];
        if prev.backends[j].drain.is_some() {
            // Already out of the table: only the clock changes, no map write.
            self.services[i].backends[j].drain = Some(Drain { since: now, timeout });
            return Ok(vec![done]);
        }
        if !prev.backends.iter().enumerate().any(|(k, b)| k != j && b.in_table()) {
            return Err(LiveError::Refused(format!(
                "backend {addr} is the last backend of service {service:?} that takes new flows: \
                 add another (`lb backend add`) or undrain one first, or remove the service"
            )));
        }
        let mut next = prev.clone();
        next.backends[j].drain = Some(Drain { since: now, timeout });
        publish::publish(&mut self.dp, Some(prev), &mut next)?;
        self.services[i] = next;
        Ok(vec![done])
    }

    /// Puts a draining backend back into the table (and the in-service list if it is up).
    pub fn undrain(&mut self, service: &str, addr: SocketAddr) -> Result<Vec<String>, LiveError> {
        let (i, j) = self.locate(service, addr)?;
        let prev = &self.services[i];
        if prev.backends[j].drain.is_none() {
            return Err(LiveError::Refused(format!(
                "backend {addr} of service {service:?} is not draining: nothing to undrain"
            )));
        }
        let mut next = prev.clone();
        next.backends[j].drain = None;
        publish::publish(&mut self.dp, Some(prev), &mut next)?;
        self.services[i] = next;
        Ok(vec![format!("service {service}: backend {addr} takes new flows again")])
    }

    /// Removes every draining backend that is down, whose timeout has passed at `now`, or that
    /// no session record names any more (its id and generation) by `sessions`: counts taken by
    /// a walk of SESSIONS that started at the given instant, so they speak only for drains that
    /// began before it (a backend drained later may have taken flows the walk did not see).
    pub fn finish_drains(&mut self, now: Instant, sessions: Option<(&SessionCounts, Instant)>) -> Result<Vec<String>, LiveError> {
        let mut done = Vec::new();
        for svc in &self.services {
            for b in &svc.backends {
                let Some(d) = b.drain else { continue };
                let counted = sessions.filter(|(_, started)| *started >= d.since);
                let left = counted.map(|(c, _)| c.of(b.id, b.generation));
                let why = if !b.up {
                    // Its UP flag is down: every session it had is re-chosen anyway.
                    "it is down, so no session can use it".to_string()
                } else if left == Some(0) {
                    "no session uses it any more".to_string()
                } else if now >= d.since + d.timeout {
                    let left = left.map(|n| format!(", {n} session(s) left")).unwrap_or_default();
                    format!("drain timeout of {} s passed{left}", d.timeout.as_secs())
                } else {
                    continue;
                };
                done.push((svc.config.name.clone(), b.addr, why));
            }
        }
        let mut lines = Vec::new();
        for (service, addr, why) in done {
            self.remove_backend(&service, addr)?;
            lines.push(format!("service {service}: drained backend {addr} removed: {why}"));
        }
        Ok(lines)
    }

    /// Gives a draining backend the clock of a drain saved before a restart: it began at
    /// `since` and times out `timeout` after it (`finish_drains`), as it would have without the
    /// restart. Only the clock changes, no map is written. False, and nothing done, if the
    /// service or backend is gone or the backend is not draining (the adopted maps, with the
    /// config applied, say it takes new flows).
    pub fn restore_drain(&mut self, service: &str, addr: SocketAddr, since: Instant, timeout: Duration) -> bool {
        let Ok((i, j)) = self.locate(service, addr) else { return false };
        let backend = &mut self.services[i].backends[j];
        if backend.drain.is_none() {
            return false;
        }
        backend.drain = Some(Drain { since, timeout });
        true
    }

    /// Indexes of a backend: its service in `services`, itself in the service's backends.
    fn locate(&self, service: &str, addr: SocketAddr) -> Result<(usize, usize), LiveError> {
        let i = self
            .services
            .iter()
            .position(|s| s.config.name == service)
            .ok_or_else(|| LiveError::UnknownService(service.to_string()))?;
        let j = self.services[i]
            .backends
            .iter()
            .position(|b| b.addr == addr)
            .ok_or_else(|| LiveError::UnknownBackend { service: service.to_string(), backend: addr })?;
        Ok((i, j))
    }
}
