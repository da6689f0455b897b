use std::net::IpAddr;
use std::time::Duration;

use super::*;

/// A valid NAT service; tests break one thing in it with `replace`.
const WEB: &str = r#"
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
protocol = "tcp"
forwarding = "nat"
  [[service.backend]]
  address = "10.0.1.11"
  port = 8080
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

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

/// `WEB` with one extra backend line block appended.
fn web_with_backend(backend: &str) -> String {
    format!("{WEB}\n  [[service.backend]]\n{backend}\n")
}

#[test]
fn example_file_parses() {
    let text = include_str!("../../../examples/lb.toml");
    let cfg = Config::parse(text).expect("examples/lb.toml must stay valid");
    assert_eq!(cfg.services.len(), 3);
    let web = &cfg.services[0];
    assert_eq!(web.forwarding, Forwarding::Nat);
    assert_eq!(web.health.kind, HealthKind::Http);
    assert_eq!(web.health.path.as_deref(), Some("/healthz"));
    assert_eq!(web.backends[0].weight, 2);
    assert_eq!(web.drain_timeout, Duration::from_secs(120));
    assert_eq!(web.backends[2].pool, Pool::Overflow);
    assert_eq!(web.backends[0].quota.max_sessions, Some(20000));
    let shunt = web.shunt.as_ref().expect("web shunts to its overflow backend");
    assert_eq!((shunt.enter.len(), shunt.exit.len(), shunt.windows.len()), (1, 1, 1));
    assert_eq!(web.load_alerts.and_then(|a| a.quota_percent), Some(80));
    assert_eq!(
        cfg.services[1].scheduler,
        SchedulerConfig::Ring {
            points_per_weight: 100
        }
    );
    let v6 = &cfg.services[2];
    assert_eq!(v6.vip, ip("2001:db8::100"));
    assert_eq!(
        v6.backends[0].port, 443,
        "backend port defaults to the service port"
    );
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lb.toml");
    assert!(Config::load(&path).is_ok());
    let missing = std::path::Path::new("/nonexistent/lb.toml");
    let e = Config::load(missing).expect_err("no such file").to_string();
    assert!(e.starts_with("/nonexistent/lb.toml: cannot read"), "{e}");
}

#[test]
fn defaults_are_applied() {
    let cfg = Config::parse(
        &WEB.replace("forwarding = \"nat\"", "")
            .replace("port = 8080", ""),
    )
    .expect("valid");
    let s = &cfg.services[0];
    assert_eq!(s.forwarding, Forwarding::Dsr);
    assert_eq!(s.hash_key, HashKey::FiveTuple);
    assert_eq!(s.table_size, 65537);
    assert_eq!(s.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    assert_eq!(s.drain_timeout, Duration::from_secs(300));
    assert_eq!(s.health, HealthConfig::default());
    assert_eq!(s.health.interval, Duration::from_secs(2));
    assert_eq!(s.health.timeout, Duration::from_secs(1));
    assert_eq!((s.health.rise, s.health.fall), (2, 3));
    assert_eq!(
        s.backends,
        vec![BackendConfig {
            address: ip("10.0.1.11"),
            port: 80,
            weight: 1,
            pool: Pool::Primary,
            quota: Quota::default(),
        }]
    );
}

#[test]
fn drain_timeout_is_read_in_seconds_and_bounded() {
    let with = |v: &str| WEB.replace("forwarding = \"nat\"", &format!("forwarding = \"nat\"\ndrain_timeout = {v}"));
    let secs = |v: &str| Config::parse(&with(v)).expect("valid").services[0].drain_timeout;
    assert_eq!(secs("1"), Duration::from_secs(1));
    assert_eq!(secs("86400"), Duration::from_secs(86_400));
    for bad in ["0", "-5", "86401"] {
        let e = rejects(&with(bad), &[r#"service[0] "web""#, &format!("drain_timeout {bad} must be 1..=86400 seconds"), "default 300"]);
        assert!(!e.contains("line"), "a range error is judged by validate, not serde: {e}");
    }
    // A unit in the value is a type error that names the field and the text.
    rejects(&with("\"5m\""), &["drain_timeout", "5m", "integer"]);
    // Live changes re-serialize the running config: the value must survive that.
    let cfg = Config::parse(&with("45")).expect("valid");
    let text = toml::to_string(&cfg).expect("serializable");
    assert!(text.contains("drain_timeout = 45"), "{text}");
    assert_eq!(Config::parse(&text).expect("round trip"), cfg);
}

#[test]
fn serializes_back_to_the_same_config() {
    let cfg = Config::parse(include_str!("../../../examples/lb.toml")).expect("valid");
    let text = toml::to_string(&cfg).expect("serializable");
    assert_eq!(Config::parse(&text).expect("round trip"), cfg);
}

#[test]
fn reads_back_from_json_through_the_same_validation() {
    let cfg = Config::parse(include_str!("../../../examples/lb.toml")).expect("valid");
    let json = serde_json::to_value(&cfg).expect("JSON");
    assert_eq!(Config::from_json(json.clone(), "saved running services").expect("round trip"), cfg);
    // A value the file's validator refuses is refused from JSON too, naming what was read.
    let mut bad = json;
    bad["service"][0]["backend"][0]["weight"] = serde_json::json!(0);
    let err = Config::from_json(bad, "saved running services").expect_err("weight 0");
    assert!(err.to_string().contains("weight"), "{err}");
    let err = Config::from_json(serde_json::json!({"service": 3}), "saved running services").expect_err("not a config");
    assert!(err.to_string().starts_with("saved running services"), "{err}");
}

#[test]
fn load_with_digest_digests_the_bytes_read() {
    let path = std::env::temp_dir().join(format!("lb-config-digest-{}.toml", std::process::id()));
    let text = include_str!("../../../examples/lb.toml");
    std::fs::write(&path, text).expect("write");
    let (cfg, digest) = Config::load_with_digest(&path).expect("valid");
    assert_eq!(cfg, Config::parse(text).expect("valid"));
    assert_eq!(digest, crate::state::fnv1a64(text.as_bytes()));
    // A comment is a change of the file, even if not of the services.
    std::fs::write(&path, format!("{text}\n# edited\n")).expect("write");
    assert_ne!(Config::load_with_digest(&path).expect("valid").1, digest);
    std::fs::remove_file(&path).expect("cleanup");
}

#[test]
fn enum_helpers() {
    assert_eq!(Protocol::Tcp.number(), 6);
    assert_eq!(Protocol::Udp.number(), 17);
    // as_str must match the names serde reads.
    assert_eq!(Forwarding::Nat.as_str(), "nat");
    assert_eq!(HashKey::SourceIpPort.as_str(), "source-ip-port");
    let names = serde_json::to_string(&HashKey::SourceIp).expect("serialize");
    assert_eq!(names.trim_matches('"'), HashKey::SourceIp.as_str());
    assert_eq!(HashKey::FiveTuple.hash_fields(), lb_common::HASH_FIVE_TUPLE);
    assert_eq!(HashKey::SourceIp.hash_fields(), lb_common::HASH_SRC_ADDR);
    assert_eq!(
        HashKey::SourceIpPort.hash_fields(),
        lb_common::HASH_SRC_ADDR | lb_common::HASH_DST_PORT
    );
    let cfg =
        Config::parse(&WEB.replace("port = 80\n", "port = 80\nhash_key = \"source-ip-port\"\n"))
            .expect("valid");
    assert_eq!(cfg.services[0].hash_key, HashKey::SourceIpPort);
}

#[test]
fn empty_file() {
    rejects("", &["no services", "[[service]]"]);
    rejects("# only a comment\n", &["no services"]);
}

#[test]
fn duplicate_service_name() {
    let second = WEB.replace("10.0.0.100", "10.0.0.101");
    rejects(
        &format!("{WEB}{second}"),
        &["service[1] \"web\"", "duplicate name", "service[0]"],
    );
}

#[test]
fn duplicate_vip_port_protocol() {
    let api = WEB.replace("\"web\"", "\"api\"");
    rejects(
        &format!("{api}{WEB}"),
        &[
            "service[1] \"web\": duplicate service (same vip 10.0.0.100, port 80, protocol tcp as service \"api\")",
        ],
    );
    // Same vip and port over another protocol is another service.
    let udp = WEB
        .replace("\"web\"", "\"dns\"")
        .replace("\"tcp\"", "\"udp\"");
    assert!(Config::parse(&format!("{WEB}{udp}")).is_ok());
}

#[test]
fn nat_backend_shared_by_too_many_services() {
    let copy = |i: usize| WEB.replace("\"web\"", &format!("\"web{i}\"")).replace("10.0.0.100", &format!("10.0.0.{i}"));
    let four: String = (1..=4).map(copy).collect();
    assert!(Config::parse(&four).is_ok(), "four NAT services may share a backend");
    rejects(
        &format!("{four}{}", copy(5)),
        &["service \"web5\": backend 10.0.1.11:8080", "5 NAT services", "web1, web2, web3, web4, web5", "at most 4"],
    );
    // DSR services and other protocols do not count.
    let dsr = copy(5).replace("\"nat\"", "\"dsr\"").replace("port = 80\n", "port = 8080\n");
    let udp = copy(6).replace("\"tcp\"", "\"udp\"");
    assert!(Config::parse(&format!("{four}{dsr}{udp}")).is_ok());
}

#[test]
fn bad_service_name() {
    rejects(
        &WEB.replace("\"web\"", "\"Web!\""),
        &["service[0]", "name \"Web!\"", "a-z"],
    );
    rejects(&WEB.replace("\"web\"", "\"\""), &["name \"\""]);
    let long = "a".repeat(33);
    rejects(&WEB.replace("web", &long), &[&long]);
}

#[test]
fn bad_addresses() {
    rejects(
        &WEB.replace("10.0.0.100", "10.0.0.x"),
        &[
            "service[0] \"web\"",
            "vip \"10.0.0.x\"",
            "not an IP address",
        ],
    );
    rejects(
        &WEB.replace("10.0.1.11", "host.example"),
        &["backend[0]", "address \"host.example\""],
    );
    rejects(
        &WEB.replace("10.0.0.100", "0.0.0.0"),
        &["vip 0.0.0.0", "unicast"],
    );
    rejects(
        &WEB.replace("10.0.1.11", "224.0.0.1"),
        &["address 224.0.0.1", "unicast"],
    );
}

#[test]
fn wrong_type_names_the_field_and_line() {
    // serde's error: toml gives the line and column, we add the field path.
    let e = rejects(
        &WEB.replace("vip = \"10.0.0.100\"", "vip = 10"),
        &["line 4, column 7", "service[0].vip", "vip = 10"],
    );
    assert!(e.contains("invalid type"), "{e}");
    rejects(
        &web_with_backend("  address = \"10.0.1.12\"\n  port = \"8080\""),
        &[
            "service[0].backend[1].port",
            "\"8080\", expected an integer",
        ],
    );
    rejects(
        &WEB.replace("\"tcp\"", "\"sctp\""),
        &["service[0].protocol", "sctp", "`tcp`"],
    );
}

#[test]
fn not_toml_at_all() {
    rejects("[[service]\nname = ", &["line 1"]);
}

#[test]
fn unknown_field() {
    rejects(
        &WEB.replace("port = 80\n", "port = 80\ninterface = \"eth0\"\n"),
        &["service[0].interface", "unknown field `interface`"],
    );
    rejects(
        &web_with_backend("  address = \"10.0.1.12\"\n  wieght = 2"),
        &["service[0].backend[1].wieght", "unknown field `wieght`"],
    );
    rejects(
        &format!("{WEB}  [service.health]\n  intervall_ms = 5\n"),
        &["service[0].health.intervall_ms", "unknown field"],
    );
    rejects(
        &format!("debug = true\n{WEB}"),
        &["line 1, column 1: debug: unknown field `debug`"],
    );
}

#[test]
fn missing_field() {
    rejects(
        &WEB.replace("vip = \"10.0.0.100\"\n", ""),
        &["service[0]", "missing field `vip`"],
    );
}

#[test]
fn port_zero_or_too_big() {
    rejects(
        &WEB.replace("port = 80\n", "port = 0\n"),
        &["service[0] \"web\"", "port 0 must be 1..=65535"],
    );
    rejects(
        &WEB.replace("port = 8080", "port = 0"),
        &["service[0] \"web\": backend[0] 10.0.1.11:0: port 0 must be 1..=65535"],
    );
    rejects(&WEB.replace("port = 8080", "port = 70000"), &["port 70000"]);
    rejects(
        &format!("{WEB}  [service.health]\n  port = -1\n"),
        &["health: port -1"],
    );
}

#[test]
fn no_backends() {
    let text = WEB
        .split("  [[service.backend]]")
        .next()
        .unwrap_or_default();
    rejects(
        text,
        &["service[0] \"web\"", "no backends", "[[service.backend]]"],
    );
}

#[test]
fn duplicate_backend() {
    rejects(
        &web_with_backend("  address = \"10.0.1.11\"\n  port = 8080"),
        &[
            "backend[1] 10.0.1.11:8080",
            "duplicate backend",
            "backend[0]",
        ],
    );
    // Same address on another port is another backend.
    assert!(
        Config::parse(&web_with_backend(
            "  address = \"10.0.1.11\"\n  port = 8081"
        ))
        .is_ok()
    );
}

#[test]
fn health_timeout_not_below_interval() {
    let h = |body: &str| format!("{WEB}  [service.health]\n{body}\n");
    rejects(
        &h("  interval_ms = 1000\n  timeout_ms = 1000"),
        &[
            "health",
            "timeout_ms 1000 must be less than interval_ms 1000",
        ],
    );
    rejects(
        &h("  interval_ms = 500"),
        &["timeout_ms 1000", "interval_ms 500", "defaults to 1000"],
    );
    rejects(&h("  timeout_ms = 0"), &["timeout_ms 0 must be"]);
}

#[test]
fn health_rise_fall_zero() {
    let h = |body: &str| format!("{WEB}  [service.health]\n{body}\n");
    rejects(
        &h("  rise = 0"),
        &["service[0] \"web\": health", "rise 0 must be 1..="],
    );
    rejects(&h("  fall = 0"), &["fall 0 must be 1..="]);
}

#[test]
fn http_without_path_and_path_for_tcp() {
    let h = |body: &str| format!("{WEB}  [service.health]\n{body}\n");
    rejects(
        &h("  kind = \"http\""),
        &["health", "kind \"http\" needs a path"],
    );
    rejects(
        &h("  kind = \"http\"\n  path = \"healthz\""),
        &["path \"healthz\" must start with '/'"],
    );
    rejects(
        &h("  kind = \"http\"\n  path = \"/a b\""),
        &["path \"/a b\"", "without spaces"],
    );
    rejects(
        &h("  path = \"/healthz\""),
        &["path \"/healthz\" is only used by kind = \"http\""],
    );
    let ok = Config::parse(&h(
        "  kind = \"http\"\n  path = \"/healthz\"\n  port = 8081",
    ))
    .expect("valid");
    assert_eq!(ok.services[0].health.port, Some(8081));
}

#[test]
fn backend_family_differs_from_vip() {
    rejects(
        &WEB.replace("10.0.1.11", "2001:db8::11"),
        &[
            "backend[0] [2001:db8::11]:8080",
            "IPv6",
            "vip 10.0.0.100 is IPv4",
        ],
    );
}

#[test]
fn dsr_backend_port_must_equal_service_port() {
    rejects(
        &WEB.replace("forwarding = \"nat\"", "forwarding = \"dsr\""),
        &[
            "backend[0] 10.0.1.11:8080",
            "port 8080 differs from the service port 80",
            "forwarding = \"nat\"",
        ],
    );
}

#[test]
fn weight_out_of_range() {
    rejects(
        &WEB.replace("port = 8080", "port = 8080\n  weight = 0"),
        &["10.0.1.11:8080: weight 0 must be 1..=1000"],
    );
    rejects(
        &WEB.replace("port = 8080", "port = 8080\n  weight = 1001"),
        &["weight 1001 must be 1..=1000"],
    );
}

#[test]
fn table_size_rules() {
    let t = |n: &str| WEB.replace("port = 80\n", &format!("port = 80\ntable_size = {n}\n"));
    rejects(&t("65536"), &["table_size 65536 is not a prime", "65521"]);
    rejects(
        &t("65539"),
        &["table_size 65539 must be a prime in 2..=65537"],
    );
    rejects(&t("0"), &["table_size 0"]);
    rejects(&t("1"), &["table_size 1 is not a prime"]);
    assert_eq!(
        Config::parse(&t("251")).expect("prime").services[0].table_size,
        251
    );
    assert!(validate::is_prime(65537) && validate::is_prime(2) && !validate::is_prime(65535));
}

#[test]
fn table_size_smaller_than_backends() {
    let mut text = WEB.replace("port = 80\n", "port = 80\ntable_size = 2\n");
    text.push_str("  [[service.backend]]\n  address = \"10.0.1.12\"\n  port = 8080\n");
    text.push_str("  [[service.backend]]\n  address = \"10.0.1.13\"\n  port = 8080\n");
    rejects(&text, &["table_size 2 is smaller than the 3 backends"]);
}

#[test]
fn too_many_services() {
    let text: String = (0..65)
        .map(|i| {
            // Own backends: at most NAT_REPLY_VIPS NAT services may share one.
            WEB.replace("\"web\"", &format!("\"s{i}\""))
                .replace("10.0.0.100", &format!("10.0.0.{i}"))
                .replace("10.0.1.11", &format!("10.0.1.{i}"))
        })
        .collect();
    rejects(&text, &["65 services", "at most 64"]);
    let fits: String = text
        .split("[[service]]")
        .skip(1)
        .take(64)
        .map(|s| format!("[[service]]{s}"))
        .collect();
    assert_eq!(Config::parse(&fits).expect("64 fit").services.len(), 64);
}

#[test]
fn too_many_backends_in_a_service() {
    let backends = |n: u32| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "  [[service.backend]]\n  address = \"10.1.{}.{}\"\n",
                    i / 256,
                    i % 256
                )
            })
            .collect()
    };
    let head = WEB
        .split("  [[service.backend]]")
        .next()
        .unwrap_or_default()
        .replace("\"nat\"", "\"dsr\"");
    rejects(
        &format!("{head}{}", backends(1025)),
        &["service[0] \"web\"", "1025 backends", "at most 1024"],
    );
    assert_eq!(
        Config::parse(&format!("{head}{}", backends(1024)))
            .expect("1024 fit")
            .services[0]
            .backends
            .len(),
        1024
    );
}

#[test]
fn too_many_backends_overall() {
    let service = |s: u32| -> String {
        let mut t = format!(
            "[[service]]\nname = \"s{s}\"\nvip = \"10.0.0.{s}\"\nport = 80\nprotocol = \"tcp\"\n"
        );
        for i in 0..1024 {
            t.push_str(&format!(
                "[[service.backend]]\naddress = \"10.{s}.{}.{}\"\n",
                i / 256,
                i % 256
            ));
        }
        t
    };
    let text: String = (0..5).map(service).collect();
    rejects(&text, &["5120 backends over all services", "at most 4096"]);
}

#[test]
fn error_names_the_file_when_loaded() {
    let dir = std::env::temp_dir().join(format!("lb-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, WEB.replace("port = 8080", "port = 0")).expect("write");
    let e = Config::load(&path).expect_err("port 0").to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        e.starts_with(&format!("{}: service[0] \"web\"", path.display())),
        "{e}"
    );
}

#[test]
fn scheduler_defaults_to_maglev() {
    let s = &Config::parse(WEB).expect("valid").services[0];
    assert_eq!(s.scheduler, SchedulerConfig::Maglev);
    assert_eq!(s.scheduler(), crate::hashing::Scheduler::Maglev);
}

#[test]
fn ring_scheduler_and_its_points() {
    let with = |lines: &str| WEB.replace("port = 80\n", &format!("port = 80\n{lines}\n"));
    let ring = |text: &str| Config::parse(text).expect("valid").services[0].scheduler();
    assert_eq!(
        ring(&with("scheduler = \"ring\"")),
        crate::hashing::Scheduler::Ring {
            points_per_weight: crate::hashing::DEFAULT_RING_POINTS
        }
    );
    assert_eq!(
        ring(&with("scheduler = \"ring\"\nring_points = 50")),
        crate::hashing::Scheduler::Ring {
            points_per_weight: 50
        }
    );
    assert_eq!(
        ring(&with("scheduler = \"maglev\"")),
        crate::hashing::Scheduler::Maglev
    );
}

#[test]
fn ring_scheduler_survives_a_round_trip() {
    let text = WEB.replace(
        "port = 80\n",
        "port = 80\nscheduler = \"ring\"\nring_points = 64\n",
    );
    let cfg = Config::parse(&text).expect("valid");
    let written = toml::to_string(&cfg).expect("serializable");
    assert!(written.contains("scheduler = \"ring\""), "{written}");
    assert!(written.contains("ring_points = 64"), "{written}");
    assert_eq!(Config::parse(&written).expect("round trip"), cfg);
}

#[test]
fn bad_scheduler_or_ring_points() {
    let with = |lines: &str| WEB.replace("port = 80\n", &format!("port = 80\n{lines}\n"));
    rejects(
        &with("scheduler = \"random\""),
        &["service[0].scheduler", "random", "`maglev`"],
    );
    rejects(
        &with("ring_points = 50"),
        &[
            "service[0] \"web\"",
            "ring_points 50 is only used by scheduler = \"ring\" (the default is \"maglev\")",
        ],
    );
    rejects(
        &with("scheduler = \"maglev\"\nring_points = 50"),
        &["ring_points 50 is only used by scheduler = \"ring\"; remove it"],
    );
    rejects(
        &with("scheduler = \"ring\"\nring_points = 0"),
        &["service[0] \"web\": ring_points 0 must be 1..=1000"],
    );
    rejects(
        &with("scheduler = \"ring\"\nring_points = 1001"),
        &["ring_points 1001 must be 1..=1000"],
    );
}

#[test]
fn too_many_ring_points() {
    // 100 backends of weight 1000 at the default 200 points each: 20 million points.
    let mut text = WEB.replace("port = 80\n", "port = 80\nscheduler = \"ring\"\n");
    text = text.replace("port = 8080", "port = 8080\n  weight = 1000");
    for i in 1..100 {
        text.push_str(&format!(
            "  [[service.backend]]\n  address = \"10.0.2.{i}\"\n  port = 8080\n  weight = 1000\n"
        ));
    }
    rejects(
        &text,
        &[
            "service[0] \"web\"",
            "ring_points 200 (the default) x total backend weight 100000 = 20000000 ring points",
            "more than the 16777216",
        ],
    );
    let given = text.replace("\"ring\"\n", "\"ring\"\nring_points = 500\n");
    rejects(&given, &["ring_points 500 x total backend weight 100000"]);
    // Fewer points, or weights divided down (only their ratios matter), fit.
    assert!(Config::parse(&text.replace("\"ring\"\n", "\"ring\"\nring_points = 100\n")).is_ok());
    assert!(Config::parse(&text.replace("weight = 1000", "weight = 10")).is_ok());
}

#[test]
fn session_capacity_is_a_bounded_power_of_two() {
    assert_eq!(Config::parse(WEB).unwrap().sessions.capacity, lb_common::DEFAULT_SESSION_CAPACITY);
    let with = |capacity: &str| format!("[sessions]\ncapacity = {capacity}\n{WEB}");
    let cfg = Config::parse(&with("65536")).expect("a power of two in range");
    assert_eq!(cfg.sessions.capacity, 65536);
    // Survives the re-serialization live changes go through.
    let written = toml::to_string(&cfg).expect("serializable");
    assert_eq!(Config::parse(&written).expect("re-read"), cfg);

    rejects(&with("1000000"), &["sessions", "capacity 1000000 is not a power of two", "use 1048576 (16 MiB) or 524288 (8 MiB)"]);
    rejects(&with("512"), &["sessions", "capacity 512 must be a power of two from 1024 to 16777216", "default 1048576"]);
    rejects(&with("33554432"), &["sessions", "capacity 33554432", "from 1024 to 16777216 (256 MiB)"]);
    rejects(&with("-4"), &["sessions", "capacity -4"]);
    rejects(&format!("[sessions]\nsize = 4096\n{WEB}"), &["size"]);
}
