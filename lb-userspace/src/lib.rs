//! The control plane of the `lb` load balancer.
pub mod balancer;
pub mod dataplane;
pub mod config;
pub mod health;
