//! The bitmap pre-filters of lb_common::filter: a clear bit proves that the hash lookup it
//! guards would miss, so the packet is spared it.

use lb_common::{filter_bit, filter_slot};

use crate::maps::FilterBitmap;

/// Whether the endpoint's bit is set in `bitmap` (SERVICE_FILTER or NAT_REPLY_FILTER).
#[inline(always)]
pub fn marked(bitmap: &FilterBitmap, addr: &[u32; 4], port: u16, proto: u8) -> bool {
    let (word, bit) = filter_bit(filter_slot(addr, port, proto));
    bitmap.get(word).is_some_and(|w| w & bit != 0)
}
