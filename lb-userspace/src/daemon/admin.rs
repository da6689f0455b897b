//! The daemon's side of the admin socket.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    net::{UnixListener, UnixStream},
    time::timeout,
};

use super::state::Daemon;
use crate::api::{self, Response};

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

/// Answers one connection. A stuck client must not stall the daemon's loop, so reading and
/// writing are bounded; the work in between (a reload, a table rebuild) is not.
pub async fn serve(mut stream: UnixStream, daemon: &mut Daemon) {
    let request = timeout(CLIENT_TIMEOUT, api::read_request(&mut stream))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no request within {CLIENT_TIMEOUT:?}")));
    let response = match request {
        Ok(r) => daemon.handle(r).await,
        Err(e) => Response::Error(format!("{e:#}")),
    };
    let written = timeout(CLIENT_TIMEOUT, api::write_response(&mut stream, &response))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("client did not read the answer within {CLIENT_TIMEOUT:?}")));
    if let Err(e) = written {
        tracing::warn!("admin request failed: {e:#}");
    }
}
