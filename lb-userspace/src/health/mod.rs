//! Health checks: whether each backend may receive traffic.
//!
//! `check` probes a backend once (TCP connect or HTTP GET), `state` turns a stream of probe
//! results into Up/Down with rise/fall hysteresis, and `checker` runs one task per backend that
//! probes every interval and reports each change as a `HealthEvent`. Nothing here touches the
//! data plane: the daemon turns events into in-service lists.

mod check;
mod checker;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use check::{CheckResult, check_once, check_target};
pub use checker::spawn_checker;
pub use state::{HealthHistory, HealthState};

/// Whether a backend is in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

/// A backend changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthEvent {
    pub service: String,
    /// The backend's service address (where its traffic goes), not the address checked.
    pub backend: SocketAddr,
    pub health: Health,
    /// The check (counted from 1 since the checker started, as `BackendHealthStatus::checks`)
    /// that completed the rise or fall streak.
    pub check: u64,
    /// Why, for logs: e.g. "3 checks failed in a row; last: connect to 10.0.1.11:80: ...".
    pub detail: String,
    /// When the checker sent it: the daemon logs how long it waited to be handled.
    #[serde(skip)]
    pub sent: Instant,
}

/// The latest knowledge about one backend, for `lb status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendHealthStatus {
    pub health: Health,
    /// Outcome of the latest check; None before the first one finishes.
    pub last_ok: Option<bool>,
    pub last_latency: Option<Duration>,
    pub last_error: Option<String>,
    /// Checks finished since the checker started.
    pub checks: u64,
    /// The checker's hysteresis, saved for the next lb (the state directory).
    #[serde(skip)]
    pub history: HealthHistory,
}

/// Status of every checked backend, keyed by (service name, backend service address). Each
/// checker writes only its own entry; whoever stops a checker removes the entry.
pub type StatusTable = Arc<Mutex<HashMap<(String, SocketAddr), BackendHealthStatus>>>;
