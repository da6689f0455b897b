//! What a control request asks for: its route (method and path) and its JSON body, checked
//! before anything reaches the daemon. Every refusal names what was wrong.

use std::net::SocketAddr;

use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::Refusal;
use crate::policy::{BackendReport, ExternalCommand};

/// Longest `reason` accepted (it is logged and shown by `lb shunt status`).
pub const MAX_REASON_BYTES: usize = 256;

/// The two endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/services/NAME/shunt`.
    Shunt { service: String },
    /// `POST /v1/services/NAME/backends/ADDR`.
    Backend { service: String, backend: SocketAddr },
}

/// What the daemon is asked to do to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// An external system opens or closes the service's overflow pool.
    Shunt(ExternalCommand),
    /// An overflow server reports its own state.
    BackendReport { backend: SocketAddr, report: BackendReport },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlOrder {
    pub service: String,
    pub order: Order,
}

const ROUTES: &str = "lb serves POST /v1/services/NAME/shunt and POST /v1/services/NAME/backends/ADDR";

/// Finds the endpoint of `path`: 404 for a path lb does not serve, 405 for a method other
/// than POST on one it does, 400 for a backend address that is not ip:port.
pub fn route(method: &Method, path: &str) -> Result<Route, Refusal> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let route = match segments.as_slice() {
        ["v1", "services", name, "shunt"] if !name.is_empty() => Route::Shunt { service: decode(name)? },
        ["v1", "services", name, "backends", addr] if !name.is_empty() && !addr.is_empty() => {
            let service = decode(name)?;
            let text = decode(addr)?;
            let backend = text.parse().map_err(|_| {
                Refusal::bad_request(format!(
                    "backend address {text:?} is not ip:port (an IPv6 address in brackets: [2001:db8::1]:80, \
                     the brackets may be URL-encoded as %5B %5D)"
                ))
            })?;
            Route::Backend { service, backend }
        }
        _ => return Err(Refusal::new(StatusCode::NOT_FOUND, format!("no such endpoint {path:?}: {ROUTES}"))),
    };
    if method != Method::POST {
        return Err(Refusal::new(StatusCode::METHOD_NOT_ALLOWED, format!("use POST for {path} (not {method})")));
    }
    Ok(route)
}

/// Decodes the %XX escapes of a path segment.
fn decode(segment: &str) -> Result<String, Refusal> {
    let bad = || Refusal::bad_request(format!("path segment {segment:?} has a malformed %-escape or is not UTF-8"));
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShuntBody {
    action: ShuntAction,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ShuntAction {
    Open,
    Close,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendBody {
    state: ReportedState,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ReportedState {
    Ready,
    Closing,
}

/// Reads the JSON body of a request to `route`.
pub fn order(route: Route, body: &[u8]) -> Result<ControlOrder, Refusal> {
    match route {
        Route::Shunt { service } => {
            let b: ShuntBody = json(body, r#"{"action": "open"|"close", "reason": "...", "ttl_secs": N}"#)?;
            if b.reason.len() > MAX_REASON_BYTES {
                return Err(Refusal::bad_request(format!(
                    "field `reason` is {} bytes long; at most {MAX_REASON_BYTES} are accepted",
                    b.reason.len()
                )));
            }
            if b.reason.chars().any(char::is_control) {
                return Err(Refusal::bad_request("field `reason` has control characters (newlines, tabs...); give one line of text"));
            }
            let command = match (b.action, b.ttl_secs) {
                (ShuntAction::Open, Some(0)) => {
                    return Err(Refusal::bad_request(
                        "field `ttl_secs` is 0, which would expire at once; give a positive TTL, or none to hold open until a close",
                    ));
                }
                (ShuntAction::Open, ttl_secs) => ExternalCommand::Open { reason: b.reason, ttl_secs },
                (ShuntAction::Close, None) => ExternalCommand::Close { reason: b.reason },
                (ShuntAction::Close, Some(_)) => {
                    return Err(Refusal::bad_request("field `ttl_secs` is only for action \"open\"; a close has no TTL"));
                }
            };
            Ok(ControlOrder { service, order: Order::Shunt(command) })
        }
        Route::Backend { service, backend } => {
            let b: BackendBody = json(body, r#"{"state": "ready"|"closing"}"#)?;
            let report = match b.state {
                ReportedState::Ready => BackendReport::Ready,
                ReportedState::Closing => BackendReport::Closing,
            };
            Ok(ControlOrder { service, order: Order::BackendReport { backend, report } })
        }
    }
}

fn json<T: for<'de> Deserialize<'de>>(body: &[u8], expected: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::bad_request(format!("malformed JSON body: {e}; expected {expected}")))
}
