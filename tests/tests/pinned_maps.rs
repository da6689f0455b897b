//! The real `lb run` pins every map of its object, its program, its XDP link and its layout
//! stamp under /sys/fs/bpf/lb/<instance>, mounting bpffs itself where there is none; they stay
//! after SIGTERM (the data plane outlives lb) until `lb detach`; a start that fails after
//! pinning leaves no directory; a second instance of the same name is refused while the first
//! runs, and the data plane of one that died is adopted by the next start.
//!
//! Each lb runs in a mount namespace held by a `MountNs` (as `ip netns exec` makes one, so the
//! bpffs mount never reaches the host), which lets the test look at the pins after lb exits.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aya::maps::{Array, HashMap, Map, MapData};
use aya_obj::EbpfSectionKind;
use lb::{
    balancer::service_key,
    config::Config,
    dataplane::{BPFFS, LINK_PIN_PREFIX, PIN_ROOT, PROGRAM, PROGRAM_PIN_PREFIX, XDP_OBJECT, is_bpffs},
};
use lb_common::{SERVICE_F_NAT, ServiceBanks, ServiceEntry, ServiceKey, session_buckets};
use lb_tests::{
    Netns,
    daemon::{self, LbDaemon},
    lb_config::{ServiceConfig, render},
    mount_ns::MountNs,
};

const T: Duration = Duration::from_secs(10);

/// One namespace with a veth pair (eth0 <-> peer0), up and forwarding: enough to attach to.
fn lb_host() -> Result<Netns> {
    daemon::lb_host("pins", &["eth0"])
}

/// Session capacity of `config()`: not the default, so the pinned SESSIONS shows lb sized it.
const SESSION_CAPACITY: u32 = 4096;

/// A NAT TCP service and a DSR UDP service (backends need not answer: nothing is sent), and a
/// session table of SESSION_CAPACITY.
fn config() -> String {
    let service = |name: &str, port, protocol, forwarding| ServiceConfig {
        name: name.into(),
        vip: "10.200.100.1".parse().unwrap(),
        port,
        protocol,
        forwarding,
        backends: vec!["10.200.3.11".parse().unwrap(), "10.200.3.12".parse().unwrap()],
        backend_port: port,
    };
    let services = render(&[service("web", 80, "tcp", "nat"), service("dns", 53, "udp", "dsr")]);
    format!("[sessions]\ncapacity = {SESSION_CAPACITY}\n{services}")
}

fn start(mounts: &MountNs, ns: &Netns, options: &[&str]) -> Result<LbDaemon> {
    let mut lb = LbDaemon::start_in(mounts, ns, &config(), &["eth0"], options)?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    Ok(lb)
}

#[test]
fn every_map_is_pinned_live_while_lb_runs_and_stays_after_sigterm_until_lb_detach() -> Result<()> {
    let ns = lb_host()?;
    let mounts = MountNs::new(&ns)?;
    let host_bpffs = is_bpffs(BPFFS.as_ref())?;
    ensure!(!is_bpffs(&mounts.path(BPFFS))?, "the fresh namespace already has a bpffs");

    let mut lb = start(&mounts, &ns, &[])?;
    ensure!(is_bpffs(&mounts.path(BPFFS))?, "lb did not mount a bpffs at {BPFFS}");
    ensure!(is_bpffs(BPFFS.as_ref())? == host_bpffs, "lb's bpffs mount reached the host");
    let log = lb.process.stderr_tail();
    ensure!(log.contains("mounted a BPF filesystem"), "lb did not say it mounted bpffs: {log}");

    let dir = format!("{PIN_ROOT}/{}", lb.instance);
    let status = lb.status()?;
    ensure!(status["instance"] == lb.instance.as_str() && status["pin_dir"] == dir.as_str(), "status: {status}");
    let outside = format!("/proc/{}/root{dir}", lb.process.pid());
    ensure!(status["pin_dir_outside"] == outside.as_str(), "lb runs in its own mount namespace: {status}");
    let text = lb.cli(&["status"])?;
    ensure!(text.contains(&format!("maps pinned at {dir}")), "lb status does not show the pins:\n{text}");
    ensure!(status["session_capacity"] == SESSION_CAPACITY, "status: {status}");

    // Every map the object declares, whatever its name, and the program. Global data
    // (.rodata: constants set at load, such as the tick length) is no map aya hands out.
    let pins = lb.pin_dir(&mounts);
    let object = aya_obj::Object::parse(XDP_OBJECT)?;
    let maps: Vec<&String> = object
        .maps
        .iter()
        .filter(|(_, m)| !matches!(m.section_kind(), EbpfSectionKind::Rodata | EbpfSectionKind::Data | EbpfSectionKind::Bss))
        .map(|(name, _)| name)
        .collect();
    ensure!(maps.len() >= 10, "the object declares only {maps:?}");
    let others = [format!("{PROGRAM_PIN_PREFIX}{PROGRAM}"), format!("{LINK_PIN_PREFIX}native_eth0"), "LB_LAYOUT".into(), "LB_PROGRAM".into()];
    for name in maps.into_iter().chain(&others) {
        ensure!(pins.join(name).exists(), "{name} is not pinned in {}", pins.display());
    }

    // The pinned SERVICES is the live map: it holds the config's services, and a removal
    // made through the CLI shows in the same handle.
    let config = Config::load(lb.config_path())?;
    let services: HashMap<MapData, ServiceKey, ServiceEntry> =
        HashMap::try_from(Map::from_map_data(MapData::from_pin(pins.join("SERVICES"))?)?)?;
    let service_banks: Array<MapData, u64> = Array::try_from(Map::from_map_data(MapData::from_pin(pins.join("SERVICE_BANKS"))?)?)?;
    for svc in &config.services {
        let entry = services.get(&service_key(svc), 0).with_context(|| format!("{} not in pinned SERVICES", svc.name))?;
        let banks = ServiceBanks::from_word(service_banks.get(&entry.id, 0)?);
        let nat = svc.name == "web";
        ensure!((entry.flags & SERVICE_F_NAT != 0) == nat && banks.table_size == svc.table_size, "{}: {entry:?} {banks:?}", svc.name);
    }
    // The maps carry BTF types: bpftool prints SERVICES' keys and values by field.
    let dump = std::process::Command::new("bpftool").args(["-j", "map", "dump", "pinned"]).arg(pins.join("SERVICES")).output()?;
    ensure!(dump.status.success(), "bpftool map dump: {}", String::from_utf8_lossy(&dump.stderr));
    let dump: serde_json::Value = serde_json::from_slice(&dump.stdout)?;
    let first = &dump[0]["formatted"];
    ensure!(
        first["key"]["port"].is_u64() && first["key"]["addr"].is_array() && first["value"]["id"].is_u64() && first["value"]["flags"].is_u64(),
        "bpftool does not print SERVICES by field: {dump}"
    );
    // SESSIONS as `[sessions] capacity` asked: SESSION_WAYS records a bucket.
    let sessions = MapData::from_pin(pins.join("SESSIONS"))?;
    let buckets = sessions.info()?.max_entries();
    ensure!(buckets == session_buckets(SESSION_CAPACITY), "pinned SESSIONS has {buckets} buckets");
    drop(sessions);
    lb.cli(&["service", "remove", "dns"])?;
    let dns = config.services.iter().find(|s| s.name == "dns").context("no dns")?;
    ensure!(services.get(&service_key(dns), 0).is_err(), "removed service still in the pinned SERVICES");
    drop(services);

    lb.stop()?;
    for name in &others {
        ensure!(pins.join(name).exists(), "{name} is gone after SIGTERM: the data plane should outlive lb");
    }
    let out = lb.detach(&mounts)?;
    ensure!(out.contains("native_eth0") && out.contains("detached"), "lb detach does not say what it removed: {out}");
    Ok(())
}

#[test]
fn a_start_that_fails_leaves_no_pin_directory() -> Result<()> {
    let ns = lb_host()?;
    let mounts = MountNs::new(&ns)?;
    let mut first = start(&mounts, &ns, &[])?;

    // The second loads and pins (its own instance), then cannot attach: eth0 is taken.
    let mut second = LbDaemon::start_in(&mounts, &ns, &config(), &["eth0"], &[])?;
    let log = second.wait_exit(T)?;
    ensure!(
        log.contains("pinned the maps") && log.contains("already has an XDP program attached"),
        "the second lb should have pinned, then failed to attach: {log}"
    );
    ensure!(!second.pin_dir(&mounts).exists(), "a failed attach left {}", second.pin_dir(&mounts).display());
    ensure!(first.pin_dir(&mounts).join("SERVICES").exists(), "the running instance lost its pins");

    // Refused before loading anything: no directory either.
    let mut third = LbDaemon::start_in(&mounts, &ns, &config(), &["nosuch0"], &[])?;
    let log = third.wait_exit(T)?;
    ensure!(log.contains("\"nosuch0\" does not exist"), "{log}");
    ensure!(!third.pin_dir(&mounts).exists(), "a refused start left {}", third.pin_dir(&mounts).display());

    first.stop()?;
    first.detach(&mounts)?;
    Ok(())
}

#[test]
fn an_instance_name_is_refused_while_its_lb_runs_and_its_data_plane_adopted_once_it_died() -> Result<()> {
    let ns = lb_host()?;
    let mounts = MountNs::new(&ns)?;
    let name = lb_tests::names::unique("inst");
    let same = ["--instance", name.as_str()];
    let mut first = start(&mounts, &ns, &same)?;
    let pins = first.pin_dir(&mounts);

    let mut second = LbDaemon::start_in(&mounts, &ns, &config(), &["eth0"], &same)?;
    let log = second.wait_exit(T)?;
    let running = format!("instance \"{name}\" is already running (lb pid {})", first.process.pid());
    ensure!(log.contains(&running) && log.contains("--instance OTHER"), "refusal does not say what to do: {log}");
    ensure!(!log.contains("pinned the maps"), "the refused lb loaded anyway: {log}");
    ensure!(pins.join("SERVICES").exists(), "the refused start touched the running instance's pins");
    first.status().context("the first instance stopped answering")?;

    // Killed, the first leaves its data plane running, pins and XDP, for the next start.
    let program = ns.xdp_prog_id("eth0")?.context("no XDP while the first lb runs")?;
    first.process.kill()?;
    ensure!(ns.xdp_prog_id("eth0")? == Some(program), "XDP went with the killed lb");
    ensure!(pins.join("SERVICES").exists(), "the killed lb's pins are gone");
    let mut third = first.start_again(&mounts, &ns, &[])?;
    third.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let log = third.process.stderr_tail();
    // The same binary keeps the program the dead one left running.
    ensure!(log.contains("adopted the pinned maps") && log.contains("kept the running XDP program (identical)"), "{log}");
    ensure!(ns.xdp_prog_id("eth0")? == Some(program), "eth0's program changed at the adoption");
    third.stop()?;
    third.detach(&mounts)?;
    Ok(())
}
