//! SERVICE_FILTER upkeep in the kernel: a service's bit is set while it exists, and a bit two
//! services share survives the removal of one of them.

use anyhow::{Context, Result};
use lb::dataplane::Dataplane;
use lb_common::{
    FAMILY_V4, PROTO_TCP, ServiceInfo, ServiceKey, addr_v4, filter_slot, port_raw, service_filter_bit,
};

fn key(port: u16) -> ServiceKey {
    ServiceKey { addr: addr_v4([10, 200, 99, 1]), port: port_raw(port), proto: PROTO_TCP, family: FAMILY_V4 }
}

fn word_and_bit(k: &ServiceKey) -> (u32, u64) {
    service_filter_bit(filter_slot(&k.addr, k.port, k.proto))
}

/// Two service keys whose bits differ but live in one filter word.
fn two_keys_sharing_a_word() -> Result<(ServiceKey, ServiceKey)> {
    let first = key(1);
    let (word, bit) = word_and_bit(&first);
    (2..=u16::MAX)
        .map(key)
        .find(|k| { let (w, b) = word_and_bit(k); w == word && b != bit })
        .map(|k| (first, k))
        .context("no port shares a filter word with port 1")
}

#[test]
fn service_bits_follow_the_services() -> Result<()> {
    let mut dp = Dataplane::load()?;
    let (a, b) = two_keys_sharing_a_word()?;
    let (word, a_bit) = word_and_bit(&a);
    let (_, b_bit) = word_and_bit(&b);
    let info = ServiceInfo { table_size: 1, ..Default::default() };

    assert_eq!(dp.service_filter_word(word)?, 0);
    dp.set_service(&a, &info)?;
    assert_eq!(dp.service_filter_word(word)?, a_bit);
    dp.set_service(&b, &info)?;
    assert_eq!(dp.service_filter_word(word)?, a_bit | b_bit);
    // A bank flip rewrites the service: it must not count as a second service.
    dp.set_service(&a, &info)?;
    dp.remove_service(&a)?;
    assert_eq!(dp.service_filter_word(word)?, b_bit, "a's bit stays after a is gone, or b's went with it");
    dp.remove_service(&b)?;
    assert_eq!(dp.service_filter_word(word)?, 0);
    Ok(())
}
