//! Clients that run in the client namespace and learn which backend answered.
//!
//! Sockets are created while the thread is inside the namespace (`Netns::enter`) and then used
//! from anywhere: a socket keeps the namespace it was created in. Every call has a timeout, so
//! a dropped packet fails a test instead of hanging it.

use crate::netns::Netns;
use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// Connects to `addr:port` from `ns`, reads the first line (the backend's label), closes.
pub fn tcp_ask(ns: &Netns, addr: IpAddr, port: u16, timeout: Duration) -> Result<String> {
    Ok(TcpSession::connect(ns, addr, port, timeout)?.name)
}

/// `tcp_ask` from source address `src` (one of the namespace's addresses).
pub fn tcp_ask_from(ns: &Netns, src: IpAddr, addr: IpAddr, port: u16, timeout: Duration) -> Result<String> {
    Ok(TcpSession::connect_from(ns, Some(src), addr, port, timeout)?.name)
}

/// A long-lived TCP connection from the client namespace to a label-and-echo server.
#[derive(Debug)]
pub struct TcpSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    name: String,
    peer: SocketAddr,
}

impl TcpSession {
    /// Connects from `ns` and reads the greeting line; every later read/write times out after
    /// `timeout` too.
    pub fn connect(ns: &Netns, addr: IpAddr, port: u16, timeout: Duration) -> Result<TcpSession> {
        Self::connect_from(ns, None, addr, port, timeout)
    }

    /// `connect`, from source address `src` if given (else the one the route picks).
    pub fn connect_from(
        ns: &Netns,
        src: Option<IpAddr>,
        addr: IpAddr,
        port: u16,
        timeout: Duration,
    ) -> Result<TcpSession> {
        Self::connect_bound(ns, src.map(|s| SocketAddr::new(s, 0)), addr, port, timeout)
    }

    /// `connect`, from the local address and port `local` if given (port 0: any). A fixed port
    /// may be reused while an earlier connection from it is in TIME_WAIT (SO_REUSEADDR), as
    /// clients behind a shared address do.
    pub fn connect_bound(
        ns: &Netns,
        local: Option<SocketAddr>,
        addr: IpAddr,
        port: u16,
        timeout: Duration,
    ) -> Result<TcpSession> {
        let peer = SocketAddr::new(addr, port);
        let from = local.map_or_else(|| ns.name().to_string(), |s| format!("{s} in {}", ns.name()));
        let stream: TcpStream = {
            let _inside = ns.enter()?;
            let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
            if let Some(local) = local {
                socket.set_reuse_address(true)?;
                socket
                    .bind(&local.into())
                    .with_context(|| format!("binding to {local} in {}", ns.name()))?;
            }
            socket
                .connect_timeout(&peer.into(), timeout)
                .with_context(|| format!("TCP connect to {peer} from {from}"))?;
            socket.into()
        };
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut session = TcpSession {
            reader: BufReader::new(stream),
            writer,
            name: String::new(),
            peer,
        };
        session.name = session
            .read_line()
            .context("reading the backend's greeting")?;
        Ok(session)
    }

    /// The first line the server sent: the label of the backend serving this connection.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address this session dialled.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The client-side address (e.g. to predict the flow hash of this connection).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.writer.local_addr()?)
    }

    /// Sends `line` and returns the line that comes back (the server echoes), proving the
    /// connection still works end to end.
    pub fn echo(&mut self, line: &str) -> Result<String> {
        self.send(line)?;
        self.receive()
    }

    /// Sends `line` (the first half of `echo`, for clients that keep several requests in flight).
    pub fn send(&mut self, line: &str) -> Result<()> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("writing to {} (served by {})", self.peer, self.name))
    }

    /// Reads the next line the server sent (the second half of `echo`).
    pub fn receive(&mut self) -> Result<String> {
        self.read_line()
            .with_context(|| format!("reading echo from {} (served by {})", self.peer, self.name))
    }

    /// Ends the connection as a client does: FIN, then the server's FIN (end of stream) back.
    pub fn close(mut self) -> Result<()> {
        self.writer.shutdown(std::net::Shutdown::Write)?;
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .with_context(|| format!("waiting for {} (served by {}) to close", self.peer, self.name))?;
        Ok(())
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("connection to {} closed by peer", self.peer);
        }
        Ok(line.trim_end().to_owned())
    }
}

/// Sends one datagram from `ns` (from `src_port`; 0 = any) to `addr:port` and returns the
/// trimmed reply (the backend's label). The socket is connected, so a reply from any other
/// address than `addr` (a DSR backend answering from its own address) is not accepted.
pub fn udp_ask(
    ns: &Netns,
    addr: IpAddr,
    port: u16,
    src_port: u16,
    timeout: Duration,
) -> Result<String> {
    let peer = SocketAddr::new(addr, port);
    let local = match addr {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), src_port),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), src_port),
    };
    let socket = {
        let _inside = ns.enter()?;
        bind_udp(local).with_context(|| format!("UDP bind {local} in {}", ns.name()))?
    };
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(peer)?;
    socket
        .send(b"which backend?\n")
        .with_context(|| format!("UDP send to {peer}"))?;
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .with_context(|| format!("UDP reply from {peer} to {} within {timeout:?}", ns.name()))?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned())
}

/// Binds `local`, waiting up to a second while the port is in use: a socket this process just
/// closed can live on for a moment in a child that another test thread forked and that has not
/// yet exec'd (close-on-exec closes it only then), and a killed server's forked children may
/// still be on their way out.
pub fn bind_udp(local: SocketAddr) -> std::io::Result<UdpSocket> {
    for _ in 0..100 {
        match UdpSocket::bind(local) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => std::thread::sleep(Duration::from_millis(10)),
            other => return other,
        }
    }
    UdpSocket::bind(local)
}

/// An HTTP/1.1 answer as read off the wire.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// (lower-case name, value) in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`Connection: close`) from `ns` to `to`, read to the end. Checks the
/// framing a client relies on: a status line, and a body exactly as long as Content-Length.
pub fn http_request(ns: &Netns, to: SocketAddr, method: &str, path: &str, timeout: Duration) -> Result<HttpResponse> {
    http_exchange(ns, to, method, path, &[], "", timeout)
}

/// `http_request` with request headers (name, value) and a body (sent with its
/// Content-Length; none when empty), e.g. a POST of JSON with `Authorization: Bearer ...`.
pub fn http_exchange(
    ns: &Netns,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<HttpResponse> {
    let mut stream: TcpStream = {
        let _inside = ns.enter()?;
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        socket
            .connect_timeout(&to.into(), timeout)
            .with_context(|| format!("HTTP connect to {to} from {}", ns.name()))?;
        socket.into()
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {to}\r\nUser-Agent: lb-tests\r\nConnection: close\r\n");
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    if !body.is_empty() {
        request += &format!("Content-Length: {}\r\n", body.len());
    }
    request += "\r\n";
    request += body;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).with_context(|| format!("reading the answer to {method} {path} from {to}"))?;
    let raw = String::from_utf8(raw).context("HTTP answer is not UTF-8")?;
    let (head, body) = raw.split_once("\r\n\r\n").with_context(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        ["HTTP/1.1", code, ..] => code.parse().with_context(|| format!("status line {status_line:?}"))?,
        _ => bail!("not an HTTP/1.1 status line: {status_line:?}"),
    };
    let headers: Vec<(String, String)> = lines
        .map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect::<Option<_>>()
        .with_context(|| format!("malformed header in {head:?}"))?;
    let response = HttpResponse { status, headers, body: body.to_string() };
    if method != "HEAD" {
        let length: usize = response.header("content-length").context("no Content-Length")?.parse()?;
        if length != response.body.len() {
            bail!("Content-Length {length} but a body of {} bytes", response.body.len());
        }
    }
    Ok(response)
}
