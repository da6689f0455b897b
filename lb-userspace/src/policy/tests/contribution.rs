use super::super::*;
use super::{OVERFLOW_A, OVERFLOW_B, addr};
use crate::state::{MemoryStore, load, save};

fn second(ip: &str, new_sessions: u64, packets: u64, bytes: u64) -> BackendSample {
    BackendSample { addr: addr(ip), new_sessions, active_sessions: 0, packets, bytes }
}

#[test]
fn traffic_counts_in_every_state_and_seconds_only_while_open() {
    let mut c = Contributions::default();
    c.record_opening("web", addr(OVERFLOW_A));
    c.record_second("web", OverflowBackendState::Open, &second(OVERFLOW_A, 10, 100, 1000));
    c.record_second("web", OverflowBackendState::Open, &second(OVERFLOW_A, 5, 50, 500));
    c.record_second("web", OverflowBackendState::Draining, &second(OVERFLOW_A, 0, 20, 200));
    assert_eq!(
        c.get("web", addr(OVERFLOW_A)),
        Some(&Contribution { openings: 1, seconds_open: 2, new_sessions: 15, packets: 170, bytes: 1700 })
    );
    assert_eq!(c.get("web", addr(OVERFLOW_B)), None);
    assert_eq!(c.get("api", addr(OVERFLOW_A)), None, "per service");
}

#[test]
fn accounts_are_keyed_by_address_and_survive_the_state_store() {
    let mut c = Contributions::default();
    c.record_opening("web", addr(OVERFLOW_B));
    c.record_second("web", OverflowBackendState::Open, &second(OVERFLOW_B, 1, 2, 3));
    let json = serde_json::to_value(&c).expect("json");
    assert_eq!(json["services"]["web"]["10.200.3.22:80"]["bytes"], 3, "{json}");
    let store = MemoryStore::default();
    save(&store, Contributions::DOCUMENT, Contributions::VERSION, &c).expect("saved");
    let back: Option<Contributions> = load(&store, Contributions::DOCUMENT, Contributions::VERSION).expect("loaded");
    assert_eq!(back, Some(c.clone()));
    assert_eq!(c.iter().map(|(s, a, x)| (s, a, x.openings)).collect::<Vec<_>>(), [("web", addr(OVERFLOW_B), 1)]);
}
