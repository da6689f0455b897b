//! Consistent hashing on a ring with virtual nodes.
//!
//! Every backend puts `weight * points_per_weight` points on a ring of 2^48 positions, point `i`
//! at a hash of its name and `i`. The slots sit evenly spaced on the same ring, slot `s` at
//! `s/size` of the way round, and each belongs to the first point at or after it (clockwise,
//! wrapping). Slots are spread evenly rather than hashed because the flow hash already scatters
//! flows over slots: even spacing makes a backend's slot share the length of ring its points
//! own, without a second round of sampling noise.
//!
//! Removing a backend removes only its points, so only its slots move; adding one moves only
//! the slots its new points now come first for.
//!
//! No sort is needed: each point drops into the gap between two neighbouring slots, and a
//! slot's owner is the least point in the first nonempty gap at or after it. One pass over the
//! points and one backward pass over the slots, O(points + slots).

use super::name_hash::{mix, name_hash};
use super::{NO_BACKEND, TableBackend};

const POINT_SEED: u64 = 0x7269_6E67_706F_696E; // "ringpoin"
/// Odd, so `i * GOLDEN` differs for every point index before mixing.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const POSITION_BITS: u32 = 48;
const RANK_BITS: u32 = 64 - POSITION_BITS;
/// Marks a gap without points. Greater than every point, whose rank is never the largest.
const NO_POINT: Point = Point(u64::MAX);

/// A point packed into one u64 so that integer order is ring order: the position in the high
/// 48 bits, the backend's rank (its index in name order) in the low 16. Two points on one
/// position are ordered by name, which does not depend on which other backends are present.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Point(u64);

impl Point {
    fn new(hash: u64, rank: usize) -> Point {
        Point((hash >> RANK_BITS << RANK_BITS) | rank as u64)
    }

    fn position(self) -> u64 {
        self.0 >> RANK_BITS
    }

    fn rank(self) -> usize {
        (self.0 & ((1 << RANK_BITS) - 1)) as usize
    }

    /// The gap the point falls in: gap `s` runs from slot `s` up to (not including) slot `s+1`,
    /// so a point is at or after slot `s` exactly when its gap is `s` or later.
    fn gap(self, size: u32) -> usize {
        ((u128::from(self.position()) * u128::from(size)) >> POSITION_BITS) as usize
    }
}

/// Fills a table of `size` slots from `backends` (nonempty, in name order, nonzero weights).
pub(super) fn build(backends: &[&TableBackend], points_per_weight: u32, size: u32) -> Vec<u32> {
    assert!(
        backends.len() < 1 << RANK_BITS,
        "a ring holds fewer than {} backends, got {}",
        1 << RANK_BITS,
        backends.len()
    );
    // The least point of each gap.
    let mut first_in_gap = vec![NO_POINT; size as usize];
    for (rank, backend) in backends.iter().enumerate() {
        let base = name_hash(&backend.name, POINT_SEED);
        let points = u64::from(backend.weight) * u64::from(points_per_weight);
        for i in 0..points {
            let point = Point::new(mix(base ^ i.wrapping_mul(GOLDEN)), rank);
            let least = &mut first_in_gap[point.gap(size)];
            *least = (*least).min(point);
        }
    }
    // Past the last gap the ring wraps round to the least point of all.
    let mut owner = first_in_gap.iter().copied().min().unwrap_or(NO_POINT);
    if owner == NO_POINT {
        return vec![NO_BACKEND; size as usize];
    }
    let mut table = vec![0u32; size as usize];
    for (slot, least) in first_in_gap.iter().enumerate().rev() {
        if *least != NO_POINT {
            owner = *least;
        }
        table[slot] = backends[owner.rank()].id;
    }
    table
}
