use super::super::*;
use super::{Noise, new_sessions, service};
use crate::config::Metric;

/// enter above 1500 for 3 s, exit below 800 for 5 s.
fn evaluator() -> RuleEvaluator {
    let svc = service(
        "enter = [ { metric = \"new_sessions_per_sec\", above = 1500, for_secs = 3 } ]\n\
         exit = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 5 } ]",
        "",
    );
    RuleEvaluator::new(svc.shunt.as_ref().expect("shunt"))
}

/// Feeds `series`; returns (sample index, edge) for every edge.
fn edges(rules: &mut RuleEvaluator, series: impl IntoIterator<Item = f64>) -> Vec<(usize, RuleEdge)> {
    series
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| rules.observe(&new_sessions(v)).map(|e| (i, e)))
        .collect()
}

#[test]
fn an_enter_rule_fires_after_for_secs_samples_in_a_row() {
    let mut rules = evaluator();
    // Two above, one at the threshold (not above), then three above: fires on the last.
    let got = edges(&mut rules, [1600.0, 1700.0, 1500.0, 1600.0, 1650.0, 1800.0]);
    assert_eq!(got.len(), 1, "{got:?}");
    let (at, RuleEdge::Enter(held)) = &got[0] else { panic!("not an enter: {got:?}") };
    assert_eq!(*at, 5);
    assert_eq!(held.value, 1800.0, "the value that completed the streak");
    assert_eq!(held.rule.metric, Metric::NewSessionsPerSec);
    assert_eq!(rules.claim(), Some(held));
    assert_eq!(held.to_string(), "new_sessions_per_sec above 1500 for 3 s (now 1800)");
}

#[test]
fn exit_rules_only_release_a_claim_and_need_their_own_streak() {
    let mut rules = evaluator();
    // Quiet load satisfies the exit rule, but there is no claim to release.
    assert_eq!(edges(&mut rules, [100.0; 20]), []);
    edges(&mut rules, [2000.0; 3]);
    assert!(rules.claim().is_some());
    // Four quiet seconds, one busy one, then five quiet: only the last completes a streak.
    let got = edges(&mut rules, [700.0, 700.0, 700.0, 700.0, 1000.0, 700.0, 700.0, 700.0, 700.0, 700.0]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(&got[0], (9, RuleEdge::Exit(held)) if held.len() == 1 && held[0].value == 700.0), "{got:?}");
    assert!(rules.claim().is_none());
}

#[test]
fn every_exit_rule_must_hold_at_once() {
    let svc = service(
        "enter = [ { metric = \"new_sessions_per_sec\", above = 1500, for_secs = 1 } ]\n\
         exit = [ { metric = \"new_sessions_per_sec\", below = 800, for_secs = 2 },\n\
                  { metric = \"active_sessions\", below = 100, for_secs = 2 } ]",
        "",
    );
    let mut rules = RuleEvaluator::new(svc.shunt.as_ref().expect("shunt"));
    let sample = |new: f64, active: f64| ServiceSample { new_sessions_per_sec: new, active_sessions: active, ..Default::default() };
    assert!(matches!(rules.observe(&sample(2000.0, 5000.0)), Some(RuleEdge::Enter(_))));
    // New sessions are low, but sessions still many: no exit however long.
    for _ in 0..10 {
        assert_eq!(rules.observe(&sample(100.0, 5000.0)), None);
    }
    assert_eq!(rules.observe(&sample(100.0, 50.0)), None, "the sessions rule has held one second of two");
    let Some(RuleEdge::Exit(held)) = rules.observe(&sample(100.0, 40.0)) else { panic!("no exit") };
    assert_eq!(held.iter().map(|h| (h.rule.metric, h.value)).collect::<Vec<_>>(), [
        (Metric::NewSessionsPerSec, 100.0),
        (Metric::ActiveSessions, 40.0)
    ]);
}

#[test]
fn noise_around_the_enter_threshold_opens_once_and_never_flaps() {
    let mut noise = Noise::new(7);
    // 10 minutes swinging +-40% around the enter threshold: always far above the exit one.
    let series: Vec<f64> = (0..600).map(|_| 1500.0 * (1.0 + 0.4 * noise.next())).collect();
    // The series really is noisy: one threshold without hysteresis would flip all the time.
    let naive_flips = series.windows(2).filter(|w| (w[0] > 1500.0) != (w[1] > 1500.0)).count();
    assert!(naive_flips > 100, "only {naive_flips} crossings: not a noisy series");
    let mut rules = evaluator();
    let got = edges(&mut rules, series.iter().copied());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(got[0].1, RuleEdge::Enter(_)));
}

#[test]
fn a_noisy_ramp_up_and_down_opens_once_and_closes_once() {
    let mut noise = Noise::new(42);
    // 100/s up to 3000/s over 60 s, 60 s at the top, back down to 100/s over 60 s, 60 s idle;
    // +-15% noise on every sample.
    let shape = |t: usize| match t {
        0..60 => 100.0 + 2900.0 * t as f64 / 60.0,
        60..120 => 3000.0,
        120..180 => 3000.0 - 2900.0 * (t - 120) as f64 / 60.0,
        _ => 100.0,
    };
    let series: Vec<f64> = (0..240).map(|t| shape(t) * (1.0 + 0.15 * noise.next())).collect();
    let mut rules = evaluator();
    let got = edges(&mut rules, series.iter().copied());
    assert_eq!(got.len(), 2, "{got:?}");
    let (opened, RuleEdge::Enter(_)) = got[0] else { panic!("first edge is not an enter: {got:?}") };
    let (closed, RuleEdge::Exit(_)) = &got[1] else { panic!("second edge is not an exit: {got:?}") };
    // Opened within for_secs (+ the noise) of the true crossing at t = 29, closed in the way down.
    assert!((29..=40).contains(&opened), "opened at {opened}");
    assert!((150..=185).contains(closed), "closed at {closed}");
    // Every sample in the last 5 before the exit was below 800; none of the 3 before the enter
    // was at or below 1500.
    assert!(series[closed - 4..=*closed].iter().all(|&v| v < 800.0));
    assert!(series[opened - 2..=opened].iter().all(|&v| v > 1500.0));
}
