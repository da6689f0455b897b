//! A TCP echo server that takes time to answer, as real servers do (a query, a computation):
//! each connection gets the host's label as its first line, then every line it sends back after
//! `think`. Between a request and its answer the client sends nothing (its ACK of the request
//! aside), so an answer depends on whatever state the path kept for the connection meanwhile:
//! the window a NAT balancer's reply path must keep the flow's record alive through.
//!
//! It runs on threads of the test process, its sockets in the host's namespace (created while
//! the thread is inside it). Listening on the wildcard address, it also answers a DSR VIP held
//! on `lo`. Drop closes the listener and every connection and joins the threads.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::topology::Host;

#[derive(Debug)]
pub struct ThinkingServer {
    listener: TcpListener,
    /// A clone of every accepted connection, to shut them down on Drop.
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl ThinkingServer {
    /// Listens on `port` (IPv4 and IPv6) in `host`'s namespace, answering `host`'s label.
    pub fn start(host: &Host, port: u16, think: Duration) -> Result<ThinkingServer> {
        let listener: TcpListener = {
            let _inside = host.ns().enter()?;
            let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_only_v6(false)?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())
                .with_context(|| format!("binding port {port} in {}", host.ns().name()))?;
            socket.listen(1024)?;
            socket.into()
        };
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (accepting, label, registry) = (listener.try_clone()?, host.label().to_string(), conns.clone());
        let acceptor = std::thread::Builder::new().name(format!("think-{label}")).spawn(move || {
            let mut served: Vec<JoinHandle<()>> = Vec::new();
            // accept fails once Drop shuts the listener down.
            while let Ok((conn, _)) = accepting.accept() {
                let Ok(clone) = conn.try_clone() else { continue };
                registry.lock().unwrap_or_else(|e| e.into_inner()).push(clone);
                let label = label.clone();
                served.retain(|t| !t.is_finished());
                served.push(std::thread::spawn(move || {
                    let _ = serve(conn, &label, think);
                }));
            }
            // No connection is registered after this: ending them all ends every thread.
            shut_all(&registry);
            for t in served {
                let _ = t.join();
            }
        })?;
        Ok(ThinkingServer { listener, conns, acceptor: Some(acceptor) })
    }

    /// Starts one on every host of `hosts` (typically `topology.backends()`).
    pub fn start_all(hosts: &[Host], port: u16, think: Duration) -> Result<Vec<ThinkingServer>> {
        hosts.iter().map(|h| ThinkingServer::start(h, port, think)).collect()
    }
}

/// One connection: the label, then every line back after `think`, until the client closes.
fn serve(conn: TcpStream, label: &str, think: Duration) -> std::io::Result<()> {
    let mut writer = conn.try_clone()?;
    writer.write_all(format!("{label}\n").as_bytes())?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        // The server's think time: part of the traffic's shape, not synchronisation.
        std::thread::sleep(think);
        writer.write_all(line.as_bytes())?;
        line.clear();
    }
    // The client closed: close too (the clone kept for Drop would hold the socket open).
    writer.shutdown(std::net::Shutdown::Both)
}

fn shut_all(conns: &Mutex<Vec<TcpStream>>) {
    for c in conns.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for ThinkingServer {
    fn drop(&mut self) {
        // shutdown() on a listening socket wakes a blocked accept() (Linux), which then fails.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        shut_all(&self.conns);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}
