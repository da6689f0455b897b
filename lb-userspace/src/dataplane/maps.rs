//! Typed writes and reads of every map. Bank layout helpers come from lb_common::limits.

use aya::{
    Ebpf,
    maps::Map,
};
use lb_common::{
    Backend, FlowKey, NewSessionQuota, MAX_SERVICE_BACKENDS, MAX_TABLE_SIZE, ServiceInfo, ServiceKey,
    Session, in_service_index, lookup_index,
};

use super::{Dataplane, DataplaneError, banks::{Bank, Owner}};

/// Takes map `name` out of the object.
pub(super) fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, DataplaneError> {
    ebpf.take_map(name).ok_or_else(|| DataplaneError::Map { name, detail: "not in the object".into() })
}

/// Takes map `name` out of the object as the typed handle `T`.
pub(super) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(take_map(ebpf, name)?).map_err(|e| DataplaneError::Map { name, detail: e.to_string() })
}

fn write(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Write { name, source }
}

impl Dataplane {
    /// Makes `info` the live definition of the service at `key`. The flip to the banks `info`
    /// names is one store into SERVICE_BANKS; SERVICES is written only when the service is new
    /// or its id or flags change (a new service's entry comes last: it makes the service exist).
    pub fn set_service(&mut self, key: &ServiceKey, info: &ServiceInfo) -> Result<(), DataplaneError> {
        let live = self.banks.live(&Owner::Service(*key));
        let entry_changes = live.map(|l| l.entry()) != Some(info.entry());
        if entry_changes {
            // Before the word too: a new service's id may have served a removed service a
            // moment ago, and no run that read that service's entry may see these banks.
            self.quiesce_services()?;
        }
        if live.map(|l| l.banks()) != Some(info.banks()) {
            self.service_banks.store(info.id, &info.banks());
        }
        if entry_changes {
            self.service_filter.add(key)?;
            self.services.insert(key, info.entry(), 0).map_err(write("SERVICES"))?;
            if live.is_some() {
                self.services_freed = Some(self.grace.epoch());
            }
        }
        self.banks.set(Owner::Service(*key), *info, self.grace.epoch());
        Ok(())
    }

    pub fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        self.services.remove(key).map_err(write("SERVICES"))?;
        let now = self.grace.epoch();
        self.services_freed = Some(now);
        self.banks.remove(&Owner::Service(*key), now);
        self.service_filter.remove(key)
    }

    /// Makes `info`'s banks the live overflow pool table with id `info.id` (a service id of
    /// its own, named by its service's entry): one SERVICE_BANKS store. Call before the
    /// service's entry first names it.
    pub fn set_pool(&mut self, info: &ServiceInfo) -> Result<(), DataplaneError> {
        let owner = Owner::Pool(info.id);
        let live = self.banks.live(&owner);
        if live.is_none() {
            // The id may have served a removed service a moment ago: as for a new service.
            self.quiesce_services()?;
        }
        if live.map(|l| l.banks()) != Some(info.banks()) {
            self.service_banks.store(info.id, &info.banks());
        }
        self.banks.set(owner, *info, self.grace.epoch());
        Ok(())
    }

    /// The pool table `id` is no longer named by any entry (its service was removed or lost
    /// its pool, entry already rewritten): its banks retire, and its id may serve again once
    /// no run can still be reading it.
    pub fn remove_pool(&mut self, id: u32) {
        let now = self.grace.epoch();
        self.services_freed = Some(now);
        self.banks.remove(&Owner::Pool(id), now);
    }

    /// The new-session quota of backend `id` (all zero: none). Written before its BACKENDS
    /// entry gains BACKEND_F_PACED.
    pub fn set_new_session_quota(&mut self, id: u32, quota: &NewSessionQuota) -> Result<(), DataplaneError> {
        self.new_session_quotas.set(id, quota, 0).map_err(write("NEW_SESSION_QUOTAS"))
    }

    /// SERVICES is a preallocated hash: replacing or removing an entry hands its element back
    /// to the kernel's free list at once, and the next SERVICES write may fill it while a
    /// program run is still copying the old entry. So a write after such a release first waits
    /// out a grace period (usually already passed: bank writes wait for one). Rare: entries
    /// change only when a service is added, removed, or changes forwarding or hash key.
    fn quiesce_services(&mut self) -> Result<(), DataplaneError> {
        if let Some(freed) = self.services_freed.take() {
            self.grace.wait_past(freed)?;
        }
        Ok(())
    }

    /// Before a bank that was live is written again: waits until no program run can still be
    /// reading it (once per batch of changes: one grace period covers every bank retired before
    /// it started).
    fn quiesce(&mut self, bank: Bank) -> Result<(), DataplaneError> {
        if let Some(retired) = self.banks.take_retired(bank) {
            self.grace.wait_past(retired)?;
        }
        Ok(())
    }

    pub fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        self.backends.set(id, backend, 0).map_err(write("BACKENDS"))
    }

    pub fn backend(&self, id: u32) -> Result<Backend, DataplaneError> {
        self.backends.get(&id, 0).map_err(write("BACKENDS"))
    }

    /// Fills bank `bank` of the service's server index table. The bank must not be live; if it
    /// was live before, this first waits out the program runs that may still read it.
    pub fn write_lookup(&mut self, service_id: u32, bank: u32, table: &[u32]) -> Result<(), DataplaneError> {
        assert!(table.len() <= MAX_TABLE_SIZE as usize, "table larger than MAX_TABLE_SIZE");
        self.quiesce(Bank::Lookup(service_id, bank))?;
        self.lookup.write(lookup_index(service_id, bank, 0), table);
        Ok(())
    }

    /// Reads slot `slot` of bank `bank` (for explain and tests).
    pub fn lookup_slot(&self, service_id: u32, bank: u32, slot: u32) -> Result<u32, DataplaneError> {
        Ok(self.lookup.read(lookup_index(service_id, bank, slot)))
    }

    /// Fills bank `bank` of the service's in-service list. The bank must not be live; if it was
    /// live before, this first waits out the program runs that may still read it.
    pub fn write_in_service(&mut self, service_id: u32, bank: u32, ids: &[u32]) -> Result<(), DataplaneError> {
        assert!(ids.len() <= MAX_SERVICE_BACKENDS as usize, "list longer than MAX_SERVICE_BACKENDS");
        self.quiesce(Bank::InService(service_id, bank))?;
        for (i, id) in ids.iter().enumerate() {
            self.in_service
                .set(in_service_index(service_id, bank, i as u32), id, 0)
                .map_err(write("IN_SERVICE"))?;
        }
        Ok(())
    }

    /// Tells the program it may redirect to `ifindex` (two-arm set-ups).
    pub fn allow_egress(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.egress
            .insert(ifindex, ifindex, None, 0)
            .map_err(|e| DataplaneError::Attach(format!("adding ifindex {ifindex} to the EGRESS devmap failed: {e}")))
    }

    /// The program may no longer redirect to `ifindex` (an interface lb left).
    pub(super) fn forbid_egress(&mut self, ifindex: u32) {
        let _ = self.egress.remove(ifindex);
    }

    /// The session record of a flow, if the program made one.
    pub fn session(&self, flow: &FlowKey) -> Option<Session> {
        self.sessions.get(flow)
    }

    /// The session clock tick (lb_common::session_clock) when a packet of the flow last passed,
    /// if the flow holds a record.
    pub fn session_seen(&self, flow: &FlowKey) -> Option<u16> {
        self.sessions.slot(flow).map(|s| s.seen)
    }

    /// All session records, as (the flow's session hash, session) (for status and tests; scans
    /// the whole table).
    pub fn sessions(&self) -> Vec<(u64, Session)> {
        self.sessions.iter().collect()
    }

    /// Word `word` of SERVICE_FILTER as the kernel holds it (tests, diagnostics).
    pub fn service_filter_word(&self, word: u32) -> Result<u64, DataplaneError> {
        self.service_filter.word(word)
    }

    /// Forgets every session (tests and benchmarks start from a clean slate with it).
    pub fn clear_sessions(&mut self) -> Result<(), DataplaneError> {
        self.sessions.clear();
        Ok(())
    }
}
