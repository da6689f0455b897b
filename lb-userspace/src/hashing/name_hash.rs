//! A seeded 64-bit hash of a backend's name. Both schedulers place a backend by its name (its
//! `address:port`), never by its id, so a backend keeps its slots when ids are reassigned.
//! Names are short and chosen by the operator, not by clients, so a fast keyed mix suffices; no
//! defence against crafted collisions is needed.

/// murmur3's 64-bit finaliser: a bijection in which every input bit affects every output bit.
pub(super) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// Hash of `name` under `seed`. Each 8-byte word is folded in and fully mixed, so hashes under
/// two different seeds behave as independent functions (Maglev needs two of them).
pub(super) fn name_hash(name: &str, seed: u64) -> u64 {
    // The length goes in first so that names differing only in trailing zero bytes differ.
    let mut h = mix(seed ^ name.len() as u64);
    for chunk in name.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_and_name_both_matter() {
        let a = name_hash("10.0.0.1:80", 1);
        assert_eq!(a, name_hash("10.0.0.1:80", 1));
        assert_ne!(a, name_hash("10.0.0.1:80", 2));
        assert_ne!(a, name_hash("10.0.0.1:81", 1));
        assert_ne!(name_hash("", 1), name_hash("\0", 1));
    }

    #[test]
    fn one_changed_character_flips_about_half_the_bits() {
        let flipped: u32 = (0..256)
            .map(|i| {
                let a = format!("10.0.{}.{}:80", i / 16, i % 16);
                let b = format!("10.0.{}.{}:81", i / 16, i % 16);
                (name_hash(&a, 7) ^ name_hash(&b, 7)).count_ones()
            })
            .sum();
        let mean = flipped as f64 / 256.0;
        assert!((30.0..34.0).contains(&mean), "mean flipped bits {mean}");
    }
}
