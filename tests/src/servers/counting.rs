//! A label-and-echo TCP server that keeps its own record of every connection it accepted: when
//! (wall clock) and from whom, so a test can count a backend's new connections per second from
//! the backend itself, not from lb.
//!
//! The time of a connection is when the backend's kernel received the ACK that completed its
//! handshake (accept's wall clock minus TCP_INFO's `tcpi_last_ack_recv`, at ms precision), not
//! when the accepting thread got round to it: on a loaded machine a thread may run tens of ms
//! late, which would shift connections into the next second.
//!
//! Like `ThinkingServer` it runs on threads of the test process, its sockets in the host's
//! namespace. Drop closes the listener and every connection and joins the threads.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::topology::Host;

/// One accepted connection, as the backend saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepted {
    /// Seconds since the Unix epoch at which the handshake completed.
    pub at: f64,
    /// The client's address as the backend saw it (NAT keeps the client's own).
    pub peer: SocketAddr,
}

#[derive(Debug)]
pub struct CountingServer {
    label: String,
    listener: TcpListener,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    /// A clone of every open connection, to shut them down on Drop (each leaves when it ends).
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl CountingServer {
    /// Listens on `port` (IPv4 and IPv6) in `host`'s namespace, answering `host`'s label.
    pub fn start(host: &Host, port: u16) -> Result<CountingServer> {
        let listener: TcpListener = {
            let _inside = host.ns().enter()?;
            let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_only_v6(false)?;
            socket.set_reuse_address(true)?;
            socket
                .bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())
                .with_context(|| format!("binding port {port} in {}", host.ns().name()))?;
            socket.listen(1024)?;
            socket.into()
        };
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let (accepting, label) = (listener.try_clone()?, host.label().to_string());
        let (record, registry) = (accepted.clone(), conns.clone());
        let thread_label = label.clone();
        let acceptor = std::thread::Builder::new().name(format!("count-{label}")).spawn(move || {
            let mut served: Vec<JoinHandle<()>> = Vec::new();
            // accept fails once Drop shuts the listener down.
            let mut next_id = 0u64;
            while let Ok((conn, peer)) = accepting.accept() {
                let at = handshake_time(&conn);
                record.lock().unwrap_or_else(|e| e.into_inner()).push(Accepted { at, peer: unmapped(peer) });
                let Ok(clone) = conn.try_clone() else { continue };
                let id = next_id;
                next_id += 1;
                registry.lock().unwrap_or_else(|e| e.into_inner()).insert(id, clone);
                let (label, registry) = (thread_label.clone(), registry.clone());
                served.retain(|t| !t.is_finished());
                served.push(std::thread::spawn(move || {
                    let _ = serve(conn, &label);
                    // Its clone goes too: thousands of short connections must not keep fds.
                    registry.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                }));
            }
            shut_all(&registry);
            for t in served {
                let _ = t.join();
            }
        })?;
        Ok(CountingServer { label, listener, accepted, conns, acceptor: Some(acceptor) })
    }

    /// Starts one on every host of `hosts` (typically `topology.backends()`).
    pub fn start_all(hosts: &[Host], port: u16) -> Result<Vec<CountingServer>> {
        hosts.iter().map(|h| CountingServer::start(h, port)).collect()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Every connection accepted so far, in the order accepted.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The wall-clock time the connection's handshake completed: now, less the time since the
/// kernel last received an ACK on it (nothing but the handshake's ACK has come in before the
/// server greets). Falls back to now if TCP_INFO is unavailable.
fn handshake_time(conn: &TcpStream) -> f64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(conn.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len)
    };
    // A stamp older than the listener's whole life would be a kernel that does not set it.
    if rc != 0 || info.tcpi_last_ack_recv > 10_000 {
        return now;
    }
    now - Duration::from_millis(info.tcpi_last_ack_recv.into()).as_secs_f64()
}

/// An IPv4 peer of the dual-stack listener as plain IPv4.
fn unmapped(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => peer,
        },
        v4 => v4,
    }
}

/// One connection: the label, then every line back, until the client closes.
fn serve(conn: TcpStream, label: &str) -> std::io::Result<()> {
    let mut writer = conn.try_clone()?;
    writer.write_all(format!("{label}\n").as_bytes())?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        writer.write_all(line.as_bytes())?;
        line.clear();
    }
    // The client closed: close too (the clone kept for Drop would hold the socket open).
    writer.shutdown(std::net::Shutdown::Both)
}

fn shut_all(conns: &Mutex<HashMap<u64, TcpStream>>) {
    for (_, c) in conns.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        // shutdown() on a listening socket wakes a blocked accept() (Linux), which then fails.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        shut_all(&self.conns);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}
