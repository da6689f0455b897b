//! `enter` / `exit` rules with hysteresis. A rule holds once its condition has been true for
//! `for_secs` samples in a row (one sample a second); any enter rule holding latches the rules'
//! claim on the pool, and only all exit rules holding at once releases it. Between the two the
//! claim stays as it is, so a metric wandering around one threshold cannot flap the pool: the
//! enter and exit thresholds of one metric cannot overlap (config validation), and each rule
//! needs a streak, not a single sample.

use serde::{Deserialize, Serialize, de::IntoDeserializer};

use super::ServiceSample;
use crate::config::{Metric, ShuntConfig, ShuntRule, Threshold};

/// A rule that held, and the value of the sample that completed its streak.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleHeld {
    #[serde(serialize_with = "as_text", deserialize_with = "from_text")]
    pub rule: ShuntRule,
    pub value: f64,
}

fn as_text<S: serde::Serializer>(rule: &ShuntRule, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(rule)
}

/// A rule as `as_text` wrote it (`new_sessions_per_sec above 1500 for 3 s`), read back from a
/// saved shunt state.
fn from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ShuntRule, D::Error> {
    let text = String::deserialize(d)?;
    parse_rule(&text).ok_or_else(|| serde::de::Error::custom(format!("not a shunt rule: {text:?}")))
}

fn parse_rule(text: &str) -> Option<ShuntRule> {
    let words: Vec<&str> = text.split(' ').collect();
    let [metric, side, value, "for", for_secs, "s"] = words[..] else { return None };
    let metric: Result<Metric, serde::de::value::Error> = Metric::deserialize(metric.into_deserializer());
    let metric = metric.ok()?;
    let value = value.parse().ok()?;
    let threshold = match side {
        "above" => Threshold::Above(value),
        "below" => Threshold::Below(value),
        _ => return None,
    };
    Some(ShuntRule { metric, threshold, for_secs: for_secs.parse().ok()? })
}

impl std::fmt::Display for RuleHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (now {})", self.rule, self.value)
    }
}

/// What one sample changed in the rules' claim.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleEdge {
    /// An enter rule held: the rules now claim the pool open.
    Enter(RuleHeld),
    /// Every exit rule held: the rules give up their claim.
    Exit(Vec<RuleHeld>),
}

#[derive(Debug, Clone)]
struct Streak {
    rule: ShuntRule,
    /// Consecutive samples the condition held, up to `for_secs` (enough to know it holds).
    held: u32,
}

impl Streak {
    fn observe(&mut self, sample: &ServiceSample) -> Option<RuleHeld> {
        let value = sample.value(self.rule.metric);
        self.held = if self.rule.threshold.holds(value) { (self.held + 1).min(self.rule.for_secs) } else { 0 };
        (self.held == self.rule.for_secs).then_some(RuleHeld { rule: self.rule, value })
    }
}

/// One service's rules and their latched claim.
#[derive(Debug, Clone)]
pub struct RuleEvaluator {
    enter: Vec<Streak>,
    exit: Vec<Streak>,
    /// Set while the rules claim the pool open: the enter rule that did it.
    pub(super) claim: Option<RuleHeld>,
}

impl RuleEvaluator {
    pub fn new(config: &ShuntConfig) -> Self {
        let streaks = |rules: &[ShuntRule]| rules.iter().map(|&rule| Streak { rule, held: 0 }).collect();
        RuleEvaluator { enter: streaks(&config.enter), exit: streaks(&config.exit), claim: None }
    }

    /// Feeds the sample of one more second. Returns the change of claim it caused, if any.
    pub fn observe(&mut self, sample: &ServiceSample) -> Option<RuleEdge> {
        // Every streak sees every sample, so a streak is never stale when the claim flips.
        let entered: Vec<RuleHeld> = self.enter.iter_mut().filter_map(|s| s.observe(sample)).collect();
        let exited: Vec<Option<RuleHeld>> = self.exit.iter_mut().map(|s| s.observe(sample)).collect();
        match self.claim {
            None => {
                let first = *entered.first()?;
                self.claim = Some(first);
                Some(RuleEdge::Enter(first))
            }
            Some(_) => {
                if exited.is_empty() || exited.iter().any(Option::is_none) {
                    return None;
                }
                self.claim = None;
                Some(RuleEdge::Exit(exited.into_iter().flatten().collect()))
            }
        }
    }

    /// Whether these are the rules of `config` (same enter and exit rules, in the same order),
    /// so their streaks and claim carry over a reload.
    pub fn same_rules(&self, config: &ShuntConfig) -> bool {
        let rules = |streaks: &[Streak]| streaks.iter().map(|s| s.rule).collect::<Vec<_>>();
        rules(&self.enter) == config.enter && rules(&self.exit) == config.exit
    }

    /// The enter rule holding the pool open, if the rules claim it.
    pub fn claim(&self) -> Option<&RuleHeld> {
        self.claim.as_ref()
    }
}
