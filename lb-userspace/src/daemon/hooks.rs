//! Runs a service's `on_open` / `on_close` hook off the daemon's loop: the argv as given (no
//! shell), in a task of its own, killed if it outlives its timeout. Its exit status is logged,
//! and so is what it writes to stderr (line by line, at most `STDERR_LINES`). The hook learns
//! why it runs from its environment: `LB_SERVICE` (the service's name) and `LB_SHUNT_HOOK`
//! (`on_open` or `on_close`).
//!
//! A hook still running when lb exits is left to finish (it is the operator's program: it may
//! be starting or stopping servers); only its timeout kills it.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    task::JoinHandle,
};

use crate::policy::Hook;

/// How long a hook may run before it is killed.
pub(super) const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of a hook's stderr that are logged; the rest are read and dropped.
const STDERR_LINES: usize = 20;

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HookEnd {
    /// It exited with this status (`exit status: 0`, `signal: 9 (SIGKILL)`, ...).
    Exited { success: bool, status: String },
    /// It did not exit within its timeout and was killed.
    TimedOut,
    /// It could not be started (the file went away since the config was checked, say).
    NotStarted(String),
}

pub(super) fn hook_name(hook: Hook) -> &'static str {
    match hook {
        Hook::OnOpen => "on_open",
        Hook::OnClose => "on_close",
    }
}

/// Starts `argv` for `service`'s `hook` in a task of its own and returns at once.
pub(super) fn spawn(service: &str, hook: Hook, argv: Vec<String>, timeout: Duration) -> JoinHandle<HookEnd> {
    let service = service.to_string();
    tokio::spawn(async move {
        let name = hook_name(hook);
        tracing::info!(%service, hook = name, argv = ?argv, "running shunt hook");
        let end = run(&service, hook, &argv, timeout).await;
        match &end {
            HookEnd::Exited { success: true, status } => tracing::info!(%service, hook = name, %status, "shunt hook done"),
            HookEnd::Exited { success: false, status } => tracing::warn!(%service, hook = name, %status, "shunt hook failed"),
            HookEnd::TimedOut => tracing::warn!(%service, hook = name, timeout_secs = timeout.as_secs(), "shunt hook timed out: killed"),
            HookEnd::NotStarted(e) => tracing::error!(%service, hook = name, argv = ?argv, "shunt hook could not start: {e}"),
        }
        end
    })
}

/// Runs the hook to its end, or kills it at `timeout`.
pub(super) async fn run(service: &str, hook: Hook, argv: &[String], timeout: Duration) -> HookEnd {
    let Some((program, args)) = argv.split_first() else {
        return HookEnd::NotStarted("empty argv".into());
    };
    let spawned = Command::new(program)
        .args(args)
        .env("LB_SERVICE", service)
        .env("LB_SHUNT_HOOK", hook_name(hook))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return HookEnd::NotStarted(e.to_string()),
    };
    // Its stderr is read by a task of its own: a program the hook starts in the background
    // may hold the pipe open long after the hook itself has exited.
    if let Some(stderr) = child.stderr.take() {
        let (service, name) = (service.to_string(), hook_name(hook));
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut n = 0;
            while let Ok(Some(line)) = lines.next_line().await {
                if n < STDERR_LINES {
                    tracing::info!(%service, hook = name, "hook stderr: {line}");
                }
                n += 1;
            }
        });
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => HookEnd::Exited { success: status.success(), status: status.to_string() },
        Ok(Err(e)) => HookEnd::NotStarted(format!("waiting for it: {e}")),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            HookEnd::TimedOut
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn argv(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_hook_runs_its_argv_without_a_shell_and_learns_why_from_its_environment() {
        let dir = std::env::temp_dir().join(format!("lb-hook-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out = dir.join("out");
        // `$LB_SERVICE` is expanded by the sh this argv names, not by lb (no shell of its own:
        // "a b" reaches sh as one argument).
        let script = format!("echo \"$LB_SERVICE $LB_SHUNT_HOOK $0\" > {}", out.display());
        let end = run("web", Hook::OnClose, &argv(&["/bin/sh", "-c", &script, "a b"]), Duration::from_secs(10)).await;
        assert_eq!(end, HookEnd::Exited { success: true, status: "exit status: 0".into() });
        assert_eq!(std::fs::read_to_string(&out).expect("the hook wrote"), "web on_close a b\n");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[tokio::test]
    async fn a_failing_hook_reports_its_status_and_a_missing_one_does_not_start() {
        let end = run("web", Hook::OnOpen, &argv(&["/bin/sh", "-c", "exit 3"]), Duration::from_secs(10)).await;
        assert_eq!(end, HookEnd::Exited { success: false, status: "exit status: 3".into() });
        let end = run("web", Hook::OnOpen, &argv(&["/nonexistent/hook"]), Duration::from_secs(10)).await;
        assert!(matches!(end, HookEnd::NotStarted(_)), "{end:?}");
        assert!(matches!(run("web", Hook::OnOpen, &[], Duration::from_secs(1)).await, HookEnd::NotStarted(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_that_outlives_its_timeout_is_killed() {
        // Paused time: the timeout fires as soon as nothing else can run, so the test does
        // not wait for it; the hook would sleep for an hour.
        let end = run("web", Hook::OnOpen, &argv(&["/bin/sleep", "3600"]), Duration::from_secs(30)).await;
        assert_eq!(end, HookEnd::TimedOut);
    }
}
