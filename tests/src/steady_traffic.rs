//! Steady traffic through a VIP while a test does something to the balancer (restarts it, kills
//! it): long-lived TCP connections that each echo a line every 100 ms, new connections at a
//! steady pace, and UDP flows sending a datagram each every few ms. Every failure is kept with
//! what it was, so a test can assert that nothing broke and show what did.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    client::TcpSession,
    netns::{Netns, enter_by_name},
};

/// Deadline of one connect, read or write.
/// The port the backends of `config` listen on.
pub const BACKEND_PORT: u16 = 8080;
const IO: Duration = Duration::from_secs(3);
/// Each long-lived connection echoes a line this often.
const ECHO_EVERY: Duration = Duration::from_millis(100);
/// A new connection this often (100/s, as issue 15 asks).
const CONNECT_EVERY: Duration = Duration::from_millis(10);
/// Each UDP flow sends a datagram this often.
const DATAGRAM_EVERY: Duration = Duration::from_millis(20);
/// UDP flows (fixed sockets, so they spread over the backends and each keeps its own).
const UDP_FLOWS: usize = 4;
/// How long a reply may still be in flight when the traffic stops.
const IN_FLIGHT: Duration = Duration::from_secs(2);

/// What the traffic saw.
#[derive(Debug, Default)]
pub struct Report {
    pub long_lived: usize,
    /// Echo rounds over all long-lived connections (one round: each echoed once).
    pub echo_rounds: u64,
    /// Long-lived connections that failed, with the error.
    pub broken: Vec<String>,
    pub connects_ok: u64,
    /// New connections that failed, with the error.
    pub connects_failed: Vec<String>,
    pub udp_sent: u64,
    pub udp_received: u64,
}

impl Report {
    /// Prints the report under `what` and fails unless nothing was lost: no long-lived
    /// connection broke, no new one failed, every datagram was answered, and traffic flowed.
    pub fn ensure_nothing_lost(&self, what: &str) -> Result<()> {
        eprintln!(
            "{what}: {} long-lived connections, {} echo rounds, {} broken; {} new connections, {} failed; \
             UDP {} sent, {} received",
            self.long_lived,
            self.echo_rounds,
            self.broken.len(),
            self.connects_ok,
            self.connects_failed.len(),
            self.udp_sent,
            self.udp_received
        );
        anyhow::ensure!(self.broken.is_empty(), "broken connections: {:#?}", self.broken);
        anyhow::ensure!(self.connects_failed.is_empty(), "failed connections: {:#?}", self.connects_failed);
        anyhow::ensure!(self.connects_ok > 0 && self.udp_sent > 0, "no traffic: {self:?}");
        anyhow::ensure!(self.udp_received == self.udp_sent, "UDP: {} sent, {} answered", self.udp_sent, self.udp_received);
        Ok(())
    }
}

#[derive(Default)]
struct Counts {
    rounds: AtomicU64,
    connects_ok: AtomicU64,
    udp_sent: AtomicU64,
    udp_received: AtomicU64,
    broken: Mutex<Vec<String>>,
    connects_failed: Mutex<Vec<String>>,
}

/// The traffic, running on its own threads until `finish`.
pub struct SteadyTraffic {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    stop_udp: Arc<AtomicBool>,
    long_lived: usize,
    senders: Vec<JoinHandle<()>>,
    receivers: Vec<JoinHandle<()>>,
}

impl SteadyTraffic {
    /// Opens `long_lived` connections to `vip:tcp_port` from `client` (each must greet), then
    /// starts every stream. `udp_port`: the UDP service answering each datagram.
    pub fn start(client: &Netns, vip: IpAddr, tcp_port: u16, udp_port: u16, long_lived: usize) -> Result<SteadyTraffic> {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let stop_udp = Arc::new(AtomicBool::new(false));
        let sessions = (0..long_lived)
            .map(|i| TcpSession::connect(client, vip, tcp_port, IO).with_context(|| format!("long-lived connection {i}")))
            .collect::<Result<Vec<_>>>()?;
        let udp = (0..UDP_FLOWS)
            .map(|_| udp_flow(client, SocketAddr::new(vip, udp_port)))
            .collect::<Result<Vec<_>>>()?;
        let mut senders = Vec::new();
        {
            let (counts, stop) = (counts.clone(), stop.clone());
            senders.push(std::thread::spawn(move || echo_forever(sessions, &counts, &stop)));
        }
        {
            let (counts, stop, ns) = (counts.clone(), stop.clone(), client.name().to_string());
            senders.push(std::thread::spawn(move || connect_forever(&ns, SocketAddr::new(vip, tcp_port), &counts, &stop)));
        }
        let mut receivers = Vec::new();
        for socket in &udp {
            let socket = socket.try_clone()?;
            let (counts, stop_udp) = (counts.clone(), stop_udp.clone());
            receivers.push(std::thread::spawn(move || receive_forever(&socket, &counts, &stop_udp)));
        }
        {
            let (counts, stop) = (counts.clone(), stop.clone());
            senders.push(std::thread::spawn(move || send_forever(&udp, &counts, &stop)));
        }
        Ok(SteadyTraffic { counts, stop, stop_udp, long_lived, senders, receivers })
    }

    /// Echo rounds completed so far.
    pub fn rounds(&self) -> u64 {
        self.counts.rounds.load(Ordering::Relaxed)
    }

    /// Waits until `more` echo rounds have completed after the call (traffic that went through
    /// whatever state the balancer is in now), or fails after `timeout`.
    pub fn wait_rounds(&self, more: u64, timeout: Duration) -> Result<()> {
        let target = self.rounds() + more;
        let start = Instant::now();
        while self.rounds() < target {
            if start.elapsed() > timeout {
                bail!("only {} of {more} echo rounds within {timeout:?}", more + self.rounds() - target);
            }
            std::thread::sleep(ECHO_EVERY / 4);
        }
        Ok(())
    }

    /// Stops every stream, lets the replies in flight arrive, and reports.
    pub fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.senders {
            let _ = t.join();
        }
        let sent = self.counts.udp_sent.load(Ordering::Relaxed);
        let start = Instant::now();
        while self.counts.udp_received.load(Ordering::Relaxed) < sent && start.elapsed() < IN_FLIGHT {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop_udp.store(true, Ordering::Relaxed);
        for t in self.receivers {
            let _ = t.join();
        }
        let c = &self.counts;
        Report {
            long_lived: self.long_lived,
            echo_rounds: c.rounds.load(Ordering::Relaxed),
            broken: std::mem::take(&mut *c.broken.lock().unwrap_or_else(|e| e.into_inner())),
            connects_ok: c.connects_ok.load(Ordering::Relaxed),
            connects_failed: std::mem::take(&mut *c.connects_failed.lock().unwrap_or_else(|e| e.into_inner())),
            udp_sent: sent,
            udp_received: c.udp_received.load(Ordering::Relaxed),
        }
    }
}

/// Sleeps until `deadline` (pacing, not synchronisation), then moves it on by `every`.
fn pace(deadline: &mut Instant, every: Duration) {
    *deadline += every;
    if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

fn echo_forever(mut sessions: Vec<TcpSession>, counts: &Counts, stop: &AtomicBool) {
    let mut next = Instant::now();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut broken = Vec::new();
        for (i, s) in sessions.iter_mut().enumerate() {
            let line = format!("connection {i} round {round}");
            match s.echo(&line) {
                Ok(echoed) if echoed == line => {}
                Ok(other) => broken.push((i, format!("round {round}: {} echoed {other:?}, not {line:?}", s.name()))),
                Err(e) => broken.push((i, format!("round {round}: {e:#}"))),
            }
        }
        for (i, why) in broken.into_iter().rev() {
            let s = sessions.remove(i);
            counts.broken.lock().unwrap_or_else(|e| e.into_inner()).push(format!("connection to {}: {why}", s.name()));
        }
        counts.rounds.fetch_add(1, Ordering::Relaxed);
        round += 1;
        pace(&mut next, ECHO_EVERY);
    }
}

fn connect_forever(ns: &str, to: SocketAddr, counts: &Counts, stop: &AtomicBool) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match connect_once(ns, to) {
            Ok(()) => {
                counts.connects_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => counts.connects_failed.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{e:#}")),
        }
        pace(&mut next, CONNECT_EVERY);
    }
}

/// One connection: greeted by a backend, one line echoed, closed cleanly.
fn connect_once(ns: &str, to: SocketAddr) -> Result<()> {
    let socket = {
        let _inside = enter_by_name(ns)?;
        socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?
    };
    socket.connect_timeout(&to.into(), IO).with_context(|| format!("connect to {to}"))?;
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(IO))?;
    stream.set_write_timeout(Some(IO))?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut greeting = String::new();
    std::io::BufRead::read_line(&mut reader, &mut greeting).with_context(|| format!("greeting from {to}"))?;
    if greeting.is_empty() {
        bail!("{to} closed before greeting");
    }
    std::io::Write::write_all(&mut &stream, b"ping\n")?;
    let mut echo = String::new();
    std::io::BufRead::read_line(&mut reader, &mut echo).with_context(|| format!("echo from {}", greeting.trim()))?;
    if echo.trim_end() != "ping" {
        bail!("{} echoed {echo:?}", greeting.trim());
    }
    Ok(())
}

fn udp_flow(client: &Netns, to: SocketAddr) -> Result<UdpSocket> {
    let socket = {
        let _inside = client.enter()?;
        let any: SocketAddr = if to.is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
        UdpSocket::bind(any)?
    };
    socket.connect(to)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(socket)
}

fn send_forever(flows: &[UdpSocket], counts: &Counts, stop: &AtomicBool) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for s in flows {
            // Counted even if refused (an earlier datagram drew an ICMP error): it is lost.
            let _ = s.send(b"which backend?\n");
            counts.udp_sent.fetch_add(1, Ordering::Relaxed);
        }
        pace(&mut next, DATAGRAM_EVERY);
    }
}

fn receive_forever(socket: &UdpSocket, counts: &Counts, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        // A timeout only lets the loop look at `stop`; an ICMP error (no listener) shows as a
        // refused receive and the datagram as lost.
        if socket.recv(&mut buf).is_ok() {
            counts.udp_received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The services steady traffic talks to, as the restart and upgrade tests run them: NAT `web`
/// (TCP 80) and `dns` (UDP 53) at `vip` over every backend of `topo` (port BACKEND_PORT), and
/// a session table small enough to load fast.
pub fn config(topo: &crate::topology::TwoArm, vip: std::net::IpAddr) -> String {
    let service = |name: &str, protocol, port| crate::lb_config::ServiceConfig {
        name: name.into(),
        vip,
        port,
        protocol,
        forwarding: "nat",
        backends: topo.backends().iter().map(|b| b.addr(false)).collect(),
        backend_port: BACKEND_PORT,
    };
    format!("[sessions]\ncapacity = 65536\n{}", crate::lb_config::render(&[service("web", "tcp", 80), service("dns", "udp", 53)]))
}
