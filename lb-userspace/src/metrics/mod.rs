//! Metrics in the Prometheus text format: what `lb metrics` prints and what
//! `lb run --metrics-listen ADDR:PORT` serves at GET /metrics.
//!
//! Rendered from the daemon's `Status` (the very data `lb status` shows: per-CPU counters summed
//! once per request, the cached session count, health checks), so a scrape and `lb status`
//! taken at the same moment agree and the maps have one reader.
//!
//! - `families`: which metrics there are, from a `Status`, written by the prometheus-client crate;
//! - `exposition`: a checking parser of the text format (tests read every rendering back);
//! - `http`: the optional listener.

mod exposition;
mod families;
pub mod http;
#[cfg(test)]
pub(crate) mod tests;

pub use exposition::{CONTENT_TYPE, Sample, Scrape, parse};
pub use families::render;
