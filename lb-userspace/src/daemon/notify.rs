//! Readiness for a service manager (systemd `Type=notify`): one datagram to the unix socket
//! named by `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`), as
//! sd_notify(3) sends. Without `$NOTIFY_SOCKET` (not started by systemd) nothing is sent.
//! A failure to send is reported, never fatal: the balancer works whether or not anyone listens.

use std::{io, os::unix::net::UnixDatagram};

/// Adoption or attach is complete, the admin socket answers: `systemctl start` returns.
pub(super) fn ready(status: &str) {
    send_to_env(&format!("READY=1\nSTATUS={status}\nMAINPID={}\n", std::process::id()));
}

/// The control plane is exiting (the data plane stays unless `--detach-on-exit`).
pub(super) fn stopping() {
    send_to_env("STOPPING=1\n");
}

fn send_to_env(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let socket = socket.to_string_lossy().into_owned();
    if let Err(e) = send(&socket, message) {
        tracing::warn!(%socket, "telling the service manager {:?}: {e}", message.lines().next().unwrap_or(""));
    }
}

/// Sends `message` as one datagram to `socket`: a filesystem path, or `@name` for the
/// abstract name `name`.
fn send(socket: &str, message: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(message.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(message.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(listener: &UnixDatagram) -> String {
        listener.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_message_reaches_a_socket_named_by_path() {
        let path = std::env::temp_dir().join(format!("lb-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(&path.to_string_lossy(), "READY=1\n").expect("send");
        assert_eq!(received(&listener), "READY=1\n");
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn a_message_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lb-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        send(&format!("@{name}"), "STOPPING=1\n").expect("send");
        assert_eq!(received(&listener), "STOPPING=1\n");
    }

    #[test]
    fn a_socket_nobody_listens_on_is_an_error_not_a_panic() {
        let path = std::env::temp_dir().join(format!("lb-notify-none-{}.sock", std::process::id()));
        assert!(send(&path.to_string_lossy(), "READY=1\n").is_err());
    }
}
