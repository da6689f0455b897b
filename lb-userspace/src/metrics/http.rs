//! `lb run --metrics-listen ADDR:PORT`: HTTP/1.1 (hyper) serving GET/HEAD /metrics, 404 for
//! any other path, 405 for other methods. Off unless asked for; there is no authentication,
//! so give it a management or loopback address.
//!
//! Connections are handled on their own tasks, so a slow client never stalls the daemon: each
//! scrape only asks the daemon's loop for the text (`ScrapeRequest`) and waits for the answer.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
    time::timeout,
};

use super::CONTENT_TYPE;

/// The daemon answers one of these with the rendered exposition.
pub type ScrapeRequest = oneshot::Sender<String>;

/// Open connections beyond this wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (keep-alive included) is closed after this; scrapers reconnect.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Longest a scrape waits for the daemon's loop (busy with a reload, say).
const RENDER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the listener (before anything touches the kernel, so a taken port fails the start).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!(
            "cannot listen for metrics on {addr}: give --metrics-listen an address of this host \
             and a free port (e.g. 127.0.0.1:9100), or leave it out"
        )
    })?;
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener)?)
}

/// Serves scrapes until the returned task is aborted; `scrapes` reaches the daemon.
pub fn spawn(listener: TcpListener, scrapes: mpsc::Sender<ScrapeRequest>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of fds, say: do not spin.
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req| answer(req, scrapes.clone()));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                // Past its lifetime the connection is just dropped (closed).
                if let Ok(Err(e)) = timeout(CONNECTION_LIFETIME, conn).await {
                    tracing::debug!(%peer, "metrics connection: {e}");
                }
            });
        }
    })
}

async fn answer(req: Request<Incoming>, scrapes: mpsc::Sender<ScrapeRequest>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(text(StatusCode::NOT_FOUND, "not found: lb serves its metrics at /metrics\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET or HEAD for /metrics\n");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let (reply, rendered) = oneshot::channel();
    if scrapes.send(reply).await.is_err() {
        return Ok(text(StatusCode::SERVICE_UNAVAILABLE, "lb is shutting down\n"));
    }
    Ok(match timeout(RENDER_TIMEOUT, rendered).await {
        Ok(Ok(body)) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(CONTENT_TYPE));
            r
        }
        Ok(Err(_)) => text(StatusCode::SERVICE_UNAVAILABLE, "lb is shutting down\n"),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "lb did not render its metrics in time; try again\n"),
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;

    /// A listener on 127.0.0.1 whose "daemon" answers every scrape with `body`, counting them.
    async fn serve(body: &'static str) -> (SocketAddr, JoinHandle<()>, JoinHandle<usize>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel::<ScrapeRequest>(8);
        let server = spawn(listener, tx);
        let daemon = tokio::spawn(async move {
            let mut n = 0;
            while let Some(reply) = rx.recv().await {
                n += 1;
                let _ = reply.send(body.to_string());
            }
            n
        });
        (addr, server, daemon)
    }

    /// Writes `requests` on one connection and reads until the server closes it.
    async fn exchange(addr: SocketAddr, requests: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(requests.as_bytes()).await.unwrap();
        let mut out = String::new();
        timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.expect("server closed").unwrap();
        out
    }

    #[tokio::test]
    async fn get_metrics_is_answered_by_the_daemon_and_other_requests_are_refused() {
        let (addr, server, daemon) = serve("x_total 1\n").await;
        // A client that never sends a request holds only its own connection.
        let idle = TcpStream::connect(addr).await.unwrap();

        // Keep-alive: two requests on one connection, the second one closing it.
        let out = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nGET /metrics?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{out}");
        assert_eq!(out.matches("\r\n\r\nx_total 1\n").count(), 2, "{out}");
        assert!(out.contains(&format!("content-type: {CONTENT_TYPE}\r\n")), "{out}");
        assert!(out.contains("content-length: 10\r\n"), "{out}");

        let out = exchange(addr, "GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
        let out = exchange(addr, "DELETE /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && out.contains("allow: GET, HEAD\r\n"), "{out}");
        let out = exchange(addr, "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\n"), "HEAD has no body: {out}");
        let out = exchange(addr, "this is not http\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");

        // Its connection task (holding a sender) ends with it.
        drop(idle);
        server.abort();
        let _ = server.await;
        // GET, GET, HEAD reached the daemon; nothing else did.
        assert_eq!(daemon.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_daemon_that_is_gone_gives_503() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel::<ScrapeRequest>(1);
        drop(rx);
        let server = spawn(listener, tx);
        let out = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{out}");
        server.abort();
    }

    #[test]
    fn a_taken_port_is_refused_with_advice() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(taken.local_addr().unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("a free port"), "{err:#}");
    }
}
