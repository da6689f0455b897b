//! Consistent hashing: the server index table a service's new flows are spread by.
//!
//! The XDP program sends a new flow to `table[table_slot(flow_hash, size)]`; this module decides
//! which backend id each of the `size` slots names. Two schedulers:
//! - [`Scheduler::Maglev`] (the default): Eisenbud et al., "Maglev: A Fast and Reliable Software
//!   Network Load Balancer", NSDI'16, section 3.4. Near-perfect balance (every backend within
//!   1% of its weighted share of slots, or one slot where that is less), and a change of
//!   backends moves under 1% of the slots beyond the ones it must.
//! - [`Scheduler::Ring`]: a consistent-hash ring with virtual nodes. Looser balance (see
//!   [`DEFAULT_RING_POINTS`]), but a removed backend's slots are the only ones that move, and an
//!   added backend only takes slots.
//!
//! A backend is placed by its `name` (its `address:port`), never by its id, so reassigning ids
//! changes no placement; slots hold ids. Input order does not matter: backends are taken in
//! name order. Names should be unique within a table (the config guarantees it).

mod maglev;
mod name_hash;
mod ring;

#[cfg(test)]
mod tests;

/// Ring points per unit of weight when the config gives none.
///
/// A backend's share varies with where its points fall (about 1/sqrt(points) at one standard
/// deviation) and with how many whole slots its arcs cover (about 1/sqrt(ideal slots)). At 200
/// points, in 65537 slots, every backend's share was within these factors of its weighted ideal
/// (measured, and asserted with a margin, in `tests.rs`, `ring_balance`):
///
/// | backends | 3         | 10        | 100       | 1000      |
/// |----------|-----------|-----------|-----------|-----------|
/// | measured | 0.95-1.07 | 0.92-1.13 | 0.83-1.17 | 0.49-1.53 |
/// | asserted | 0.90-1.10 | 0.85-1.20 | 0.80-1.25 | 0.45-1.60 |
///
/// 100 points gave 0.79-1.30 at 100 backends; 400 barely improved on 200. With 1000 backends a
/// backend owns only ~65 slots, so slot rounding dominates whatever the points: use Maglev.
pub const DEFAULT_RING_POINTS: u32 = 200;
/// Most ring points (weight x points per weight, over all backends) one table may take. The
/// build is linear in them (its memory is not): about 60 ms at this many on a 2-core AMD EPYC VM.
pub const MAX_RING_POINTS: u64 = 1 << 24;

/// What an empty table's slots hold: no backend has this id (BACKENDS holds MAX_BACKENDS), so
/// the data plane skips the slot and falls back to the service's in-service list. Not 0: the
/// balancer numbers backends from 0, so 0 would send every flow to a real backend.
pub const NO_BACKEND: u32 = u32::MAX;

/// How a table's slots are given to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    Maglev,
    /// `points_per_weight` points on the ring per unit of a backend's weight.
    Ring {
        points_per_weight: u32,
    },
}

/// A backend as the table builder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableBackend {
    /// What the slots hold.
    pub id: u32,
    /// Share of the slots relative to the other backends; 0 means no slots.
    pub weight: u32,
    /// Stable identity that decides placement, e.g. "10.0.0.1:80".
    pub name: String,
}

/// The `size` slots of a server index table, each the id of the backend that owns it.
///
/// With no backend of nonzero weight every slot is [`NO_BACKEND`].
///
/// Maglev needs a prime `size` (its permutations cover the table only then) and panics on
/// another; config validation guarantees one. The ring's cost grows with its total point count,
/// which config validation bounds by [`MAX_RING_POINTS`].
pub fn build_table(scheduler: &Scheduler, backends: &[TableBackend], size: u32) -> Vec<u32> {
    let mut placed: Vec<&TableBackend> = backends.iter().filter(|b| b.weight > 0).collect();
    if placed.is_empty() {
        return vec![NO_BACKEND; size as usize];
    }
    // Id breaks ties between equal names only so the result never depends on input order.
    placed.sort_unstable_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    match *scheduler {
        Scheduler::Maglev => maglev::build(&placed, size),
        Scheduler::Ring { points_per_weight } => ring::build(&placed, points_per_weight, size),
    }
}
