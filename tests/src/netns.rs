//! A named network namespace that exists exactly as long as its `Netns` value.
//!
//! Tests create hosts as namespaces with `ip netns add`; Drop kills every process left inside
//! and deletes the namespace (its veths go with it), also when the test panics. `enter` moves
//! the current thread into the namespace so Rust code can load BPF, run BPF_PROG_TEST_RUN or
//! create sockets there: a socket keeps its namespace after the thread leaves.

use crate::child::ChildGuard;
use crate::cmd::{self, DEFAULT_TIMEOUT};
use crate::names;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::Duration;

/// `ip netns add/del` set up the shared /run/netns mount on first use; parallel first uses
/// from one process can race, so this process does them one at a time.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// Owns one network namespace; Drop removes it and everything running in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with a unique name derived from `tag` and brings its `lo` up.
    pub fn new(tag: &str) -> Result<Netns> {
        static REAP: Once = Once::new();
        REAP.call_once(reap_stale);
        let name = names::unique(tag);
        {
            let _lock = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            cmd::run(&["ip", "netns", "add", &name], None, DEFAULT_TIMEOUT)?;
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace (`ip netns exec`) and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        self.exec_timeout(args, DEFAULT_TIMEOUT)
    }

    /// `exec` with an explicit deadline; the command is killed when it passes.
    pub fn exec_timeout(&self, args: &[&str], timeout: Duration) -> Result<String> {
        cmd::run(&self.exec_prefix(args), None, timeout)
    }

    /// Runs `ip -n <ns> <args>`: cheaper than `exec` (no mount-namespace setup).
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        cmd::run(&full, None, DEFAULT_TIMEOUT)
    }

    /// Runs many `ip` commands (one per line, without the leading `ip`) in one process.
    /// Batch lines cannot carry global options such as `-6`: `ip` infers the family from the
    /// addresses in the line.
    pub fn ip_batch(&self, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let script = lines.join("\n") + "\n";
        cmd::run(
            &["ip", "-n", &self.name, "-batch", "-"],
            Some(&script),
            DEFAULT_TIMEOUT,
        )
        .with_context(|| format!("ip batch in {}:\n{script}", self.name))?;
        Ok(())
    }

    /// Starts a long-running command inside the namespace. It runs in its own process group;
    /// the returned guard kills the group and reaps it on Drop. stdin/stdout are /dev/null,
    /// the tail of stderr is kept for diagnostics (`ChildGuard::stderr_tail`).
    pub fn spawn(&self, args: &[&str]) -> Result<ChildGuard> {
        spawn_in(&self.name, args)
    }

    /// Writes a sysctl of this namespace, e.g. `sysctl("net.ipv4.ip_forward", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let _inside = self.enter()?;
        // /proc/sys/net resolves against the calling thread's namespace, so this is ours.
        std::fs::write(&path, value)
            .with_context(|| format!("sysctl {key}={value} in {}", self.name))
    }

    /// Moves the CURRENT THREAD into this namespace until the guard drops. Sockets created
    /// meanwhile stay in this namespace for life. Beware: threads and processes started while
    /// inside are born in this namespace too (clone copies the caller's namespaces), so do not
    /// start a runtime or helper thread under the guard unless that is the intent.
    pub fn enter(&self) -> Result<NetnsGuard> {
        enter_by_name(&self.name)
    }

    /// The interface index of `dev` inside this namespace.
    pub fn ifindex(&self, dev: &str) -> Result<u32> {
        let link = self.link_json(dev)?;
        link["ifindex"]
            .as_u64()
            .map(|i| i as u32)
            .with_context(|| format!("no ifindex for {dev} in {}: {link}", self.name))
    }

    /// The MAC address of `dev` inside this namespace.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6]> {
        let link = self.link_json(dev)?;
        let text = link["address"]
            .as_str()
            .with_context(|| format!("no address for {dev} in {}: {link}", self.name))?;
        parse_mac(text)
    }

    /// True if an XDP program (any mode) is attached to `dev`.
    pub fn xdp_attached(&self, dev: &str) -> Result<bool> {
        xdp_attached_in(&self.name, dev)
    }

    /// Waits until no XDP program is attached to `dev` (see `wait_xdp_detached_in`).
    pub fn wait_xdp_detached(&self, dev: &str, timeout: Duration) -> Result<()> {
        wait_xdp_detached_in(&self.name, dev, timeout)
    }

    /// The id of the XDP program attached to `dev`, if any (one program, any mode).
    pub fn xdp_prog_id(&self, dev: &str) -> Result<Option<u64>> {
        Ok(self.link_json(dev)?["xdp"]["prog"]["id"].as_u64())
    }

    /// `ip -j link show dev <dev>` as JSON, for whatever else a test needs to know.
    pub fn link_json(&self, dev: &str) -> Result<serde_json::Value> {
        let out = self.ip(&["-j", "link", "show", "dev", dev])?;
        let mut list: Vec<serde_json::Value> =
            serde_json::from_str(&out).with_context(|| format!("parsing ip -j output: {out}"))?;
        if list.is_empty() {
            bail!("no link {dev} in {}", self.name);
        }
        Ok(list.swap_remove(0))
    }

    fn exec_prefix<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        full
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = destroy(&self.name) {
            eprintln!("lb-tests: cleaning up namespace {}: {e:#}", self.name);
        }
    }
}

/// Restores the thread's original namespace on Drop. Not `Send`: it belongs to one thread.
#[derive(Debug)]
pub struct NetnsGuard {
    original: File,
    _one_thread: PhantomData<*const ()>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // A thread silently left in a test namespace would send later traffic to the wrong
            // place; stopping the run is the only safe answer.
            eprintln!(
                "lb-tests: cannot restore the thread's network namespace: {}",
                std::io::Error::last_os_error()
            );
            std::process::abort();
        }
    }
}

/// Moves the current thread into the namespace named `name` (see `Netns::enter`).
pub(crate) fn enter_by_name(name: &str) -> Result<NetnsGuard> {
    // thread-self, not self: setns is per thread, and /proc/self follows the main thread.
    let original =
        File::open("/proc/thread-self/ns/net").context("opening /proc/thread-self/ns/net")?;
    let path = format!("/run/netns/{name}");
    let target = File::open(&path).with_context(|| format!("opening {path}"))?;
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(NetnsGuard {
        original,
        _one_thread: PhantomData,
    })
}

/// Spawns `args` inside namespace `name` in a new process group (see `Netns::spawn`).
pub(crate) fn spawn_in(name: &str, args: &[&str]) -> Result<ChildGuard> {
    // `ip netns exec` execs the command in place (no fork), so the pid is the command's.
    spawn_behind(&["ip", "netns", "exec", name], args)
}

/// Spawns `prefix` followed by `args` (a command that runs its arguments in place, such as
/// `ip netns exec` or `nsenter`) in a new process group; stdin/stdout are /dev/null.
pub(crate) fn spawn_behind(prefix: &[&str], args: &[&str]) -> Result<ChildGuard> {
    let line = format!("{} {}", prefix.join(" "), args.join(" "));
    let child = Command::new(prefix[0])
        .args(&prefix[1..])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    Ok(ChildGuard::new(child, line))
}

/// True if an XDP program (any mode) is attached to `dev` in namespace `name`: `ip link` then
/// shows `xdp`, `xdpgeneric`, `xdpdrv` or `xdpoffload` among the link's flags.
pub(crate) fn xdp_attached_in(name: &str, dev: &str) -> Result<bool> {
    let link = cmd::run(&["ip", "-n", name, "link", "show", "dev", dev], None, DEFAULT_TIMEOUT)?;
    Ok(link.split_whitespace().any(|w| w.starts_with("xdp")))
}

/// Waits until no XDP program is attached to `dev` in namespace `name`. Closing the last fd of
/// an XDP link detaches it, but for a moment it may not be the last: a process that another
/// thread is spawning holds copies of every fd between its fork and its exec.
pub(crate) fn wait_xdp_detached_in(name: &str, dev: &str, timeout: Duration) -> Result<()> {
    let start = std::time::Instant::now();
    while xdp_attached_in(name, dev)? {
        if start.elapsed() > timeout {
            bail!("XDP still attached to {dev} in {name} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Names of all namespaces `ip netns list` shows.
pub fn list_netns() -> Result<Vec<String>> {
    let out = cmd::run(&["ip", "netns", "list"], None, DEFAULT_TIMEOUT)?;
    // Lines look like `name` or `name (id: 3)`.
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Kills what runs inside namespace `name`, then deletes it.
fn destroy(name: &str) -> Result<()> {
    let me = std::process::id();
    let pids = cmd::run(&["ip", "netns", "pids", name], None, DEFAULT_TIMEOUT)?;
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        if pid != me {
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
    let _lock = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    cmd::run(&["ip", "netns", "del", name], None, DEFAULT_TIMEOUT)?;
    Ok(())
}

/// Deletes namespaces left by earlier runs that died without running Drop (SIGKILL, abort).
/// Only names whose creator pid no longer exists are touched, so a concurrent run is safe.
fn reap_stale() {
    let Ok(all) = list_netns() else { return };
    for name in all {
        let Some(pid) = names::owner_pid(&name) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = destroy(&name);
        }
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("not a MAC address: {text}");
    }
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte =
            u8::from_str_radix(part, 16).with_context(|| format!("not a MAC address: {text}"))?;
    }
    Ok(mac)
}

/// Formats a MAC the way `ip` expects it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
