//! A mount namespace that outlives the `lb` processes run in it, for tests that look at what
//! lb mounts and pins in bpffs before, while and after it runs.
//!
//! `ip netns exec` gives every command a mount namespace of its own (a slave of the host's, with
//! a fresh sysfs at /sys for the network namespace, so /sys/fs/bpf is no bpffs there), and it
//! goes away with that command: a pin directory left by a dead lb could not be seen. So a
//! `sleep` started with `ip netns exec` holds one such namespace, `lb` joins it and the network
//! namespace with `nsenter`, and the test reads it through /proc/<holder>/root. Nothing mounted
//! inside reaches the host; Drop kills the holder, and the namespace with its mounts (and pins)
//! goes with its last process.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::{
    Netns,
    child::ChildGuard,
    cmd::{self, DEFAULT_TIMEOUT},
    netns::spawn_behind,
};

/// Owns the holder process; Drop kills it.
pub struct MountNs {
    holder: ChildGuard,
}

impl MountNs {
    /// A fresh mount namespace (as `ip netns exec` makes one) for network namespace `ns`.
    pub fn new(ns: &Netns) -> Result<MountNs> {
        let mut holder = ns.spawn(&["sleep", "infinity"])?;
        let comm = format!("/proc/{}/comm", holder.pid());
        let start = Instant::now();
        // `ip netns exec` sets the namespace up, then execs sleep: the name says it is done.
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            if !holder.is_running() || start.elapsed() > Duration::from_secs(10) {
                bail!("`{}` did not start: {}", holder.what(), holder.stderr_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(MountNs { holder })
    }

    /// `path` (absolute) as seen inside the namespace.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let inside = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        PathBuf::from(format!("/proc/{}/root", self.holder.pid())).join(inside)
    }

    /// Runs `args` to completion in this mount namespace (only), e.g. a `mount`; its stdout.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let pid = self.holder.pid().to_string();
        let mut full = vec!["nsenter", "--target", &pid, "--mount", "--"];
        full.extend_from_slice(args);
        cmd::run(&full, None, DEFAULT_TIMEOUT)
    }

    /// Starts `args` in this mount namespace and the holder's network namespace, in a new
    /// process group (nsenter execs it in place: the pid is the command's).
    pub fn spawn(&self, args: &[&str]) -> Result<ChildGuard> {
        let pid = self.holder.pid().to_string();
        spawn_behind(&["nsenter", "--target", &pid, "--mount", "--net", "--"], args)
    }
}
