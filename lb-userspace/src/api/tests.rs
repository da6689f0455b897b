//! Endpoints as operators read them: an IPv6 one in brackets (`[2001:db8::11]:443`), never
//! `2001:db8::11:443`, which reads as an address without a port.

use crate::{api::render_text, metrics::tests::status};

#[test]
fn ipv6_endpoints_are_bracketed_in_status_and_metrics() {
    let s = status(1);
    let text = render_text(&s);
    assert!(text.contains("service api6 [2001:db8::1]:443 tcp"), "{text}");
    assert!(text.contains("[2001:db8::11]:443"), "{text}");
    assert!(!text.contains("2001:db8::1:443") && !text.contains("2001:db8::11:443"), "{text}");
    let metrics = crate::metrics::render(&s);
    assert!(metrics.contains("backend=\"[2001:db8::11]:443\""), "{metrics}");
    assert!(!metrics.contains("2001:db8::11:443"), "{metrics}");
}

#[test]
fn ipv6_endpoints_are_bracketed_in_json_and_parse_back() {
    let json = serde_json::to_value(status(1)).expect("json");
    assert_eq!(json["services"][1]["backends"][0]["address"], "[2001:db8::11]:443");
    // The vip is an address alone (its port is a field of its own).
    assert_eq!(json["services"][1]["vip"], "2001:db8::1");
}
