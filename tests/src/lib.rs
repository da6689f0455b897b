//! Shared test bed for integration tests: network namespaces, topologies, servers, clients.
//!
//! Everything a test creates lives in namespaces named `lbt-<pid>-<n>-<tag>` and is removed
//! when the owning value drops (also on panic), so tests can run in parallel and next to other
//! runs. Traffic only ever goes to addresses inside those namespaces (10.200.0.0/16,
//! fd00:200::/32).
//!
//! ```no_run
//! use lb_tests::{client, servers::BackendServer, topology::TwoArm};
//! use std::time::Duration;
//! let topo = TwoArm::new(3)?;
//! let _servers = BackendServer::start_all(topo.backends(), 8080)?;
//! let b0 = topo.backend(0);
//! let who = client::tcp_ask(topo.client().ns(), b0.addr(false), 8080, Duration::from_secs(2))?;
//! assert_eq!(who, b0.label());
//! # anyhow::Ok(())
//! ```

pub mod balancing;
pub mod census_bench;
pub mod child;
pub mod client;
pub mod flood;
mod cmd;
pub mod lb_config;
pub mod mount_ns;
pub mod names;
pub mod netns;
pub mod servers;
pub mod restart_bench;
pub mod steady_traffic;
pub mod topology;

pub use child::ChildGuard;
pub use netns::{Netns, NetnsGuard, list_netns};
pub mod fib_bed;
pub mod fuzz;
pub mod daemon;
pub mod table_bench;
pub mod xdp_pass;
pub mod xdp_test_run;
