//! Maglev table population (NSDI'16, section 3.4, Pseudocode 1), weighted.
//!
//! Each backend walks its own permutation of the slots, `offset, offset + skip, ...` (mod M),
//! with offset and skip from two independent hashes of its name; M prime makes every walk cover
//! every slot. Backends take turns; at its turn a backend claims the next slot of its walk that
//! is still free. Weights set how often a backend gets a turn, as in Envoy's
//! MaglevLoadBalancer: the heaviest backends take a turn every round, one of weight w on
//! w/heaviest of the rounds. Backends of one weight share their turns in name order.

use std::ops::Range;

use super::TableBackend;
use super::name_hash::name_hash;

const OFFSET_SEED: u64 = 0x6D61_676C_6576_6F66; // "maglevof"
const SKIP_SEED: u64 = 0x6D61_676C_6576_736B; // "maglevsk"

/// A backend's place in its permutation.
struct Walk {
    id: u32,
    /// The next slot of the permutation to try.
    next: u32,
    skip: u32,
}

impl Walk {
    fn new(backend: &TableBackend, size: u32) -> Walk {
        let size = u64::from(size);
        let offset = name_hash(&backend.name, OFFSET_SEED) % size;
        // 1..size: never 0, so the walk moves; any such step generates the whole prime cycle.
        let skip = name_hash(&backend.name, SKIP_SEED) % (size - 1).max(1) + 1;
        Walk {
            id: backend.id,
            next: offset as u32,
            skip: skip as u32,
        }
    }

    /// Claims the first free slot at or after `next` in the permutation, marking it taken.
    #[inline(always)]
    fn claim(&mut self, taken: &mut [u64], size: u32) -> usize {
        // A local cursor, written back once: the probe loop then touches no memory but `taken`.
        let mut next = self.next;
        // Incremental `(offset + j * skip) % size`: no division per probe. Both candidates come
        // straight from `next`, so a probe waits on one add and a select, not add-compare-sub.
        let wrap_at = size - self.skip;
        loop {
            let slot = next as usize;
            next = if next < wrap_at {
                next + self.skip
            } else {
                next - wrap_at
            };
            let (word, bit) = (slot / 64, slot % 64);
            if taken[word] >> bit & 1 == 0 {
                taken[word] |= 1 << bit;
                self.next = next;
                return slot;
            }
        }
    }
}

/// The backends of one weight, taking turns one after another in name order.
///
/// The group is due `members * weight / heaviest` turns per round, so each member gets
/// `weight / heaviest`. Sharing one schedule keeps a group's members within one slot of each
/// other and the group as a whole within about a slot of its share; were each member rounded on
/// its own, 999 light backends could each round the same way and shift up to 500 slots onto
/// the heavy ones. It also makes a round cost one check per distinct weight, not per backend.
struct WeightGroup {
    /// members * weight.
    rate: u64,
    members: Range<usize>,
    /// The member whose turn is next.
    next: usize,
    /// (2 * turns taken + 1) * heaviest: the group is due again in the first round `r` with
    /// `2 * r * rate >= due`. The half turn (the +1) rounds turns to nearest rather than up.
    due: u64,
}

impl WeightGroup {
    /// How many turns the group is due in `round`, counting them as taken.
    fn turns_due(&mut self, round: u64, heaviest: u64) -> u64 {
        let reached = 2 * round * self.rate;
        if reached < self.due {
            return 0;
        }
        let turns = (reached - self.due) / (2 * heaviest) + 1;
        self.due += turns * 2 * heaviest;
        turns
    }

    /// The member whose turn it is; the next one after it, cyclically, gets the next turn.
    fn take_turn(&mut self) -> usize {
        let member = self.next;
        self.next = if member + 1 == self.members.end {
            self.members.start
        } else {
            member + 1
        };
        member
    }
}

/// Fills a table of `size` (prime) slots from `backends` (nonempty, in name order, nonzero
/// weights).
pub(super) fn build(backends: &[&TableBackend], size: u32) -> Vec<u32> {
    assert!(
        is_prime(size),
        "a Maglev table needs a prime size, got {size}"
    );
    // Stable sort: name order within each weight, so turn order depends on the names only.
    let mut by_weight = backends.to_vec();
    by_weight.sort_by_key(|b| std::cmp::Reverse(b.weight));
    let mut walks: Vec<Walk> = by_weight.iter().map(|b| Walk::new(b, size)).collect();
    let heaviest = u64::from(by_weight[0].weight);
    let mut groups = weight_groups(&by_weight, heaviest);

    // One bit per slot: 8 KiB for 65537 slots, so the probes stay in the L1 cache.
    let mut taken = vec![0u64; (size as usize).div_ceil(64)];
    let mut table = vec![0u32; size as usize];
    let mut filled = 0u32;
    for round in 0u64.. {
        for group in groups.iter_mut() {
            for _ in 0..group.turns_due(round, heaviest) {
                let walk = &mut walks[group.take_turn()];
                table[walk.claim(&mut taken, size)] = walk.id;
                filled += 1;
                if filled == size {
                    return table;
                }
            }
        }
    }
    unreachable!("the heaviest backends take a turn every round, so the table fills")
}

/// Runs of equal weight in `backends` (sorted by weight, heaviest first).
fn weight_groups(backends: &[&TableBackend], heaviest: u64) -> Vec<WeightGroup> {
    let mut groups: Vec<WeightGroup> = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let weight = u64::from(b.weight);
        match groups.last_mut() {
            Some(g) if g.rate / g.members.len() as u64 == weight => {
                g.members.end = i + 1;
                g.rate += weight;
            }
            _ => groups.push(WeightGroup {
                rate: weight,
                members: i..i + 1,
                next: i,
                due: heaviest,
            }),
        }
    }
    groups
}

fn is_prime(n: u32) -> bool {
    let n = u64::from(n);
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
