//! Traffic shunting (issue 13), as pure logic: time is passed in (unix seconds), nothing here
//! reads a clock, runs a hook or touches a map, so every decision can be driven by tests.
//!
//! - `sample`: what is fed in once a second (per service, per backend);
//! - `rules`: enter/exit rules with hysteresis;
//! - `triggers`: manual, external (with TTL), scheduled windows and the rules, combined into
//!   one demand (the rules of combination are in that file and in docs/config.md);
//! - `lifecycle`: the pool's closed -> opening -> open -> closing -> closed;
//! - `overflow_backends`: each overflow backend's state and the set that takes new flows;
//! - `service`: one service's shunting put together (`ServiceShunt`), what the daemon holds;
//! - `events`: what was decided and why (the last 50 per service);
//! - `snapshot`: a service's shunting saved to outlive lb, and taken up by the next one;
//! - `quota`: which backends are full, and the `primary_load` metric;
//! - `alerts`: per-backend load alert crossings;
//! - `contribution`: what each overflow backend served, by address.

mod alerts;
mod contribution;
mod error;
mod events;
mod lifecycle;
mod overflow_backends;
mod quota;
mod rules;
mod sample;
mod service;
mod snapshot;
mod triggers;

#[cfg(test)]
mod tests;

pub use alerts::{AlertMetric, LoadAlert, LoadAlerts};
pub use contribution::{Contribution, Contributions};
pub use error::PolicyError;
pub use events::{EVENTS_KEPT, Event, EventKind, EventLog, Why};
pub use lifecycle::{Hook, Lifecycle, ShuntState};
pub use overflow_backends::{BackendObservation, BackendReport, OverflowBackend, OverflowBackendState, OverflowBackends};
pub use quota::{QuotaUse, full_backends, primary_load};
pub use rules::{RuleEdge, RuleEvaluator, RuleHeld};
pub use sample::{BackendSample, ServiceSample};
pub use service::{HookRun, Reconfigured, ServiceShunt, ShuntStatus, TickOutcome};
pub use snapshot::{Restored, ShuntSnapshot};
pub use triggers::{Demand, ExternalCommand, ManualCommand, Triggers};

/// Seconds since the Unix epoch: the policy's only clock, passed in by the caller.
pub type UnixSecs = i64;
