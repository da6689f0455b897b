//! Shunting's keys: pools, quotas, `[service.shunt]`, `[service.load_alerts]`.

use std::time::Duration;

use super::*;

/// A valid service with one primary and one overflow backend and a shunt block; tests break
/// one thing in it with `replace`.
const SHUNTED: &str = r#"
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
protocol = "tcp"
forwarding = "nat"

  [service.shunt]
  enter = [ { metric = "new_sessions_per_sec", above = 1500, for_secs = 3 } ]
  exit  = [ { metric = "new_sessions_per_sec", below = 800, for_secs = 30 } ]
  min_open_secs = 60
  drain_timeout = 200
  windows = [ { start = "2026-12-24T18:00:00Z", end = "2026-12-25T02:00:00Z" } ]
  on_open = ["/bin/sh", "-c", "true"]

  [[service.backend]]
  address = "10.0.1.11"
  port = 8080
  max_new_sessions_per_sec = 1000
  max_sessions = 20000
  max_bytes_per_sec = 125000000

  [[service.backend]]
  address = "10.0.3.21"
  port = 8080
  pool = "overflow"
  max_new_sessions_per_sec = 300
"#;

/// Parses `text`, expects a rejection whose one-line message contains every one of `parts`.
fn rejects(text: &str, parts: &[&str]) -> String {
    let e = match Config::parse(text) {
        Ok(c) => panic!("accepted a bad config: {c:?}"),
        Err(e) => e.to_string(),
    };
    assert!(!e.contains('\n'), "message spans several lines: {e}");
    for p in parts {
        assert!(e.contains(p), "message {e:?} does not mention {p:?}");
    }
    e
}

fn shunted_with(old: &str, new: &str) -> String {
    assert!(SHUNTED.contains(old), "test edit {old:?} matches nothing");
    SHUNTED.replace(old, new)
}

#[test]
fn a_shunted_service_parses_into_pools_quotas_rules_and_windows() {
    let cfg = Config::parse(SHUNTED).expect("valid");
    let s = &cfg.services[0];
    let (primary, overflow) = (&s.backends[0], &s.backends[1]);
    assert_eq!((primary.pool, overflow.pool), (Pool::Primary, Pool::Overflow));
    assert_eq!(
        primary.quota,
        Quota { max_new_sessions_per_sec: Some(1000), max_sessions: Some(20000), max_bytes_per_sec: Some(125_000_000) }
    );
    assert_eq!(overflow.quota, Quota { max_new_sessions_per_sec: Some(300), ..Quota::default() });
    let shunt = s.shunt.as_ref().expect("shunt block");
    assert_eq!(
        shunt.enter,
        [ShuntRule { metric: Metric::NewSessionsPerSec, threshold: Threshold::Above(1500), for_secs: 3 }]
    );
    assert_eq!(
        shunt.exit,
        [ShuntRule { metric: Metric::NewSessionsPerSec, threshold: Threshold::Below(800), for_secs: 30 }]
    );
    assert_eq!(shunt.min_open, Duration::from_secs(60));
    assert_eq!(shunt.drain_timeout, Duration::from_secs(200));
    let window = shunt.windows[0];
    // 2026-12-24T18:00:00Z and eight hours later.
    assert_eq!(window.start.unix_timestamp(), 1_798_135_200);
    assert_eq!(window.end.unix_timestamp() - window.start.unix_timestamp(), 8 * 3600);
    assert!(window.contains(1_798_135_200) && !window.contains(1_798_135_200 + 8 * 3600));
    assert_eq!(shunt.on_open.as_deref(), Some(&["/bin/sh".to_string(), "-c".into(), "true".into()][..]));
    assert_eq!(shunt.on_close, None);
}

#[test]
fn shunt_defaults_and_configs_without_shunting_are_unchanged() {
    let text = shunted_with("  min_open_secs = 60\n  drain_timeout = 200\n", "")
        .replace("drain_timeout = 200", "");
    let cfg = Config::parse(&text).expect("valid");
    let shunt = cfg.services[0].shunt.as_ref().expect("shunt block");
    assert_eq!(shunt.min_open, Duration::from_secs(60));
    assert_eq!(shunt.drain_timeout, cfg.services[0].drain_timeout, "defaults to the service's drain_timeout");
    // The existing example has no shunting: every backend primary, no quotas, no blocks.
    let example = Config::parse(include_str!("../../../examples/lb.toml")).expect("valid");
    let plain = example.services.iter().find(|s| s.name == "dns").expect("dns");
    assert!(plain.shunt.is_none() && plain.load_alerts.is_none());
    assert!(plain.backends.iter().all(|b| b.pool == Pool::Primary && b.quota.is_empty()));
    let text = toml::to_string(plain).expect("serializable");
    for key in ["pool", "max_", "shunt", "load_alerts"] {
        assert!(!text.contains(key), "a plain service serializes without {key}: {text}");
    }
}

#[test]
fn a_shunted_config_serializes_back_to_itself() {
    // Live changes re-validate the running config through TOML: nothing may be lost.
    let with_alerts = SHUNTED.replace(
        "  [service.shunt]",
        "  [service.load_alerts]\n  active_sessions = 15000\n  quota_percent = 80\n\n  [service.shunt]",
    );
    let cfg = Config::parse(&with_alerts).expect("valid");
    let text = toml::to_string(&cfg).expect("serializable");
    assert_eq!(Config::parse(&text).expect("round trip"), cfg, "{text}");
    // The running services are saved as JSON in the state directory: nothing lost there either.
    let json = serde_json::to_value(&cfg).expect("JSON");
    assert_eq!(Config::from_json(json, "saved").expect("round trip through JSON"), cfg);
}

#[test]
fn unknown_pool_name() {
    rejects(
        &SHUNTED.replace("pool = \"overflow\"", "pool = \"spill\""),
        &["service[0].backend[1].pool", "spill", "`primary`", "`overflow`"],
    );
}

#[test]
fn quota_of_zero() {
    for field in ["max_new_sessions_per_sec = 1000", "max_sessions = 20000", "max_bytes_per_sec = 125000000"] {
        let name = field.split(' ').next().unwrap_or_default();
        rejects(
            &shunted_with(field, &format!("{name} = 0")),
            &["service[0] \"web\": backend[0] 10.0.1.11:8080", &format!("{name} 0 must be 1.."), "leave"],
        );
    }
    rejects(&shunted_with("max_sessions = 20000", "max_sessions = -3"), &["max_sessions -3"]);
}

#[test]
fn an_exit_threshold_on_the_wrong_side_of_its_enter_would_flap() {
    rejects(
        &shunted_with("below = 800", "below = 1600"),
        &["shunt", "exit rule new_sessions_per_sec below 1600", "enter rule new_sessions_per_sec above 1500", "flap", "at most 1500"],
    );
    rejects(&shunted_with("below = 800", "above = 800"), &["exit rule new_sessions_per_sec above 800", "wrong side"]);
    // A rule that opens on a low value closes above it.
    let low = shunted_with("above = 1500", "below = 100").replace("below = 800", "above = 50");
    rejects(&low, &["exit rule new_sessions_per_sec above 50", "at least 100"]);
    // The boundary itself satisfies neither rule: allowed.
    assert!(Config::parse(&shunted_with("below = 800", "below = 1500")).is_ok());
    // Different metrics do not constrain each other.
    assert!(Config::parse(&shunted_with("below = 800", "below = 9999").replace(
        "exit  = [ { metric = \"new_sessions_per_sec\"",
        "exit  = [ { metric = \"bytes_per_sec\""
    ))
    .is_ok());
}

#[test]
fn for_secs_zero() {
    rejects(
        &shunted_with("for_secs = 3 }", "for_secs = 0 }"),
        &["service[0] \"web\": shunt: enter[0] new_sessions_per_sec", "for_secs 0", "at least 1"],
    );
    rejects(&shunted_with("for_secs = 30", "for_secs = 3601"), &["exit[0]", "for_secs 3601 must be 1..=3600"]);
}

#[test]
fn a_rule_has_exactly_one_side() {
    rejects(&shunted_with("above = 1500,", "above = 1500, below = 10,"), &["enter[0]", "both above 1500 and below 10"]);
    rejects(&shunted_with("above = 1500,", ""), &["enter[0]", "no threshold", "above = N"]);
    rejects(&shunted_with("below = 800", "below = 0"), &["exit[0]", "below 0 never holds"]);
    rejects(&shunted_with("above = 1500", "above = -1"), &["above -1"]);
    rejects(&shunted_with("\"new_sessions_per_sec\", above", "\"load\", above"), &["service[0].shunt.enter", "unknown variant `load`"]);
}

#[test]
fn enter_and_exit_rules_go_together() {
    let no_exit = shunted_with("  exit  = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 30 } ]\n", "");
    rejects(&no_exit, &["shunt", "enter rules but no exit rules", "nothing would close"]);
    let no_enter = shunted_with("  enter = [ { metric = \"new_sessions_per_sec\", above = 1500, for_secs = 3 } ]\n", "");
    rejects(&no_enter, &["exit rules but no enter rules"]);
    // Neither: a pool opened by hand, by push or by its windows only.
    let neither = no_enter.replace("  exit  = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 30 } ]\n", "");
    assert!(Config::parse(&neither).expect("valid").services[0].shunt.as_ref().is_some_and(|s| s.enter.is_empty()));
}

#[test]
fn overflow_backends_and_the_shunt_block_go_together() {
    let shunt_block = SHUNTED
        .split("  [service.shunt]")
        .next()
        .zip(SHUNTED.split_once("  [[service.backend]]").map(|(_, rest)| rest))
        .map(|(head, backends)| format!("{head}  [[service.backend]]{backends}"))
        .expect("test config layout");
    rejects(
        &shunt_block,
        &["service[0] \"web\"", "backend 10.0.3.21:8080 is in pool \"overflow\"", "add [service.shunt]"],
    );
    rejects(
        &SHUNTED.replace("pool = \"overflow\"", "pool = \"primary\""),
        &["shunt", "no backend has pool = \"overflow\"", "remove [service.shunt]"],
    );
    rejects(
        &SHUNTED.replace("port = 8080\n  max_new_sessions_per_sec = 1000", "port = 8080\n  pool = \"overflow\"\n  max_new_sessions_per_sec = 1000"),
        &["every backend is in pool \"overflow\"", "at least one primary"],
    );
}

#[test]
fn a_hook_must_be_an_executable_file() {
    let with_hook = |argv: &str| shunted_with("on_open = [\"/bin/sh\", \"-c\", \"true\"]", &format!("on_close = {argv}"));
    assert!(Config::parse(&with_hook("[\"/bin/sh\"]")).is_ok());
    rejects(&with_hook("[\"/etc/passwd\"]"), &["shunt", "on_close program \"/etc/passwd\" is not an executable file", "chmod +x"]);
    rejects(&with_hook("[\"/\"]"), &["on_close program \"/\" is not an executable file"]);
    rejects(&with_hook("[\"/nonexistent/overflow-ctl\", \"stop\"]"), &["\"/nonexistent/overflow-ctl\" cannot be used", "No such file"]);
    rejects(&with_hook("[\"overflow-ctl\"]"), &["\"overflow-ctl\" is not an absolute path"]);
    rejects(&with_hook("[]"), &["on_close is empty"]);
}

#[test]
fn a_window_must_end_after_it_starts() {
    rejects(
        &shunted_with("end = \"2026-12-25T02:00:00Z\"", "end = \"2026-12-24T17:00:00Z\""),
        &["shunt: windows[0]", "end \"2026-12-24T17:00:00Z\" is not after start \"2026-12-24T18:00:00Z\""],
    );
    rejects(&shunted_with("end = \"2026-12-25T02:00:00Z\"", "end = \"2026-12-24T18:00:00Z\""), &["not after start"]);
    rejects(
        &shunted_with("start = \"2026-12-24T18:00:00Z\"", "start = \"24/12/2026 18:00\""),
        &["windows[0]", "start \"24/12/2026 18:00\" is not an RFC 3339 time", "2026-12-24T18:00:00Z"],
    );
    // An offset is an exact instant too: it is read as the same moment in UTC.
    let offset = shunted_with("start = \"2026-12-24T18:00:00Z\"", "start = \"2026-12-24T19:00:00+01:00\"");
    let cfg = Config::parse(&offset).expect("valid");
    assert_eq!(cfg.services[0].shunt.as_ref().map(|s| s.windows[0].start.unix_timestamp()), Some(1_798_135_200));
}

#[test]
fn primary_load_needs_a_quota_on_a_primary_backend() {
    let on_load = shunted_with("\"new_sessions_per_sec\", above = 1500", "\"primary_load\", above = 80")
        .replace("\"new_sessions_per_sec\", below = 800", "\"primary_load\", below = 60");
    assert!(Config::parse(&on_load).is_ok());
    let no_quota = on_load
        .replace("  max_new_sessions_per_sec = 1000\n  max_sessions = 20000\n  max_bytes_per_sec = 125000000\n", "");
    rejects(&no_quota, &["enter[0] primary_load", "no primary backend has a quota"]);
}

#[test]
fn load_alerts() {
    // A table after the backends belongs to the last [[service]]: put it before them.
    let placed = |body: &str| SHUNTED.replace("  [service.shunt]", &format!("  [service.load_alerts]\n{body}\n\n  [service.shunt]"));
    let cfg = Config::parse(&placed("  new_sessions_per_sec = 900\n  quota_percent = 80")).expect("valid");
    assert_eq!(
        cfg.services[0].load_alerts,
        Some(LoadAlertsConfig { new_sessions_per_sec: Some(900), quota_percent: Some(80), ..Default::default() })
    );
    rejects(&placed(""), &["load_alerts", "no thresholds"]);
    rejects(&placed("  quota_percent = 0"), &["load_alerts", "quota_percent 0 must be 1..=100"]);
    rejects(&placed("  quota_percent = 101"), &["quota_percent 101"]);
    rejects(&placed("  active_sessions = 0"), &["active_sessions 0 must be 1.."]);
    rejects(&placed("  sessions = 5"), &["service[0].load_alerts.sessions", "unknown field"]);
    // Alerts need no shunting.
    let plain = r#"
[[service]]
name = "dns"
vip = "10.0.0.53"
port = 53
protocol = "udp"
  [service.load_alerts]
  bytes_per_sec = 1000000
  [[service.backend]]
  address = "10.0.2.21"
"#;
    assert!(Config::parse(plain).expect("valid").services[0].load_alerts.is_some());
}

#[test]
fn a_type_error_in_the_shunt_block_names_its_field_and_line() {
    rejects(
        &shunted_with("min_open_secs = 60", "min_open_secs = \"1m\""),
        &["service[0].shunt.min_open_secs", "expected an integer"],
    );
    rejects(
        &shunted_with("for_secs = 3 }", "for_secs = 3, when = 1 }"),
        &["service[0].shunt.enter", "unknown field `when`"],
    );
}
