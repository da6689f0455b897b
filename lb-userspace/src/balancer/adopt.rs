//! A balancer over maps adopted from an earlier lb (a restart, a crash): its state is read back
//! from the maps and matched to the config by address, then made equal to the config as a
//! reload would, writing only what differs. A backend keeps its id, generation, UP flag (so its
//! sessions go on and health checks start from it) and counters; one the config no longer has
//! loses its UP flag; a service the config no longer has is withdrawn; new ones are added.
//!
//! What the maps cannot tell: a drain in progress is seen as a healthy primary backend outside
//! the table, drained from now (the daemon then gives it the clock it saved in the state
//! directory, `restore_drain`). The config given is the file, or the running services saved at
//! exit when the file did not change since (`daemon::running`): live changes then survive.

use std::{collections::HashSet, net::SocketAddr, time::Instant};

use lb_common::{
    BACKEND_F_FULL, BACKEND_F_UP, Backend, Endpoint, MAX_BACKENDS, NatVip, SERVICE_F_NAT, ServiceInfo, ServiceKey,
    port_raw,
};

use super::{
    BackendState, Balancer, Drain, InitialHealth, LiveError, ServiceState, ids::Ids, ip_raw,
    plan::{fresh_backend, take_pool_id},
    publish::{self, Published, PublishedBackend},
    service_key,
};
use crate::{
    config::{Config, Pool, ServiceConfig},
    dataplane::Dataplane,
};

/// A service as the adopted maps hold it.
struct FoundService {
    key: ServiceKey,
    info: ServiceInfo,
    table: Vec<u32>,
    listed: Vec<u32>,
    pool: Option<(ServiceInfo, Vec<u32>, Vec<u32>)>,
}

impl FoundService {
    fn read(dp: &Dataplane, key: ServiceKey, info: ServiceInfo) -> Result<Self, LiveError> {
        let pool = match info.flags & lb_common::SERVICE_F_OVERFLOW != 0 {
            true => dp.live_pool(info.overflow_id).map(|p| Ok::<_, LiveError>((p, dp.live_table(&p), dp.live_in_service(&p)?))).transpose()?,
            false => None,
        };
        Ok(FoundService { key, info, table: dp.live_table(&info), listed: dp.live_in_service(&info)?, pool })
    }

    /// Backend ids its tables and lists name (draining backends are in none of them).
    fn named(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.table.iter().chain(&self.listed).copied().collect();
        if let Some((_, table, listed)) = &self.pool {
            ids.extend(table.iter().chain(listed));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn describe(&self) -> String {
        let port = lb_common::port_host(self.key.port);
        let proto = if self.key.proto == lb_common::PROTO_TCP { "tcp" } else { "udp" };
        format!("service id {} ({}:{port}/{proto})", self.info.id, super::addr::ip_of(&self.key))
    }
}

/// Whether BACKENDS entry `entry` is the backend at `addr`.
fn is_at(entry: &Backend, addr: SocketAddr) -> bool {
    let (a, family) = ip_raw(addr.ip());
    entry.addr == a && entry.family == family && entry.port == port_raw(addr.port())
}

impl Balancer {
    /// The balancer of a dataplane whose maps were adopted (`Dataplane::adopted`), made to
    /// serve `config`. Returns one line per service for the operator.
    pub fn adopt(dp: Dataplane, config: &Config, initial: InitialHealth) -> Result<(Balancer, Vec<String>), LiveError> {
        let entries = dp.all_backends()?;
        let mut found = dp
            .live_services()
            .into_iter()
            .map(|(key, info)| FoundService::read(&dp, key, info))
            .collect::<Result<Vec<_>, _>>()?;
        found.sort_by_key(|f| f.info.id);

        // Which backend ids each found service owns: those its tables name, and for a
        // configured address none of them names, a healthy backend at that address no service
        // names (a draining one, or a closed overflow backend).
        let mut claimed: HashSet<u32> = HashSet::new();
        // All named ids first: an address match must not take another service's backend. An
        // id named by two services (maps no lb wrote) goes to the first.
        let mut owned: Vec<Vec<u32>> =
            found.iter().map(|f| f.named().into_iter().filter(|id| claimed.insert(*id)).collect()).collect();
        for (f, ids) in found.iter().zip(owned.iter_mut()) {
            if let Some(svc) = config.services.iter().find(|s| service_key(s) == f.key) {
                for bc in &svc.backends {
                    let addr = SocketAddr::new(bc.address, bc.port);
                    if ids.iter().any(|&id| is_at(&entries[id as usize], addr)) {
                        continue;
                    }
                    let healthy_elsewhere = (0..MAX_BACKENDS).find(|&id| {
                        let e = &entries[id as usize];
                        !claimed.contains(&id) && e.flags & BACKEND_F_UP != 0 && is_at(e, addr)
                    });
                    if let Some(id) = healthy_elsewhere {
                        claimed.insert(id);
                        ids.push(id);
                    }
                }
            }
        }
        let orphans: Vec<u32> =
            (0..MAX_BACKENDS).filter(|id| entries[*id as usize].flags != 0 && !claimed.contains(id)).collect();
        let services_in_use: Vec<u32> =
            found.iter().flat_map(|f| std::iter::once(f.info.id).chain(f.pool.as_ref().map(|p| p.0.id))).collect();
        let backends_in_use: Vec<u32> = claimed.iter().chain(&orphans).copied().collect();
        let generations = entries.iter().map(|e| e.generation).collect();
        let ids = Ids::restore(&services_in_use, &backends_in_use, generations);
        let mut balancer = Balancer { dp, services: Vec::new(), ids, initial };

        let mut lines = Vec::new();
        let now = Instant::now();
        let nat_pairs: HashSet<(Endpoint, NatVip)> = balancer.dp.nat_reply_pairs().into_iter().collect();
        for (f, ids) in found.iter().zip(&owned) {
            let published = balancer.published(f, ids, &entries, &nat_pairs)?;
            match config.services.iter().find(|s| service_key(s) == f.key) {
                Some(svc) => lines.push(balancer.adopt_service(f, svc, &published, &entries, now)?),
                None => {
                    publish::withdraw_published(&mut balancer.dp, &f.key, &published)?;
                    balancer.ids.put_service(f.info.id);
                    if let Some((pool, _, _)) = &f.pool {
                        balancer.ids.put_service(pool.id);
                    }
                    for b in &published.backends {
                        balancer.ids.put_backend(b.id);
                    }
                    lines.push(format!("{}: not in the config any more: removed", f.describe()));
                }
            }
        }
        // Backends no adopted service has (a draining one the config dropped): their sessions
        // are re-chosen, as a reload would.
        for id in orphans {
            let entry = entries[id as usize];
            balancer.dp.set_backend(id, &Backend { flags: 0, ..entry })?;
            balancer.ids.put_backend(id);
        }
        let order: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        balancer.services.sort_by_key(|s| order.iter().position(|n| *n == s.config.name));
        lines.extend(balancer.reconcile(config)?);
        // NAT reply pairs none of the services needs (left by withdrawn ones, or by a crash).
        let wanted: HashSet<(Endpoint, NatVip)> = balancer.services.iter().flat_map(publish::nat_replies).collect();
        for (endpoint, vip) in balancer.dp.nat_reply_pairs().into_iter().filter(|p| !wanted.contains(p)) {
            balancer.dp.remove_nat_reply(&endpoint, vip)?;
        }
        Ok((balancer, lines))
    }

    /// What the maps hold for `f`, with the backends `ids`.
    fn published(
        &self,
        f: &FoundService,
        ids: &[u32],
        entries: &[Backend],
        nat_pairs: &HashSet<(Endpoint, NatVip)>,
    ) -> Result<Published, LiveError> {
        let backends = ids
            .iter()
            .map(|&id| Ok(PublishedBackend { id, entry: entries[id as usize], quota: self.dp.new_session_quota(id)? }))
            .collect::<Result<Vec<_>, LiveError>>()?;
        let vip = NatVip { addr: f.key.addr, port: f.key.port, _pad: 0 };
        let nat_replies = match f.info.flags & SERVICE_F_NAT != 0 {
            true => backends
                .iter()
                .map(|b| (Endpoint { addr: b.entry.addr, port: b.entry.port, proto: f.key.proto, family: b.entry.family }, vip))
                .filter(|pair| nat_pairs.contains(pair))
                .collect(),
            false => Vec::new(),
        };
        Ok(Published {
            info: f.info,
            table: f.table.clone(),
            listed: f.listed.clone(),
            pool: f.pool.clone(),
            backends,
            nat_replies,
        })
    }

    /// Takes over a found service as `svc` configures it: its backends by address (id,
    /// generation, health and counters kept), new ones added, others removed.
    fn adopt_service(
        &mut self,
        f: &FoundService,
        svc: &ServiceConfig,
        published: &Published,
        entries: &[Backend],
        now: Instant,
    ) -> Result<String, LiveError> {
        let pool_table = f.pool.as_ref().map(|(_, table, _)| table.as_slice()).unwrap_or_default();
        let mut added = 0;
        let mut backends = Vec::new();
        for bc in &svc.backends {
            let addr = SocketAddr::new(bc.address, bc.port);
            let Some(id) = published.backends.iter().map(|b| b.id).find(|&id| is_at(&entries[id as usize], addr)) else {
                added += 1;
                backends.push(fresh_backend(addr, bc, &mut self.ids, self.initial)?);
                continue;
            };
            let entry = entries[id as usize];
            let up = entry.flags & BACKEND_F_UP != 0;
            let named = f.table.contains(&id) || f.listed.contains(&id);
            let draining = bc.pool == Pool::Primary && up && !named;
            backends.push(BackendState {
                id,
                addr,
                weight: bc.weight,
                up,
                generation: entry.generation,
                drain: draining.then_some(Drain { since: now, timeout: svc.drain_timeout }),
                pool: bc.pool,
                quota: bc.quota,
                open: bc.pool == Pool::Overflow && pool_table.contains(&id),
                full: entry.flags & BACKEND_F_FULL != 0,
            });
        }
        if !backends.iter().any(BackendState::in_table) {
            // Every kept backend was draining: a service needs one for new flows.
            for b in backends.iter_mut() {
                b.drain = None;
            }
        }
        let has_overflow = svc.backends.iter().any(|b| !b.pool.is_primary());
        let pool = match (f.pool.as_ref(), has_overflow) {
            (Some((info, _, _)), true) => Some(*info),
            (None, true) => Some(ServiceInfo { id: take_pool_id(svc, &mut self.ids)?, ..Default::default() }),
            (_, false) => None,
        };
        let mut next = ServiceState { config: svc.clone(), key: f.key, info: f.info, pool, backends };
        publish::publish_over(&mut self.dp, Some(published), &mut next)?;
        let removed: Vec<u32> =
            published.backends.iter().map(|b| b.id).filter(|id| !next.backends.iter().any(|b| b.id == *id)).collect();
        for &id in &removed {
            self.ids.put_backend(id);
        }
        if let (Some((old, _, _)), true) = (f.pool.as_ref(), next.pool.is_none()) {
            self.ids.put_service(old.id);
        }
        let kept = next.backends.len() - added;
        let up = next.backends.iter().filter(|b| b.in_service()).count();
        let draining = next.backends.iter().filter(|b| b.drain.is_some()).count();
        let line = format!(
            "service {}: adopted, {kept} backend(s) kept ({up} in service, {draining} draining), {added} added, {} removed",
            svc.name,
            removed.len()
        );
        self.services.push(next);
        Ok(line)
    }
}
