//! The policy driven by hand-made time and samples.

mod alerts;
mod contribution;
mod lifecycle;
mod overflow_backends;
mod quota;
mod rules;
mod service;
