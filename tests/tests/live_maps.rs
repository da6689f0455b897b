//! Live changes against the real program and maps (loaded, not attached; packets run with
//! BPF_PROG_TEST_RUN inside a throw-away namespace, as the fixtures do): what each change writes,
//! that established flows keep their backend, that `explain` predicts every packet's backend
//! after every change, and that a refused change leaves the maps byte-identical.
//!
//! Run as root: `cargo test -p lb-tests --test live_maps -- --nocapture`.

#[allow(dead_code)]
#[path = "fixtures/frames.rs"]
mod frames;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lb::balancer::{Balancer, InitialHealth, LiveError, ServiceState, build_table, in_service_ids};
use lb::config::Config;
use lb::dataplane::Dataplane;
use lb_common::{BACKEND_F_UP, Backend, ServiceInfo, ServiceKey, Session};

use lb_tests::fib_bed::FibBed;
use lb_tests::xdp_test_run::{XDP_PASS, XDP_TX, test_run};
use frames::Frame;

/// Two DSR services whose backends sit on the bed's a0 subnet (verdict TX). Small prime tables
/// keep loading and snapshots quick.
const CONFIG: &str = r#"
[[service]]
name = "web"
vip = "10.200.99.1"
port = 80
protocol = "tcp"
table_size = 4099
backend = [{ address = "10.200.10.11" }, { address = "10.200.10.12" }]

[[service]]
name = "other"
vip = "10.200.99.2"
port = 80
protocol = "tcp"
table_size = 4099
backend = [{ address = "10.200.10.21" }]
"#;

const WEB: &str = "10.200.99.1:80";
const CLIENT: &str = "10.200.10.2";
const TABLE_SIZE: u32 = 4099;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn load(bed: &FibBed) -> Result<Balancer> {
    let mut dp = Dataplane::load()?;
    dp.allow_egress(bed.a0.ifindex)?;
    Ok(Balancer::new(dp, &Config::parse(CONFIG)?, InitialHealth::Up)?)
}

/// New TCP flows (SYNs) to `vip` from the client, source ports from `first_port` on.
fn flows(vip: &str, first_port: u16, n: u16) -> Vec<Frame> {
    (0..n).map(|i| Frame::syn(&format!("{CLIENT}:{}", first_port + i), vip)).collect()
}

/// Data packets (ACKs) of TCP flows to `vip`: unlike SYNs, they follow their session record.
fn established_flows(vip: &str, first_port: u16, n: u16) -> Vec<Frame> {
    flows(vip, first_port, n).into_iter().map(|f| f.later(b"data")).collect()
}

/// Runs every frame through the program after asking `explain` where it will go, and fails on
/// the first disagreement. Returns the backend address each one reached (None: not forwarded).
fn send(lb: &mut Balancer, bed: &FibBed, frames: &[Frame]) -> Result<Vec<Option<IpAddr>>> {
    frames
        .iter()
        .map(|f| {
            let predicted = lb.explain_packet(&f.flow_key(), f.is_syn())?.and_then(|ex| ex.backend).map(|b| b.addr.ip());
            let run = test_run(lb, bed.a0.ifindex, &f.bytes())?;
            let got = match run.verdict {
                XDP_TX => Some(bed.neighbour_by_mac(run.output[..6].try_into()?).context("destination MAC of no neighbour")?),
                _ => None,
            };
            ensure!(got == predicted, "flow {} -> {}: explain said {predicted:?}, the kernel sent it to {got:?}", f.src, f.dst);
            Ok(got)
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn count(got: &[Option<IpAddr>], backend: &str) -> usize {
    got.iter().filter(|g| **g == Some(ip(backend))).count()
}

fn service<'a>(lb: &'a Balancer, name: &str) -> &'a ServiceState {
    lb.service(name).expect("service")
}

fn backend_id(lb: &Balancer, service_name: &str, backend: &str) -> u32 {
    service(lb, service_name).backends.iter().find(|b| b.addr == addr(backend)).expect("backend").id
}

/// The maps say what the balancer's state says: SERVICES entry, the live table and in-service
/// list, and a BACKENDS entry (UP flag, generation, address) per backend.
fn check_maps(lb: &Balancer, name: &str) -> Result<()> {
    let svc = service(lb, name);
    let dp = lb.dataplane();
    let live: HashMap<ServiceKey, ServiceInfo> = dp.service_entries().into_iter().collect();
    ensure!(live.get(&svc.key) == Some(&svc.info), "{name}: SERVICES holds {:?}, the state says {:?}", live.get(&svc.key), svc.info);
    let table: Vec<u32> = (0..svc.info.table_size)
        .map(|s| dp.lookup_slot(svc.info.id, svc.info.lookup_bank, s))
        .collect::<Result<_, _>>()?;
    ensure!(table == build_table(svc), "{name}: the live LOOKUP bank differs from build_table");
    let listed: Vec<u32> = (0..svc.info.in_service_count)
        .map(|i| dp.in_service_slot(svc.info.id, svc.info.in_service_bank, i))
        .collect::<Result<_, _>>()?;
    ensure!(listed == in_service_ids(svc), "{name}: IN_SERVICE holds {listed:?}, expected {:?}", in_service_ids(svc));
    for b in &svc.backends {
        let e = dp.backend(b.id)?;
        ensure!(
            (e.flags & BACKEND_F_UP != 0, e.generation) == (b.up, b.generation),
            "{name}: BACKENDS[{}] = {e:?} for {b:?}",
            b.id
        );
    }
    Ok(())
}

/// Share of the live table's slots that name `backend`.
fn table_share(lb: &Balancer, name: &str, backend: &str) -> f64 {
    let id = backend_id(lb, name, backend);
    let t = build_table(service(lb, name));
    t.iter().filter(|&&x| x == id).count() as f64 / t.len() as f64
}

#[test]
fn changes_land_in_the_maps_and_established_flows_keep_their_backend() -> Result<()> {
    let started = Instant::now();
    let bed = FibBed::new("live-maps")?;
    let _inside = bed.ns.enter()?;
    let mut lb = load(&bed)?;
    check_maps(&lb, "web")?;

    let established = established_flows(WEB, 40000, 300);
    let first = send(&mut lb, &bed, &established)?;
    ensure!(count(&first, "10.200.10.11") > 50 && count(&first, "10.200.10.12") > 50, "poor spread: {first:?}");
    let sticky = |lb: &mut Balancer, what: &str| -> Result<()> {
        let again = send(lb, &bed, &established)?;
        ensure!(again == first, "{what}: an established flow changed backend");
        Ok(())
    };

    // Add: a new bank goes live with the new backend in it; old flows stay, new ones reach it.
    let bank = service(&lb, "web").info.lookup_bank;
    let lines = lb.add_backend("web", addr("10.200.10.13:80"), 1)?;
    ensure!(lines == ["service web: backend 10.200.10.13:80 added (weight 1)"], "{lines:?}");
    check_maps(&lb, "web")?;
    ensure!(service(&lb, "web").info.lookup_bank != bank, "the table bank did not flip");
    ensure!((table_share(&lb, "web", "10.200.10.13:80") - 1.0 / 3.0).abs() < 0.01);
    sticky(&mut lb, "after add")?;
    let fresh = send(&mut lb, &bed, &flows(WEB, 41000, 300))?;
    ensure!(count(&fresh, "10.200.10.13") > 50, "the added backend got {} of 300 new flows", count(&fresh, "10.200.10.13"));

    // Weight: the table follows (3 of 5 shares), old flows stay.
    lb.set_weight("web", addr("10.200.10.13:80"), 3)?;
    check_maps(&lb, "web")?;
    ensure!((table_share(&lb, "web", "10.200.10.13:80") - 0.6).abs() < 0.01);
    sticky(&mut lb, "after weight")?;

    // Health down (not a table change): second choices, and explain still agrees.
    let table_before = build_table(service(&lb, "web"));
    lb.set_health("web", addr("10.200.10.11:80"), false)?;
    check_maps(&lb, "web")?;
    ensure!(build_table(service(&lb, "web")) == table_before, "a health change rebuilt the table");
    let while_down = send(&mut lb, &bed, &flows(WEB, 42000, 300))?;
    ensure!(count(&while_down, "10.200.10.11") == 0);
    lb.set_health("web", addr("10.200.10.11:80"), true)?;
    let first = send(&mut lb, &bed, &established)?; // flows of .11 were re-chosen: new baseline

    // Drain: out of the table and the in-service list, UP flag kept: its flows go on, no new ones.
    let now = Instant::now();
    lb.drain("web", addr("10.200.10.12:80"), Some(Duration::from_secs(60)), now)?;
    check_maps(&lb, "web")?;
    let id12 = backend_id(&lb, "web", "10.200.10.12:80");
    ensure!(!build_table(service(&lb, "web")).contains(&id12) && !in_service_ids(service(&lb, "web")).contains(&id12));
    ensure!(lb.dataplane().backend(id12)?.flags & BACKEND_F_UP != 0, "a draining backend lost its UP flag");
    ensure!(send(&mut lb, &bed, &established)? == first, "a flow moved while its backend drained");
    let drained_new = send(&mut lb, &bed, &flows(WEB, 43000, 300))?;
    ensure!(count(&drained_new, "10.200.10.12") == 0, "a draining backend got new flows");
    let counts = lb.dataplane().session_counts();
    let gen12 = service(&lb, "web").backends.iter().find(|b| b.id == id12).map(|b| b.generation).context("gen")?;
    ensure!(counts.of(id12, gen12) > 0, "no session counted for the draining backend");
    ensure!(lb.finish_drains(now, Some((&counts, Instant::now())))?.is_empty(), "a drain with sessions left finished early");

    // Undrain: back in the table.
    lb.undrain("web", addr("10.200.10.12:80"))?;
    check_maps(&lb, "web")?;
    ensure!(build_table(service(&lb, "web")).contains(&id12));

    // Drain with a timeout that passes: removed with sessions left, which go stale.
    lb.drain("web", addr("10.200.10.12:80"), Some(Duration::from_secs(1)), now)?;
    let lines = lb.finish_drains(now + Duration::from_secs(2), Some((&lb.dataplane().session_counts(), Instant::now())))?;
    ensure!(lines.len() == 1 && lines[0].contains("drain timeout of 1 s passed"), "{lines:?}");
    ensure!(lb.dataplane().backend(id12)?.flags & BACKEND_F_UP == 0, "a removed backend kept its UP flag");
    let after = send(&mut lb, &bed, &established)?;
    for (a, b) in first.iter().zip(&after) {
        match a {
            Some(x) if *x == ip("10.200.10.12") => ensure!(*b != Some(ip("10.200.10.12")), "a flow stayed on a removed backend"),
            _ => ensure!(a == b, "a flow on a surviving backend moved"),
        }
    }
    check_maps(&lb, "web")?;

    // Drain ended by its sessions going: none left (sessions cleared) -> removed at the next scan.
    lb.drain("web", addr("10.200.10.13:80"), Some(Duration::from_secs(60)), now)?;
    lb.dataplane_mut().clear_sessions()?;
    // A count from a walk that started before the drain speaks not for it (the daemon walks
    // off its loop, so a walk may end after a drain it began before).
    let earlier = now.checked_sub(Duration::from_millis(1)).context("instant")?;
    let stale = lb.finish_drains(now, Some((&lb.dataplane().session_counts(), earlier)))?;
    ensure!(stale.is_empty(), "a count older than the drain finished it: {stale:?}");
    let lines = lb.finish_drains(now, Some((&lb.dataplane().session_counts(), Instant::now())))?;
    ensure!(lines == ["service web: drained backend 10.200.10.13:80 removed: no session uses it any more"], "{lines:?}");

    // Remove: a backend re-added gets a fresh id; the removed one's flows are re-chosen.
    lb.add_backend("web", addr("10.200.10.12:80"), 1)?;
    ensure!(backend_id(&lb, "web", "10.200.10.12:80") != id12, "a freed id was reused at once");
    let base = send(&mut lb, &bed, &established)?;
    let id11 = backend_id(&lb, "web", "10.200.10.11:80");
    lb.remove_backend("web", addr("10.200.10.11:80"))?;
    check_maps(&lb, "web")?;
    ensure!(lb.dataplane().backend(id11)?.flags & BACKEND_F_UP == 0);
    let moved = send(&mut lb, &bed, &established)?;
    ensure!(moved.iter().all(|m| *m == Some(ip("10.200.10.12"))), "flows not all on the one backend left");
    ensure!(base.iter().any(|b| *b == Some(ip("10.200.10.11"))), "no flow was on the removed backend");

    // Service add (SERVICES entry last) and remove (first).
    lb.add_service(
        "[[service]]\nname = \"extra\"\nvip = \"10.200.99.3\"\nport = 80\nprotocol = \"tcp\"\ntable_size = 4099\n\
         backend = [{ address = \"10.200.10.13\" }]\n",
    )?;
    check_maps(&lb, "extra")?;
    ensure!(service(&lb, "extra").info.id == 2, "the new service did not get the next free id");
    let extra = flows("10.200.99.3:80", 44000, 20);
    ensure!(send(&mut lb, &bed, &extra)?.iter().all(|g| *g == Some(ip("10.200.10.13"))));
    let extra_backend = backend_id(&lb, "extra", "10.200.10.13:80");
    lb.remove_service("extra")?;
    ensure!(lb.dataplane().service_entries().len() == 2, "SERVICES still holds the removed service");
    ensure!(lb.dataplane().backend(extra_backend)?.flags & BACKEND_F_UP == 0);
    ensure!(test_run(&mut lb, bed.a0.ifindex, &extra[0].bytes())?.verdict == XDP_PASS, "a removed service's packet was not passed");
    check_maps(&lb, "other")?;

    // A draining backend that goes down is done at once: its sessions are re-chosen anyway.
    lb.add_backend("web", addr("10.200.10.13:80"), 1)?;
    lb.drain("web", addr("10.200.10.13:80"), Some(Duration::from_secs(60)), now)?;
    lb.set_health("web", addr("10.200.10.13:80"), false)?;
    let lines = lb.finish_drains(now, None)?;
    ensure!(lines == ["service web: drained backend 10.200.10.13:80 removed: it is down, so no session can use it"], "{lines:?}");
    check_maps(&lb, "web")?;
    println!("live map changes checked in {:.2?}", started.elapsed());
    Ok(())
}

/// Everything a refused change could have written: SERVICES, BACKENDS, SESSIONS, the
/// in-service lists and table banks of the services in use and of the next free service id.
#[derive(PartialEq)]
struct Snapshot {
    services: HashMap<ServiceKey, ServiceInfo>,
    backends: Vec<Backend>,
    sessions: HashMap<u64, Session>,
    in_service: Vec<u32>,
    lookup: Vec<u32>,
    state: String,
}

fn snapshot(lb: &Balancer) -> Result<Snapshot> {
    let dp = lb.dataplane();
    let service_ids = 0..4u32;
    let mut in_service = Vec::new();
    let mut lookup = Vec::new();
    for id in service_ids {
        for bank in 0..2 {
            for i in 0..8 {
                in_service.push(dp.in_service_slot(id, bank, i)?);
            }
            for s in 0..TABLE_SIZE {
                lookup.push(dp.lookup_slot(id, bank, s)?);
            }
        }
    }
    Ok(Snapshot {
        services: dp.service_entries().into_iter().collect(),
        backends: (0..lb_common::MAX_BACKENDS).map(|id| dp.backend(id)).collect::<Result<_, _>>()?,
        sessions: dp.sessions().into_iter().collect(),
        in_service,
        lookup,
        state: format!("{:?}", lb.services().iter().map(|s| (&s.config, s.info, &s.backends)).collect::<Vec<_>>())
            .replace(char::is_whitespace, ""),
    })
}

type Change = Box<dyn Fn(&mut Balancer) -> Result<Vec<String>, LiveError>>;

#[test]
fn refused_changes_leave_every_map_byte_identical() -> Result<()> {
    let bed = FibBed::new("live-refused")?;
    let _inside = bed.ns.enter()?;
    let mut lb = load(&bed)?;
    lb.add_backend("web", addr("10.200.10.13:80"), 2)?;
    lb.drain("web", addr("10.200.10.12:80"), Some(Duration::from_secs(60)), Instant::now())?;
    send(&mut lb, &bed, &flows(WEB, 40000, 50))?; // some sessions to keep
    let a = |s: &'static str| addr(s);
    let service_toml = |name: &str, vip: &str| {
        format!("[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = 80\nprotocol = \"tcp\"\nbackend = [{{ address = \"10.200.10.21\" }}]\n")
    };
    let web_again = service_toml("web", "10.200.99.9");
    let same_vip = service_toml("third", "10.200.99.1");
    let two = service_toml("x1", "10.200.99.7") + &service_toml("x2", "10.200.99.8");
    // A reload that keeps only web's draining backend.
    let only_draining = Config::parse(&CONFIG.replace("{ address = \"10.200.10.11\" }, ", ""))?;
    let cases: Vec<(&str, Change, &str)> = vec![
        ("unknown service", Box::new(move |lb| lb.add_backend("nope", a("10.200.10.14:80"), 1)), "no service named \"nope\" is running"),
        ("duplicate backend", Box::new(move |lb| lb.add_backend("web", a("10.200.10.11:80"), 1)), "already has backend 10.200.10.11:80"),
        ("weight 0", Box::new(move |lb| lb.add_backend("web", a("10.200.10.14:80"), 0)), "weight 0 must be 1..=1000"),
        ("weight too big", Box::new(move |lb| lb.set_weight("web", a("10.200.10.11:80"), 1001)), "weight 1001 must be 1..=1000"),
        ("family mismatch", Box::new(move |lb| lb.add_backend("web", a("[fd00:200:10::14]:80"), 1)), "address is IPv6 but the vip 10.200.99.1 is IPv4"),
        ("dsr port", Box::new(move |lb| lb.add_backend("web", a("10.200.10.14:8080"), 1)), "dsr forwarding"),
        ("unknown backend", Box::new(move |lb| lb.remove_backend("web", a("10.200.10.99:80"))), "service \"web\" has no backend 10.200.10.99:80"),
        ("weight of unknown backend", Box::new(move |lb| lb.set_weight("web", a("10.200.10.99:80"), 2)), "has no backend"),
        ("last backend", Box::new(move |lb| lb.remove_backend("other", a("10.200.10.21:80"))), "no backends"),
        ("drain the last one", Box::new(move |lb| lb.drain("other", a("10.200.10.21:80"), Some(Duration::from_secs(9)), Instant::now())), "last backend of service \"other\""),
        ("keep only draining (reload)", Box::new(move |lb| lb.reconcile(&only_draining)), "would have no backend for new flows"),
        ("undrain an active one", Box::new(move |lb| lb.undrain("web", a("10.200.10.11:80"))), "is not draining"),
        ("service name taken", Box::new(move |lb| lb.add_service(&web_again)), "duplicate name"),
        ("service vip taken", Box::new(move |lb| lb.add_service(&same_vip)), "duplicate service"),
        ("two services", Box::new(move |lb| lb.add_service(&two)), "exactly one [[service]]"),
        ("not toml", Box::new(move |lb| lb.add_service("[[service]\nname = ")), "line 1"),
        ("unknown service removed", Box::new(move |lb| lb.remove_service("nope")), "no service named \"nope\""),
    ];
    for (what, change, expected) in cases {
        let before = snapshot(&lb)?;
        let result = change(&mut lb);
        let err = match result {
            Ok(lines) => bail!("{what}: accepted: {lines:?}"),
            Err(e) => e.to_string(),
        };
        println!("{what:<26} -> {err}");
        ensure!(err.contains(expected), "{what}: the error does not say {expected:?}: {err}");
        ensure!(snapshot(&lb)? == before, "{what}: refused, but the maps or the state changed");
    }
    Ok(())
}

#[test]
fn reconcile_writes_only_the_services_that_changed() -> Result<()> {
    let bed = FibBed::new("live-reconcile")?;
    let _inside = bed.ns.enter()?;
    let mut lb = load(&bed)?;
    ensure!(lb.reconcile(&Config::parse(CONFIG)?)?.is_empty(), "the same config changed something");
    let established = established_flows(WEB, 40000, 100);
    let first = send(&mut lb, &bed, &established)?;
    let web_before = snapshot_service(&lb, "web")?;
    let other_bank = service(&lb, "other").info.lookup_bank;

    let changed = CONFIG.replace("{ address = \"10.200.10.21\" }", "{ address = \"10.200.10.21\" }, { address = \"10.200.10.13\", weight = 2 }");
    let lines = lb.reconcile(&Config::parse(&changed)?)?;
    ensure!(lines == ["service other: backend 10.200.10.13:80 added (weight 2)"], "{lines:?}");
    ensure!(snapshot_service(&lb, "web")? == web_before, "the unchanged service was written");
    ensure!(service(&lb, "other").info.lookup_bank != other_bank, "the changed service did not flip");
    check_maps(&lb, "other")?;
    ensure!(send(&mut lb, &bed, &established)? == first, "flows of the unchanged service moved");
    Ok(())
}

/// A service's SERVICES entry and both banks of its table and in-service list.
fn snapshot_service(lb: &Balancer, name: &str) -> Result<(ServiceInfo, Vec<u32>)> {
    let svc = service(lb, name);
    let dp = lb.dataplane();
    let info = dp.service_entries().into_iter().find(|(k, _)| *k == svc.key).context("SERVICES entry")?.1;
    let mut slots = Vec::new();
    for bank in 0..2 {
        for s in 0..TABLE_SIZE {
            slots.push(dp.lookup_slot(svc.info.id, bank, s)?);
        }
        for i in 0..8 {
            slots.push(dp.in_service_slot(svc.info.id, bank, i)?);
        }
    }
    Ok((info, slots))
}

/// A bank is rewritten only after a grace period that started after it stopped being live, and
/// one grace period serves a whole change: a bank never live needs none, every later change
/// needs exactly one, also when it flips two services (a reload of N services waits once).
#[test]
fn reusing_a_bank_waits_one_grace_period_per_change() -> Result<()> {
    let bed = FibBed::new("live-grace")?;
    let _inside = bed.ns.enter()?;
    let mut lb = load(&bed)?;
    let waits = |lb: &Balancer| lb.dataplane().grace_waits().0;
    ensure!(waits(&lb) == 0, "loading waited {} times: nothing was live before", waits(&lb));

    // 1st change: table and list of web go to bank 1, never live: no wait.
    lb.set_weight("web", addr("10.200.10.11:80"), 2)?;
    ensure!(waits(&lb) == 0, "writing a never-live bank waited");
    // Every further change of web writes the bank the previous one retired: one wait each.
    for (n, w) in [(1, 3), (2, 4), (3, 5)] {
        lb.set_weight("web", addr("10.200.10.11:80"), w)?;
        ensure!(waits(&lb) == n, "change {} of web: {} waits, expected {n}", n + 1, waits(&lb));
    }
    // A change of both services: web's retired bank costs one wait; other's banks were never
    // live. Each flip is one SERVICE_BANKS store, which frees nothing: no wait of its own.
    let both = |w: u32, other: u32| {
        CONFIG
            .replace("{ address = \"10.200.10.11\" }", &format!("{{ address = \"10.200.10.11\", weight = {w} }}"))
            .replace("{ address = \"10.200.10.21\" }", &format!("{{ address = \"10.200.10.21\" }}, {{ address = \"10.200.10.13\", weight = {other} }}"))
    };
    lb.reconcile(&Config::parse(&both(6, 2))?)?;
    ensure!(waits(&lb) == 4, "first change of two services: {} waits, expected 4", waits(&lb));
    // Both services now rewrite banks retired by the same change: one wait covers both flips.
    lb.reconcile(&Config::parse(&both(7, 3))?)?;
    ensure!(waits(&lb) == 5, "second change of two services: {} waits, expected 5 (one per change, not per service)", waits(&lb));
    check_maps(&lb, "web")?;
    check_maps(&lb, "other")?;

    let (n, spent) = lb.dataplane().grace_waits();
    eprintln!("{n} grace periods, {:.2} ms each on average", spent.as_secs_f64() * 1e3 / n as f64);
    Ok(())
}

/// A drain without a timeout lasts the service's `drain_timeout` from the config (reloaded
/// values included); an explicit timeout wins.
#[test]
fn drain_timeout_defaults_to_the_services_config() -> Result<()> {
    let bed = FibBed::new("live-drain-cfg")?;
    let _inside = bed.ns.enter()?;
    let mut lb = load(&bed)?;
    let timeout = |lb: &Balancer, b: &str| {
        service(lb, "web").backends.iter().find(|x| x.addr == addr(b)).and_then(|x| x.drain).map(|d| d.timeout)
    };
    lb.drain("web", addr("10.200.10.12:80"), None, Instant::now())?;
    ensure!(timeout(&lb, "10.200.10.12:80") == Some(Duration::from_secs(300)), "no drain_timeout in the file: 300 s");
    lb.undrain("web", addr("10.200.10.12:80"))?;

    let with_42 = CONFIG.replacen("table_size = 4099\n", "table_size = 4099\ndrain_timeout = 42\n", 1);
    let lines = lb.reconcile(&Config::parse(&with_42)?)?;
    ensure!(lines == ["service web: drain_timeout 300 s -> 42 s"], "{lines:?}");
    lb.drain("web", addr("10.200.10.12:80"), None, Instant::now())?;
    ensure!(timeout(&lb, "10.200.10.12:80") == Some(Duration::from_secs(42)), "drain took {:?}", timeout(&lb, "10.200.10.12:80"));
    // Now the file's 42 s, not the built-in 300 s, is what a drain started 43 s ago has exceeded.
    let removed = lb.finish_drains(Instant::now() + Duration::from_secs(43), None)?;
    ensure!(removed.len() == 1 && removed[0].contains("drain timeout of 42 s passed"), "{removed:?}");
    lb.reconcile(&Config::parse(&with_42)?)?;
    lb.drain("web", addr("10.200.10.12:80"), Some(Duration::from_secs(7)), Instant::now())?;
    ensure!(timeout(&lb, "10.200.10.12:80") == Some(Duration::from_secs(7)), "an explicit timeout must win");
    Ok(())
}
