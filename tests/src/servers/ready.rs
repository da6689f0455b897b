//! Waiting until a server really listens, so a test never races its own setup.
//!
//! Reads the socket tables of the server's namespace (`/proc/thread-self/net/...` while the
//! thread is inside it) instead of probing with a connection, which would be served and show
//! up in the test's traffic.

use crate::netns::enter_by_name;
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

/// Longest a server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// True if a socket of `proto` is bound to local `port` (TCP: in LISTEN state) in `ns`.
pub fn is_listening(ns: &str, proto: Proto, port: u16) -> Result<bool> {
    let _inside = enter_by_name(ns)?;
    let (files, state) = match proto {
        Proto::Tcp => (["tcp", "tcp6"], Some("0A")),
        Proto::Udp => (["udp", "udp6"], None),
    };
    for file in files {
        // thread-self: /proc/net would show the main thread's namespace, not ours.
        let path = format!("/proc/thread-self/net/{file}");
        let table = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = cols.get(1) else { continue };
            let Some(port_hex) = local.rsplit(':').next() else {
                continue;
            };
            let bound = u16::from_str_radix(port_hex, 16).ok() == Some(port);
            if bound && state.is_none_or(|s| cols.get(3) == Some(&s)) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Polls `is_listening` until true or `START_TIMEOUT`; `why_not` explains a failure.
pub fn wait_listening(
    ns: &str,
    proto: Proto,
    port: u16,
    why_not: impl Fn() -> String,
) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if is_listening(ns, proto, port)? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!(
        "{proto:?} port {port} in {ns} not listening after {START_TIMEOUT:?}: {}",
        why_not()
    )
}
