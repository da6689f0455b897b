//! A UDP server in a backend namespace that answers every datagram with the backend's label.
//!
//! Not socat: socat's UDP-RECVFROM replies from whatever source address the route picks, but a
//! DSR backend must answer from the address the client dialled (the VIP on `lo`), or the
//! client's connected socket drops the reply. So this is two small threads (one IPv4 socket,
//! one IPv6-only socket, both on the wildcard address) that read the datagram's destination
//! with IP_PKTINFO / IPV6_RECVPKTINFO and send the answer from exactly that address.

use super::ready::{Proto, wait_listening};
use crate::netns::{Netns, enter_by_name};
use anyhow::{Context, Result, bail};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// How often a server thread checks whether it should stop.
const POLL_MS: i32 = 50;

#[derive(Debug)]
pub struct UdpServer {
    ns: String,
    label: String,
    port: u16,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpServer {
    /// Binds both families on `port` in `ns` and starts answering `label`.
    pub fn start(ns: &Netns, label: &str, port: u16) -> Result<UdpServer> {
        let mut server = UdpServer {
            ns: ns.name().to_owned(),
            label: label.to_owned(),
            port,
            running: None,
        };
        server.restart()?;
        Ok(server)
    }

    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes both sockets: from now on datagrams to the port get ICMP port unreachable,
    /// as from a backend whose server process died.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(running) = self.running.take() {
            running.stop.store(true, Ordering::Relaxed);
            for t in running.threads {
                t.join()
                    .map_err(|_| anyhow::anyhow!("UDP server thread of {} panicked", self.label))?;
            }
        }
        Ok(())
    }

    /// (Re)binds the sockets and starts answering again.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        let sockets = {
            // Sockets keep the namespace they were created in; the threads can run anywhere.
            let _inside = enter_by_name(&self.ns)?;
            [bind(false, self.port)?, bind(true, self.port)?]
        };
        let stop = Arc::new(AtomicBool::new(false));
        let reply: Arc<[u8]> = format!("{}\n", self.label).into_bytes().into();
        let threads = sockets
            .into_iter()
            .map(|fd| {
                let (stop, reply) = (Arc::clone(&stop), Arc::clone(&reply));
                std::thread::spawn(move || serve(fd, &reply, &stop))
            })
            .collect();
        self.running = Some(Running { stop, threads });
        let ns = self.ns.clone();
        wait_listening(&ns, Proto::Udp, self.port, || {
            "sockets bound but not visible".into()
        })
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A wildcard UDP socket on `port` that reports each datagram's destination address.
fn bind(v6: bool, port: u16) -> Result<OwnedFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let raw = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        bail!("socket(UDP, v6={v6}): {}", io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    let set = |level, name| -> Result<()> {
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if rc != 0 {
            bail!(
                "setsockopt({level}, {name}): {}",
                io::Error::last_os_error()
            );
        }
        Ok(())
    };
    let rc = if v6 {
        // v6-only, so the v4 socket can own the same port for IPv4.
        set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
        set(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
        let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
        sa.sin6_family = libc::AF_INET6 as u16;
        sa.sin6_port = port.to_be();
        unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_in6).cast(),
                size_of::<libc::sockaddr_in6>() as u32,
            )
        }
    } else {
        set(libc::IPPROTO_IP, libc::IP_PKTINFO)?;
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_port = port.to_be();
        unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        }
    };
    if rc != 0 {
        bail!(
            "bind UDP port {port} (v6={v6}): {}",
            io::Error::last_os_error()
        );
    }
    Ok(fd)
}

/// Answers every datagram on `fd` with `reply`, from the address it was sent to, until `stop`.
fn serve(fd: OwnedFd, reply: &[u8], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        if unsafe { libc::poll(&mut pfd, 1, POLL_MS) } <= 0 {
            continue;
        }
        if let Err(e) = answer_one(&fd, reply) {
            // A test reads a missing answer as a failure; say why on stderr.
            eprintln!("lb-tests UDP server: {e:#}");
        }
    }
}

/// Control-message buffer, aligned for cmsghdr and large enough for either pktinfo.
#[repr(C, align(8))]
struct Cmsg([u8; 64]);

/// Receives one datagram and sends `reply` back with the received destination as source.
fn answer_one(fd: &OwnedFd, reply: &[u8]) -> Result<()> {
    let mut buf = [0u8; 2048];
    let mut peer: libc::sockaddr_storage = unsafe { zeroed() };
    let mut cmsg = Cmsg([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut peer as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.0.len();
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // Another wake-up took it, or an ICMP error from an earlier reply was queued.
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
        ) {
            return Ok(());
        }
        return Err(e).context("recvmsg");
    }

    // Keep only the pktinfo control message, rewritten to say "send from this address".
    let mut out_cmsg = Cmsg([0; 64]);
    let mut out_len = 0;
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            let len = (*c).cmsg_len;
            if (level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO)
            {
                std::ptr::copy_nonoverlapping(c.cast::<u8>(), out_cmsg.0.as_mut_ptr(), len);
                out_len = libc::CMSG_SPACE((len - libc::CMSG_LEN(0) as usize) as u32) as usize;
                if level == libc::IPPROTO_IP {
                    let info =
                        libc::CMSG_DATA(out_cmsg.0.as_mut_ptr().cast()).cast::<libc::in_pktinfo>();
                    // Source = the header's destination; let routing choose the interface.
                    (*info).ipi_spec_dst = (*info).ipi_addr;
                    (*info).ipi_ifindex = 0;
                } else {
                    // in6_pktinfo already holds the destination; only drop the interface.
                    let info =
                        libc::CMSG_DATA(out_cmsg.0.as_mut_ptr().cast()).cast::<libc::in6_pktinfo>();
                    (*info).ipi6_ifindex = 0;
                }
                break;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }

    let mut out_iov = libc::iovec {
        iov_base: reply.as_ptr() as *mut _,
        iov_len: reply.len(),
    };
    let mut out: libc::msghdr = unsafe { zeroed() };
    out.msg_name = (&mut peer as *mut libc::sockaddr_storage).cast();
    out.msg_namelen = msg.msg_namelen;
    out.msg_iov = &mut out_iov;
    out.msg_iovlen = 1;
    if out_len > 0 {
        out.msg_control = out_cmsg.0.as_mut_ptr().cast();
        out.msg_controllen = out_len;
    }
    if unsafe { libc::sendmsg(fd.as_raw_fd(), &out, 0) } < 0 {
        return Err(io::Error::last_os_error()).context("sendmsg reply");
    }
    Ok(())
}
