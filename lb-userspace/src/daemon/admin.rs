//! The daemon's side of the admin socket.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::timeout,
};

use crate::api::{self, Request, Response};

/// Longest a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the admin socket, root-only. Refuses if another instance answers on it.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another lb is already running with admin socket {}: stop it, or give this one \
                 its own --admin-socket",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The bound admin socket's path; Drop removes the file (a failed start or an exit).
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A request read off the admin socket, and where its answer goes.
pub struct AdminRequest {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Serves the admin socket off the daemon's loop: every connection gets a task of its own that
/// reads the request and writes the answer, each bounded in time, so a stuck client delays
/// nobody but itself (health events, drains and other clients go on). Only the work in between
/// runs on the loop, which owns the daemon's state: it answers each `AdminRequest`.
pub fn spawn(listener: UnixListener, requests: mpsc::Sender<AdminRequest>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => drop(tokio::spawn(serve(stream, requests.clone()))),
                Err(e) => {
                    // Out of file descriptors, say: try again shortly rather than spin.
                    tracing::warn!("accepting an admin connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

async fn serve(mut stream: UnixStream, requests: mpsc::Sender<AdminRequest>) {
    let request = timeout(CLIENT_TIMEOUT, api::read_request(&mut stream))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no request within {CLIENT_TIMEOUT:?}")));
    let response = match request {
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            // Either fails only when the daemon is shutting down: the client sees the socket close.
            if requests.send(AdminRequest { request, reply }).await.is_err() {
                return;
            }
            let Ok(response) = answer.await else { return };
            response
        }
        Err(e) => Response::Error(format!("{e:#}")),
    };
    let written = timeout(CLIENT_TIMEOUT, api::write_response(&mut stream, &response))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("client did not read the answer within {CLIENT_TIMEOUT:?}")));
    if let Err(e) = written {
        tracing::warn!("admin request failed: {e:#}");
    }
}
