//! An upgrade loses nothing: under steady traffic (30 long-lived connections echoing every
//! 100 ms, new connections, UDP flows), the running `lb` (NAT, two-arm, native XDP on veth) is
//! stopped with SIGTERM and another `lb` binary, whose XDP program differs (built with the
//! `upgrade-test` feature: a constant of the program changed, no map layout), is started on the
//! same instance. It adopts the pinned maps (same layout stamp), puts its program on the pinned
//! links in place of the old one (same link ids, new program ids), and no connection fails or
//! breaks, every datagram is answered, counters keep counting.
//!
//! lb runs in a `MountNs`, whose bpffs outlives each lb as a host's does; the MountNs's end
//! takes whatever is left with it, also when the test fails.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use lb_tests::{
    balancing::HEALTH_WAIT,
    daemon::{LbDaemon, in_service, service_packets as packets, upgrade_binary},
    mount_ns::MountNs,
    servers::BackendServer,
    steady_traffic::{self, BACKEND_PORT, SteadyTraffic},
    topology::TwoArm,
};

const T: Duration = Duration::from_secs(20);
const LONG_LIVED: usize = 30;


/// The `xdp_object` label of `lb_build_info` in `lb metrics`: the digest of the program lb loaded.
fn xdp_object_digest(lb: &LbDaemon) -> Result<String> {
    let metrics = lb.cli(&["metrics"])?;
    let line = metrics.lines().find(|l| l.starts_with("lb_build_info{")).context("no lb_build_info in lb metrics")?;
    let digest = line.split("xdp_object=\"").nth(1).and_then(|rest| rest.split('"').next());
    Ok(digest.with_context(|| format!("no xdp_object label: {line}"))?.to_string())
}

/// The pinned XDP link of `iface` (`link_native_<iface>`): its link id and the id of the
/// program it runs, as bpftool reads them in lb's mount namespace.
fn pinned_link(mounts: &MountNs, lb: &LbDaemon, iface: &str) -> Result<(u64, u64)> {
    let pin = format!("{}/{}/link_native_{iface}", lb::dataplane::PIN_ROOT, lb.instance);
    let out = mounts.exec(&["bpftool", "-j", "link", "show", "pinned", &pin])?;
    let link: serde_json::Value = serde_json::from_str(&out).with_context(|| format!("bpftool: {out}"))?;
    let ids = link["id"].as_u64().zip(link["prog_id"].as_u64());
    ids.with_context(|| format!("no link or program id for {pin}: {link}"))
}

#[test]
fn a_binary_with_another_program_replaces_it_on_the_pinned_links_and_keeps_the_maps_and_every_flow() -> Result<()> {
    let new_binary = upgrade_binary()?;
    let vip: IpAddr = "10.200.100.1".parse()?;
    let topo = TwoArm::new(3)?;
    let _servers = BackendServer::start_all(topo.backends(), BACKEND_PORT)?;
    let lb_ns = topo.lb().ns();
    let mounts = MountNs::new(lb_ns)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut old = LbDaemon::start_in(&mounts, lb_ns, &steady_traffic::config(&topo, vip), &arms, &[])?;
    old.wait_in_service("web", 3, HEALTH_WAIT)?;
    old.wait_in_service("dns", 3, HEALTH_WAIT)?;
    let old_digest = xdp_object_digest(&old)?;

    let traffic = SteadyTraffic::start(topo.client().ns(), vip, 80, 53, LONG_LIVED)?;
    traffic.wait_rounds(5, T)?;
    let counted = packets(&old.status()?, "web");
    let mut old_links = Vec::new();
    for arm in arms {
        let (link, prog) = pinned_link(&mounts, &old, arm)?;
        ensure!(lb_ns.xdp_prog_id(arm)? == Some(prog), "{arm} does not run the program of its pinned link");
        old_links.push((link, prog));
    }
    old.stop()?;
    traffic.wait_rounds(2, T).context("between the two binaries")?;

    let mut new = old.start_again_as(&new_binary, &mounts, lb_ns, &[])?;
    new.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let log = new.process.stderr_tail();
    ensure!(log.contains("adopted the running data plane"), "the new binary did not adopt: {log}");
    // Its maps are the pinned ones (a layout of its own would have been refused, not adopted).
    ensure!(log.contains("adopted the pinned maps") && !log.contains("pinned the maps"), "the new binary did not adopt the maps: {log}");
    // Another build's program is loaded and replaces the pinned one, never kept.
    ensure!(
        log.contains("the pinned program differs from this lb's") && log.contains("replaced the program on the pinned XDP link")
            && !log.contains("kept the running XDP program"),
        "the new binary did not replace the program: {log}"
    );
    let new_digest = xdp_object_digest(&new)?;
    ensure!(new_digest != old_digest, "the new binary loaded the same program ({old_digest}): not an upgrade");
    for (arm, (old_link, old_prog)) in arms.iter().zip(&old_links) {
        let (link, prog) = pinned_link(&mounts, &new, arm)?;
        ensure!(link == *old_link, "{arm}: the link was replaced ({old_link} -> {link}), not updated in place");
        ensure!(prog != *old_prog, "{arm}: the link still runs the old program {old_prog}");
        ensure!(lb_ns.xdp_prog_id(arm)? == Some(prog), "{arm} does not run the new program {prog}");
    }
    let status = new.status()?;
    for service in ["web", "dns"] {
        ensure!(in_service(&status, service) == Some(3), "{service} lost backends at the upgrade: {status}");
    }
    let adopted = packets(&status, "web");
    ensure!(adopted >= counted, "the web counters went back from {counted} to {adopted} at the upgrade");
    traffic.wait_rounds(5, T)?;

    let report = traffic.finish();
    report.ensure_nothing_lost("upgrade")?;
    let status = new.status()?;
    ensure!(packets(&status, "web") > adopted, "the counters stopped after the upgrade: {status}");
    ensure!(lb_tests::daemon::outcome(&status, "drop_no_backend") == 0, "packets found no backend: {status}");

    new.stop()?;
    let out = new.detach(&mounts)?;
    ensure!(out.contains("detached"), "{out}");
    Ok(())
}
