//! Running external commands (`ip`, `ethtool`, ...) with a deadline.
//!
//! Every failure names the command line and carries its stderr, because a test that fails in
//! setup is only debuggable if it says which of fifty commands broke and what the tool said.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest any setup command may take; a hung `ip`/`ethtool` must fail the test, not stall it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `args[0]` with the rest as arguments, feeding `stdin` if given; returns stdout.
/// Fails if the program cannot start, exits non-zero, or outlives `timeout` (then it is killed).
pub fn run(args: &[&str], stdin: Option<&str>, timeout: Duration) -> Result<String> {
    let line = args.join(" ");
    let (program, rest) = args.split_first().context("empty command line")?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    if let Some(input) = stdin {
        // Dropping the handle after writing closes the pipe, so the child sees EOF.
        let mut pipe = child.stdin.take().context("stdin pipe missing")?;
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("writing stdin of `{line}`"))?;
    }
    let pid = child.id() as libc::pid_t;
    // wait_with_output drains both pipes (no pipe-full deadlock); a thread lets us bound it.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output: Output = match rx.recv_timeout(timeout) {
        Ok(out) => out.with_context(|| format!("waiting for `{line}`"))?,
        Err(_) => {
            // The child is not reaped until the waiter thread returns, so the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            bail!("`{line}` timed out after {timeout:?} and was killed");
        }
    };
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
