use std::collections::BTreeMap;

use lb_common::{Event, Outcome};

use super::{parse, render};
use crate::{
    api::{
        BackendStatus, ContributionCounts, ContributionRow, DrainStatus, QuotaStatus, Rates, ServiceStatus, ShuntSummary,
        Status,
    },
    dataplane::Counters,
};

fn backend(addr: &str, id: u32, packets: u64) -> BackendStatus {
    BackendStatus {
        address: addr.parse().unwrap(),
        id,
        generation: 1,
        weight: 2,
        health: "up".into(),
        drain: None,
        active_sessions: 7,
        rates: Rates::default(),
        checks: 10,
        last_check_ok: Some(true),
        last_check_latency_ms: Some(1.5),
        last_error: None,
        counters: Counters { packets, bytes: packets * 100, new_sessions: packets / 10 },
        pool: "primary".into(),
        taking_overflow: false,
        full: false,
        quota: None,
        load_alerts: BTreeMap::new(),
    }
}

/// An open overflow backend at its max_sessions (marked full), over its load alert.
fn overflow_backend(scale: u64) -> BackendStatus {
    let mut b = backend("10.0.3.21:8080", 4, 8 * scale);
    b.pool = "overflow".into();
    b.taking_overflow = true;
    b.full = true;
    b.quota = Some(QuotaStatus {
        max_new_sessions_per_sec: Some(50),
        max_sessions: Some(7),
        max_bytes_per_sec: None,
        new_sessions_percent: Some(10.0),
        sessions_percent: Some(100.0),
        bytes_percent: None,
    });
    b.load_alerts = [("active_sessions".to_string(), true), ("quota_percent".to_string(), false)].into();
    b
}

/// Two services (one IPv6), a draining and a down backend, every outcome and event.
pub(crate) fn status(scale: u64) -> Status {
    let mut down = backend("10.0.1.12:8080", 1, 5 * scale);
    down.health = "down".into();
    down.last_check_ok = Some(false);
    down.last_error = Some("connect: refused".into());
    let mut draining = backend("[2001:db8::11]:443", 2, 30 * scale);
    draining.drain = Some(DrainStatus { elapsed_secs: 12.5, timeout_secs: 300 });
    let mut never_checked = backend("10.0.1.13:8080", 3, 0);
    never_checked.last_check_ok = None;
    never_checked.last_check_latency_ms = None;
    never_checked.checks = 0;
    Status {
        instance: "default".into(),
        pin_dir: Some("/sys/fs/bpf/lb/default".into()),
        pin_dir_outside: None,
        layout_version: "r1-0123456789abcdef".into(),
        adopted: true,
        started_at: 1_700_000_000,
        interfaces: vec!["eth0".into(), "eth1".into()],
        xdp_mode: "native".into(),
        services: vec![
            ServiceStatus {
                name: "web".into(),
                vip: [10, 0, 0, 1].into(),
                port: 80,
                protocol: "tcp".into(),
                forwarding: "nat".into(),
                hash_key: "five-tuple".into(),
                backends_in_service: 1,
                counters: Counters { packets: 105 * scale, bytes: 10_500 * scale, new_sessions: 10 * scale },
                backends: vec![backend("10.0.1.11:8080", 0, 100 * scale), down, never_checked, overflow_backend(scale)],
                shunt: Some(ShuntSummary { state: "open".into(), since: 1_700_000_000, why: "manual: surge".into(), opened_total: scale }),
            },
            ServiceStatus {
                name: "api6".into(),
                vip: "2001:db8::1".parse().expect("ip"),
                port: 443,
                protocol: "tcp".into(),
                forwarding: "dsr".into(),
                hash_key: "source-ip".into(),
                backends_in_service: 0,
                counters: Counters { packets: 30 * scale, bytes: 3000 * scale, new_sessions: 3 * scale },
                backends: vec![draining],
                shunt: None,
            },
        ],
        outcomes: Outcome::ALL.iter().enumerate().map(|(i, o)| (o.name().to_string(), i as u64 * scale)).collect(),
        events: Event::ALL.iter().map(|e| (e.name().to_string(), 4 * scale)).collect(),
        session_count_age_secs: Some(0.25),
        session_capacity: 1 << 20,
        sessions_active: Some(7 * scale),
        contributions: vec![ContributionRow {
            service: "web".into(),
            backend: "10.0.3.21:8080".parse().expect("addr"),
            counts: ContributionCounts { openings: scale, seconds_open: 60 * scale, new_sessions: 9 * scale, packets: 90 * scale, bytes: 9000 * scale },
        }],
    }
}

#[test]
fn the_exposition_is_valid_and_every_sample_follows_its_type() {
    let text = render(&status(1));
    let scrape = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // parse() checks TYPE-before-sample; HELP must be there too, right before each TYPE.
    for (name, kind) in &scrape.types {
        let type_line = format!("# TYPE {name} {kind}\n");
        let at = text.find(&type_line).unwrap_or_else(|| panic!("no TYPE line for {name}"));
        assert!(text[..at].ends_with('\n') && text[..at].lines().last().is_some_and(|l| l.starts_with(&format!("# HELP {name} "))),
            "{name}: TYPE not preceded by its HELP");
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name} does not end in _total");
        }
    }
    for family in [
        "lb_build_info",
        "lb_service_packets_total",
        "lb_backend_packets_total",
        "lb_backend_healthy",
        "lb_backend_in_service",
        "lb_backend_draining",
        "lb_backend_active_sessions",
        "lb_backend_health_check_latency_seconds",
        "lb_packets_total",
        "lb_events_total",
        "lb_session_count_age_seconds",
        "lb_session_capacity",
        "lb_sessions_active",
    ] {
        assert!(scrape.family(family).next().is_some(), "no sample of {family}:\n{text}");
    }
}

#[test]
fn samples_carry_the_status_values() {
    let s = status(3);
    let scrape = parse(&render(&s)).unwrap();
    for svc in &s.services {
        assert_eq!(scrape.value("lb_service_packets_total", &[("service", &svc.name)]), Some(svc.counters.packets as f64));
        for b in &svc.backends {
            let addr = b.address.to_string();
            let l = [("service", svc.name.as_str()), ("backend", addr.as_str())];
            assert_eq!(scrape.value("lb_backend_packets_total", &l), Some(b.counters.packets as f64), "{addr}");
            assert_eq!(scrape.value("lb_backend_bytes_total", &l), Some(b.counters.bytes as f64), "{addr}");
            assert_eq!(scrape.value("lb_backend_new_sessions_total", &l), Some(b.counters.new_sessions as f64));
            assert_eq!(scrape.value("lb_backend_active_sessions", &l), Some(7.0));
        }
    }
    let web = |addr: &str, name: &str| scrape.value(name, &[("service", "web"), ("backend", addr)]);
    assert_eq!(web("10.0.1.11:8080", "lb_backend_healthy"), Some(1.0));
    assert_eq!(web("10.0.1.12:8080", "lb_backend_healthy"), Some(0.0));
    assert_eq!(web("10.0.1.12:8080", "lb_backend_in_service"), Some(0.0));
    assert_eq!(web("10.0.1.12:8080", "lb_backend_health_check_ok"), Some(0.0));
    assert_eq!(web("10.0.1.11:8080", "lb_backend_health_check_latency_seconds"), Some(0.0015));
    // Never checked: no latency sample rather than a made-up 0.
    assert_eq!(web("10.0.1.13:8080", "lb_backend_health_check_latency_seconds"), None);
    let v6 = [("service", "api6"), ("backend", "[2001:db8::11]:443")];
    assert_eq!(scrape.value("lb_backend_draining", &v6), Some(1.0));
    assert_eq!(scrape.value("lb_backend_in_service", &v6), Some(0.0), "a draining backend takes no new flows");
    assert_eq!(scrape.value("lb_backend_healthy", &v6), Some(1.0));
    assert_eq!(scrape.value("lb_backend_drain_elapsed_seconds", &v6), Some(12.5));
    assert_eq!(scrape.value("lb_service_backends_in_service", &[("service", "web")]), Some(1.0));
    assert_eq!(scrape.value("lb_session_count_age_seconds", &[]), Some(0.25));
    assert_eq!(scrape.value("lb_session_capacity", &[]), Some(f64::from(1u32 << 20)));
    assert_eq!(scrape.value("lb_sessions_active", &[]), s.sessions_active.map(|n| n as f64));
    // Every outcome with its verdict; the reason is the name `lb status` uses.
    for (i, o) in Outcome::ALL.iter().enumerate() {
        let l = [("verdict", o.verdict()), ("reason", o.name())];
        assert_eq!(scrape.value("lb_packets_total", &l), Some((i * 3) as f64), "{}", o.name());
    }
    assert_eq!(scrape.family("lb_packets_total").count(), Outcome::ALL.len());
    assert_eq!(scrape.value("lb_events_total", &[("event", "second_choice")]), Some(12.0));
    assert_eq!(scrape.value("lb_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
}

#[test]
fn shunting_shows_as_pool_state_quota_use_alerts_and_contributions() {
    let scrape = parse(&render(&status(3))).unwrap();
    let web = [("service", "web")];
    assert_eq!(scrape.value("lb_shunt_state", &web), Some(2.0), "open");
    assert_eq!(scrape.value("lb_shunt_state", &[("service", "api6")]), None, "not shunted: no sample");
    assert_eq!(scrape.value("lb_shunt_openings_total", &web), Some(3.0));
    let ov = [("service", "web"), ("backend", "10.0.3.21:8080")];
    assert_eq!(scrape.value("lb_backend_full", &ov), Some(1.0));
    assert_eq!(scrape.value("lb_backend_full", &[("service", "web"), ("backend", "10.0.1.11:8080")]), Some(0.0));
    assert_eq!(scrape.value("lb_backend_in_service", &ov), Some(1.0), "healthy and taking overflow flows");
    let quota = |q: &str| scrape.value("lb_backend_quota_use_ratio", &[ov[0], ov[1], ("quota", q)]);
    assert_eq!((quota("sessions"), quota("new_sessions_per_sec"), quota("bytes_per_sec")), (Some(1.0), Some(0.1), None));
    let alert = |m: &str| scrape.value("lb_backend_load_alert", &[ov[0], ov[1], ("metric", m)]);
    assert_eq!((alert("active_sessions"), alert("quota_percent")), (Some(1.0), Some(0.0)));
    assert_eq!(scrape.value("lb_overflow_contribution_seconds_open_total", &ov), Some(180.0));
    assert_eq!(scrape.value("lb_overflow_contribution_new_sessions_total", &ov), Some(27.0));
    assert_eq!(scrape.value("lb_overflow_contribution_bytes_total", &ov), Some(27000.0));
}

#[test]
fn label_values_escape_backslash_quote_and_newline() {
    let mut s = status(1);
    let nasty = "we\"b\\x\ny";
    s.services[0].name = nasty.into();
    s.interfaces = vec!["a\\b".into()];
    let text = render(&s);
    assert!(text.contains(r#"lb_service_packets_total{service="we\"b\\x\ny"} 105"#), "{text}");
    assert!(text.contains(r#"interface="a\\b""#), "{text}");
    let scrape = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Read back, the value is the original string.
    assert_eq!(scrape.value("lb_service_packets_total", &[("service", nasty)]), Some(105.0));
    assert_eq!(scrape.family("lb_interface_attached").next().unwrap().labels["interface"], "a\\b");
}

#[test]
fn counters_never_go_down_as_traffic_grows() {
    let before = parse(&render(&status(1))).unwrap();
    let after = parse(&render(&status(2))).unwrap();
    let mut counters = 0;
    for s in before.samples.iter().filter(|s| before.types[&s.name] == "counter") {
        let later = after.samples.iter().find(|a| a.name == s.name && a.labels == s.labels);
        let later = later.unwrap_or_else(|| panic!("series {} {:?} vanished", s.name, s.labels));
        assert!(later.value >= s.value, "{} {:?} went from {} to {}", s.name, s.labels, s.value, later.value);
        counters += 1;
    }
    assert!(counters > 20, "only {counters} counter series");
    // Only the counters moved up: the rendering of a status is a function of it.
    assert_eq!(render(&status(2)), render(&status(2)));
}

#[test]
fn no_session_count_yet_gives_an_empty_family() {
    let mut s = status(1);
    s.session_count_age_secs = None;
    s.sessions_active = None;
    let scrape = parse(&render(&s)).unwrap();
    assert_eq!(scrape.types.get("lb_session_count_age_seconds").map(String::as_str), Some("gauge"));
    assert_eq!(scrape.family("lb_session_count_age_seconds").count(), 0);
}

#[test]
fn small_and_fractional_values_read_back_exactly() {
    let mut s = status(1);
    s.services[0].backends[0].last_check_latency_ms = Some(1.5e-4);
    s.session_count_age_secs = Some(1e-9);
    let scrape = parse(&render(&s)).unwrap();
    let l = [("service", "web"), ("backend", "10.0.1.11:8080")];
    assert_eq!(scrape.value("lb_backend_health_check_latency_seconds", &l), Some(1.5e-7));
    assert_eq!(scrape.value("lb_session_count_age_seconds", &[]), Some(1e-9));
}

/// README's Metrics table is what operators' dashboards rely on: every metric it names is
/// rendered with its type and exactly its labels.
#[test]
fn the_readme_metrics_table_is_what_is_rendered() {
    let readme = include_str!("../../../README.md");
    let table = readme.split("### Metrics").nth(1).expect("README has a Metrics section");
    let rows: Vec<&str> = table.lines().skip_while(|l| !l.starts_with("| metric")).skip(2).take_while(|l| l.starts_with('|')).collect();
    let scrape = parse(&render(&status(1))).unwrap();
    let mut checked = 0;
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (names, kind, labels) = (cells[1], cells[2], cells[3]);
        let mut labels: Vec<&str> = labels.split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
        labels.sort_unstable();
        for name in names.split(", ").flat_map(expand) {
            assert_eq!(scrape.types.get(&name).map(String::as_str), Some(kind), "{name}: type");
            for sample in scrape.family(&name) {
                let got: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
                assert_eq!(got, labels, "{name}: labels");
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} metrics in README's table");
    assert_eq!(checked, scrape.types.len(), "a rendered metric is missing from README's table");
}

/// "`lb_x_{a,b}_total`" -> lb_x_a_total, lb_x_b_total.
fn expand(cell: &str) -> Vec<String> {
    let name = cell.trim_matches('`');
    match (name.find('{'), name.find('}')) {
        (Some(open), Some(close)) => name[open + 1..close]
            .split(',')
            .map(|part| format!("{}{part}{}", &name[..open], &name[close + 1..]))
            .collect(),
        _ => vec![name.to_string()],
    }
}

/// The checker must catch what a scraper rejects, or the tests above prove nothing.
#[test]
fn the_parser_rejects_broken_expositions() {
    let bad = [
        ("x 1\n", "before (or without) its TYPE"),
        ("# TYPE x gauge\nx{a=\"1\"} 1\n# TYPE y gauge\ny 1\nx{a=\"2\"} 2\n", "inside another family"),
        ("# TYPE x gauge\nx{a=\"\\t\"} 1\n", "bad escape"),
        ("# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n", "the same series twice"),
        ("# TYPE x gauge\nx{a=\"1} 1\n", "not closed"),
        ("# TYPE x gauge\nx{a=1} 1\n", "not quoted"),
        ("# TYPE x gauge\nx one\n", "not a number"),
        ("# TYPE x_total counter\nx_total -1\n", "counter x_total is -1"),
        ("# TYPE x gauge\n# TYPE x gauge\n", "second TYPE"),
        ("# TYPE 1x gauge\n", "invalid metric name"),
        ("# TYPE x gauge\nx{__a=\"1\"} 1\n", "invalid label name"),
        ("# TYPE x gauge\nx 1", "does not end with a line feed"),
        ("# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\n# HELP x again\n", "appears in two places"),
    ];
    for (text, why) in bad {
        let err = parse(text).err().unwrap_or_else(|| panic!("accepted {text:?}"));
        assert!(err.contains(why), "{text:?}: {err}");
    }
    let ok = "# HELP x a \\\\ b\n# TYPE x gauge\nx{a=\"q\\\"\\\\\\n\"} 1 1700000000000\n";
    let scrape = parse(ok).unwrap();
    assert_eq!(scrape.samples[0].labels["a"], "q\"\\\n");
    let mut labels = BTreeMap::new();
    labels.insert("a".to_string(), "q\"\\\n".to_string());
    assert_eq!(scrape.samples[0].labels, labels);
}
