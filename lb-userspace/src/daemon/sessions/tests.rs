//! The census by events: walks that block until the test lets them go, on the single thread of
//! a current-thread runtime, so a walk on the loop would hang the test instead of passing it.

use std::sync::{Mutex, mpsc};

use super::*;

/// Failure bound only: every wait below ends by an event long before it.
const BOUND: Duration = Duration::from_secs(10);

/// A walker that reports each start, then waits for the test to release it with the counts
/// to return (or for its cancel flag).
fn gated() -> (Walker, mpsc::Receiver<()>, mpsc::Sender<SessionCounts>) {
    let (started_tx, started) = mpsc::channel();
    let (release, gate) = mpsc::channel::<SessionCounts>();
    let (started_tx, gate) = (Mutex::new(started_tx), Mutex::new(gate));
    let walker: Walker = Arc::new(move |cancel: &AtomicBool| {
        started_tx.lock().expect("lock").send(()).expect("test listens");
        let gate = gate.lock().expect("lock");
        // Gives up after BOUND, so a walk run on the loop fails the test instead of hanging it.
        let deadline = Instant::now() + BOUND;
        loop {
            if cancel.load(Ordering::Relaxed) || Instant::now() > deadline {
                return None;
            }
            match gate.recv_timeout(Duration::from_millis(5)) {
                Ok(counts) => return Some(counts),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    });
    (walker, started, release)
}

#[tokio::test]
async fn the_loop_goes_on_while_a_walk_runs() {
    let (walker, started, release) = gated();
    let mut census = SessionCensus::new(walker);
    census.start_if_due(Instant::now());
    started.recv_timeout(BOUND).expect("the walk started");
    // The walk is blocked: this runtime's only thread still runs other work, e.g. an event.
    let (event_tx, event) = tokio::sync::oneshot::channel();
    tokio::spawn(async move { event_tx.send("health event").expect("receiver") });
    assert_eq!(event.await.expect("sent"), "health event");
    assert_eq!(census.total(), None, "nothing counted before the walk ends");
    census.start_if_due(Instant::now());
    assert!(started.try_recv().is_err(), "a second walk started while one ran");

    release.send(SessionCounts::from([((3, 1), 7)])).expect("walker waits");
    let walked = tokio::time::timeout(BOUND, census.next_walk()).await.expect("the walk reported");
    census.finished(walked);
    assert_eq!((census.get(3, 1), census.total()), (7, Some(7)));
}

#[tokio::test]
async fn a_count_asked_during_a_walk_comes_from_the_next_walk() {
    let (walker, started, release) = gated();
    let mut census = SessionCensus::new(walker);
    census.start_if_due(Instant::now());
    started.recv_timeout(BOUND).expect("first walk started");
    // A drain now: the walk in progress began before it, so it cannot say what is left.
    let asked = Instant::now();
    census.ask();
    release.send(SessionCounts::from([((1, 1), 5)])).expect("walker waits");
    let walked = tokio::time::timeout(BOUND, census.next_walk()).await.expect("first");
    let first = census.finished(walked);
    assert!(first < asked);
    started.recv_timeout(BOUND).expect("the asked-for walk starts as the first ends");
    release.send(SessionCounts::new()).expect("walker waits");
    let walked = tokio::time::timeout(BOUND, census.next_walk()).await.expect("second");
    let second = census.finished(walked);
    assert!(second >= asked, "the answer's walk must start after the ask");
    assert_eq!(census.total(), Some(0));
}

#[tokio::test]
async fn dropping_the_census_stops_its_walk() {
    let (walker, started, _release) = gated();
    let (ended_tx, ended) = mpsc::channel();
    let walker: Walker = Arc::new(move |cancel: &AtomicBool| {
        let r = walker(cancel);
        ended_tx.send(r.is_none()).expect("test listens");
        r
    });
    let mut census = SessionCensus::new(walker);
    census.start_if_due(Instant::now());
    started.recv_timeout(BOUND).expect("walk started");
    drop(census);
    assert!(ended.recv_timeout(BOUND).expect("the walk ended"), "the walk was not cancelled");
}

#[test]
fn a_count_is_due_every_tick_unless_walks_are_slow() {
    let t0 = Instant::now();
    let mut c = SessionCensus::new(Arc::new(|_: &AtomicBool| None));
    assert!(c.due(t0), "nothing counted yet");
    c.taken = Some(t0);
    c.walk = Duration::from_millis(2);
    assert!(!c.due(t0 + TICK / 4));
    // A tick that comes a little early still counts.
    assert!(c.due(t0 + TICK - Duration::from_millis(10)));
    c.walk = Duration::from_millis(500);
    assert!(!c.due(t0 + TICK), "a 500 ms walk must not run every tick");
    assert!(c.due(t0 + Duration::from_secs(10)));
    assert_eq!(c.age(t0 + Duration::from_secs(3)), Some(Duration::from_secs(3)));
}
