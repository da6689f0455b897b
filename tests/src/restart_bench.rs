//! What a restart of the control plane costs under a UDP flood: the real `lb run` (NAT,
//! two-arm, native XDP on veth) restarted with SIGTERM + start `RESTARTS` times while a client
//! sends `RATE` datagrams/s (paced, over a few flows) to a UDP service whose backends count
//! what they receive. For each restart: the time from spawning the new lb to its "adopted the
//! running data plane" line (pins adopted, program on every link) and to its first `lb status`
//! answer (ready). At the end the flood stops, what is in flight is let through, and the
//! datagrams sent are compared with those the backends received. `lb-bench` prints the result.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::Receiver,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use crate::{
    balancing::HEALTH_WAIT,
    daemon::LbDaemon,
    mount_ns::MountNs,
    netns::Netns,
    servers::TcpServer,
    topology::TwoArm,
};

pub const RESTARTS: usize = 10;
/// Datagrams per second the client sends.
pub const RATE: u64 = 30_000;
/// Sent per pacing tick (every `BATCH * 1 s / RATE`).
const BATCH: u64 = 30;
const FLOWS: usize = 4;
const BACKENDS: usize = 2;
const VIP: &str = "10.200.100.1";
const PORT: u16 = 5353;
const BACKEND_PORT: u16 = 9053;
/// Health checks (TCP) go here; the UDP datagrams to `BACKEND_PORT`.
const HEALTH_PORT: u16 = 8080;
/// The flood before the first restart and after the last.
const STEADY: Duration = Duration::from_secs(1);
/// Longest a start may take to adopt and answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The sender stops by itself after this, whatever happens to the bench.
const SEND_AT_MOST: Duration = Duration::from_secs(90);
/// How long the last datagrams may still be in flight once sending stopped.
const IN_FLIGHT: Duration = Duration::from_secs(2);

/// One restart: from spawning `lb run` to its adoption line, and to its first status answer.
#[derive(Debug, Clone)]
pub struct Restart {
    pub adopted: Duration,
    pub ready: Duration,
}

#[derive(Debug)]
pub struct RestartRun {
    pub restarts: Vec<Restart>,
    pub sent: u64,
    /// Sends the client's kernel refused (never on the wire; not counted in `sent`).
    pub send_errors: u64,
    pub received: u64,
    /// Datagrams the backends' kernels dropped for a full socket buffer (UDP RcvbufErrors).
    pub backend_buffer_drops: u64,
    pub elapsed: Duration,
}

fn config(topo: &TwoArm) -> String {
    let mut c = format!(
        "[[service]]\nname = \"flood\"\nvip = \"{VIP}\"\nport = {PORT}\nprotocol = \"udp\"\nforwarding = \"nat\"\n\
         [service.health]\nkind = \"tcp\"\nport = {HEALTH_PORT}\ninterval_ms = 200\ntimeout_ms = 100\nrise = 1\nfall = 3\n"
    );
    for b in topo.backends() {
        c.push_str(&format!("[[service.backend]]\naddress = \"{}\"\nport = {BACKEND_PORT}\n", b.addr(false)));
    }
    c
}

/// Threads that stop (and are joined) when this is dropped, also on an early return.
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    fn new() -> Threads {
        Threads { stop: Arc::new(AtomicBool::new(false)), handles: Vec::new() }
    }
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A UDP socket bound in `ns` on `port` that counts every datagram it receives.
fn counter(ns: &Netns, port: u16, count: Arc<AtomicU64>, threads: &mut Threads) -> Result<()> {
    let socket = {
        let _inside = ns.enter()?;
        UdpSocket::bind(("0.0.0.0", port))?
    };
    // Room for bursts while this thread is not scheduled (root may exceed rmem_max).
    let size: libc::c_int = 16 << 20;
    // SAFETY: setsockopt on our own socket with a pointer to an int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ensure!(rc == 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let stop = threads.stop.clone();
    threads.handles.push(std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            if socket.recv(&mut buf).is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }));
    Ok(())
}

/// UDP RcvbufErrors in `ns` (/proc/net/snmp as seen from inside it).
fn rcvbuf_errors(ns: &Netns) -> Result<u64> {
    let snmp = ns.exec(&["cat", "/proc/net/snmp"])?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().context("no Udp: in /proc/net/snmp")?, udp.next().context("no Udp: values")?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors").context("no RcvbufErrors")?;
    Ok(values.split_whitespace().nth(at).context("short Udp: line")?.parse()?)
}

/// The flood: `FLOWS` connected sockets in `client`, `BATCH` datagrams per tick, paced to
/// `RATE`, until stopped (or `SEND_AT_MOST`).
fn flood(client: &Netns, to: SocketAddr, sent: Arc<AtomicU64>, errors: Arc<AtomicU64>, threads: &mut Threads) -> Result<()> {
    let sockets = (0..FLOWS)
        .map(|_| -> Result<UdpSocket> {
            let s = {
                let _inside = client.enter()?;
                UdpSocket::bind("0.0.0.0:0")?
            };
            s.connect(to)?;
            Ok(s)
        })
        .collect::<Result<Vec<_>>>()?;
    let stop = threads.stop.clone();
    threads.handles.push(std::thread::spawn(move || {
        let tick = Duration::from_nanos(1_000_000_000 * BATCH / RATE);
        let start = Instant::now();
        let mut next = start;
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) && start.elapsed() < SEND_AT_MOST {
            for _ in 0..BATCH {
                match sockets[i % FLOWS].send(b"flood") {
                    Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
            // Pacing, not synchronisation: behind schedule, it sends at once.
            next += tick;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }));
    Ok(())
}

/// Waits for `lb`'s adoption line on `lines`: when it came, after `spawned`.
fn adoption_line(lines: &Receiver<String>, lb: &LbDaemon, spawned: Instant) -> Result<Duration> {
    let deadline = spawned + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("adopted the running data plane") => return Ok(spawned.elapsed()),
            Ok(_) => {}
            Err(_) => bail!("no adoption line within {START_TIMEOUT:?}: {}", lb.process.stderr_tail()),
        }
    }
}

/// Runs the bench: `RESTARTS` restarts under the flood.
pub fn run() -> Result<RestartRun> {
    let topo = TwoArm::new(BACKENDS)?;
    let _health = topo.backends().iter().map(|b| TcpServer::start(b.ns(), b.label(), HEALTH_PORT)).collect::<Result<Vec<_>>>()?;
    let received = Arc::new(AtomicU64::new(0));
    let mut counters = Threads::new();
    for b in topo.backends() {
        counter(b.ns(), BACKEND_PORT, received.clone(), &mut counters)?;
    }
    let drops_before: u64 = topo.backends().iter().map(|b| rcvbuf_errors(b.ns())).sum::<Result<u64>>()?;
    let lb_ns = topo.lb().ns();
    let mounts = MountNs::new(lb_ns)?;
    let arms = [topo.lb_arm0().name(), topo.lb_arm1().name()];
    let mut lb = LbDaemon::start_in(&mounts, lb_ns, &config(&topo), &arms, &[])?;
    lb.wait_in_service("flood", BACKENDS as u64, HEALTH_WAIT)?;

    let (sent, send_errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut sender = Threads::new();
    let vip: IpAddr = VIP.parse()?;
    let began = Instant::now();
    flood(topo.client().ns(), SocketAddr::new(vip, PORT), sent.clone(), send_errors.clone(), &mut sender)?;
    // The flood's own duration before the first restart (the scenario, not a synchronisation).
    std::thread::sleep(STEADY);
    ensure!(received.load(Ordering::Relaxed) > 0, "no datagram reached a backend before the restarts");
    let mut restarts = Vec::new();
    for i in 0..RESTARTS {
        lb.stop().with_context(|| format!("restart {i}"))?;
        let spawned = Instant::now();
        lb = lb.start_again(&mounts, lb_ns, &[])?;
        let lines = lb.process.stderr_lines();
        let adopted = adoption_line(&lines, &lb, spawned).with_context(|| format!("restart {i}"))?;
        lb.wait_for("lb status to answer", START_TIMEOUT, |s| s["pin_dir"].is_string()).with_context(|| format!("restart {i}"))?;
        restarts.push(Restart { adopted, ready: spawned.elapsed() });
    }
    std::thread::sleep(STEADY);
    sender.stop();
    let elapsed = began.elapsed();
    let sent = sent.load(Ordering::Relaxed);
    // What is in flight arrives; then the count stands.
    let stopped = Instant::now();
    while received.load(Ordering::Relaxed) < sent && stopped.elapsed() < IN_FLIGHT {
        std::thread::sleep(Duration::from_millis(10));
    }
    counters.stop();
    let drops_after: u64 = topo.backends().iter().map(|b| rcvbuf_errors(b.ns())).sum::<Result<u64>>()?;
    lb.stop()?;
    lb.detach(&mounts)?;
    Ok(RestartRun {
        restarts,
        sent,
        send_errors: send_errors.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
        backend_buffer_drops: drops_after - drops_before,
        elapsed,
    })
}

/// Prints adoption times (median, worst) and the datagrams lost.
pub fn print(run: &RestartRun) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let sorted = |f: fn(&Restart) -> Duration| {
        let mut xs: Vec<f64> = run.restarts.iter().map(|r| ms(f(r))).collect();
        xs.sort_by(f64::total_cmp);
        xs
    };
    let (adopted, ready) = (sorted(|r| r.adopted), sorted(|r| r.ready));
    let median = |xs: &[f64]| xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN);
    let worst = |xs: &[f64]| xs.last().copied().unwrap_or(f64::NAN);
    let lost = run.sent.saturating_sub(run.received);
    let rate = run.sent as f64 / run.elapsed.as_secs_f64();
    println!(
        "restarts under a UDP flood ({} SIGTERM + `lb run`, NAT, {rate:.0} datagrams/s asked {RATE}): `lb run` to adoption \
         complete {:.0} ms median, {:.0} ms worst; to its first `lb status` answer {:.0} ms median, {:.0} ms worst; \
         datagrams {} sent, {} received, {lost} lost (goal 0: {}){}{}",
        run.restarts.len(),
        median(&adopted),
        worst(&adopted),
        median(&ready),
        worst(&ready),
        run.sent,
        run.received,
        if lost == 0 { "met" } else { "MISSED" },
        if run.backend_buffer_drops > 0 { format!("; {} of them dropped by the backends' full socket buffers", run.backend_buffer_drops) } else { String::new() },
        if run.send_errors > 0 { format!("; {} sends refused by the client's kernel (not counted as sent)", run.send_errors) } else { String::new() },
    );
}
