//! Cheap pre-filters that spare most packets a hash-map lookup. A packet's (address, port,
//! protocol) picks one of FILTER_SLOTS slots; only if that slot is marked can the packet belong
//! to a service (SERVICE_FILTER, by destination) or be a NAT reply (NAT_REPLY_FILTER, by source).
//! A mark is a hint, never a verdict: the hash map decides. So a false positive costs one
//! lookup, and a false negative must never happen: marks are set before the records they cover.

/// Slots of both filters. 2^16 keeps false positives below 0.1% for 64 services.
pub const FILTER_SLOTS: u32 = 1 << 16;
/// Each filter is a bitmap of FILTER_SLOTS bits in u64 words (8 KiB: stays in L1).
pub const FILTER_WORDS: u32 = FILTER_SLOTS / 64;

/// The filter slot of one endpoint. Raw (wire-order) address words and port, as in FlowKey.
#[inline(always)]
pub fn filter_slot(addr: &[u32; 4], port: u16, proto: u8) -> u32 {
    let folded = addr[0] ^ addr[1] ^ addr[2] ^ addr[3] ^ ((port as u32) << 8) ^ proto as u32;
    // Fibonacci hashing: the top 16 bits of the product depend on every input bit.
    folded.wrapping_mul(0x9E37_79B1) >> 16
}

/// Word of a filter bitmap holding `slot`'s bit, and the bit within it.
#[inline(always)]
pub fn filter_bit(slot: u32) -> (u32, u64) {
    (slot / 64, 1u64 << (slot % 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stay_in_range_and_spread() {
        let mut seen = [false; FILTER_SLOTS as usize];
        let mut distinct = 0;
        for host in 0..4096u32 {
            let slot = filter_slot(&[host.to_be(), 0, 0, 0], 80u16.to_be(), 6);
            assert!(slot < FILTER_SLOTS);
            distinct += !seen[slot as usize] as u32;
            seen[slot as usize] = true;
        }
        // 4096 keys in 65536 slots: a uniform hash collides ~3% of the time.
        assert!(distinct > 3900, "only {distinct} distinct slots for 4096 addresses");
    }

    #[test]
    fn every_field_changes_the_slot() {
        let base = filter_slot(&[1, 2, 3, 4], 80, 6);
        assert_ne!(base, filter_slot(&[1, 2, 3, 5], 80, 6));
        assert_ne!(base, filter_slot(&[1, 2, 3, 4], 81, 6));
        assert_ne!(base, filter_slot(&[1, 2, 3, 4], 80, 17));
    }

    #[test]
    fn bit_addresses_cover_the_bitmap() {
        assert_eq!(filter_bit(0), (0, 1));
        assert_eq!(filter_bit(65), (1, 2));
        assert_eq!(filter_bit(FILTER_SLOTS - 1), (FILTER_WORDS - 1, 1 << 63));
    }
}
