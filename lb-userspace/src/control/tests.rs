use std::{net::SocketAddr, time::Duration};

use hyper::{Method, StatusCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
    task::JoinHandle,
    time::timeout,
};

use super::{
    ControlOrder, ControlRequest, Order, Refusal, Token, http,
    request::{MAX_REASON_BYTES, Route, order, route},
};
use crate::policy::{BackendReport, ExternalCommand};

fn shunt(service: &str) -> Route {
    Route::Shunt { service: service.into() }
}

#[test]
fn routes_are_the_two_endpoints_and_only_post() {
    assert_eq!(route(&Method::POST, "/v1/services/web/shunt"), Ok(shunt("web")));
    let backend = Route::Backend { service: "web".into(), backend: "10.0.0.5:8080".parse().unwrap() };
    assert_eq!(route(&Method::POST, "/v1/services/web/backends/10.0.0.5:8080"), Ok(backend));
    let v6 = Route::Backend { service: "web".into(), backend: "[2001:db8::5]:80".parse().unwrap() };
    assert_eq!(route(&Method::POST, "/v1/services/web/backends/[2001:db8::5]:80"), Ok(v6.clone()));
    assert_eq!(route(&Method::POST, "/v1/services/web/backends/%5B2001:db8::5%5D:80"), Ok(v6.clone()));
    assert_eq!(route(&Method::POST, "/v1/services/web/backends/%5b2001%3Adb8%3A%3A5%5d%3A80"), Ok(v6));

    for path in ["/", "/v1/services/web", "/v1/services//shunt", "/v1/services/web/shunt/x", "/v2/services/web/shunt", "/metrics"] {
        assert_eq!(route(&Method::POST, path).unwrap_err().status, StatusCode::NOT_FOUND, "{path}");
    }
    let e = route(&Method::GET, "/v1/services/web/shunt").unwrap_err();
    assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(e.message.contains("POST"), "{e:?}");
    assert_eq!(route(&Method::PUT, "/v1/services/web/backends/10.0.0.5:80").unwrap_err().status, StatusCode::METHOD_NOT_ALLOWED);

    for bad in ["2001:db8::5:80", "10.0.0.5", "web1:80", "%5B2001:db8::5:80", "10.0.0.5%3"] {
        let e = route(&Method::POST, &format!("/v1/services/web/backends/{bad}")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}: {e:?}");
    }
}

fn ok(route: Route, body: &str) -> Order {
    order(route, body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}")).order
}

fn refused(route: Route, body: &str) -> String {
    let e = order(route, body.as_bytes()).expect_err(body);
    assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}: {e:?}");
    e.message
}

#[test]
fn shunt_bodies_are_read_and_bad_ones_name_what_is_wrong() {
    assert_eq!(
        ok(shunt("web"), r#"{"action":"open","reason":"campaign","ttl_secs":30}"#),
        Order::Shunt(ExternalCommand::Open { reason: "campaign".into(), ttl_secs: Some(30) })
    );
    assert_eq!(ok(shunt("web"), r#"{"action":"open"}"#), Order::Shunt(ExternalCommand::Open { reason: String::new(), ttl_secs: None }));
    assert_eq!(ok(shunt("web"), r#"{"action":"close","reason":"over"}"#), Order::Shunt(ExternalCommand::Close { reason: "over".into() }));

    assert!(refused(shunt("web"), r#"{"reason":"x"}"#).contains("missing field `action`"));
    assert!(refused(shunt("web"), r#"{"action":"opn"}"#).contains("unknown variant `opn`"));
    assert!(refused(shunt("web"), r#"{"action":"open","ttl":3}"#).contains("unknown field `ttl`"));
    assert!(refused(shunt("web"), r#"{"action":"open","ttl_secs":-1}"#).contains("ttl_secs"));
    assert!(refused(shunt("web"), r#"{"action":"open","ttl_secs":"2"}"#).contains("invalid type"));
    assert!(refused(shunt("web"), r#"{"action":"open","ttl_secs":0}"#).contains("`ttl_secs` is 0"));
    assert!(refused(shunt("web"), r#"{"action":"close","ttl_secs":5}"#).contains("only for action \"open\""));
    assert!(refused(shunt("web"), r#"{"action":"open","reason":"a\nb"}"#).contains("control characters"));
    let long = format!(r#"{{"action":"open","reason":"{}"}}"#, "x".repeat(MAX_REASON_BYTES + 1));
    assert!(refused(shunt("web"), &long).contains("field `reason`"));
    assert!(refused(shunt("web"), "").contains("malformed JSON"));
    assert!(refused(shunt("web"), "{\"action\":").contains("malformed JSON"));
}

#[test]
fn backend_reports_are_ready_or_closing() {
    let backend: SocketAddr = "10.0.0.5:80".parse().unwrap();
    let to = || Route::Backend { service: "web".into(), backend };
    assert_eq!(ok(to(), r#"{"state":"ready"}"#), Order::BackendReport { backend, report: BackendReport::Ready });
    assert_eq!(ok(to(), r#"{"state":"closing"}"#), Order::BackendReport { backend, report: BackendReport::Closing });
    assert!(refused(to(), r#"{"state":"up"}"#).contains("unknown variant `up`"));
    assert!(refused(to(), r#"{}"#).contains("missing field `state`"));
    assert!(refused(to(), r#"{"state":"ready","action":"open"}"#).contains("unknown field `action`"));
}

const TOKEN: &str = "t0ken";

/// A listener on 127.0.0.1 whose "daemon" answers every order with `{"done": true}` and keeps
/// the orders it got.
async fn serve() -> (SocketAddr, JoinHandle<()>, JoinHandle<Vec<ControlOrder>>) {
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(8);
    let server = http::spawn(listener, Token::of(TOKEN), tx);
    let daemon = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(ControlRequest { order, reply }) = rx.recv().await {
            let refused = order.service == "nosuch";
            got.push(order);
            let _ = reply.send(if refused {
                Err(Refusal::new(StatusCode::NOT_FOUND, "no service named \"nosuch\""))
            } else {
                Ok(serde_json::json!({ "done": true }))
            });
        }
        got
    });
    (addr, server, daemon)
}

async fn post(addr: SocketAddr, path: &str, auth: Option<&str>, body: &str) -> (u16, String, serde_json::Value) {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let request =
        format!("POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    exchange(addr, &request).await
}

async fn exchange(addr: SocketAddr, request: &str) -> (u16, String, serde_json::Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A server that answers before reading everything (413) may reset the rest: ignore.
    let _ = s.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("server closed");
    let out = String::from_utf8(out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{out:?}"));
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")))
}

#[tokio::test]
async fn requests_are_checked_before_the_daemon_sees_them() {
    let (addr, server, daemon) = serve().await;
    let bearer = format!("Bearer {TOKEN}");
    let open = r#"{"action":"open","reason":"campaign","ttl_secs":2}"#;

    let (status, head, body) = post(addr, "/v1/services/web/shunt", Some(&bearer), open).await;
    assert_eq!((status, body), (200, serde_json::json!({ "done": true })));
    assert!(head.contains("content-type: application/json"), "{head}");

    for auth in [None, Some("Bearer wrong"), Some("Basic dDBrZW4="), Some("Bearer t0ken0")] {
        let (status, head, body) = post(addr, "/v1/services/web/shunt", auth, open).await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
        assert!(body["error"].as_str().unwrap().contains("bearer token"), "{body}");
    }

    let (status, _, body) = post(addr, "/v1/services/web/shunt", Some(&bearer), r#"{"action":"shut"}"#).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown variant `shut`"), "{body}");

    let (status, _, body) = post(addr, "/v1/services/web/shunt/now", Some(&bearer), open).await;
    assert_eq!(status, 404, "{body}");

    let (status, head, _) = exchange(addr, &format!("GET /v1/services/web/shunt HTTP/1.1\r\nHost: t\r\nAuthorization: {bearer}\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: post"), "{head}");

    let huge = format!(r#"{{"action":"open","reason":"{}"}}"#, "x".repeat(http::MAX_BODY_BYTES));
    let (status, _, body) = post(addr, "/v1/services/web/shunt", Some(&bearer), &huge).await;
    assert_eq!(status, 413, "{body}");
    // Chunked, without a Content-Length, is cut off all the same.
    let chunk = "x".repeat(40 * 1024);
    let chunked = format!(
        "POST /v1/services/web/shunt HTTP/1.1\r\nHost: t\r\nAuthorization: {bearer}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    assert_eq!(exchange(addr, &chunked).await.0, 413);

    // The daemon's own refusals come through as they are.
    let (status, _, body) = post(addr, "/v1/services/nosuch/shunt", Some(&bearer), open).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (404, "no service named \"nosuch\""));

    let (status, _, _) = post(addr, "/v1/services/web/backends/%5B2001:db8::5%5D:80", Some(&bearer), r#"{"state":"closing"}"#).await;
    assert_eq!(status, 200);

    server.abort();
    let _ = server.await;
    let got = daemon.await.unwrap();
    // Only the three well-formed, authenticated orders reached the daemon.
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].order, Order::Shunt(ExternalCommand::Open { reason: "campaign".into(), ttl_secs: Some(2) }));
    assert_eq!(
        got[2].order,
        Order::BackendReport { backend: "[2001:db8::5]:80".parse().unwrap(), report: BackendReport::Closing }
    );
}

#[test]
fn the_token_file_goes_with_the_listener() {
    assert!(super::prepare(None, None).unwrap().is_none());
    let e = super::prepare(Some("127.0.0.1:0".parse().unwrap()), None).err().unwrap();
    assert!(format!("{e:#}").contains("needs --control-token-file"), "{e:#}");
    let e = super::prepare(None, Some(std::path::Path::new("/x"))).err().unwrap();
    assert!(format!("{e:#}").contains("without --control-listen"), "{e:#}");
}
