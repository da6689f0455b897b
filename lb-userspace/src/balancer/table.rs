//! The server index table for issue #2: an even, weight-proportional spread of backends over
//! the slots. Consistent hashing (Maglev, ring) replaces it in the hashing module.

/// Slots 0..size, each naming a backend id; backend `i` holds about weight_i / sum(weights) of
/// them, interleaved so neighbouring slots name different backends.
pub fn even_table(backends: &[(u32, u32)], size: u32) -> Vec<u32> {
    if backends.is_empty() {
        return vec![0; size as usize];
    }
    // Smooth weighted round robin (as nginx does): deterministic and evenly interleaved.
    let total: i64 = backends.iter().map(|&(_, w)| w as i64).sum();
    let mut current = vec![0i64; backends.len()];
    (0..size)
        .map(|_| {
            for (c, &(_, w)) in current.iter_mut().zip(backends) {
                *c += w as i64;
            }
            let best = (0..backends.len()).max_by_key(|&i| (current[i], -(i as i64))).unwrap_or(0);
            current[best] -= total;
            backends[best].0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_weights() {
        let t = even_table(&[(7, 1), (8, 2), (9, 1)], 4000);
        let share = |id| t.iter().filter(|&&x| x == id).count();
        assert_eq!((share(7), share(8), share(9)), (1000, 2000, 1000));
    }

    #[test]
    fn neighbours_differ_for_equal_weights() {
        let t = even_table(&[(1, 1), (2, 1), (3, 1)], 30);
        assert!(t.windows(2).all(|w| w[0] != w[1]));
    }
}
