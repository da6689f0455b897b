//! The admin socket: a root-only unix socket on which a running `lb run` answers the CLI.
//! One JSON request line in, one JSON response line out, then the connection closes.

mod explain;
mod shunt;
mod status;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;

pub use explain::{ExplainReport, OverflowReport, SessionReport, SlotReport, render_explain};
pub use shunt::{
    ContributionCounts, ContributionReport, ContributionRow, ShuntAction, ShuntBackendStatus, ShuntEvent,
    ShuntServiceStatus, render_report, render_shunt_status, when,
};
pub use status::{BackendStatus, DrainStatus, QuotaStatus, Rates, ServiceStatus, ShuntSummary, Status, render_text};

use std::{net::SocketAddr, path::Path};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
};

/// Where `lb run` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lb/lb.sock";

/// The longest admin request the daemon reads: a `lb service add --file` of one service is
/// the largest real one, far below this. A longer one is refused unread.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    BackendAdd { service: String, backend: SocketAddr, weight: u32 },
    BackendRemove { service: String, backend: SocketAddr },
    BackendWeight { service: String, backend: SocketAddr, weight: u32 },
    /// `timeout_secs`: None for the service's `drain_timeout`.
    BackendDrain { service: String, backend: SocketAddr, timeout_secs: Option<u64> },
    BackendUndrain { service: String, backend: SocketAddr },
    /// `toml`: a config file's text with exactly one [[service]].
    ServiceAdd { toml: String },
    ServiceRemove { name: String },
    /// Re-read the config file the daemon was started with.
    Reload,
    /// Where a flow from `client` to the service goes, and why.
    Explain { service: String, client: SocketAddr },
    /// The metrics in the Prometheus text format.
    Metrics,
    /// `lb shunt open|close|release SERVICE`: the operator's command to a service's overflow pool.
    Shunt { service: String, action: ShuntAction },
    /// `lb shunt status [SERVICE]`: every shunted service, or one.
    ShuntStatus { service: Option<String> },
    /// `lb shunt report`: the contribution accounts.
    ShuntReport,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Status(Box<Status>),
    /// A change was made (or there was nothing to change): one line per effect.
    Done(Vec<String>),
    Explain(Box<ExplainReport>),
    /// Prometheus text exposition.
    Metrics(String),
    ShuntStatus(Vec<ShuntServiceStatus>),
    ShuntReport(ContributionReport),
    Error(String),
}

/// Sends one request to the daemon behind `socket` and returns its answer.
pub async fn call(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach a running lb at {}: is `lb run` running (and are you root)? \
             Use --admin-socket if it listens elsewhere",
            socket.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    if answer.is_empty() {
        bail!("lb at {} closed the connection without answering", socket.display());
    }
    serde_json::from_str(&answer).context("lb answered something that is not a response")
}

/// Reads one request from a connection accepted by the daemon: at most MAX_REQUEST_BYTES.
pub async fn read_request(stream: &mut UnixStream) -> anyhow::Result<Request> {
    let mut line = Vec::new();
    BufReader::new(stream).take(MAX_REQUEST_BYTES as u64 + 1).read_until(b'\n', &mut line).await?;
    parse_request(&line)
}

/// One request line as the daemon reads it: JSON, at most MAX_REQUEST_BYTES.
pub fn parse_request(line: &[u8]) -> anyhow::Result<Request> {
    if line.len() > MAX_REQUEST_BYTES {
        bail!("admin request longer than {MAX_REQUEST_BYTES} bytes: refused");
    }
    let text = std::str::from_utf8(line).context("admin request is not UTF-8")?;
    serde_json::from_str(text).with_context(|| {
        let shown: String = text.chars().take(200).collect();
        let more = if shown.len() < text.len() { "..." } else { "" };
        format!("bad admin request {shown:?}{more}")
    })
}

pub async fn write_response(stream: &mut UnixStream, response: &Response) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(response)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).await?;
    Ok(())
}
