//! Readiness as systemd's `Type=notify` sees it: the real `lb run`, started with
//! `$NOTIFY_SOCKET` naming a datagram socket the test listens on, sends `READY=1` once its
//! program is on the interface and its admin socket answers, and `STOPPING=1` on SIGTERM.

use std::{os::unix::net::UnixDatagram, time::Duration};

use anyhow::{Context, Result, ensure};
use lb_tests::{daemon::{LbDaemon, lb_host}, lb_config::ServiceConfig, names};

const T: Duration = Duration::from_secs(20);

/// The notify socket; its file is removed on drop, also when the test fails.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn bind() -> Result<NotifySocket> {
        let path = std::env::temp_dir().join(format!("{}.notify", names::unique("lbn")));
        let socket = UnixDatagram::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        socket.set_read_timeout(Some(T))?;
        Ok(NotifySocket { socket, path })
    }

    /// The next datagram lb sends (at most `T` away).
    fn next(&self) -> Result<String> {
        let mut buf = [0u8; 1024];
        let n = self.socket.recv(&mut buf).context("no message from lb on the notify socket")?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn lb_tells_a_service_manager_it_is_ready_once_attached_and_that_it_stops() -> Result<()> {
    let ns = lb_host("notify", &["eth0"])?;
    let notify = NotifySocket::bind()?;
    let service = ServiceConfig {
        name: "web".into(),
        vip: "10.200.100.1".parse()?,
        port: 80,
        protocol: "tcp",
        forwarding: "nat",
        backends: vec!["10.200.3.11".parse()?],
        backend_port: 8080,
    };
    let env = format!("NOTIFY_SOCKET={}", notify.path.display());
    let mut lb = LbDaemon::start_by(&ns, &service.to_toml(), &["eth0"], &[], |args| {
        let mut with_env = vec!["env", env.as_str()];
        with_env.extend_from_slice(args);
        ns.spawn(&with_env)
    })?;
    let ready = notify.next()?;
    ensure!(ready.lines().any(|l| l == "READY=1"), "the first message is not READY=1: {ready:?}");
    ensure!(ready.contains("STATUS=attached"), "{ready:?}");
    // At READY=1 the program is on the interface and the admin socket answers.
    ensure!(ns.xdp_attached("eth0")?, "READY=1 before the program was on eth0");
    let status = lb.status().context("READY=1 before the admin socket answered")?;
    ensure!(status["pin_dir"].is_string(), "{status}");

    lb.stop()?;
    let stopping = notify.next()?;
    ensure!(stopping.lines().any(|l| l == "STOPPING=1"), "no STOPPING=1 at SIGTERM: {stopping:?}");
    Ok(())
}
