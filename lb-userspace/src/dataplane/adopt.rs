//! Maps adopted from an earlier lb: what the dataplane keeps beside them (the live banks of
//! every service and pool table, the keys behind each filter bitmap, the NAT reply lists) is
//! read back from them at load, so the first write after a restart is planned against what the
//! kernel holds. And the reads the balancer rebuilds its own state from.

use lb_common::{
    Backend, Endpoint, MAX_BACKENDS, NatVip, NewSessionQuota, SERVICE_F_OVERFLOW, ServiceEntry, ServiceInfo,
    ServiceKey, in_service_index,
};

use super::{Dataplane, DataplaneError, banks::Owner};

fn read_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Write { name, source }
}

impl Dataplane {
    /// Fills the dataplane's own records from adopted maps. Writes nothing: a bitmap word is
    /// recomputed from its keys only at the next change, once every key is known.
    pub(super) fn read_back(&mut self) -> Result<(), DataplaneError> {
        let entries: Vec<(ServiceKey, ServiceEntry)> =
            self.services.iter().collect::<Result<_, _>>().map_err(read_error("SERVICES"))?;
        let now = self.grace.epoch();
        // The idle banks may have been live a moment before the last lb stopped; a program run
        // lasts microseconds and a restart far longer, so none can still be reading them.
        for (key, entry) in &entries {
            let info = ServiceInfo::new(*entry, self.service_banks.load(entry.id));
            self.banks.set(Owner::Service(*key), info, now);
            if entry.flags & SERVICE_F_OVERFLOW != 0 {
                let pool = ServiceEntry { id: entry.overflow_id, flags: 0, overflow_id: 0 };
                self.banks.set(Owner::Pool(pool.id), ServiceInfo::new(pool, self.service_banks.load(pool.id)), now);
            }
        }
        self.service_filter.adopt(entries.iter().map(|(k, _)| *k));
        for item in self.nat_reply_map.iter() {
            let (endpoint, vips) = item.map_err(read_error("NAT_REPLIES"))?;
            let count = (vips.count as usize).min(vips.vips.len());
            self.nat_replies.adopt(endpoint, vips.vips[..count].to_vec());
        }
        let endpoints: Vec<Endpoint> = self.nat_replies.endpoints();
        self.nat_reply_filter.adopt(endpoints.into_iter());
        Ok(())
    }

    /// Every service in SERVICES with its live definition (entry and banks).
    pub fn live_services(&self) -> Vec<(ServiceKey, ServiceInfo)> {
        self.banks.services()
    }

    /// The live definition of the overflow pool table `id`, if it has one.
    pub fn live_pool(&self, id: u32) -> Option<ServiceInfo> {
        self.banks.live(&Owner::Pool(id))
    }

    /// The table `info`'s live lookup bank holds (`table_size` slots).
    pub fn live_table(&self, info: &ServiceInfo) -> Vec<u32> {
        (0..info.table_size).map(|slot| self.lookup.read(lb_common::lookup_index(info.id, info.lookup_bank, slot))).collect()
    }

    /// The in-service list `info`'s live bank holds (`in_service_count` ids).
    pub fn live_in_service(&self, info: &ServiceInfo) -> Result<Vec<u32>, DataplaneError> {
        (0..info.in_service_count)
            .map(|i| self.in_service.get(&in_service_index(info.id, info.in_service_bank, i), 0).map_err(read_error("IN_SERVICE")))
            .collect()
    }

    /// Every BACKENDS entry, by id.
    pub fn all_backends(&self) -> Result<Vec<Backend>, DataplaneError> {
        (0..MAX_BACKENDS).map(|id| self.backend(id)).collect()
    }

    /// Backend `id`'s new-session quota as NEW_SESSION_QUOTAS holds it.
    pub fn new_session_quota(&self, id: u32) -> Result<NewSessionQuota, DataplaneError> {
        self.new_session_quotas.get(&id, 0).map_err(read_error("NEW_SESSION_QUOTAS"))
    }

    /// Every (backend endpoint, VIP) pair whose replies are rewritten.
    pub fn nat_reply_pairs(&self) -> Vec<(Endpoint, NatVip)> {
        self.nat_replies.pairs()
    }
}
