//! Which table and in-service banks were live and when they stopped being live, so that a bank
//! is rewritten only after every program run that could have seen it as live has finished
//! (`grace`). Pure bookkeeping, fed by the flips (SERVICE_BANKS stores) and removals.

use std::collections::HashMap;

use lb_common::{ServiceInfo, ServiceKey};

use super::grace::Epoch;

/// Whose banks: a service's (by its key), or the overflow pool table with this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Owner {
    Service(ServiceKey),
    Pool(u32),
}

/// One bank of one table: (service or pool id, bank).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Bank {
    Lookup(u32, u32),
    InService(u32, u32),
}

#[derive(Default)]
pub(super) struct Banks {
    /// The live definition of each service (its SERVICES entry and SERVICE_BANKS word) and
    /// of each overflow pool table (its SERVICE_BANKS word).
    live: HashMap<Owner, ServiceInfo>,
    /// Banks that were live, with the grace epoch read when they stopped being live.
    retired: HashMap<Bank, Epoch>,
}

fn banks_of(info: &ServiceInfo) -> [Bank; 2] {
    [Bank::Lookup(info.id, info.lookup_bank), Bank::InService(info.id, info.in_service_bank)]
}

impl Banks {
    /// The service or pool `key` is now `info`: the banks its previous version used and `info`
    /// does not are retired at `now`.
    pub(super) fn set(&mut self, key: Owner, info: ServiceInfo, now: Epoch) {
        if let Some(old) = self.live.insert(key, info) {
            let kept = banks_of(&info);
            for bank in banks_of(&old).into_iter().filter(|b| !kept.contains(b)) {
                self.retired.insert(bank, now);
            }
        }
    }

    /// The service or pool `key` is gone: its banks are retired at `now` (its id may serve
    /// another service).
    pub(super) fn remove(&mut self, key: &Owner, now: Epoch) {
        if let Some(old) = self.live.remove(key) {
            for bank in banks_of(&old) {
                self.retired.insert(bank, now);
            }
        }
    }

    /// What is live at `key`, if the service or pool exists.
    pub(super) fn live(&self, key: &Owner) -> Option<ServiceInfo> {
        self.live.get(key).copied()
    }

    /// Every live service, by key.
    pub(super) fn services(&self) -> Vec<(ServiceKey, ServiceInfo)> {
        self.live
            .iter()
            .filter_map(|(owner, info)| match owner {
                Owner::Service(key) => Some((*key, *info)),
                Owner::Pool(_) => None,
            })
            .collect()
    }

    /// The epoch `bank` was retired at, if it was live before; forgets it (the caller waits,
    /// then the bank is as good as new).
    pub(super) fn take_retired(&mut self, bank: Bank) -> Option<Epoch> {
        self.retired.remove(&bank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u32, lookup_bank: u32, in_service_bank: u32) -> ServiceInfo {
        ServiceInfo { id, lookup_bank, in_service_bank, ..Default::default() }
    }

    fn key(port: u16) -> Owner {
        Owner::Service(ServiceKey { port, ..Default::default() })
    }

    #[test]
    fn a_flip_retires_only_the_banks_it_leaves() {
        let mut b = Banks::default();
        b.set(key(80), info(3, 0, 0), 0);
        // Never-live banks carry no retirement: written without waiting.
        assert_eq!(b.take_retired(Bank::Lookup(3, 1)), None);
        b.set(key(80), info(3, 1, 0), 5);
        assert_eq!(b.take_retired(Bank::Lookup(3, 0)), Some(5));
        assert_eq!(b.take_retired(Bank::Lookup(3, 0)), None, "taken once");
        assert_eq!(b.take_retired(Bank::InService(3, 0)), None, "still live");
        assert_eq!(b.take_retired(Bank::InService(3, 1)), None);
    }

    #[test]
    fn a_removed_service_retires_both_of_its_live_banks() {
        let mut b = Banks::default();
        b.set(key(80), info(7, 1, 0), 0);
        b.remove(&key(80), 2);
        assert_eq!(b.take_retired(Bank::Lookup(7, 1)), Some(2));
        assert_eq!(b.take_retired(Bank::InService(7, 0)), Some(2));
        b.remove(&key(80), 3);
        assert_eq!(b.take_retired(Bank::Lookup(7, 1)), None, "nothing was live any more");
    }

    #[test]
    fn a_pool_table_is_tracked_apart_from_services() {
        let mut b = Banks::default();
        b.set(key(80), info(1, 0, 0), 0);
        b.set(Owner::Pool(2), info(2, 0, 0), 0);
        b.set(Owner::Pool(2), info(2, 1, 1), 4);
        assert_eq!(b.take_retired(Bank::Lookup(2, 0)), Some(4));
        assert_eq!(b.take_retired(Bank::InService(2, 0)), Some(4));
        assert_eq!(b.live(&key(80)), Some(info(1, 0, 0)), "the service is untouched");
        b.remove(&Owner::Pool(2), 6);
        assert_eq!(b.take_retired(Bank::Lookup(2, 1)), Some(6));
    }
}
