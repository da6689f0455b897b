//! A spawned process that cannot outlive its test.
//!
//! The child runs in its own process group so that killing it also kills everything it forked
//! (socat's per-connection children, the `sh` and `cat` under them): "the backend died" must
//! mean every process of that backend, or old connections would keep answering.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

/// How much of the child's stderr is kept for error messages.
const STDERR_TAIL: usize = 32 * 1024;

/// Kills (SIGKILL to the whole process group) and reaps the child on Drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    /// The group id stays valid after the leader is reaped while any member lives: the kernel
    /// keeps the number allocated, so signalling it later cannot hit a stranger.
    pgid: libc::pid_t,
    group_alive: bool,
    what: String,
    /// Last bytes the child wrote to stderr. A thread drains the pipe continuously so a chatty
    /// long-lived server (socat logs every broken connection) can never block on a full pipe.
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Where that thread also sends each line, once someone asked (`stderr_lines`).
    lines: Arc<Mutex<Option<mpsc::Sender<String>>>>,
    /// The thread; it ends when every holder of the pipe (the whole group) has gone.
    reader: Option<JoinHandle<()>>,
}

impl ChildGuard {
    /// Wraps a child that was spawned with `process_group(0)`.
    pub(crate) fn new(mut child: Child, what: String) -> Self {
        let pgid = child.id() as libc::pid_t;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines: Arc<Mutex<Option<mpsc::Sender<String>>>> = Arc::default();
        let reader = child.stderr.take().map(|pipe| {
            let (sink, lines) = (Arc::clone(&stderr), Arc::clone(&lines));
            std::thread::spawn(move || {
                let mut pipe = BufReader::new(pipe);
                let mut line = Vec::new();
                while let Ok(1..) = pipe.read_until(b'\n', &mut line) {
                    let mut kept = sink.lock().unwrap_or_else(|e| e.into_inner());
                    kept.extend_from_slice(&line);
                    let excess = kept.len().saturating_sub(STDERR_TAIL);
                    kept.drain(..excess);
                    drop(kept);
                    if let Some(tx) = lines.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_owned());
                    }
                    line.clear();
                }
            })
        });
        Self {
            child: Some(child),
            pgid,
            group_alive: true,
            what,
            stderr,
            lines,
            reader,
        }
    }

    /// Every stderr line the child writes from now on, as it writes it (one receiver at a
    /// time: asking again replaces the previous one). The channel closes with the pipe.
    pub fn stderr_lines(&self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        *self.lines.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Waits for the leader to exit (at most `timeout`), then for the stderr reader to take
    /// its last line: afterwards `stderr_tail` holds everything the child wrote. None on timeout.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else { return Ok(None) };
        if child.try_wait()?.is_none() {
            // A pidfd turns readable when the process exits: wait on that, not on a clock.
            // SAFETY: plain syscalls on our own child's pid and the fd they return.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) } as libc::c_int;
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("pidfd_open");
            }
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
            unsafe {
                libc::poll(&mut pfd, 1, ms);
                libc::close(fd);
            }
        }
        let Some(status) = child.try_wait()? else { return Ok(None) };
        // EOF comes once every process of the group that holds the pipe has gone.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok(Some(status))
    }

    /// The last few KiB the child (and its group) wrote to stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&kept).trim().to_owned()
    }

    /// The child's pid (also its process-group id).
    pub fn pid(&self) -> u32 {
        self.pgid as u32
    }

    /// The command line, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// True while the leader has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The leader's exit status once it has exited; None while it runs (or after `kill`).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        // std keeps the status of a reaped child, so this can be asked again.
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Kills the leader only: processes it forked live on (until `kill` or Drop).
    /// Used to stop a listener while its accepted connections keep working.
    pub fn kill_leader(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = child.kill();
        child
            .wait()
            .with_context(|| format!("reaping `{}`", self.what))?;
        Ok(())
    }

    /// Kills the whole process group and reaps the leader. Idempotent.
    pub fn kill(&mut self) -> Result<()> {
        if self.group_alive {
            // ESRCH (group already empty) is fine.
            unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
            self.group_alive = false;
        }
        self.kill_leader()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The text without terminal colours (lb colours its log unless NO_COLOR is set).
pub fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}
