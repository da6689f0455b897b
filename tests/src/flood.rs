//! A spoofed TCP SYN flood, sent as raw Ethernet frames on an AF_PACKET socket inside a test
//! namespace: every frame a SYN from a random address of a prefix no host has, from a random
//! port, to one of the targets (round robin). What an attacker costs a balancer: a session
//! table's worth of new flows many times over, none of which ever completes its handshake.
//!
//! The flood is bounded: it stops after `total` frames, at `max_duration`, or when stopped, and
//! it never sends faster than `rate` frames per second. Replies to the spoofed sources go
//! nowhere (no host has them; in the test beds the lb has no route for them). The socket
//! belongs to the namespace it was created in, so the frames never leave the test's namespaces.
//!
//! ```no_run
//! use lb_tests::{flood::{FloodSpec, SynFlood}, topology::TwoArm};
//! use std::time::Duration;
//! let topo = TwoArm::new(1)?;
//! let spec = FloodSpec {
//!     src_mac: topo.client().mac(),
//!     dst_mac: topo.lb_arm0().mac(),
//!     sources: ("10.201.0.0".parse()?, 16),
//!     targets: vec!["10.200.100.1:80".parse()?],
//!     rate: 50_000,
//!     total: 100_000,
//!     max_duration: Duration::from_secs(10),
//!     acks_per_hundred: 0,
//! };
//! let flood = SynFlood::start(topo.client().ns(), topo.client().dev(), spec)?;
//! let report = flood.finish()?;
//! assert_eq!(report.sent, 100_000);
//! # anyhow::Ok(())
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use etherparse::PacketBuilder;

use crate::netns::Netns;

/// Frames handed to the kernel per sendmmsg call.
const BATCH: usize = 16;

/// What to send, how fast, and how much.
#[derive(Debug, Clone)]
pub struct FloodSpec {
    /// Ethernet source (the sending host's own) and destination (the balancer's interface).
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Spoofed source addresses are drawn at random from this prefix (address, length 8..=32).
    pub sources: (Ipv4Addr, u8),
    /// SYNs go to these endpoints in turn (one VIP:port per service to flood).
    pub targets: Vec<SocketAddrV4>,
    /// Frames per second at most.
    pub rate: u32,
    /// Frames to send in all.
    pub total: u64,
    /// The flood stops at this age even if `total` is not reached.
    pub max_duration: Duration,
    /// Of every hundred frames, this many are ACKs of no connection (a spoofed ACK flood: each
    /// is the first packet of a flow the balancer has not seen), the rest SYNs.
    pub acks_per_hundred: u8,
}

/// Why the flood ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodEnd {
    /// All `total` frames were sent.
    Done,
    /// `max_duration` passed first.
    OutOfTime,
    /// `SynFlood::stop` (or Drop) ended it.
    Stopped,
}

/// What a flood did.
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// Frames the kernel accepted on the socket.
    pub sent: u64,
    /// Frames the kernel refused (sendmmsg errors such as ENOBUFS); not retried.
    pub refused: u64,
    pub elapsed: Duration,
    pub end: FloodEnd,
}

impl FloodReport {
    /// Frames per second achieved.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A flood running on its own thread. Drop stops it and waits for the thread.
#[derive(Debug)]
pub struct SynFlood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    total: u64,
    thread: Option<JoinHandle<Result<FloodReport>>>,
}

impl SynFlood {
    /// Opens an AF_PACKET socket on `dev` in `ns` and starts sending `spec`'s frames.
    pub fn start(ns: &Netns, dev: &str, spec: FloodSpec) -> Result<SynFlood> {
        ensure!(!spec.targets.is_empty(), "a flood needs a target");
        ensure!((8..=32).contains(&spec.sources.1), "source prefix /{} out of 8..=32", spec.sources.1);
        ensure!(spec.rate > 0, "a flood needs a rate");
        let ifindex = ns.ifindex(dev)?;
        let socket = {
            let _inside = ns.enter()?;
            packet_socket(ifindex).with_context(|| format!("AF_PACKET socket on {dev} in {}", ns.name()))?
        };
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop_t, sent_t) = (stop.clone(), sent.clone());
        let total = spec.total;
        let thread = std::thread::Builder::new()
            .name("syn-flood".into())
            .spawn(move || send_flood(&socket, &spec, &stop_t, &sent_t))?;
        Ok(SynFlood { stop, sent, total, thread: Some(thread) })
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// True while the sending thread runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits until at least `n` frames are sent; fails if the flood ends first or `timeout`
    /// passes.
    pub fn wait_sent(&self, n: u64, timeout: Duration) -> Result<()> {
        ensure!(n <= self.total, "waiting for {n} frames of a flood of {}", self.total);
        let start = Instant::now();
        while self.sent() < n {
            if !self.is_running() && self.sent() < n {
                bail!("the flood ended after {} frames, before {n}", self.sent());
            }
            if start.elapsed() > timeout {
                bail!("the flood sent only {} of {n} frames in {timeout:?}", self.sent());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Waits for the flood to end by itself (count or time) and returns what it did.
    pub fn finish(mut self) -> Result<FloodReport> {
        self.join()
    }

    /// Stops the flood now and returns what it did.
    pub fn stop(mut self) -> Result<FloodReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    fn join(&mut self) -> Result<FloodReport> {
        let thread = self.thread.take().context("the flood was already joined")?;
        match thread.join() {
            Ok(report) => report,
            Err(_) => bail!("the flood's thread panicked"),
        }
    }
}

impl Drop for SynFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An AF_PACKET raw socket bound to `ifindex` for sending only (protocol 0: it receives
/// nothing), in the calling thread's namespace.
fn packet_socket(ifindex: u32) -> Result<OwnedFd> {
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket(AF_PACKET): {}", std::io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
        bail!("bind(AF_PACKET, ifindex {ifindex}): {}", std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// xorshift64*: plenty for spoofed addresses and ports, and no dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Rng((t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// One spoofed SYN (or, `acks_per_hundred` times in a hundred, ACK) frame, checksums valid (a
/// backend's kernel answers it like any SYN, or with a RST).
fn syn_frame(spec: &FloodSpec, target: SocketAddrV4, rng: &mut Rng, out: &mut Vec<u8>) -> Result<()> {
    let (net, len) = spec.sources;
    let host_bits = 32 - u32::from(len);
    let host_mask = if host_bits == 32 { u32::MAX } else { (1u32 << host_bits) - 1 };
    let r = rng.next();
    let src = (u32::from(net) & !host_mask) | (r as u32 & host_mask);
    let port = 1024 + ((r >> 32) as u16 % (65535 - 1024));
    let seq = (r >> 16) as u32;
    out.clear();
    let tcp = PacketBuilder::ethernet2(spec.src_mac, spec.dst_mac)
        .ipv4(src.to_be_bytes(), target.ip().octets(), 64)
        .tcp(port, target.port(), seq, 64240);
    let ack = rng.next() % 100 < u64::from(spec.acks_per_hundred);
    let tcp = if ack { tcp.ack(seq ^ 0x5555) } else { tcp.syn() };
    tcp.write(out, &[]).context("building a flood frame")?;
    Ok(())
}

/// The sending loop: batches of BATCH frames through sendmmsg, paced to `spec.rate`.
fn send_flood(socket: &OwnedFd, spec: &FloodSpec, stop: &AtomicBool, sent: &AtomicU64) -> Result<FloodReport> {
    let mut rng = Rng::seeded();
    let mut frames: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(64)).collect();
    let mut iov: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let start = Instant::now();
    // `tried` paces the flood (a refused frame took its slot in time too); `done` counts to total.
    let (mut done, mut tried, mut refused, mut next_target) = (0u64, 0u64, 0u64, 0usize);
    let end = loop {
        if done >= spec.total {
            break FloodEnd::Done;
        }
        if stop.load(Ordering::Relaxed) {
            break FloodEnd::Stopped;
        }
        let elapsed = start.elapsed();
        if elapsed >= spec.max_duration {
            break FloodEnd::OutOfTime;
        }
        // Pacing (traffic shape, not synchronisation): no frame before its time at `rate`.
        let due = (elapsed.as_secs_f64() * f64::from(spec.rate)) as u64;
        if due <= tried {
            let ahead = (tried + 1 - due) as f64 / f64::from(spec.rate);
            std::thread::sleep(Duration::from_secs_f64(ahead.min(0.005)));
            continue;
        }
        let n = (due - tried).min(spec.total - done).min(BATCH as u64) as usize;
        for (i, frame) in frames.iter_mut().take(n).enumerate() {
            let target = spec.targets[next_target % spec.targets.len()];
            next_target += 1;
            syn_frame(spec, target, &mut rng, frame)?;
            iov[i] = libc::iovec { iov_base: frame.as_mut_ptr().cast(), iov_len: frame.len() };
            msgs[i] = unsafe { std::mem::zeroed() };
            msgs[i].msg_hdr.msg_iov = &raw mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        let accepted = if r < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // The device's queue is full: count the frame as refused and go on.
                Some(libc::ENOBUFS | libc::EAGAIN) => 0,
                _ => return Err(e).context("sendmmsg on the flood's AF_PACKET socket"),
            }
        } else {
            r as u64
        };
        // A short send stops at the first frame the kernel refused: that one is skipped (the
        // frames after it were not tried; the next batch draws new ones).
        let skipped = u64::from(accepted < n as u64);
        refused += skipped;
        tried += accepted + skipped;
        done += accepted;
        sent.store(done, Ordering::Relaxed);
    };
    Ok(FloodReport { sent: done, refused, elapsed: start.elapsed(), end })
}
