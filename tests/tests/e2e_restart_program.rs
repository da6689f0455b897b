//! A restart of the same `lb` keeps the running XDP program (no load, no link update): the
//! pinned program's recorded identity (LB_PROGRAM) is its own. Where the record is missing (a
//! directory pinned by an older lb), does not name the pinned program (a start cut short), or
//! the program uses a map whose pin was replaced, the program is loaded and replaced on the
//! link as before. A kept program is attachable (a `--xdp-mode` change attaches it anew) and
//! leaves with `--detach-on-exit`. e2e_upgrade checks that another build's program is
//! replaced, e2e_restart that restarts under traffic lose nothing.
//!
//! lb runs in a `MountNs`, whose bpffs outlives each lb as a host's does; the MountNs's end
//! takes whatever is left with it, also when the test fails.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, ensure};
use aya::{
    maps::{Array, Map, MapData, MapInfo},
    programs::ProgramInfo,
};
use lb::dataplane::{PROGRAM, PROGRAM_PIN_PREFIX};
use lb_tests::{
    daemon::{LbDaemon, lb_host},
    lb_config::ServiceConfig,
    mount_ns::MountNs,
};

const T: Duration = Duration::from_secs(20);
const KEPT: &str = "kept the running XDP program (identical)";
const REPLACED: &str = "replaced the program on the pinned XDP link";

fn config() -> String {
    ServiceConfig::nat_placeholder("web").to_toml()
}

/// The id of the program pinned in `pins`.
fn pinned_program(pins: &Path) -> Result<u32> {
    Ok(ProgramInfo::from_pin(pins.join(format!("{PROGRAM_PIN_PREFIX}{PROGRAM}")))?.id())
}

/// Starts `lb` again, waits for its first answer, stops it, and returns its log.
fn restart(lb: &mut LbDaemon, mounts: &MountNs, ns: &lb_tests::Netns, options: &[&str]) -> Result<(LbDaemon, String)> {
    let mut next = lb.start_again(mounts, ns, options)?;
    next.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    let log = next.process.stderr_tail();
    ensure!(log.contains("adopted the running data plane"), "lb did not adopt: {log}");
    next.stop()?;
    Ok((next, log))
}

#[test]
fn the_same_binary_keeps_the_running_program_and_an_unrecorded_or_stale_one_is_replaced() -> Result<()> {
    let ns = lb_host("restart-program", &["eth0"])?;
    let mounts = MountNs::new(&ns)?;
    let mut lb = LbDaemon::start_in(&mounts, &ns, &config(), &["eth0"], &[])?;
    lb.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    lb.stop()?;
    let pins = lb.pin_dir(&mounts);
    let first = ns.xdp_prog_id("eth0")?.context("no XDP after lb exited")?;
    ensure!(pinned_program(&pins)? as u64 == first, "eth0 does not run the pinned program");

    // The same binary: the program is kept, on the link and in the pin.
    let (mut lb, log) = restart(&mut lb, &mounts, &ns, &[])?;
    ensure!(log.contains(KEPT) && !log.contains(REPLACED), "the same program was not kept: {log}");
    ensure!(ns.xdp_prog_id("eth0")? == Some(first), "eth0's program changed at a restart of the same lb");
    ensure!(pinned_program(&pins)? as u64 == first, "the pinned program changed at a restart of the same lb");

    // A directory an older lb pinned has no record: loaded and replaced, then recorded.
    mounts.exec(&["rm", &format!("/sys/fs/bpf/lb/{}/LB_PROGRAM", lb.instance)])?;
    let (mut lb, log) = restart(&mut lb, &mounts, &ns, &[])?;
    ensure!(log.contains("no identity is recorded") && log.contains(REPLACED) && !log.contains(KEPT), "{log}");
    let second = ns.xdp_prog_id("eth0")?.context("no XDP")?;
    ensure!(second != first && pinned_program(&pins)? as u64 == second, "the unrecorded program was not replaced");
    ensure!(pins.join("LB_PROGRAM").exists(), "the replacing start recorded no identity");

    // A record that names another program than the pinned one (a start cut short between
    // pinning and recording): not trusted, replaced.
    let record = MapData::from_pin(pins.join("LB_PROGRAM"))?;
    let mut record: Array<MapData, [u64; 2]> = Array::try_from(Map::from_map_data(record)?)?;
    let [identity, _] = record.get(&0, 0)?;
    record.set(0, [identity, u64::from(u32::MAX)], 0)?;
    drop(record);
    let (mut lb, log) = restart(&mut lb, &mounts, &ns, &[])?;
    ensure!(log.contains("is not the one recorded") && log.contains(REPLACED) && !log.contains(KEPT), "{log}");
    let stale = ns.xdp_prog_id("eth0")?.context("no XDP")?;
    ensure!(stale != second, "the program of a stale record was not replaced");

    // A map pin replaced by hand (same shape: the layout still matches): the pinned program
    // uses another map than the pinned one, so it is not kept; the loaded one uses the new map.
    let events = MapInfo::from_pin(pins.join("PACKET_EVENTS"))?;
    let (entries, value) = (events.max_entries().to_string(), events.value_size().to_string());
    let pin = format!("/sys/fs/bpf/lb/{}/PACKET_EVENTS", lb.instance);
    mounts.exec(&["rm", &pin])?;
    let create = ["bpftool", "map", "create", &pin, "type", "percpu_array", "key", "4", "value", &value, "entries", &entries, "name", "PACKET_EVENTS"];
    mounts.exec(&create)?;
    let (mut lb, log) = restart(&mut lb, &mounts, &ns, &[])?;
    ensure!(log.contains("that is not the one pinned") && log.contains(REPLACED) && !log.contains(KEPT), "{log}");
    let third = ns.xdp_prog_id("eth0")?.context("no XDP")?;

    // A kept program attaches anew: --xdp-mode generic removes the native link, attaches it.
    let (mut lb, log) = restart(&mut lb, &mounts, &ns, &["--xdp-mode", "generic"])?;
    ensure!(log.contains(KEPT) && log.contains("attached and pinned the XDP link"), "{log}");
    ensure!(ns.xdp_prog_id("eth0")? == Some(third), "eth0 does not run the kept program in generic mode");
    ensure!(pins.join("link_generic_eth0").exists() && !pins.join("link_native_eth0").exists(), "the links were not switched");

    // A start that kept the program detaches and unpins it all the same on its way out.
    let mut last = lb.start_again(&mounts, &ns, &["--xdp-mode", "generic", "--detach-on-exit"])?;
    last.wait_for("lb status to answer", T, |s| s["pin_dir"].is_string())?;
    ensure!(last.process.stderr_tail().contains(KEPT), "{}", last.process.stderr_tail());
    last.signal(libc::SIGTERM);
    let status = last.process.wait_exit(T)?.context("lb did not exit on SIGTERM")?;
    ensure!(status.success(), "lb exited with {status}: {}", last.process.stderr_tail());
    ns.wait_xdp_detached("eth0", T).context("--detach-on-exit left XDP on eth0")?;
    ensure!(!pins.exists(), "--detach-on-exit left the pins at {}", pins.display());
    Ok(())
}
