//! Filter and NAT_REPLIES upkeep in the kernel: a service's bit is set while it exists, a bit
//! two services share survives the removal of one of them, and a NAT backend's reply entry and
//! bit follow the VIPs it serves.

use anyhow::{Context, Result};
use lb::dataplane::Dataplane;
use lb_common::{
    Endpoint, FAMILY_V4, NAT_REPLY_VIPS, NatVip, PROTO_TCP, ServiceInfo, ServiceKey, addr_v4,
    filter_bit, filter_slot, port_raw,
};

fn key(port: u16) -> ServiceKey {
    ServiceKey { addr: addr_v4([10, 200, 99, 1]), port: port_raw(port), proto: PROTO_TCP, family: FAMILY_V4 }
}

fn word_and_bit(k: &ServiceKey) -> (u32, u64) {
    filter_bit(filter_slot(&k.addr, k.port, k.proto))
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
    // A bank flip (and a change of flags, which rewrites SERVICES) must not count as a second service.
    dp.set_service(&a, &ServiceInfo { lookup_bank: 1, ..info })?;
    dp.set_service(&a, &ServiceInfo { flags: lb_common::SERVICE_F_NAT, ..info })?;
    assert_eq!(dp.service_filter_word(word)?, a_bit | b_bit);
    dp.remove_service(&a)?;
    assert_eq!(dp.service_filter_word(word)?, b_bit, "a's bit stays after a is gone, or b's went with it");
    dp.remove_service(&b)?;
    assert_eq!(dp.service_filter_word(word)?, 0);
    Ok(())
}

#[test]
fn nat_reply_entries_follow_their_vips() -> Result<()> {
    let mut dp = Dataplane::load()?;
    let backend = Endpoint { addr: addr_v4([10, 200, 10, 11]), port: port_raw(8080), proto: PROTO_TCP, family: FAMILY_V4 };
    let vip = |last: u8| NatVip { addr: addr_v4([10, 200, 99, last]), port: port_raw(80), _pad: 0 };
    let (word, bit) = word_and_bit(&backend);

    assert_eq!(dp.nat_reply_filter_word(word)?, 0);
    dp.add_nat_reply(&backend, vip(1))?;
    dp.add_nat_reply(&backend, vip(2))?;
    dp.add_nat_reply(&backend, vip(1))?;
    assert_eq!(dp.nat_reply_vips(&backend), vec![vip(1), vip(2)], "a VIP added twice is listed once");
    assert_eq!(dp.nat_reply_filter_word(word)?, bit);

    for last in 3..=NAT_REPLY_VIPS as u8 {
        dp.add_nat_reply(&backend, vip(last))?;
    }
    let full = dp.nat_reply_vips(&backend);
    let refused = dp.add_nat_reply(&backend, vip(99)).expect_err("more VIPs than NAT_REPLY_VIPS");
    assert!(refused.to_string().contains("NAT_REPLIES"), "{refused}");
    assert_eq!(dp.nat_reply_vips(&backend), full, "a refused VIP changed the entry");

    for last in 2..=NAT_REPLY_VIPS as u8 {
        dp.remove_nat_reply(&backend, vip(last))?;
    }
    assert_eq!(dp.nat_reply_vips(&backend), vec![vip(1)]);
    assert_eq!(dp.nat_reply_filter_word(word)?, bit, "the bit must stay while a VIP is left");
    dp.remove_nat_reply(&backend, vip(1))?;
    assert!(dp.nat_reply_vips(&backend).is_empty());
    assert_eq!(dp.nat_reply_filter_word(word)?, 0);
    Ok(())
}
