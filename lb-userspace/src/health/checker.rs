//! The per-backend task: probe every interval, keep the status table current, report changes.

use std::net::SocketAddr;
use std::sync::PoisonError;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{
    BackendHealthStatus, CheckResult, Health, HealthEvent, HealthHistory, HealthState, StatusTable, check_once,
};
use crate::config::HealthConfig;

/// Spawns the task that checks one backend of `service` until it is aborted or `events` is
/// closed.
///
/// - `backend` is the backend's service address (where its traffic goes): it names the backend
///   in every `HealthEvent` and keys its entry `(service, backend)` in `status`.
/// - `target` is the address probed, i.e. `check_target(backend, &cfg)`.
///
/// The backend starts from `initial`: `HealthHistory::starting(Down)` as `HealthState::new` (up
/// at its first success), `starting(Up)` as `HealthState::initial_up` (a backend already
/// serving whose checker restarts, e.g. with new settings after a reload), or the history an
/// earlier lb saved (a restart: its rise/fall streak goes on). The first probe runs
/// at once, then one every `cfg.interval`; a probe lasts at most `cfg.timeout` (< interval) and
/// probes of one backend never overlap. An event is sent the moment a probe completes a rise or
/// fall streak, so a dead backend leaves service within one interval of its `fall`-th failure.
/// The caller that aborts the task removes its `status` entry if it wants it gone.
pub fn spawn_checker(
    service: String,
    backend: SocketAddr,
    target: SocketAddr,
    cfg: HealthConfig,
    initial: HealthHistory,
    events: UnboundedSender<HealthEvent>,
    status: StatusTable,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let key = (service, backend);
        let mut state = HealthState::resume(cfg.rise, cfg.fall, initial);
        let mut checks = 0u64;
        publish(&status, &key, &state, None, checks);

        // tokio panics on a zero period; validated configs never have one.
        let mut ticker = tokio::time::interval(cfg.interval.max(Duration::from_millis(1)));
        // A late probe pushes the schedule back rather than firing a burst to catch up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let result = check_once(target, &cfg).await;
            checks += 1;
            let change = state.record(result.ok);
            publish(&status, &key, &state, Some(&result), checks);
            if let Some(err) = &result.error {
                tracing::debug!(service = %key.0, backend = %backend, error = %err, "health check failed");
            }
            let Some(health) = change else { continue };
            let event = HealthEvent {
                service: key.0.clone(),
                backend,
                health,
                check: checks,
                detail: detail(health, &cfg, &result),
                sent: std::time::Instant::now(),
            };
            if events.send(event).is_err() {
                // Nobody listens any more: the daemon is shutting down.
                return;
            }
        }
    })
}

fn publish(
    status: &StatusTable,
    key: &(String, SocketAddr),
    state: &HealthState,
    result: Option<&CheckResult>,
    checks: u64,
) {
    // A panic elsewhere while holding the lock must not stop health checking.
    let mut table = status.lock().unwrap_or_else(PoisonError::into_inner);
    table.insert(
        key.clone(),
        BackendHealthStatus {
            health: state.health(),
            last_ok: result.map(|r| r.ok),
            last_latency: result.map(|r| r.latency),
            last_error: result.and_then(|r| r.error.clone()),
            checks,
            history: state.history(),
        },
    );
}

fn detail(health: Health, cfg: &HealthConfig, result: &CheckResult) -> String {
    let ms = result.latency.as_secs_f64() * 1e3;
    match (health, &result.error) {
        (Health::Up, _) => format!("{} check passed in {ms:.1} ms", cfg.kind.as_str()),
        (Health::Down, Some(e)) => format!("{} checks failed in a row; last: {e}", cfg.fall.max(1)),
        (Health::Down, None) => format!("{} checks failed in a row", cfg.fall.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::HealthKind;

    const BOUND: Duration = Duration::from_secs(5);

    fn cfg(interval_ms: u64, timeout_ms: u64, rise: u32, fall: u32) -> HealthConfig {
        HealthConfig {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            rise,
            fall,
            ..HealthConfig::default()
        }
    }

    async fn next_event(rx: &mut mpsc::UnboundedReceiver<HealthEvent>) -> HealthEvent {
        tokio::time::timeout(BOUND, rx.recv())
            .await
            .expect("no health event within the bound")
            .expect("channel open")
    }

    /// An HTTP health endpoint that answers 200 while `healthy` is set and 503 after, and logs
    /// each answer in the order the probes came (probes of one backend never overlap).
    async fn switchable_server(healthy: Arc<AtomicBool>, answers: Arc<Mutex<Vec<bool>>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let ok = healthy.load(Ordering::SeqCst);
                answers.lock().expect("lock").push(ok);
                let line = if ok { "HTTP/1.0 200 OK\r\n\r\n" } else { "HTTP/1.0 503 Service Unavailable\r\n\r\n" };
                let _ = s.write_all(line.as_bytes()).await;
            }
        });
        addr
    }

    /// Rise and fall are counted in probes, not time: a new backend comes up at its first
    /// success (fast start), goes down at exactly the `fall`-th failure after its last success,
    /// and comes back at exactly the `rise`-th success after its last failure; every event is
    /// sent by the probe that completes the streak, none later. Paused time: a probe's 90 ms
    /// timeout fires only when nothing else can run, so a loaded machine cannot fail a probe.
    #[tokio::test(start_paused = true)]
    async fn goes_down_at_the_fall_th_failure_and_up_at_the_rise_th_success() {
        let (healthy, answers) = (Arc::new(AtomicBool::new(true)), Arc::new(Mutex::new(Vec::new())));
        let target = switchable_server(healthy.clone(), answers.clone()).await;
        // The backend's service address differs from the probed one (a health port).
        let backend: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let status: StatusTable = Arc::new(Mutex::new(HashMap::new()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut c = cfg(100, 90, 2, 3);
        c.kind = HealthKind::Http;
        c.path = Some("/healthz".into());
        let task = spawn_checker("web".into(), backend, target, c, HealthHistory::starting(Health::Down), tx, status.clone());

        let up = next_event(&mut rx).await;
        assert_eq!((up.service.as_str(), up.backend, up.health), ("web", backend, Health::Up));
        assert_eq!(up.check, 1, "a new backend is up at its first success: {up:?}");
        assert!(answers.lock().expect("lock")[0]);

        // The backend starts failing. Whatever probe was in flight, every answer after the last
        // 200 is a 503, so the way down is exactly three probes long.
        healthy.store(false, Ordering::SeqCst);
        let down = next_event(&mut rx).await;
        assert_eq!(down.health, Health::Down);
        assert!(down.detail.contains("3 checks failed in a row"), "{}", down.detail);
        let log = answers.lock().expect("lock").clone();
        let successes = log.iter().take_while(|ok| **ok).count() as u64;
        assert!(log[successes as usize..].iter().all(|ok| !ok), "a 200 after a 503: {log:?}");
        assert_eq!(down.check, successes + 3, "down at the 3rd failure after {successes} successes: {down:?}, answers {log:?}");
        let s = status.lock().expect("lock").get(&("web".to_string(), backend)).cloned().expect("status entry");
        assert_eq!((s.health, s.last_ok), (Health::Down, Some(false)));
        assert!(s.checks >= down.check, "{s:?}");
        assert!(s.last_error.is_some_and(|e| e.contains(&target.to_string()) && e.contains("503")));

        // Back: having been up once, it needs the full rise = 2 successes.
        healthy.store(true, Ordering::SeqCst);
        let up = next_event(&mut rx).await;
        assert_eq!(up.health, Health::Up);
        let log = answers.lock().expect("lock").clone();
        let failures = log.iter().skip(successes as usize).take_while(|ok| !**ok).count() as u64;
        assert_eq!(up.check, successes + failures + 2, "up at the 2nd success after the last failure: {up:?}, answers {log:?}");
        // Exactly three transitions: no flap in between.
        assert!(rx.try_recv().is_err(), "an extra event");
        task.abort();
    }

    /// Paused time: 200 ms of it are exactly 10 intervals of probes, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn a_dead_backend_stays_down_without_events() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("addr");
        drop(listener);
        let status: StatusTable = Arc::new(Mutex::new(HashMap::new()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_checker(
            "web".into(),
            target,
            target,
            cfg(20, 10, 1, 1),
            HealthHistory::starting(Health::Down),
            tx,
            status.clone(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            rx.try_recv().is_err(),
            "a Down backend that stays down sends nothing"
        );
        let checks = status.lock().expect("lock").get(&("web".to_string(), target)).map_or(0, |s| s.checks);
        assert_eq!(checks, 10, "probes at 0, 20, ..., 180 ms");
        let s = status
            .lock()
            .expect("lock")
            .get(&("web".to_string(), target))
            .cloned()
            .expect("entry");
        assert_eq!((s.health, s.last_ok), (Health::Down, Some(false)));
        task.abort();
    }

    /// Paused time: each probe runs into its 30 ms timeout, the next starts at the next 100 ms
    /// tick, so 450 ms hold exactly five whole probes.
    #[tokio::test(start_paused = true)]
    async fn probes_never_overlap() {
        // A server that never answers HTTP and counts connections open at the same time.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("addr");
        let (open, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, m) = (open.clone(), most.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (o, m) = (o.clone(), m.clone());
                m.fetch_max(o.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 256];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let mut c = cfg(100, 30, 1, 1);
        c.kind = HealthKind::Http;
        c.path = Some("/".into());
        let status: StatusTable = Arc::new(Mutex::new(HashMap::new()));
        let (tx, _rx) = mpsc::unbounded_channel();
        let task = spawn_checker("web".into(), target, target, c, HealthHistory::starting(Health::Down), tx, status.clone());
        tokio::time::sleep(Duration::from_millis(450)).await;
        task.abort();
        let checks = status
            .lock()
            .expect("lock")
            .get(&("web".to_string(), target))
            .map_or(0, |s| s.checks);
        assert_eq!(checks, 5, "checks in 450 ms at a 100 ms interval");
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "two probes were open at once"
        );
    }

    #[tokio::test]
    async fn stops_when_nobody_listens() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("addr");
        let status: StatusTable = Arc::new(Mutex::new(HashMap::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        let task = spawn_checker("web".into(), target, target, cfg(20, 10, 1, 1), HealthHistory::starting(Health::Down), tx, status);
        tokio::time::timeout(BOUND, task)
            .await
            .expect("task ended")
            .expect("no panic");
    }
}
