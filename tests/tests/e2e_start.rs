//! The real `lb run` started wrong, and stopped: a bad config, an interface that already has
//! someone else's XDP program (alone or as the second of two), no privileges, SIGINT/SIGTERM.
//!
//! A start that fails must exit non-zero with one message that says what is wrong and what to
//! do, and leave nothing of its own: no XDP program, no pins, no admin socket. A stop must exit
//! 0 leaving the data plane running (pins and XDP) until `lb detach`, or detached and unpinned
//! with `--detach-on-exit`. lb runs in a mount namespace held by a `MountNs`, so its bpffs can
//! still be looked at after it exited.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lb::dataplane::{BPFFS, Dataplane, LoadOptions, PIN_ROOT, XdpModeArg, is_bpffs};
use lb_tests::{
    daemon::{LbDaemon, lb_host},
    lb_config::ServiceConfig,
    mount_ns::MountNs,
    xdp_pass::PassProgram,
};

const T: Duration = Duration::from_secs(10);

/// `setpriv` (util-linux) runs lb as nobody: a uid change from 0 clears every capability.
const AS_NOBODY: [&str; 4] = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/// One NAT TCP service on 10.200.100.1:80 (nothing is sent: backends need not exist).
fn service(name: &str) -> ServiceConfig {
    ServiceConfig::nat_placeholder(name)
}

/// `config` with its one line `from` replaced by `to` (checked, so a changed template fails
/// here rather than testing a good config).
fn with_line(config: &str, from: &str, to: &str) -> Result<String> {
    ensure!(config.lines().filter(|l| *l == from).count() == 1, "no single line {from:?} in:\n{config}");
    Ok(config.lines().map(|l| if l == from { to } else { l }).collect::<Vec<_>>().join("\n") + "\n")
}

/// lb's stderr is exactly one line, `lb: error: ...`, containing every one of `parts`.
fn one_error(log: &str, parts: &[&str]) -> Result<()> {
    ensure!(log.lines().count() == 1 && log.starts_with("lb: error: "), "not one error line:\n{log}");
    for part in parts {
        ensure!(log.contains(part), "the error does not say {part:?}: {log}");
    }
    Ok(())
}

/// Nothing of `lb`'s outlives it: no pin directory, no admin socket.
fn nothing_left(mounts: &MountNs, lb: &LbDaemon) -> Result<()> {
    let pins = lb.pin_dir(mounts);
    ensure!(!pins.exists(), "{} is left behind", pins.display());
    ensure!(!lb.socket.exists(), "the admin socket {} is left behind", lb.socket.display());
    Ok(())
}

#[test]
fn a_bad_config_is_one_error_naming_field_and_value_and_nothing_is_touched() -> Result<()> {
    let ns = lb_host("start-cfg", &["eth0"])?;
    let mounts = MountNs::new(&ns)?;
    let good = service("web").to_toml();
    let duplicate = good.clone() + &service("web2").to_toml();
    let cases = [
        (with_line(&good, "port = 80", "port = 0")?, r#"service[0] "web": port 0 must be 1..=65535"#),
        (duplicate, r#"service[1] "web2": duplicate service (same vip 10.200.100.1, port 80, protocol tcp"#),
        (
            with_line(&good, "timeout_ms = 450", "timeout_ms = 500")?,
            "timeout_ms 500 must be less than interval_ms 500",
        ),
    ];
    for (config, expected) in cases {
        let mut lb = LbDaemon::start_in(&mounts, &ns, &config, &["eth0"], &[])?;
        let log = lb.wait_exit(T)?;
        let file = lb.config_path().display().to_string();
        one_error(&log, &[&file, expected])?;
        ensure!(!ns.xdp_attached("eth0")?, "XDP attached after: {log}");
        // Config errors are found before the kernel is touched: lb did not even mount bpffs.
        ensure!(!is_bpffs(&mounts.path(BPFFS))?, "lb mounted bpffs before refusing its config: {log}");
        nothing_left(&mounts, &lb)?;
    }
    Ok(())
}

#[test]
fn an_interface_with_someone_elses_xdp_program_is_refused_and_left_as_it_was() -> Result<()> {
    let ns = lb_host("start-busy", &["eth0"])?;
    let mounts = MountNs::new(&ns)?;
    let foreign = PassProgram::attach(&ns, "eth0")?;
    let id = ns.xdp_prog_id(foreign.dev())?.context("lb_pass is not attached")?;

    let mut lb = LbDaemon::start_in(&mounts, &ns, &service("web").to_toml(), &["eth0"], &[])?;
    let log = lb.wait_exit(T)?;
    // It got as far as pinning, so the pins being gone below means they were removed.
    ensure!(log.contains("pinned the maps"), "lb failed before it pinned: {log}");
    let error = log.lines().last().unwrap_or_default();
    one_error(error, &["interface eth0 already has an XDP program attached", "ip link set dev eth0 xdp off"])?;
    ensure!(ns.xdp_prog_id("eth0")? == Some(id), "the foreign program was replaced or removed");
    nothing_left(&mounts, &lb)
}

#[test]
fn without_privileges_lb_run_says_to_run_as_root_and_touches_nothing() -> Result<()> {
    let ns = lb_host("start-priv", &["eth0"])?;
    let mounts = MountNs::new(&ns)?;
    // As on a host (systemd mounts it): else the first refusal would be lb's mount of bpffs.
    mounts.exec(&["mount", "-t", "bpf", "bpffs", BPFFS])?;

    let config = service("web").to_toml();
    let mut lb = LbDaemon::start_by(&ns, &config, &["eth0"], &[], |args| mounts.spawn(&[&AS_NOBODY[..], args].concat()))?;
    let log = lb.wait_exit(T)?;
    one_error(&log, &["CAP_BPF", "CAP_NET_ADMIN", "run it as root"])?;
    ensure!(!ns.xdp_attached("eth0")?, "XDP attached after: {log}");
    // Refused before anything: not even /sys/fs/bpf/lb (world-writable bpffs) was made.
    ensure!(!mounts.path(PIN_ROOT).exists(), "an unprivileged lb created {PIN_ROOT}");
    nothing_left(&mounts, &lb)
}

/// lb started, then stopped with `signal`: `stop_with` asserts exit status 0 and that the data
/// plane stays (pins, XDP); `lb detach` then removes it, and the admin socket went with lb.
fn clean_exit_on(signal: i32) -> Result<()> {
    let ns = lb_host("start-stop", &["eth0"])?;
    let mounts = MountNs::new(&ns)?;
    let mut lb = LbDaemon::start_in(&mounts, &ns, &service("web").to_toml(), &["eth0"], &[])?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    ensure!(ns.xdp_attached("eth0")?, "lb runs but eth0 has no XDP program");
    ensure!(lb.pin_dir(&mounts).join("SERVICES").exists() && lb.socket.exists(), "nothing to clean up");
    lb.stop_with(signal)?;
    ensure!(lb.pin_dir(&mounts).join("SERVICES").exists(), "the pins went with lb");
    ensure!(!lb.socket.exists(), "the admin socket {} is left behind", lb.socket.display());
    lb.detach(&mounts)?;
    nothing_left(&mounts, &lb)
}

#[test]
fn sigint_exits_0_leaving_the_data_plane_to_lb_detach() -> Result<()> {
    clean_exit_on(libc::SIGINT)
}

#[test]
fn sigterm_exits_0_leaving_the_data_plane_to_lb_detach() -> Result<()> {
    clean_exit_on(libc::SIGTERM)
}

#[test]
fn with_detach_on_exit_sigterm_detaches_and_unpins() -> Result<()> {
    let ns = lb_host("start-detach", &["eth0"])?;
    let mounts = MountNs::new(&ns)?;
    let mut lb = LbDaemon::start_in(&mounts, &ns, &service("web").to_toml(), &["eth0"], &["--detach-on-exit"])?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    lb.signal(libc::SIGTERM);
    let status = lb.process.wait_exit(T)?.context("lb did not exit on SIGTERM")?;
    ensure!(status.success(), "lb exited with {status}: {}", lb.process.stderr_tail());
    ns.wait_xdp_detached("eth0", T)?;
    let drains = lb.drains_file().context("no state dir")?;
    let log = lb.process.stderr_tail();
    ensure!(!drains.exists(), "--detach-on-exit left {}: {log}", drains.display());
    // Written at exit, then removed: said in the log.
    ensure!(log.contains(&drains.display().to_string()), "--detach-on-exit did not say it removed {}: {log}", drains.display());
    nothing_left(&mounts, &lb)
}

#[test]
fn two_interfaces_are_attached_all_or_nothing() -> Result<()> {
    let ns = lb_host("start-two", &["eth0", "eth1"])?;
    let mounts = MountNs::new(&ns)?;
    let foreign = PassProgram::attach(&ns, "eth1")?;
    let id = ns.xdp_prog_id(foreign.dev())?.context("lb_pass is not attached")?;

    let mut lb = LbDaemon::start_in(&mounts, &ns, &service("web").to_toml(), &["eth0", "eth1"], &[])?;
    let log = lb.wait_exit(T)?;
    ensure!(log.contains("interface eth1 already has an XDP program attached"), "{log}");
    ensure!(!ns.xdp_attached("eth0")?, "eth0 kept an XDP program: {log}");
    ensure!(ns.xdp_prog_id("eth1")? == Some(id), "the foreign program on eth1 was replaced or removed");
    nothing_left(&mounts, &lb)?;

    // lb's exit would detach eth0 anyway (its links die with it), so check the rollback itself
    // where the links' owner lives on: the same attach, run by this process.
    let mut dp = Dataplane::load_with(LoadOptions { session_capacity: lb_common::MIN_SESSION_CAPACITY, ..Default::default() })?;
    let ifaces = ["eth0".to_string(), "eth1".to_string()];
    let attached = {
        let _inside = ns.enter()?;
        dp.attach(&ifaces, XdpModeArg::Native)
    };
    let error = attached.err().context("attached over the foreign program on eth1")?.to_string();
    ensure!(error.contains("interface eth1 already has an XDP program attached"), "{error}");
    ensure!(dp.interfaces().is_empty(), "still attached to {:?}", dp.interfaces());
    // A thread spawning a process meanwhile may hold a copy of the link's fd for a moment.
    ns.wait_xdp_detached("eth0", T).context("eth0 is still attached while its Dataplane lives")?;
    ensure!(ns.xdp_prog_id("eth1")? == Some(id), "the foreign program on eth1 was replaced or removed");
    drop(dp);
    Ok(())
}
