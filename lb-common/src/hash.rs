//! The flow hash and the two choices made from it. The XDP program and `lb explain` both call
//! these, so userspace can say exactly which backend a flow will get.

use crate::layout::{FlowKey, HASH_DST_ADDR, HASH_DST_PORT, HASH_PROTO, HASH_SRC_ADDR, HASH_SRC_PORT};

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;
const SEED: u64 = 0x6C62_2D66_6C6F_7721;
const SECOND_CHOICE_SALT: u32 = 0x5EC0_3D01;
/// One odd multiplier per 32-bit word of the hashed fields (random, fixed).
const WORD_KEYS: [u64; 10] = [
    0xA076_1D64_78BD_642F,
    0xE703_7ED1_A0B4_28DB,
    0x8EBC_6AF0_9C88_C6E3,
    0x5899_65CC_7537_4CC3,
    0x1D8E_4E27_C47D_124F,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x27D4_EB2F_1656_67C5,
    0x85EB_CA77_C2B2_AE63,
    0xFF51_AFD7_ED55_8CCD,
];

#[inline(always)]
fn absorb(h: u64, word: u32) -> u64 {
    let h = (h ^ word as u64).wrapping_mul(MUL);
    h ^ (h >> 29)
}

/// murmur3's 64-bit finaliser: every input bit affects every output bit (a bijection).
#[inline(always)]
const fn finish64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h
}

#[inline(always)]
const fn finish(h: u64) -> u32 {
    finish64(h) as u32
}

#[inline(always)]
fn keep(fields: u32, field: u32) -> u32 {
    // All ones when the field is chosen, zero otherwise: no branch per field on the packet path.
    0u32.wrapping_sub(((fields & field) != 0) as u32)
}

/// Hash of the fields of `key` chosen by `fields` (HASH_* bits). Unchosen fields hash as zero,
/// so two flows that differ only in unchosen fields get the same hash.
///
/// Every packet of a service pays for this hash, so it is built for latency: each 32-bit word
/// is multiplied by its own key and the products summed (a multilinear hash, whose ten
/// multiplications run in parallel), then murmur3's finaliser mixes the sum. A chain of ten
/// dependent multiply-shift rounds took about three times as long.
#[inline(always)]
pub fn flow_hash(key: &FlowKey, fields: u32) -> u32 {
    flow_hash64(key, fields) as u32
}

/// `flow_hash` before it is cut to 32 bits (its low half is `flow_hash`): 64 bits that tell
/// flows apart well enough to stand for them in the session table (lb_common::session_table).
#[inline(always)]
pub fn flow_hash64(key: &FlowKey, fields: u32) -> u64 {
    let src = keep(fields, HASH_SRC_ADDR);
    let dst = keep(fields, HASH_DST_ADDR);
    let ports = ((key.src_port as u32 & keep(fields, HASH_SRC_PORT)) << 16)
        | (key.dst_port as u32 & keep(fields, HASH_DST_PORT));
    let words = [
        key.src_addr[0] & src,
        key.src_addr[1] & src,
        key.src_addr[2] & src,
        key.src_addr[3] & src,
        key.dst_addr[0] & dst,
        key.dst_addr[1] & dst,
        key.dst_addr[2] & dst,
        key.dst_addr[3] & dst,
        ports,
        (key.proto as u32) & keep(fields, HASH_PROTO),
    ];
    let mut sum = SEED;
    for i in 0..words.len() {
        sum = sum.wrapping_add((words[i] as u64).wrapping_mul(WORD_KEYS[i]));
    }
    finish64(sum)
}

/// Slot of the service's server index table (of `table_size` slots) a flow hash selects.
#[inline(always)]
pub fn table_slot(hash: u32, table_size: u32) -> u32 {
    hash % table_size
}

/// Index into the service's in-service list (of `count` > 0 entries) used when the backend in
/// the flow's slot is out of service. Derived from the same hash, re-mixed so that flows sharing
/// a slot still spread over the whole list.
#[inline(always)]
pub fn second_choice(hash: u32, count: u32) -> u32 {
    finish(absorb(SEED, hash ^ SECOND_CHOICE_SALT)) % count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{HASH_FIVE_TUPLE, HASH_SOURCE_ADDR_ONLY, addr_v4, port_raw};

    fn flow(src: [u8; 4], sport: u16) -> FlowKey {
        FlowKey {
            src_addr: addr_v4(src),
            dst_addr: addr_v4([10, 9, 9, 9]),
            src_port: port_raw(sport),
            dst_port: port_raw(80),
            proto: 6,
            family: 4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn source_only_ignores_ports() {
        let a = flow([10, 1, 0, 1], 1000);
        let b = flow([10, 1, 0, 1], 2000);
        assert_eq!(flow_hash(&a, HASH_SOURCE_ADDR_ONLY), flow_hash(&b, HASH_SOURCE_ADDR_ONLY));
        assert_ne!(flow_hash(&a, HASH_FIVE_TUPLE), flow_hash(&b, HASH_FIVE_TUPLE));
    }

    #[test]
    fn five_tuple_hash_spreads_evenly_over_slots() {
        const SLOTS: usize = 97;
        let mut hits = [0u32; SLOTS];
        let n = 97_000u32;
        for i in 0..n {
            let k = flow([10, 1, (i >> 8) as u8, i as u8], 1024 + (i % 50_000) as u16);
            hits[table_slot(flow_hash(&k, HASH_FIVE_TUPLE), SLOTS as u32) as usize] += 1;
        }
        let ideal = n / SLOTS as u32;
        for (slot, &h) in hits.iter().enumerate() {
            assert!(h.abs_diff(ideal) * 10 < ideal, "slot {slot} got {h}, ideal {ideal}");
        }
    }

    #[test]
    fn second_choice_spreads_flows_of_one_slot() {
        // Flows that share a table slot must not all pile onto one fallback backend.
        let count = 5;
        let mut hits = [0u32; 5];
        let mut seen = 0;
        for i in 0..200_000u32 {
            let h = flow_hash(&flow([10, 2, (i >> 8) as u8, i as u8], 40000), HASH_FIVE_TUPLE);
            if table_slot(h, 7) == 3 {
                hits[second_choice(h, count) as usize] += 1;
                seen += 1;
            }
        }
        for &h in &hits {
            assert!(h * 10 > seen, "second choice uneven: {hits:?}");
        }
    }
}
