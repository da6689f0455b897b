//! One probe of one backend: TCP connect, or an HTTP/1.0 GET whose status must be 2xx or 3xx.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{HealthConfig, HealthKind};

/// Longest status line we wait for; a real one is ~20 bytes.
const MAX_STATUS_LINE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub ok: bool,
    pub latency: Duration,
    /// Why it failed, naming the target: "connect to 10.0.1.11:8080: Connection refused".
    pub error: Option<String>,
}

/// Where to probe a backend whose traffic goes to `backend`: the health port if one is
/// configured, else the backend's own port.
pub fn check_target(backend: SocketAddr, cfg: &HealthConfig) -> SocketAddr {
    SocketAddr::new(backend.ip(), cfg.port.unwrap_or(backend.port()))
}

/// Probes `target` once. The whole probe (connect, and for HTTP the request and the status
/// line) must finish within `cfg.timeout`, so a probe never outlives its interval.
pub async fn check_once(target: SocketAddr, cfg: &HealthConfig) -> CheckResult {
    // tokio's clock, which tests can pause: their timeouts then fire only when nothing else can run.
    let start = tokio::time::Instant::now();
    let probe = async {
        match cfg.kind {
            HealthKind::Tcp => connect(target).await.map(drop),
            HealthKind::Http => http(target, cfg.path.as_deref().unwrap_or("/")).await,
        }
    };
    let error = match tokio::time::timeout(cfg.timeout, probe).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!(
            "{} {target}: no answer within {} ms",
            cfg.kind.as_str(),
            cfg.timeout.as_millis()
        )),
    };
    CheckResult {
        ok: error.is_none(),
        latency: start.elapsed(),
        error,
    }
}

async fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect to {target}: {e}"))
}

async fn http(target: SocketAddr, path: &str) -> Result<(), String> {
    let mut stream = connect(target).await?;
    // Brackets make an IPv6 literal a valid Host value.
    let host = match target {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lb-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("http {target}{path}: sending the request: {e}"))?;
    let line = read_status_line(&mut stream)
        .await
        .map_err(|e| format!("http {target}{path}: {e}"))?;
    match status_code(&line) {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!("http {target}{path}: status {code}")),
        None => Err(format!(
            "http {target}{path}: not an HTTP status line: {line:?}"
        )),
    }
}

async fn read_status_line(stream: &mut TcpStream) -> Result<String, String> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            break;
        }
        if buf.len() >= MAX_STATUS_LINE {
            break;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            if buf.is_empty() {
                return Err("connection closed without an answer".into());
            }
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.truncate(MAX_STATUS_LINE);
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

/// `HTTP/1.1 503 Service Unavailable` -> Some(503).
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn cfg(kind: HealthKind, timeout_ms: u64) -> HealthConfig {
        HealthConfig {
            kind,
            path: (kind == HealthKind::Http).then(|| "/healthz".to_string()),
            timeout: Duration::from_millis(timeout_ms),
            interval: Duration::from_millis(timeout_ms * 2),
            ..HealthConfig::default()
        }
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = l.local_addr().expect("local addr");
        (l, addr)
    }

    /// An HTTP server for one request: answers `reply` (None: never answers, keeps the
    /// connection open) and hands back the request it read.
    async fn http_server(
        reply: Option<&'static str>,
    ) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let (l, addr) = listener().await;
        let task = tokio::spawn(async move {
            let Ok((mut s, _)) = l.accept().await else {
                return String::new();
            };
            let mut req = Vec::new();
            let mut chunk = [0u8; 512];
            while !req.ends_with(b"\r\n\r\n") {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&chunk[..n]),
                }
            }
            match reply {
                Some(r) => {
                    let _ = s.write_all(r.as_bytes()).await;
                }
                None => tokio::time::sleep(Duration::from_secs(10)).await,
            }
            String::from_utf8_lossy(&req).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn tcp_ok_when_listening() {
        let (_l, addr) = listener().await;
        let r = check_once(addr, &cfg(HealthKind::Tcp, 1000)).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.error, None);
    }

    /// On paused time the timeout can fire only once nothing else can run: a check that ends
    /// before it (no time passed) ended by the refusal.
    #[tokio::test(start_paused = true)]
    async fn tcp_fails_fast_on_a_closed_port() {
        let (l, addr) = listener().await;
        drop(l);
        let r = check_once(addr, &cfg(HealthKind::Tcp, 2000)).await;
        assert!(!r.ok);
        assert_eq!(r.latency, Duration::ZERO, "the refusal waited for a timer");
        let e = r.error.expect("error");
        assert!(e.contains(&addr.to_string()) && e.contains("refused"), "{e}");
    }

    #[tokio::test]
    async fn http_200_is_ok_and_the_request_is_well_formed() {
        let (addr, server) =
            http_server(Some("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")).await;
        let r = check_once(addr, &cfg(HealthKind::Http, 1000)).await;
        assert!(r.ok, "{r:?}");
        let request = server.await.expect("server task");
        assert_eq!(
            request,
            "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: lb-health\r\nConnection: close\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn http_3xx_is_ok() {
        let (addr, _server) = http_server(Some("HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n")).await;
        assert!(check_once(addr, &cfg(HealthKind::Http, 1000)).await.ok);
    }

    #[tokio::test]
    async fn http_503_fails_and_says_so() {
        let (addr, _server) = http_server(Some("HTTP/1.1 503 Service Unavailable\r\n\r\n")).await;
        let r = check_once(addr, &cfg(HealthKind::Http, 1000)).await;
        assert!(!r.ok);
        let e = r.error.expect("error");
        assert!(e.contains("status 503") && e.contains("/healthz"), "{e}");
    }

    #[tokio::test]
    async fn http_garbage_fails() {
        let (addr, _server) = http_server(Some("hello\r\n")).await;
        let r = check_once(addr, &cfg(HealthKind::Http, 1000)).await;
        assert!(!r.ok);
        assert!(r.error.expect("error").contains("not an HTTP status line"));
    }

    /// Paused time: the probe's clock moves only to the next timer, so it gives up exactly
    /// at its timeout (to tokio's 1 ms timer resolution), however loaded the machine is.
    #[tokio::test(start_paused = true)]
    async fn http_silence_fails_after_the_timeout() {
        let (addr, _server) = http_server(None).await;
        let r = check_once(addr, &cfg(HealthKind::Http, 200)).await;
        assert!(!r.ok);
        assert!(
            (Duration::from_millis(200)..=Duration::from_millis(201)).contains(&r.latency),
            "gave up at {:?}, not at the 200 ms timeout",
            r.latency
        );
        assert!(r.error.expect("error").contains("no answer within 200 ms"));
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_code("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(status_code("HTTP/1.0 404"), Some(404));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code("HTTP/1.1 2000 x"), None);
    }

    #[test]
    fn target_uses_the_health_port() {
        let backend: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let mut c = cfg(HealthKind::Tcp, 100);
        assert_eq!(check_target(backend, &c), backend);
        c.port = Some(9000);
        assert_eq!(check_target(backend, &c).port(), 9000);
    }
}
