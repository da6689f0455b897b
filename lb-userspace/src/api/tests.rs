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

#[test]
fn shunt_status_and_report_read_as_text() {
    use crate::api::{
        ContributionCounts, ContributionReport, ContributionRow, QuotaStatus, Rates, ShuntBackendStatus, ShuntEvent,
        ShuntServiceStatus, render_report, render_shunt_status,
    };
    let s = ShuntServiceStatus {
        service: "web".into(),
        state: "open".into(),
        since: 1_800_000_000,
        why: "manual: surge".into(),
        trigger: serde_json::json!({"trigger": "manual", "reason": "surge"}),
        opened_total: 2,
        backends: vec![ShuntBackendStatus {
            address: "[2001:db8::21]:80".parse().expect("addr"),
            state: "open".into(),
            since: 1_800_000_001,
            report: None,
            healthy: true,
            taking_new_flows: true,
            full: true,
            sessions: 12,
            rates: Rates { new_sessions_per_sec: 3.0, packets_per_sec: 30.0, bytes_per_sec: 3000.0 },
            quota: Some(QuotaStatus { max_sessions: Some(12), sessions_percent: Some(100.0), ..Default::default() }),
        }],
        events: vec![ShuntEvent { at: 1_800_000_000, text: "1800000000: manual open (manual: surge)".into(), detail: serde_json::Value::Null }],
    };
    let text = render_shunt_status(&[s]);
    assert!(text.contains("service web: open since 2027-01-15T08:00:00Z (manual: surge); opened 2 time(s)"), "{text}");
    assert!(text.contains("[2001:db8::21]:80") && text.contains("taking-new-flows FULL") && text.contains("sessions 100%/12"), "{text}");
    assert!(text.contains("2027-01-15T08:00:00Z manual open (manual: surge)"), "{text}");
    let report = ContributionReport {
        state_file: "/var/lib/lb/contributions.json".into(),
        backends: vec![ContributionRow {
            service: "web".into(),
            backend: "10.0.3.21:80".parse().expect("addr"),
            counts: ContributionCounts { openings: 1, seconds_open: 60, new_sessions: 5, packets: 50, bytes: 5000 },
        }],
    };
    let text = render_report(&report);
    assert!(text.contains("/var/lib/lb/contributions.json") && text.contains("10.0.3.21:80"), "{text}");
    let row = text.lines().last().expect("a row");
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["web", "10.0.3.21:80", "1", "60", "5", "50", "5000"]);
    // The JSON of a row is flat, as scripts read it.
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["backends"][0]["new_sessions"], 5);
}
