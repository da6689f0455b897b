//! The control plane of the `lb` load balancer.
//! Data flows one way: config / CLI / health events -> balancer (desired state) -> dataplane (maps).
pub mod api;
pub mod balancer;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod hashing;
pub mod health;
pub mod metrics;
pub mod policy;
pub mod state;
