//! Properties of both schedulers: balance, disruption when a backend leaves or joins,
//! determinism. Disruption is measured over slots and over random flows placed by the data
//! plane's own `flow_hash` and `table_slot`.

use std::collections::HashMap;

use lb_common::{FlowKey, HASH_FIVE_TUPLE, flow_hash, table_slot};

use super::*;

const SIZE: u32 = 65537;
const BACKEND_COUNTS: [usize; 4] = [3, 10, 100, 1000];
const RING: Scheduler = Scheduler::Ring {
    points_per_weight: DEFAULT_RING_POINTS,
};
const FLOWS: usize = 200_000;

fn backends(n: usize, weight: impl Fn(usize) -> u32) -> Vec<TableBackend> {
    (0..n)
        .map(|i| TableBackend {
            id: 100 + i as u32,
            weight: weight(i),
            name: format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256),
        })
        .collect()
}

fn equal(n: usize) -> Vec<TableBackend> {
    backends(n, |_| 1)
}

/// Slots owned by each backend id.
fn slot_counts(table: &[u32]) -> HashMap<u32, usize> {
    let mut counts = HashMap::new();
    for &id in table {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Each backend's slots and the slots its weight entitles it to.
fn owned_and_ideal(table: &[u32], backends: &[TableBackend]) -> Vec<(usize, f64)> {
    let counts = slot_counts(table);
    let total: u32 = backends.iter().map(|b| b.weight).sum();
    backends
        .iter()
        .map(|b| {
            let ideal = table.len() as f64 * f64::from(b.weight) / f64::from(total);
            (counts.get(&b.id).copied().unwrap_or(0), ideal)
        })
        .collect()
}

/// The slots of `FLOWS` pseudo-random five-tuples, as the XDP program would pick them.
fn flow_slots(size: u32) -> Vec<u32> {
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        // splitmix64: a fixed sequence, so the test is repeatable.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..FLOWS)
        .map(|_| {
            let (a, b) = (next(), next());
            let key = FlowKey {
                src_addr: [a as u32, 0, 0, 0],
                dst_addr: [0x6400_000A, 0, 0, 0],
                src_port: (a >> 32) as u16,
                dst_port: b as u16,
                proto: 6,
                family: 4,
                _pad: [0; 2],
            };
            table_slot(flow_hash(&key, HASH_FIVE_TUPLE), size)
        })
        .collect()
}

/// How one table change moved traffic, as fractions of the slots and of the flows.
struct Moved {
    /// Slots (flows) whose backend changed.
    slots: f64,
    flows: f64,
    /// Of those, the ones that moved between two backends that were neither removed nor added.
    other_slots: f64,
    other_flows: f64,
    /// Slots (flows) on the removed backend before, or on the added backend after.
    changed_slots: f64,
    changed_flows: f64,
}

/// Compares `before` and `after`, between which backend `changed` was removed or added.
fn moved(before: &[u32], after: &[u32], changed: u32, flows: &[u32]) -> Moved {
    let is_moved = |s: usize| before[s] != after[s];
    let is_other = |s: usize| is_moved(s) && before[s] != changed && after[s] != changed;
    let is_changed = |s: usize| before[s] == changed || after[s] == changed;
    let over_slots = |f: &dyn Fn(usize) -> bool| {
        (0..before.len()).filter(|&s| f(s)).count() as f64 / before.len() as f64
    };
    let over_flows = |f: &dyn Fn(usize) -> bool| {
        flows.iter().filter(|&&s| f(s as usize)).count() as f64 / flows.len() as f64
    };
    Moved {
        slots: over_slots(&is_moved),
        flows: over_flows(&is_moved),
        other_slots: over_slots(&is_other),
        other_flows: over_flows(&is_other),
        changed_slots: over_slots(&is_changed),
        changed_flows: over_flows(&is_changed),
    }
}

/// Checks that the table has `size` slots, each naming a backend of nonzero weight.
fn assert_complete(table: &[u32], backends: &[TableBackend], size: u32) {
    assert_eq!(table.len(), size as usize);
    assert!(
        table
            .iter()
            .all(|id| backends.iter().any(|b| b.id == *id && b.weight > 0))
    );
}

/// Checks that every backend owns within 1% of its weighted ideal slot count, or within one
/// slot of it when 1% is less than a slot (counts are whole numbers: with 1000 equal backends in
/// 65537 slots the ideal is 65.5, and no table can come within 1% of it). The bound,
/// 1% at `size >= 100 * backends`, is the first case for equal weights. Returns the worst
/// distance from the ideal in slots.
fn assert_maglev_balance(set: &[TableBackend]) -> f64 {
    let table = build_table(&Scheduler::Maglev, set, SIZE);
    assert_complete(&table, set, SIZE);
    let mut worst = (0.0f64, 0.0f64);
    for (b, (owned, ideal)) in set.iter().zip(owned_and_ideal(&table, set)) {
        let off = (owned as f64 - ideal).abs();
        worst = (worst.0.max(off), worst.1.max(off / ideal));
        let allowed = (ideal / 100.0).max(1.0);
        assert!(
            off <= allowed,
            "{} owns {owned} slots, ideal {ideal:.1}",
            b.name
        );
    }
    println!(
        "maglev n={}: worst {:.2} slots, {:.3}% off ideal",
        set.len(),
        worst.0,
        worst.1 * 100.0
    );
    worst.0
}

#[test]
fn maglev_balance_equal_weights() {
    // Every backend takes one slot per round, so counts are floor or ceil of size / n.
    for n in BACKEND_COUNTS {
        assert!(assert_maglev_balance(&equal(n)) < 1.0);
    }
}

#[test]
fn maglev_balance_unequal_weights() {
    for n in BACKEND_COUNTS {
        assert_maglev_balance(&backends(n, |i| 1 + i as u32 % 3));
        // All light backends round their share the same way, which the heavy one absorbs:
        // many slots, but a small fraction of its share.
        assert_maglev_balance(&backends(n, |i| if i == 0 { 1000 } else { 1 }));
    }
}

/// Slot share over ideal share, (most, least), of the ring at the default points per weight.
fn ring_spread(set: &[TableBackend]) -> (f64, f64) {
    let table = build_table(&RING, set, SIZE);
    assert_complete(&table, set, SIZE);
    let ratios: Vec<f64> = owned_and_ideal(&table, set)
        .iter()
        .map(|&(c, i)| c as f64 / i)
        .collect();
    (
        ratios.iter().copied().fold(0.0, f64::max),
        ratios.iter().copied().fold(f64::MAX, f64::min),
    )
}

#[test]
fn ring_balance() {
    // The bounds `DEFAULT_RING_POINTS` documents, measured on these names with some margin.
    for (n, least, most) in [
        (3, 0.90, 1.10),
        (10, 0.85, 1.20),
        (100, 0.80, 1.25),
        (1000, 0.45, 1.60),
    ] {
        for set in [equal(n), backends(n, |i| 1 + i as u32 % 3)] {
            let (max, min) = ring_spread(&set);
            println!("ring n={n}: share / ideal from {min:.3} to {max:.3}");
            assert!(
                min >= least && max <= most,
                "n={n}: share / ideal {min:.3}..{max:.3}"
            );
        }
    }
}

/// How traffic moves when a backend is removed from the start, middle or end of the name order
/// of `n` equal backends, and when one is added; each with the share of the slots that must
/// move (1/n for a removal, 1/(n+1) for an addition).
fn changes(scheduler: &Scheduler, n: usize, flows: &[u32]) -> Vec<(f64, Moved)> {
    let set = equal(n);
    let full = build_table(scheduler, &set, SIZE);
    let mut out: Vec<(f64, Moved)> = [0, n / 2, n - 1]
        .into_iter()
        .map(|gone| {
            let mut less = set.clone();
            let removed = less.remove(gone);
            let after = build_table(scheduler, &less, SIZE);
            (1.0 / n as f64, moved(&full, &after, removed.id, flows))
        })
        .collect();
    let mut more = set.clone();
    let added = TableBackend {
        id: 7,
        weight: 1,
        name: "10.255.0.1:8080".into(),
    };
    more.push(added.clone());
    let after = build_table(scheduler, &more, SIZE);
    out.push((1.0 / (n + 1) as f64, moved(&full, &after, added.id, flows)));
    out
}

#[test]
fn maglev_disruption_is_near_minimal() {
    // Only the removed (added) backend's share must move; Maglev moves at most 1% more. Over
    // flows the bound is relative to the flows the changed backend had (has): that share
    // differs from its slot share by sampling noise alone.
    let flows = flow_slots(SIZE);
    for n in BACKEND_COUNTS {
        for (must, m) in changes(&Scheduler::Maglev, n, &flows) {
            println!(
                "maglev n={n}: moved {:.4} of slots ({:.4} beyond the changed backend), {:.4} of flows ({:.4} beyond)",
                m.slots, m.other_slots, m.flows, m.other_flows
            );
            assert!(
                m.slots <= must + 0.01,
                "n={n}: {:.4} of slots moved",
                m.slots
            );
            assert!(
                m.flows <= m.changed_flows + 0.01,
                "n={n}: {:.4} of flows moved",
                m.flows
            );
        }
    }
}

#[test]
fn ring_moves_only_the_changed_backends_slots() {
    let flows = flow_slots(SIZE);
    for n in BACKEND_COUNTS {
        for (_, m) in changes(&RING, n, &flows) {
            assert_eq!((m.other_slots, m.other_flows), (0.0, 0.0), "n={n}");
            assert!(m.slots > 0.0 && m.slots == m.changed_slots, "n={n}");
        }
    }
}

#[test]
fn same_input_same_table_whatever_the_order() {
    for scheduler in [Scheduler::Maglev, RING] {
        let set = backends(100, |i| 1 + i as u32 % 3);
        let table = build_table(&scheduler, &set, SIZE);
        assert_eq!(table, build_table(&scheduler, &set, SIZE));
        let mut shuffled = set.clone();
        shuffled.reverse();
        shuffled.rotate_left(37);
        assert_eq!(table, build_table(&scheduler, &shuffled, SIZE));
    }
}

#[test]
fn placement_follows_names_not_ids() {
    for scheduler in [Scheduler::Maglev, RING] {
        let set = equal(10);
        let renumbered: Vec<TableBackend> = set
            .iter()
            .map(|b| TableBackend {
                id: b.id * 3 + 1,
                ..b.clone()
            })
            .collect();
        let expected: Vec<u32> = build_table(&scheduler, &set, SIZE)
            .iter()
            .map(|id| id * 3 + 1)
            .collect();
        assert_eq!(build_table(&scheduler, &renumbered, SIZE), expected);
    }
}

#[test]
fn weight_zero_backends_get_no_slots() {
    for scheduler in [Scheduler::Maglev, RING] {
        let mut with_idle = equal(10);
        with_idle[4].weight = 0;
        let mut without = equal(10);
        without.remove(4);
        let table = build_table(&scheduler, &with_idle, SIZE);
        assert!(!table.contains(&with_idle[4].id));
        assert_eq!(table, build_table(&scheduler, &without, SIZE));
    }
}

#[test]
fn no_backend_gives_a_table_of_no_backend() {
    let empty = vec![NO_BACKEND; 251];
    for scheduler in [Scheduler::Maglev, RING] {
        assert_eq!(build_table(&scheduler, &[], 251), empty);
        assert_eq!(build_table(&scheduler, &backends(3, |_| 0), 251), empty);
    }
    let no_points = Scheduler::Ring {
        points_per_weight: 0,
    };
    assert_eq!(build_table(&no_points, &equal(3), 251), empty);
}

#[test]
fn tables_smaller_than_the_backend_list_are_still_full() {
    let set = equal(10);
    for scheduler in [Scheduler::Maglev, RING] {
        assert_complete(&build_table(&scheduler, &set, 7), &set, 7);
        assert_complete(&build_table(&scheduler, &set, 2), &set, 2);
    }
}

#[test]
#[should_panic(expected = "prime size")]
fn maglev_rejects_a_size_that_is_not_prime() {
    build_table(&Scheduler::Maglev, &equal(3), 65536);
}
