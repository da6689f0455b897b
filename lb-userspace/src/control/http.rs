//! The HTTP/1.1 side (hyper) of the control endpoint: routes, authenticates, reads at most
//! `MAX_BODY_BYTES` of body and checks it, then hands the order to the daemon's loop and
//! waits for its answer. Connections are handled on their own tasks, so a slow client holds
//! only its own connection. Every answer is JSON: what was done, or `{"error": "..."}`.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
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

use super::{ControlAnswer, ControlOrder, ControlRequest, Refusal, Token, request};

/// Larger bodies are refused with 413 (a valid one is well under 1 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Open connections beyond this wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request headers within this...
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// ...and its body within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection (keep-alive included) is closed after this.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Longest a request waits for the daemon (its next tick acts on it, within a second).
const DAEMON_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the listener (before anything touches the kernel, so a taken port fails the start).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!(
            "cannot listen for control requests on {addr}: give --control-listen an address of this host \
             (a management or loopback one) and a free port, or leave it out"
        )
    })?;
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener)?)
}

/// Serves control requests until the returned task is aborted; `orders` reaches the daemon.
pub fn spawn(listener: TcpListener, token: Token, orders: mpsc::Sender<ControlRequest>) -> JoinHandle<()> {
    let token = Arc::new(token);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("control listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (orders, token) = (orders.clone(), token.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req| {
                    let (orders, token) = (orders.clone(), token.clone());
                    async move { Ok::<_, Infallible>(respond(answer(req, &token, &orders, peer).await)) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Ok(Err(e)) = timeout(CONNECTION_LIFETIME, conn).await {
                    tracing::debug!(%peer, "control connection: {e}");
                }
            });
        }
    })
}

async fn answer(req: Request<Incoming>, token: &Token, orders: &mpsc::Sender<ControlRequest>, peer: SocketAddr) -> ControlAnswer {
    let path = req.uri().path().to_string();
    let order = match checked(req, token).await {
        Ok(order) => order,
        // The daemon logs its own refusals; these never reach it.
        Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED => {
            tracing::warn!(%peer, path, "control request refused: {}", refusal.message);
            return Err(refusal);
        }
        Err(refusal) => {
            tracing::info!(%peer, path, status = refusal.status.as_u16(), "control request refused: {}", refusal.message);
            return Err(refusal);
        }
    };
    let (reply, answered) = oneshot::channel();
    let gone = || Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "lb is shutting down");
    orders.send(ControlRequest { order, reply }).await.map_err(|_| gone())?;
    match timeout(DAEMON_TIMEOUT, answered).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "lb took the order but did not confirm it in time (busy with a reload?); check `lb shunt status`",
        )),
    }
}

/// Routes, authenticates, then reads and checks the body: what the daemon is asked to do.
async fn checked(req: Request<Incoming>, token: &Token) -> Result<ControlOrder, Refusal> {
    let route = request::route(req.method(), req.uri().path())?;
    if !token.accepts(req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes)) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send `Authorization: Bearer TOKEN` with the token of --control-token-file",
        ));
    }
    let body = read_body(req.into_body()).await?;
    request::order(route, &body)
}

async fn read_body(body: Incoming) -> Result<Bytes, Refusal> {
    let too_large = || Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {MAX_BODY_BYTES} bytes"));
    match timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Refusal::bad_request(format!("reading the body: {e}"))),
        Err(_) => Err(Refusal::new(StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within {BODY_TIMEOUT:?}"))),
    }
}

fn respond(answer: ControlAnswer) -> Response<Full<Bytes>> {
    let (status, body) = match answer {
        Ok(done) => (StatusCode::OK, done),
        Err(Refusal { status, message }) => (status, serde_json::json!({ "error": message })),
    };
    let mut text = serde_json::to_vec(&body).unwrap_or_default();
    text.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lb\""));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}
