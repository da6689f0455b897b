//! Free lists of service and backend ids (indexes into the maps). A freed id goes to the back
//! of its queue, so it is handed out again as late as possible; a backend id gets a new
//! generation every time it is handed out, so sessions recorded for its previous owner are
//! stale for the data plane (it compares the session's generation with BACKENDS').

use std::collections::VecDeque;

use lb_common::{MAX_BACKENDS, MAX_SERVICES};

/// Ids 0..capacity, handed out lowest first, reused oldest-freed first.
#[derive(Clone, Debug)]
pub struct IdPool {
    free: VecDeque<u32>,
}

impl IdPool {
    pub fn new(capacity: u32) -> Self {
        IdPool { free: (0..capacity).collect() }
    }

    /// A pool whose free ids are `free`, handed out in that order.
    fn with_free(free: impl IntoIterator<Item = u32>) -> Self {
        IdPool { free: free.into_iter().collect() }
    }

    pub fn take(&mut self) -> Option<u32> {
        self.free.pop_front()
    }

    pub fn put(&mut self, id: u32) {
        debug_assert!(!self.free.contains(&id), "id {id} freed twice");
        self.free.push_back(id);
    }

    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

/// Every id the balancer may hand out, and the generation each backend id was last given.
#[derive(Clone, Debug)]
pub struct Ids {
    services: IdPool,
    backends: IdPool,
    generations: Vec<u32>,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            services: IdPool::new(MAX_SERVICES),
            backends: IdPool::new(MAX_BACKENDS),
            generations: vec![0; MAX_BACKENDS as usize],
        }
    }
}

impl Ids {
    /// The ids of maps adopted after a restart: `services` and `backends` are in use, every
    /// backend id keeps the generation BACKENDS holds (`generations`, by id). Free backend ids
    /// never handed out come first, then used ones, so a freed id waits as long as it can.
    pub fn restore(services: &[u32], backends: &[u32], generations: Vec<u32>) -> Ids {
        let free_services = (0..MAX_SERVICES).filter(|id| !services.contains(id));
        let free_backends: Vec<u32> = (0..MAX_BACKENDS).filter(|id| !backends.contains(id)).collect();
        let (never, used): (Vec<u32>, Vec<u32>) = free_backends.into_iter().partition(|&id| generations[id as usize] == 0);
        Ids {
            services: IdPool::with_free(free_services),
            backends: IdPool::with_free(never.into_iter().chain(used)),
            generations,
        }
    }

    pub fn take_service(&mut self) -> Option<u32> {
        self.services.take()
    }

    pub fn put_service(&mut self, id: u32) {
        self.services.put(id);
    }

    /// A free backend id and its new generation (never 0: an unwritten BACKENDS entry has 0).
    pub fn take_backend(&mut self) -> Option<(u32, u32)> {
        let id = self.backends.take()?;
        let g = &mut self.generations[id as usize];
        *g = g.wrapping_add(1).max(1);
        Some((id, *g))
    }

    pub fn put_backend(&mut self, id: u32) {
        self.backends.put(id);
    }

    #[cfg(test)]
    pub fn backends_available(&self) -> usize {
        self.backends.available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_handed_out_in_order_and_reused_last() {
        let mut p = IdPool::new(3);
        assert_eq!((p.take(), p.take()), (Some(0), Some(1)));
        p.put(0);
        assert_eq!((p.take(), p.take(), p.take()), (Some(2), Some(0), None));
    }

    #[test]
    fn a_reused_backend_id_gets_a_new_generation() {
        let mut ids = Ids::default();
        let (a, ga) = ids.take_backend().unwrap();
        assert_eq!((a, ga), (0, 1));
        ids.put_backend(a);
        // Every other id comes first; then 0 again, one generation on.
        for _ in 1..MAX_BACKENDS {
            let (id, g) = ids.take_backend().unwrap();
            assert_ne!(id, 0);
            assert_eq!(g, 1);
        }
        assert_eq!(ids.take_backend(), Some((0, 2)));
        assert_eq!(ids.take_backend(), None);
    }

    #[test]
    fn restored_ids_keep_their_generations_and_reuse_used_ids_last() {
        let mut generations = vec![0; MAX_BACKENDS as usize];
        generations[0] = 3; // in use
        generations[1] = 7; // used before, free now
        let mut ids = Ids::restore(&[0, 2], &[0], generations);
        assert_eq!(ids.take_service(), Some(1));
        assert_eq!(ids.take_service(), Some(3));
        assert_eq!(ids.take_backend(), Some((2, 1)), "never-used ids first");
        for _ in 3..MAX_BACKENDS {
            ids.take_backend().unwrap();
        }
        assert_eq!(ids.take_backend(), Some((1, 8)), "then used ones, one generation on");
        assert_eq!(ids.take_backend(), None, "id 0 is in use");
    }
}
